// A minimal event emitter: on() returns a function that removes the listener, so a page
// can collect them in onLoad and call them all in onUnload.

class Emitter {
  constructor() {
    this._listeners = {};
  }

  on(event, listener) {
    const list = this._listeners[event] || (this._listeners[event] = []);
    list.push(listener);
    return () => this.off(event, listener);
  }

  once(event, listener) {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  off(event, listener) {
    const list = this._listeners[event];
    if (!list) return;
    const at = list.indexOf(listener);
    if (at >= 0) list.splice(at, 1);
  }

  emit(event, payload) {
    const list = this._listeners[event];
    if (!list || list.length === 0) return;
    // A listener may remove itself (once) or others while we iterate.
    list.slice().forEach((listener) => {
      try {
        listener(payload);
      } catch (err) {
        console.error('[rps] listener for "' + event + '" failed', err);
      }
    });
  }
}

module.exports = { Emitter };

// A stand-in for the WeChat runtime, enough to run the mini-program's own code under node:
//
// - wx.connectSocket and its SocketTask on a real WebSocket (npm "ws"),
// - wx.request on node's fetch, wx.login on a configurable fake code,
// - storage on a Map, App/Page/getApp/getCurrentPages and page navigation.
//
// Each MiniProgram is one phone: its modules are loaded with their own wx, App, Page,
// getApp, timers and module cache (as WeChat wraps every file in its own function), so a
// test can run two players side by side in one process.

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const WebSocket = require('ws');

const ROOT = path.resolve(__dirname, '..');
const GLOBALS = [
  'exports',
  'require',
  'module',
  '__filename',
  '__dirname',
  'wx',
  'App',
  'Page',
  'getApp',
  'getCurrentPages',
  'setTimeout',
  'clearTimeout',
  'setInterval',
  'clearInterval',
];

function clone(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

// WeChat's setData takes JSON-able data only; undefined values are refused.
function checkData(patch, where) {
  if (!patch || typeof patch !== 'object' || Array.isArray(patch)) {
    throw new TypeError(where + ': setData needs an object');
  }
  const walk = (value, at) => {
    if (value === undefined) throw new TypeError(where + ': setData with undefined at ' + at);
    if (typeof value === 'function')
      throw new TypeError(where + ': setData with a function at ' + at);
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new TypeError(where + ': setData with ' + value + ' at ' + at);
    }
    if (value && typeof value === 'object') {
      for (const key of Object.keys(value)) walk(value[key], at + '.' + key);
    }
  };
  for (const key of Object.keys(patch)) walk(patch[key], key);
}

// "a.b[2].c" -> ['a', 'b', 2, 'c'], as setData paths are written.
function splitPath(key) {
  const parts = [];
  key.replace(/[^.[\]]+|\[(\d+)\]/g, (match, index) => {
    parts.push(index !== undefined ? Number(index) : match);
    return match;
  });
  return parts;
}

function parseUrl(url) {
  const [route, query = ''] = url.replace(/^\//, '').split('?');
  const options = {};
  for (const [key, value] of new URLSearchParams(query)) options[key] = value;
  return { route, options };
}

// wx.connectSocket's SocketTask over a real WebSocket. Test hooks: sent and received
// (decoded frames), drop() (the network goes away: 1006), mute() (frames stop arriving).
class FakeSocketTask {
  constructor(runtime, options) {
    this.runtime = runtime;
    this.url = options.url;
    this.sent = [];
    this.received = [];
    this.closed = false;
    this.muted = false;
    this.closeInfo = null;
    this._handlers = { open: [], message: [], close: [], error: [] };
    this.ws = new WebSocket(options.url, { headers: options.header || {} });
    this.ws.on('open', () => this._fire('open', { header: {} }));
    this.ws.on('message', (data, isBinary) => {
      if (this.muted) return;
      const text = isBinary ? data : data.toString('utf8');
      if (!isBinary) {
        try {
          this.received.push(JSON.parse(text));
        } catch (err) {
          this.received.push(text);
        }
      }
      this._fire('message', { data: text });
    });
    this.ws.on('error', (err) =>
      this._fire('error', { errMsg: 'WebSocket error: ' + err.message }),
    );
    this.ws.on('close', (code, reason) => {
      this.closed = true;
      this.closeInfo = { code, reason: reason.toString('utf8') };
      this._fire('close', this.closeInfo);
    });
  }

  onOpen(fn) {
    this._handlers.open.push(fn);
  }

  onMessage(fn) {
    this._handlers.message.push(fn);
  }

  onClose(fn) {
    this._handlers.close.push(fn);
  }

  onError(fn) {
    this._handlers.error.push(fn);
  }

  send(options) {
    if (this.ws.readyState !== WebSocket.OPEN) {
      const err = { errMsg: 'sendSocketMessage:fail WebSocket is not connected' };
      if (options.fail) setImmediate(() => options.fail(err));
      if (options.complete) setImmediate(() => options.complete(err));
      return;
    }
    if (typeof options.data !== 'string') throw new TypeError('the client sends text frames');
    this.sent.push(JSON.parse(options.data));
    this.ws.send(options.data, (err) => {
      const result = err
        ? { errMsg: 'sendSocketMessage:fail ' + err.message }
        : { errMsg: 'sendSocketMessage:ok' };
      if (err && options.fail) options.fail(result);
      if (!err && options.success) options.success(result);
      if (options.complete) options.complete(result);
    });
  }

  close(options) {
    const opts = options || {};
    const code = opts.code === undefined ? 1000 : opts.code;
    if (code !== 1000 && (code < 3000 || code > 4999)) {
      throw new RangeError('SocketTask.close: code must be 1000 or 3000-4999, got ' + code);
    }
    if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    else this.ws.close(code, opts.reason);
    if (opts.success) setImmediate(() => opts.success({ errMsg: 'closeSocket:ok' }));
  }

  // The network goes away under the client (it sees 1006, as on a phone).
  drop() {
    this.ws.terminate();
  }

  // Frames stop arriving but the socket stays open (a dead connection nobody noticed).
  mute() {
    this.muted = true;
  }

  _fire(event, payload) {
    if (this.runtime.disposed) return;
    for (const fn of this._handlers[event]) fn(payload);
  }
}

class MiniProgram {
  // config: values laid over config.js; loginCode: what wx.login hands out (a string,
  // or a function called each time; none: wx.login fails); storage: initial entries.
  constructor(opts) {
    const options = opts || {};
    this.root = options.root || ROOT;
    this.configOverrides = options.config || {};
    this.loginCode = options.loginCode;
    this.backgroundCloseMs =
      options.backgroundCloseMs === undefined ? 30 : options.backgroundCloseMs;
    this.storage = new Map(Object.entries(options.storage || {}));
    // WeChat's language (wx.getSystemInfoSync().language): English unless a test says
    // otherwise, so the older tests read the English words they were written with.
    this.language = options.language || 'en';
    this.titles = [];
    this.shareMenus = [];
    this.uploads = [];
    this.sockets = [];
    this.requests = [];
    this.logins = 0;
    this.modals = [];
    this.pageStack = [];
    this.pageDefs = new Map();
    this.modules = new Map();
    this.app = null;
    this.appDef = null;
    this.disposed = false;
    this._timers = new Set();
    this._intervals = new Set();
    this._loadingRoute = null;
    this.wx = this._makeWx();
    this.globals = this._makeGlobals();
  }

  get lastSocket() {
    return this.sockets[this.sockets.length - 1];
  }

  get topPage() {
    return this.pageStack[this.pageStack.length - 1];
  }

  // Load config.js (with the overrides), then app.js, and run onLaunch and onShow.
  launch() {
    const config = this.require('config.js');
    Object.assign(config, this.configOverrides);
    this.require('app.js');
    if (!this.appDef) throw new Error('app.js did not call App()');
    const app = { globalData: {} };
    for (const key of Object.keys(this.appDef)) {
      const value = this.appDef[key];
      app[key] = typeof value === 'function' ? value : clone(value);
    }
    this.app = app;
    if (app.onLaunch) app.onLaunch({ path: 'pages/lobby/lobby', query: {}, scene: 1001 });
    if (app.onShow) app.onShow({ path: 'pages/lobby/lobby', query: {}, scene: 1001 });
    return app;
  }

  get client() {
    return this.app.globalData.client;
  }

  // Open a page as wx.navigateTo would: its onLoad(query), onShow, onReady.
  openPage(route, query) {
    const def = this._pageDef(route);
    const page = { route, options: query || {}, data: clone(def.data || {}), setDataCalls: [] };
    for (const key of Object.keys(def)) {
      if (key === 'data') continue;
      page[key] = typeof def[key] === 'function' ? def[key] : clone(def[key]);
    }
    page.setData = (patch, callback) => {
      checkData(patch, route);
      const copy = clone(patch);
      page.setDataCalls.push(copy);
      for (const key of Object.keys(copy)) {
        const parts = splitPath(key);
        let target = page.data;
        for (const part of parts.slice(0, -1)) {
          if (target[part] === null || typeof target[part] !== 'object') target[part] = {};
          target = target[part];
        }
        target[parts[parts.length - 1]] = copy[key];
      }
      if (callback) setImmediate(callback);
    };
    const below = this.topPage;
    if (below && below.onHide) below.onHide();
    this.pageStack.push(page);
    if (page.onLoad) page.onLoad(page.options);
    if (page.onShow) page.onShow();
    if (page.onReady) page.onReady();
    return page;
  }

  closeTopPage() {
    const page = this.pageStack.pop();
    if (page && page.onUnload) page.onUnload();
    const top = this.topPage;
    if (top && top.onShow) top.onShow();
    return page;
  }

  // The app goes to the background; WeChat closes its sockets a few seconds later
  // (here after backgroundCloseMs).
  hide() {
    if (this.app.onHide) this.app.onHide();
    for (const page of this.pageStack.slice(-1)) if (page.onHide) page.onHide();
    const sockets = this.sockets.filter((task) => !task.closed);
    return new Promise((resolve) => {
      setTimeout(() => {
        for (const task of sockets) task.ws.close(1000, 'app in background');
        resolve();
      }, this.backgroundCloseMs);
    });
  }

  show() {
    if (this.app.onShow)
      this.app.onShow({ path: this.topPage ? this.topPage.route : '', query: {}, scene: 1001 });
    const top = this.topPage;
    if (top && top.onShow) top.onShow();
  }

  // Close everything this phone opened, as a user leaving would, and stop its timers.
  dispose() {
    if (this.disposed) return;
    while (this.pageStack.length) this.closeTopPage();
    if (this.app && this.client) this.client.close();
    this.kill();
  }

  // The app is killed: no page is unloaded, nothing more is sent, sockets just drop.
  kill() {
    this.disposed = true;
    for (const id of this._timers) clearTimeout(id);
    for (const id of this._intervals) clearInterval(id);
    for (const task of this.sockets) task.ws.terminate();
  }

  // CommonJS as WeChat does it: paths relative to the requiring file, inside the
  // mini-program's folder, no npm packages.
  require(file, from) {
    const base = from ? path.dirname(from) : this.root;
    let resolved = path.resolve(base, file);
    if (!resolved.endsWith('.js')) resolved += '.js';
    const relative = path.relative(this.root, resolved);
    if (
      relative.startsWith('..') ||
      path.isAbsolute(relative) ||
      relative.split(path.sep)[0] === 'node_modules'
    ) {
      throw new Error('mini-program code may only require its own files, not ' + file);
    }
    const cached = this.modules.get(resolved);
    if (cached) return cached.exports;
    const module = { exports: {} };
    this.modules.set(resolved, module);
    const source = fs.readFileSync(resolved, 'utf8');
    const fn = vm.compileFunction(source, GLOBALS, { filename: resolved });
    const localRequire = (request) => this.require(request, resolved);
    const g = this.globals;
    const pageRoute = relative.replace(/\\/g, '/').replace(/\.js$/, '');
    const previous = this._loadingRoute;
    this._loadingRoute = pageRoute;
    try {
      fn(
        module.exports,
        localRequire,
        module,
        resolved,
        path.dirname(resolved),
        g.wx,
        g.App,
        g.Page,
        g.getApp,
        g.getCurrentPages,
        g.setTimeout,
        g.clearTimeout,
        g.setInterval,
        g.clearInterval,
      );
    } finally {
      this._loadingRoute = previous;
    }
    return module.exports;
  }

  _pageDef(route) {
    if (!this.pageDefs.has(route)) this.require(route + '.js');
    const def = this.pageDefs.get(route);
    if (!def) throw new Error(route + '.js did not call Page()');
    return def;
  }

  _makeGlobals() {
    return {
      wx: this.wx,
      App: (def) => {
        this.appDef = def;
      },
      Page: (def) => {
        this.pageDefs.set(this._loadingRoute, def);
      },
      getApp: () => this.app,
      getCurrentPages: () => this.pageStack.slice(),
      setTimeout: (fn, ms) => {
        const id = setTimeout(() => {
          this._timers.delete(id);
          if (!this.disposed) fn();
        }, ms);
        this._timers.add(id);
        return id;
      },
      clearTimeout: (id) => {
        this._timers.delete(id);
        clearTimeout(id);
      },
      setInterval: (fn, ms) => {
        const id = setInterval(() => {
          if (!this.disposed) fn();
        }, ms);
        this._intervals.add(id);
        return id;
      },
      clearInterval: (id) => {
        this._intervals.delete(id);
        clearInterval(id);
      },
    };
  }

  _makeWx() {
    const later = (fn, value) => {
      if (fn) setImmediate(() => fn(value));
    };
    return {
      connectSocket: (options) => {
        if (!/^wss?:\/\//.test(options.url)) {
          later(options.fail, { errMsg: 'connectSocket:fail invalid url' });
        }
        const task = new FakeSocketTask(this, options);
        this.sockets.push(task);
        later(options.success, { errMsg: 'connectSocket:ok' });
        return task;
      },

      request: (options) => {
        const method = (options.method || 'GET').toUpperCase();
        const headers = Object.assign({}, options.header || {});
        let url = options.url;
        let body;
        if (method === 'GET') {
          if (options.data)
            url += (url.includes('?') ? '&' : '?') + new URLSearchParams(options.data);
        } else if (options.data !== undefined) {
          body = typeof options.data === 'string' ? options.data : JSON.stringify(options.data);
        }
        const record = { url, method, data: clone(options.data), statusCode: null };
        this.requests.push(record);
        fetch(url, { method, headers, body }).then(
          async (response) => {
            const raw = await response.text();
            let data = raw;
            try {
              data = JSON.parse(raw);
            } catch (err) {
              // WeChat hands over the text when it is not JSON.
            }
            record.statusCode = response.status;
            record.response = clone(data);
            const header = {};
            response.headers.forEach((value, key) => {
              header[key] = value;
            });
            record.header = header;
            record.at = Date.now();
            const result = { statusCode: response.status, data, header, errMsg: 'request:ok' };
            if (this.disposed) return;
            if (options.success) options.success(result);
            if (options.complete) options.complete(result);
          },
          (err) => {
            const result = { errMsg: 'request:fail ' + err.message };
            if (this.disposed) return;
            if (options.fail) options.fail(result);
            if (options.complete) options.complete(result);
          },
        );
        return { abort() {} };
      },

      login: (options) => {
        this.logins += 1;
        const code =
          typeof this.loginCode === 'function' ? this.loginCode(this.logins) : this.loginCode;
        if (code) later(options.success, { code, errMsg: 'login:ok' });
        else later(options.fail, { errMsg: 'login:fail no AppID in this test' });
        if (options.complete) later(options.complete, {});
      },

      getStorageSync: (key) => (this.storage.has(key) ? clone(this.storage.get(key)) : ''),
      setStorageSync: (key, value) => {
        this.storage.set(key, clone(value));
      },
      removeStorageSync: (key) => {
        this.storage.delete(key);
      },

      navigateTo: (options) => {
        const { route, options: query } = parseUrl(options.url);
        setImmediate(() => {
          if (this.disposed) return;
          this.openPage(route, query);
          if (options.success) options.success({ errMsg: 'navigateTo:ok' });
        });
      },
      navigateBack: (options) => {
        const opts = options || {};
        setImmediate(() => {
          if (this.disposed) return;
          if (this.pageStack.length > 1) {
            this.closeTopPage();
            if (opts.success) opts.success({ errMsg: 'navigateBack:ok' });
          } else if (opts.fail) {
            opts.fail({ errMsg: 'navigateBack:fail cannot navigate back at first page.' });
          }
        });
      },
      redirectTo: (options) => {
        const { route, options: query } = parseUrl(options.url);
        setImmediate(() => {
          if (this.disposed) return;
          const page = this.pageStack.pop();
          if (page && page.onUnload) page.onUnload();
          this.openPage(route, query);
        });
      },

      getSystemInfoSync: () => ({ language: this.language, platform: 'devtools' }),
      setNavigationBarTitle: (options) => {
        this.titles.push(options.title);
      },
      showShareMenu: (options) => {
        this.shareMenus.push(clone(options || {}));
        later(options && options.success, { errMsg: 'showShareMenu:ok' });
      },
      // The file at filePath is POSTed as the body, as one multipart part would carry it.
      uploadFile: (options) => {
        const record = { url: options.url, name: options.name, header: clone(options.header || {}) };
        this.uploads.push(record);
        let body;
        try {
          body = fs.readFileSync(options.filePath);
        } catch (err) {
          later(options.fail, { errMsg: 'uploadFile:fail ' + err.message });
          return { abort() {} };
        }
        const form = new FormData();
        form.append(options.name, new Blob([body]), path.basename(options.filePath));
        fetch(options.url, { method: 'POST', headers: options.header || {}, body: form }).then(
          async (response) => {
            const data = await response.text(); // uploadFile hands over text, not JSON
            record.statusCode = response.status;
            if (this.disposed) return;
            const result = { statusCode: response.status, data, errMsg: 'uploadFile:ok' };
            if (options.success) options.success(result);
            if (options.complete) options.complete(result);
          },
          (err) => {
            if (this.disposed) return;
            const result = { errMsg: 'uploadFile:fail ' + err.message };
            if (options.fail) options.fail(result);
            if (options.complete) options.complete(result);
          },
        );
        return { abort() {} };
      },

      showModal: (options) => {
        this.modals.push(options);
        later(options.success, { confirm: true, cancel: false });
      },
      showToast: (options) => {
        this.modals.push(options);
      },
      onNetworkStatusChange: () => {},
    };
  }
}

module.exports = { MiniProgram, FakeSocketTask, ROOT };

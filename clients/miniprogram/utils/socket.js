// The game connection: one wx.connectSocket WebSocket speaking the server's native JSON
// protocol (protocol/README.md in the server's repository), with WeChat login, a session
// token kept in storage, an application-level heartbeat and reconnection.
//
// Events (subscribe with client.on(name, fn); on() returns an unsubscribe function):
//   state      'login' | 'connecting' | 'open' | 'busy' | 'ready' | 'reconnecting'
//              | 'suspended' | 'replaced' | 'closed' (see client.state); 'busy': the
//              server could not load our player just now (error unavailable), hello is
//              said again with the same token after a growing delay
//   hi, queued, start, movement, result, resume, left, pong, bye, error, room, room_closed,
//   rematch, rematch_declined
//              the server's message of that type (the decoded object)
//   message    every server message
//   loginError {status, code, message} when POST /applet/login failed and the client
//              went on as a guest
//   close      {code, reason} when a socket closed (a reconnect may follow)
//   stale      a ping went unanswered: the socket is dropped and a new one opened
//   lost       {what: 'match' | 'queue'}: after a reconnect the server no longer had our
//              match (forfeited past the reconnect grace) or queue entry

const { Emitter } = require('./emitter.js');

const TOKEN_KEY = 'rps.token';
const NAME_KEY = 'rps.name';
const AVATAR_KEY = 'rps.avatar';
const OUTBOX_MAX = 16;

const DEFAULTS = {
  socketUrl: 'wss://example.com/applet/websocket',
  httpBase: 'https://example.com',
  useWeChatLogin: true,
  heartbeatMs: 20000, // WeChat cannot send WebSocket pings: {"type":"ping"} instead
  pongTimeoutMs: 10000, // no pong this long after a ping: the socket is dead
  reconnectMinMs: 500,
  reconnectMaxMs: 15000,
  resumeWaitMs: 1500, // after a reconnect, how long to wait for resume/queued
  busyRetryMinMs: 1000, // error unavailable: say hello again after this long, doubling
  busyRetryMaxMs: 10000, // up to this
};

// Login failures worth retrying later (network, WeChat busy, rate limited or
// unreachable), up to LOGIN_RETRIES times in a row; anything else, or more, falls back to
// a guest.
const RETRY_STATUSES = [0, 429, 502, 503];
const LOGIN_RETRIES = 3;

function validName(name) {
  if (typeof name !== 'string') return '';
  const trimmed = name.trim();
  // 1-32 characters (code points), none of them control characters.
  if (Array.from(trimmed).length > 32 || /[\u0000-\u001f\u007f-\u009f]/.test(trimmed)) {
    return '';
  }
  return trimmed;
}

function header(headers, name) {
  if (!headers) return undefined;
  const wanted = name.toLowerCase();
  for (const key in headers) {
    if (key.toLowerCase() === wanted) return headers[key];
  }
  return undefined;
}

class GameClient extends Emitter {
  constructor(options) {
    super();
    this.options = Object.assign({}, DEFAULTS, options || {});
    this.wx = this.options.wx || wx;
    this.state = 'closed';
    this.player = null; // {id, name, rating} from the latest hi (rating: as of the last match)
    this.match = null; // the match in progress, see _track()
    this.queued = false; // waiting in the matchmaking queue
    this.room = null; // {code, expiresAt}: the private room this player opened
    this.lastJoin = 'auto';
    this.token = this._load(TOKEN_KEY);
    this.profile = { name: this._load(NAME_KEY), avatar: this._load(AVATAR_KEY) };
    this.loginUnavailable = false;
    this.hidden = false;
    this._task = null;
    this._busy = false; // a login is in flight before the socket is opened
    this._stopped = true; // close() was called: no reconnecting
    this._bye = null;
    this._attempts = 0;
    this._reconnectTimer = null;
    this._busyTimer = null; // hello again after error unavailable
    this._busyAttempts = 0;
    this._heartbeatTimer = null;
    this._pongTimer = null;
    this._outbox = [];
    this._ids = 0;
    this._helloId = null;
    this._loginToken = '';
    this._loginRetries = 0;
    this._expect = null;
    if (typeof this.wx.onNetworkStatusChange === 'function') {
      this.wx.onNetworkStatusChange((res) => {
        if (res && res.isConnected && !this._stopped && !this.hidden && !this._task) {
          this.connectNow();
        }
      });
    }
  }

  get ready() {
    return this.state === 'ready';
  }

  // --- lifecycle -------------------------------------------------------------------

  // Open the connection (logging in first if needed); does nothing if one is open or
  // being opened.
  connect() {
    this._stopped = false;
    this._bye = null;
    if (this._task || this._busy) return;
    this._clearReconnect();
    if (this.options.useWeChatLogin && !this.token && !this.loginUnavailable) {
      this._busy = true;
      this._setState('login');
      this._login().then((outcome) => {
        this._busy = false;
        if (this._stopped) return;
        if (outcome.retry) {
          this._scheduleReconnect(outcome.retryAfterMs);
        } else {
          this._open();
        }
      });
      return;
    }
    this._open();
  }

  // Connect at once, skipping any backoff wait (app shown again, network back).
  connectNow() {
    this._attempts = 0;
    this.connect();
  }

  // Close for good (until connect() is called again).
  close() {
    this._stopped = true;
    this._outbox = [];
    this._clearReconnect();
    this._cancelExpect();
    this._drop(1000, 'bye');
    this._setState('closed');
  }

  // Drop the current socket and open a new one with the token (e.g. a new name).
  reconnect() {
    this._drop(1000, 'reconnecting');
    this.connectNow();
  }

  // App.onShow: WeChat closes sockets ~5 s after the app goes to the background.
  onShow() {
    this.hidden = false;
    if (this._stopped) return;
    if (!this._task) {
      this.connectNow();
    } else if (this.ready) {
      // It may have died without telling us while we were hidden: probe it.
      this.ping();
    }
  }

  // App.onHide: a socket closing while hidden is reopened by onShow, not by the backoff.
  onHide() {
    this.hidden = true;
  }

  // --- sending ----------------------------------------------------------------------

  // Send a message; returns false if there is no identified connection. With
  // {queue: true} it is kept instead and sent right after the next hi.
  send(message, opts) {
    if (this.ready && this._task) {
      this._write(message);
      return true;
    }
    if (opts && opts.queue) {
      if (this._outbox.length >= OUTBOX_MAX) this._outbox.shift();
      this._outbox.push(message);
      if (!this._stopped && !this._task && !this._busy && !this._reconnectTimer) this.connect();
    }
    return false;
  }

  join(bot) {
    this.lastJoin = bot || 'auto';
    this.send({ type: 'join', bot: this.lastJoin, id: this._nextId('join') }, { queue: true });
  }

  choose(choice) {
    const match = this.match;
    if (!match || !match.open) return false;
    const sent = this.send({ type: 'choice', match_id: match.matchId, round: match.round, choice });
    if (sent) {
      match.choice = choice;
      match.final = true;
    }
    return sent;
  }

  face(face) {
    if (!this.match) return false;
    return this.send({ type: 'face', face });
  }

  leave() {
    this.send({ type: 'leave', id: this._nextId('leave') }, { queue: true });
  }

  // A private room for a friend (answered with room {code, expires_in}); sent once
  // identified, like join.
  createRoom() {
    this.send({ type: 'create_room', id: this._nextId('room') }, { queue: true });
  }

  // A friend's room, by its code (answered with start, or an error).
  joinRoom(code) {
    this.send({ type: 'join', room: code, id: this._nextId('friend') }, { queue: true });
  }

  // Ask for (or accept) another match against the opponent of matchId.
  rematch(matchId) {
    return this.send({ type: 'rematch', match_id: matchId, id: this._nextId('rematch') });
  }

  ping() {
    if (!this.ready) return false;
    this._write({ type: 'ping', t: Date.now() });
    if (!this._pongTimer) {
      this._pongTimer = setTimeout(() => this._onStale(), this.options.pongTimeoutMs);
    }
    return true;
  }

  // A new name or avatar is sent in hello: reconnect (with the token) to apply it.
  // Returns whether anything changed.
  setProfile(profile) {
    let newName = false;
    let newAvatar = false;
    if (profile && profile.name !== undefined) {
      const name = validName(profile.name);
      if (name !== this.profile.name) {
        this.profile.name = name;
        this._store(NAME_KEY, name);
        newName = !!name && !!this.player && name !== this.player.name;
      }
    }
    if (profile && profile.avatar !== undefined && (profile.avatar || '') !== this.profile.avatar) {
      this.profile.avatar = profile.avatar || '';
      this._store(AVATAR_KEY, this.profile.avatar);
      newAvatar = !!this.profile.avatar;
    }
    if ((newName || newAvatar) && this.ready) this.reconnect();
    return newName || newAvatar;
  }

  // --- WeChat login -----------------------------------------------------------------

  // wx.login, then POST {code} to /applet/login. Resolves {token}, {guest: true} or
  // {retry: true, retryAfterMs}; never rejects.
  _login() {
    const wxApi = this.wx;
    return new Promise((resolve) => {
      wxApi.login({
        success: (res) => {
          if (!res || !res.code) {
            this._loginFailed(0, 'no_code', 'wx.login gave no code', resolve, true);
            return;
          }
          wxApi.request({
            url: this.options.httpBase + '/applet/login',
            method: 'POST',
            header: { 'content-type': 'application/json' },
            data: { code: res.code },
            success: (response) => {
              const body = response.data && typeof response.data === 'object' ? response.data : {};
              if (response.statusCode === 200 && typeof body.token === 'string') {
                this._saveToken(body.token);
                this._loginToken = body.token;
                this._loginRetries = 0;
                resolve({ token: body.token, player: body.player });
                return;
              }
              const error = body.error || {};
              if (response.statusCode === 404) this.loginUnavailable = true;
              const retryAfter = Number(header(response.header, 'retry-after'));
              this._loginFailed(
                response.statusCode,
                error.code || 'http_' + response.statusCode,
                error.message || 'login failed',
                resolve,
                false,
                retryAfter > 0 ? retryAfter * 1000 : 0,
              );
            },
            fail: (err) => {
              this._loginFailed(
                0,
                'network',
                (err && err.errMsg) || 'request failed',
                resolve,
                false,
              );
            },
          });
        },
        fail: (err) => {
          // No WeChat login here (e.g. the developer tools without an AppID).
          this.loginUnavailable = true;
          this._loginFailed(
            0,
            'wx_login_failed',
            (err && err.errMsg) || 'wx.login failed',
            resolve,
            true,
          );
        },
      });
    });
  }

  _loginFailed(status, code, message, resolve, guest, retryAfterMs) {
    const retry =
      !guest &&
      RETRY_STATUSES.indexOf(status) >= 0 &&
      this._loginRetries < LOGIN_RETRIES &&
      (retryAfterMs || 0) <= this.options.reconnectMaxMs; // not 60 s of "Logging in…"
    if (retry) {
      this._loginRetries += 1;
      resolve({ retry: true, retryAfterMs: retryAfterMs || 0 });
      return;
    }
    this._loginRetries = 0;
    this.emit('loginError', { status, code, message });
    resolve({ guest: true });
  }

  // --- the socket -------------------------------------------------------------------

  _open() {
    this._setState('connecting');
    let task = null;
    task = this.wx.connectSocket({
      url: this.options.socketUrl,
      tcpNoDelay: true, // small frames, sent at once
      fail: (err) => {
        const reason = (err && err.errMsg) || 'connectSocket failed';
        setTimeout(() => this._gone(task, 0, reason), 0);
      },
    });
    this._task = task;
    this._helloId = null;
    task.onOpen(() => {
      if (this._task !== task) return;
      this._setState('open');
      this._hello();
    });
    task.onMessage((res) => {
      if (this._task !== task) return;
      this._frame(res.data);
    });
    task.onError((err) => {
      if (this._task !== task) return;
      this._gone(task, 1006, (err && err.errMsg) || 'socket error');
    });
    task.onClose((res) => {
      if (this._task !== task) return;
      this._gone(task, res && res.code, (res && res.reason) || '');
    });
  }

  _hello() {
    const hello = { type: 'hello', id: this._nextId('hello') };
    if (this.profile.name) hello.name = this.profile.name;
    if (this.profile.avatar) hello.avatar = this.profile.avatar;
    if (this.token) hello.token = this.token;
    this._helloId = hello.id;
    this._write(hello);
  }

  _write(message) {
    const task = this._task;
    if (!task) return;
    task.send({
      data: JSON.stringify(message),
      fail: () => {
        // The close callback follows and reconnects; nothing to do here.
      },
    });
  }

  // The socket is gone (closed, failed, or declared dead by us).
  _gone(task, code, reason) {
    if (this._task !== task || task === null) return;
    this._task = null;
    this._stopHeartbeat();
    this._clearBusy();
    const wasReady = this.ready;
    this.emit('close', { code, reason, wasReady });
    if (this._stopped) {
      this._setState('closed');
    } else if (this._bye === 'replaced') {
      // Another device (or tab) took this player over: do not fight it.
      this._setState('replaced');
    } else if (this.hidden) {
      this._setState('suspended');
    } else {
      this._scheduleReconnect(0);
    }
  }

  // Close the current socket on purpose, without reconnecting from its close event.
  _drop(code, reason) {
    const task = this._task;
    this._task = null;
    this._stopHeartbeat();
    this._clearBusy();
    if (task) {
      try {
        task.close({ code, reason });
      } catch (err) {
        // Already closed.
      }
    }
  }

  _scheduleReconnect(floorMs) {
    this._clearReconnect();
    const base = Math.min(
      this.options.reconnectMaxMs,
      this.options.reconnectMinMs * Math.pow(2, this._attempts),
    );
    this._attempts += 1;
    const delay = Math.max(floorMs || 0, Math.round(base * (0.8 + Math.random() * 0.4)));
    this._setState('reconnecting');
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._stopped && !this.hidden) this.connect();
    }, delay);
  }

  _clearReconnect() {
    if (this._reconnectTimer) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
    }
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this._heartbeatTimer = setInterval(() => this.ping(), this.options.heartbeatMs);
  }

  _stopHeartbeat() {
    if (this._heartbeatTimer) clearInterval(this._heartbeatTimer);
    if (this._pongTimer) clearTimeout(this._pongTimer);
    this._heartbeatTimer = null;
    this._pongTimer = null;
  }

  _onStale() {
    this._pongTimer = null;
    const task = this._task;
    if (!task) return;
    this.emit('stale', {});
    this._gone(task, 4000, 'no pong');
    try {
      task.close({ code: 1000, reason: 'no pong' });
    } catch (err) {
      // It was dead anyway.
    }
  }

  // --- incoming ---------------------------------------------------------------------

  _frame(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch (err) {
      return; // not for us (the server only sends JSON text frames)
    }
    if (!message || typeof message !== 'object' || typeof message.type !== 'string') return;
    switch (message.type) {
      case 'hi':
        this.player = {
          id: message.player_id,
          name: message.name,
          rating: typeof message.rating === 'number' ? message.rating : null,
        };
        this._saveToken(message.token);
        this._attempts = 0;
        this._busyAttempts = 0;
        this._expectResume();
        this._setState('ready');
        this._startHeartbeat();
        break;
      case 'error':
        if (message.code === 'invalid_token') {
          this._invalidToken();
        } else if (
          message.code === 'unavailable' &&
          !this.ready &&
          (message.ref === undefined || message.ref === this._helloId)
        ) {
          this._unavailable();
        }
        break;
      case 'pong':
        if (this._pongTimer) clearTimeout(this._pongTimer);
        this._pongTimer = null;
        if (typeof message.t === 'number') message.rtt = Date.now() - message.t;
        break;
      case 'bye':
        this._bye = message.reason;
        break;
      case 'result':
        // The final result carries the rating after the match (protocol §6.8).
        if (message.match_over && this.player && typeof message.rating === 'number') {
          this.player.rating = message.rating;
        }
        this._track(message);
        break;
      default:
        this._track(message);
    }
    this.emit(message.type, message);
    this.emit('message', message);
    if (message.type === 'hi') this._flush();
  }

  _flush() {
    const pending = this._outbox;
    this._outbox = [];
    pending.forEach((message) => this._write(message));
  }

  // A reconnect: the server follows hi with resume (in a match) or queued (still queued)
  // at once; if neither comes, the match or queue entry did not outlive the grace.
  _expectResume() {
    this._cancelExpect();
    const what = this.match ? 'match' : this.queued ? 'queue' : null;
    this.match = null;
    this.queued = false;
    if (!what) return;
    this._expect = setTimeout(() => {
      this._expect = null;
      this.emit('lost', { what });
    }, this.options.resumeWaitMs);
  }

  _cancelExpect() {
    if (this._expect) clearTimeout(this._expect);
    this._expect = null;
  }

  // Keep what a page needs to draw the match after it was (re)opened.
  _track(message) {
    const now = Date.now();
    const waits = message.type === 'queued' || message.type === 'room';
    if (waits || message.type === 'start' || message.type === 'resume') {
      this._cancelExpect();
      this.queued = waits; // a private room waits like the queue (protocol §6.9)
      this.room = message.type === 'room'
        ? { code: message.code, expiresAt: now + message.expires_in * 1000 }
        : null;
    }
    if (message.type === 'room_closed') {
      this.queued = false;
      this.room = null;
    }
    if (message.type === 'start' || message.type === 'resume') {
      const deadlineMs = message.type === 'start' ? message.round_ms : message.deadline_ms;
      this.match = {
        matchId: message.match_id,
        round: message.round,
        bestOf: message.best_of,
        roundMs: message.round_ms,
        deadline: now + deadlineMs,
        open: deadlineMs > 0,
        opponent: message.opponent,
        opponentAway: !!message.opponent_away,
        score: message.score,
        choice: message.choice || '',
        final: !!message.final,
      };
    } else if (message.type === 'result' && this.match && message.match_id === this.match.matchId) {
      if (message.match_over) {
        this.match = null;
      } else {
        this.match.open = false;
        this.match.score = message.score;
      }
    } else if (
      message.type === 'movement' &&
      this.match &&
      message.match_id === this.match.matchId
    ) {
      if (message.kind === 'left') this.match.opponentAway = true;
      if (message.kind === 'back') this.match.opponentAway = false;
    } else if (message.type === 'left') {
      this.match = null;
      this.queued = false;
      this.room = null;
    }
  }

  _invalidToken() {
    const task = this._task;
    const hadToken = this.token;
    this._forgetToken();
    const sentLoginToken = this._loginToken && this._loginToken === hadToken;
    if (!this.options.useWeChatLogin || this.loginUnavailable || sentLoginToken) {
      this._hello(); // as a new guest, on the same connection
      return;
    }
    this._login().then((outcome) => {
      if (this._task !== task) return; // closed meanwhile: connect() starts over
      if (outcome.retry) {
        this._drop(1000, 'login later');
        this._scheduleReconnect(outcome.retryAfterMs);
        return;
      }
      this._hello();
    });
  }

  // The token is fine but the server could not load our player just now (its storage is
  // failing): keep the token, and say hello again on this socket after a growing delay.
  // A close meanwhile cancels it; the next socket's hello carries the same token.
  _unavailable() {
    const task = this._task;
    this._clearBusy();
    const base = Math.min(
      this.options.busyRetryMaxMs,
      this.options.busyRetryMinMs * Math.pow(2, this._busyAttempts),
    );
    this._busyAttempts += 1;
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this._setState('busy');
    this._busyTimer = setTimeout(() => {
      this._busyTimer = null;
      if (this._task !== task || this._stopped || this.ready) return;
      this._hello();
    }, delay);
  }

  _clearBusy() {
    if (this._busyTimer) clearTimeout(this._busyTimer);
    this._busyTimer = null;
  }

  // --- small helpers ----------------------------------------------------------------

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  _nextId(prefix) {
    this._ids += 1;
    return prefix + '-' + this._ids;
  }

  _saveToken(token) {
    if (typeof token !== 'string' || !token) return;
    this.token = token;
    this._store(TOKEN_KEY, token);
  }

  _forgetToken() {
    this.token = '';
    try {
      this.wx.removeStorageSync(TOKEN_KEY);
    } catch (err) {
      // Storage is best effort.
    }
  }

  _load(key) {
    try {
      const value = this.wx.getStorageSync(key);
      return typeof value === 'string' ? value : '';
    } catch (err) {
      return '';
    }
  }

  _store(key, value) {
    try {
      this.wx.setStorageSync(key, value);
    } catch (err) {
      // Storage is best effort.
    }
  }
}

module.exports = { GameClient, validName, TOKEN_KEY, NAME_KEY };

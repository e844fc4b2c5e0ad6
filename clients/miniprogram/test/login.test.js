// (5) WeChat login: wx.login's code goes to POST /applet/login, the server exchanges it
// with code2session (a fake here, run by this test) and the token it answers with says
// hello. Needs a server started with
//   --wechat-appid wxTEST --wechat-secret s3cret \
//   --wechat-api-base http://127.0.0.1:$RPS_LOGIN_FAKE_PORT
// at RPS_LOGIN_HTTP_URL (tests/test_miniprogram.py starts one); skipped without it.

'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers.js');

const HTTP_URL = process.env.RPS_LOGIN_HTTP_URL;
const SKIP = HTTP_URL ? false : 'RPS_LOGIN_HTTP_URL is not set (a server with --wechat-appid)';
const OPENID = 'o_mini_' + crypto.randomBytes(4).toString('hex');

// WeChat's code2session, faked: codes "ok-*" log OPENID in (once each), "busy-*" get
// WeChat's -1 (system busy), any other code is 40029 as WeChat answers an invalid one.
class FakeCode2Session {
  constructor() {
    this.calls = [];
    this.sessionKeys = [];
    this.used = new Set();
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  listen(port) {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', resolve);
    });
  }

  close() {
    return new Promise((resolve) => this.server.close(resolve));
  }

  handle(req, res) {
    const url = new URL(req.url, 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    this.calls.push({ method: req.method, path: url.pathname, query });
    let reply;
    const code = query.js_code || '';
    if (url.pathname !== '/sns/jscode2session') {
      reply = { errcode: 40001, errmsg: 'wrong path ' + url.pathname };
    } else if (code.startsWith('busy-')) {
      reply = { errcode: -1, errmsg: 'system error, rid: fake' };
    } else if (code.startsWith('ok-') && !this.used.has(code)) {
      this.used.add(code);
      const sessionKey = crypto.randomBytes(16).toString('base64');
      this.sessionKeys.push(sessionKey);
      reply = { openid: OPENID, session_key: sessionKey };
    } else {
      reply = { errcode: 40029, errmsg: 'invalid code, rid: fake' };
    }
    // WeChat answers JSON as text/plain.
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(JSON.stringify(reply));
  }
}

function loginServer() {
  return { http: HTTP_URL, ws: HTTP_URL.replace(/^http/, 'ws') + '/applet/websocket' };
}

let fake = null;

test.before(async () => {
  if (SKIP) return;
  const port = Number(process.env.RPS_LOGIN_FAKE_PORT);
  if (!port) throw new Error('RPS_LOGIN_FAKE_PORT: the port the server calls code2session on');
  fake = new FakeCode2Session();
  await fake.listen(port);
});

test.after(async () => {
  if (fake) await fake.close();
});

test(
  'wx.login -> POST /applet/login -> hello with its token; invalid_token logs in again',
  { skip: SKIP, timeout: 20000 },
  async (t) => {
    let codes = 0;
    const loginCode = () => 'ok-' + process.pid + '-' + (codes += 1);
    const mp = h.phone(t, { server: loginServer(), config: { useWeChatLogin: true }, loginCode });
    await h.waitFor(() => mp.client.ready, 'hi after logging in');

    assert.equal(mp.logins, 1);
    assert.equal(fake.calls.length, 1);
    assert.deepEqual(fake.calls[0].query, {
      appid: 'wxTEST',
      secret: 's3cret',
      js_code: 'ok-' + process.pid + '-1',
      grant_type: 'authorization_code',
    });
    const login = mp.requests[0];
    assert.deepEqual(
      [login.method, login.url, login.data, login.statusCode],
      ['POST', HTTP_URL + '/applet/login', { code: 'ok-' + process.pid + '-1' }, 200],
    );
    const body = login.response;
    assert.equal(typeof body.token, 'string');
    assert.ok(body.expires_in > 0);
    assert.ok(
      !JSON.stringify(body).includes(fake.sessionKeys[0]),
      'the session_key stays on the server',
    );
    const hello = mp.lastSocket.sent[0];
    assert.deepEqual([hello.type, hello.token], ['hello', body.token]);
    assert.equal(mp.client.player.id, body.player.id);

    // Play a house bot as the WeChat player.
    const game = mp.openPage('pages/game/game', { bot: 'now' });
    await h.playToEnd(game, () => 'paper');
    assert.ok(['you', 'opponent', 'draw'].includes(game.data.winner));
    const { totalScore, winStreak } = game.data;
    mp.dispose();

    // Another phone of the same WeChat user holds a token the server no longer accepts:
    // it forgets it, logs in again (a new code, the same openid) and is the same player.
    const forged = 'v1.' + body.player.id + '.9999999999.Zm9yZ2Vk';
    const again = h.phone(t, {
      server: loginServer(),
      config: { useWeChatLogin: true },
      loginCode,
      storage: { 'rps.token': forged },
    });
    await h.waitFor(() => again.client.ready, 'hi after logging in again');
    const hellos = again.lastSocket.sent.filter((m) => m.type === 'hello');
    assert.equal(hellos.length, 2);
    assert.equal(hellos[0].token, forged);
    assert.ok(
      again.lastSocket.received.some((m) => m.type === 'error' && m.code === 'invalid_token'),
    );
    assert.equal(again.logins, 1);
    assert.equal(fake.calls.length, 2);
    assert.equal(hellos[1].token, again.requests[0].response.token);
    assert.equal(again.client.player.id, body.player.id, 'same openid, same player');
    const player = again.requests[0].response.player;
    assert.deepEqual([player.total_score, player.win_streak], [totalScore, winStreak]);
  },
);

test(
  'a code WeChat refuses: loginError, then a guest',
  { skip: SKIP, timeout: 10000 },
  async (t) => {
    const mp = h.phone(t, {
      server: loginServer(),
      config: { useWeChatLogin: true },
      loginCode: 'stale-code',
    });
    let loginError = null;
    mp.client.on('loginError', (e) => {
      loginError = e;
    });
    await h.waitFor(() => mp.client.ready, 'hi as a guest');
    assert.deepEqual(loginError && [loginError.status, loginError.code], [401, 'invalid_code']);
    assert.equal(fake.calls[fake.calls.length - 1].query.js_code, 'stale-code');
    assert.equal(mp.lastSocket.sent[0].token, undefined);
    assert.match(mp.client.player.name, /^Player \d{4}$/);
  },
);

test(
  'WeChat busy: waits for Retry-After, then logs in with a new code',
  { skip: SKIP, timeout: 15000 },
  async (t) => {
    const loginCode = (n) => (n === 1 ? 'busy-' : 'ok-') + process.pid + '-busy-' + n;
    const mp = h.phone(t, {
      server: loginServer(),
      config: { useWeChatLogin: true, reconnectMaxMs: 5000 },
      loginCode,
    });
    let loginError = null;
    mp.client.on('loginError', (e) => {
      loginError = e;
    });
    await h.waitFor(() => mp.client.ready, 'hi after the second login', 10000);
    assert.equal(loginError, null, 'no guest fallback');
    assert.equal(mp.logins, 2);
    const [busy, ok] = mp.requests;
    assert.deepEqual([busy.statusCode, busy.response.error.code], [503, 'wechat_busy']);
    const wait = Number(busy.header['retry-after']);
    assert.ok(wait >= 1, 'Retry-After: ' + busy.header['retry-after']);
    assert.ok(ok.at - busy.at >= wait * 1000 - 50, 'waited ' + (ok.at - busy.at) + ' ms');
    assert.deepEqual([ok.statusCode, ok.data.code], [200, 'ok-' + process.pid + '-busy-2']);
    assert.equal(mp.lastSocket.sent[0].token, ok.response.token);
    assert.equal(mp.sockets.length, 1, 'no socket before the login succeeded');
  },
);

// (4) Reconnecting and identity: a dropped socket comes back with the token as the same
// player, with backoff while the server cannot be reached; the app coming back from the
// background and a restarted app resume their match; invalid_token, replacement, and
// WeChat login on a server that has none configured.

'use strict';

const net = require('node:net');
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers.js');

const HANDS = ['rock', 'paper', 'scissors'];

test(
  'a dropped socket reconnects with the same token and player id',
  { timeout: 10000 },
  async (t) => {
    const mp = h.phone(t);
    await h.waitFor(() => mp.client.ready, 'hi');
    const hi = mp.lastSocket.received.find((m) => m.type === 'hi');
    assert.equal(mp.storage.get('rps.token'), hi.token, 'the token is kept in storage');
    const states = [];
    mp.client.on('state', (state) => states.push(state));

    for (let drop = 1; drop <= 2; drop += 1) {
      const before = mp.client.token;
      mp.lastSocket.drop();
      await h.waitFor(() => mp.sockets.length === drop + 1 && mp.client.ready, 'reconnect ' + drop);
      const hello = mp.lastSocket.sent[0];
      assert.deepEqual([hello.type, hello.token], ['hello', before]);
      const again = mp.lastSocket.received.find((m) => m.type === 'hi');
      assert.equal(again.player_id, hi.player_id);
      assert.equal(mp.storage.get('rps.token'), again.token, 'the latest token is kept');
    }
    assert.deepEqual(states.slice(0, 3), ['reconnecting', 'connecting', 'open']);
    assert.equal(states[3], 'ready');
  },
);

test(
  'backs off while the server cannot be reached, and onShow retries at once',
  { timeout: 10000 },
  async (t) => {
    // A port nobody listens on.
    const port = await new Promise((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address();
        probe.close(() => resolve(free));
      });
    });
    const down = {
      ws: 'ws://127.0.0.1:' + port + '/applet/websocket',
      http: 'http://127.0.0.1:' + port,
    };
    const min = 40;
    const max = 320;
    const mp = h.phone(t, { server: down, config: { reconnectMinMs: min, reconnectMaxMs: max } });
    const attempts = [];
    mp.client.on('state', (state) => {
      if (state === 'connecting') attempts.push(Date.now());
    });
    attempts.push(Date.now());
    await h.waitFor(() => attempts.length >= 7, 'seven attempts', 5000);
    const gaps = attempts.slice(1).map((at, i) => at - attempts[i]);
    gaps.forEach((gap, i) => {
      const nominal = Math.min(max, min * Math.pow(2, i));
      // The jitter is +-20 %; timers never fire early.
      assert.ok(
        gap >= nominal * 0.8 - 2,
        'attempt ' + (i + 2) + ' after ' + gap + ' ms, nominal ' + nominal,
      );
    });
    // Capped at max: uncapped, the last one would be at least 1024 ms.
    gaps
      .slice(-2)
      .forEach((gap) => assert.ok(gap <= max * 1.2 + 500, 'the delay is capped: ' + gaps));

    // Coming back to the foreground does not wait for the backoff.
    await h.waitFor(() => mp.client.state === 'reconnecting', 'waiting to reconnect');
    const count = attempts.length;
    const shownAt = Date.now();
    mp.show();
    assert.equal(attempts.length, count + 1);
    assert.ok(attempts[count] - shownAt < 20);
  },
);

test(
  'back from the background in the middle of a match: reconnect, resume, finish',
  { timeout: 15000 },
  async (t) => {
    const mp = h.phone(t);
    await h.waitFor(() => mp.client.ready, 'hi');
    const playerId = mp.client.player.id;
    const game = mp.openPage('pages/game/game', { bot: 'now' });
    await h.waitFor(() => game.data.phase === 'choosing', 'round 1');
    const matchId = game.data.matchId;

    await mp.hide(); // WeChat closes the socket a little after the app is hidden
    await h.waitFor(() => mp.client.state === 'suspended', 'suspended');
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(mp.sockets.length, 1, 'no reconnecting while in the background');

    mp.show();
    await h.waitFor(() => mp.client.ready && game.data.phase === 'choosing', 'back in the match');
    const second = mp.lastSocket;
    assert.equal(second.sent[0].token, mp.sockets[0].received.find((m) => m.type === 'hi').token);
    assert.equal(mp.client.player.id, playerId);
    const resume = second.received.find((m) => m.type === 'resume');
    assert.ok(resume, 'resume after hi');
    assert.equal(resume.match_id, matchId);
    assert.equal(game.data.matchId, matchId);
    assert.equal(game.data.round, resume.round);
    assert.equal(mp.pageStack.length, 1, 'the game page was already open: no second one');

    const played = await h.playToEnd(game, (round) => HANDS[round % 3]);
    assert.ok(played.length >= 2);
    assert.equal(game.data.rounds.length, played.length);
    h.checkRounds(game.data.rounds);
  },
);

test(
  'an app killed mid-match and started again within the grace opens its match',
  { timeout: 15000 },
  async (t) => {
    const first = h.phone(t);
    await h.waitFor(() => first.client.ready, 'hi');
    const old = first.openPage('pages/game/game', { bot: 'now' });
    await h.waitFor(() => old.data.phase === 'choosing', 'round 1');
    const matchId = old.data.matchId;
    first.kill();

    // Same phone storage, new process: the lobby opens, and the app follows resume.
    const mp = h.phone(t, { storage: Object.fromEntries(first.storage) });
    mp.openPage('pages/lobby/lobby');
    const game = await h.waitFor(
      () => mp.topPage.route === 'pages/game/game' && mp.topPage,
      'the app to open the game page on resume',
    );
    assert.equal(game.options.resume, '1');
    assert.equal(game.data.matchId, matchId);
    assert.ok(['choosing', 'between'].includes(game.data.phase), game.data.phase);
    assert.equal(mp.lastSocket.sent.filter((m) => m.type === 'join').length, 0, 'no new join');
    const played = await h.playToEnd(game, (round) => HANDS[round % 3]);
    assert.ok(played.length >= 1);
    assert.ok(['you', 'opponent', 'draw'].includes(game.data.winner));
  },
);

test(
  'invalid_token: the token is forgotten and a guest says hello',
  { timeout: 10000 },
  async (t) => {
    const forged = 'v1.p_000000000000.9999999999.Zm9yZ2Vk';
    const mp = h.phone(t, { storage: { 'rps.token': forged } });
    let error = null;
    mp.client.on('error', (m) => {
      error = m;
    });
    await h.waitFor(() => mp.client.ready, 'hi');
    const socket = mp.lastSocket;
    assert.equal(mp.sockets.length, 1, 'on the same connection');
    assert.equal(error && error.code, 'invalid_token');
    const hellos = socket.sent.filter((m) => m.type === 'hello');
    assert.equal(hellos.length, 2);
    assert.equal(hellos[0].token, forged);
    assert.equal(hellos[1].token, undefined, 'then as a guest');
    const hi = socket.received.find((m) => m.type === 'hi');
    assert.notEqual(mp.storage.get('rps.token'), forged);
    assert.equal(mp.storage.get('rps.token'), hi.token);
  },
);

test(
  'bye replaced: the older phone stops and does not fight back',
  { timeout: 10000 },
  async (t) => {
    const first = h.phone(t);
    await h.waitFor(() => first.client.ready, 'hi');
    const second = h.phone(t, { storage: { 'rps.token': first.client.token } });
    await h.waitFor(() => second.client.ready, 'hi on the second phone');
    assert.equal(second.client.player.id, first.client.player.id);
    await h.waitFor(() => first.client.state === 'replaced', 'the first phone replaced');
    assert.ok(first.lastSocket.received.some((m) => m.type === 'bye' && m.reason === 'replaced'));
    assert.equal(first.modals.length, 1, 'the user is told');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(first.sockets.length, 1, 'no reconnect');
    assert.equal(second.sockets.length, 1);
    assert.equal(second.client.state, 'ready');
  },
);

test('WeChat login on a server without it configured: a guest', { timeout: 10000 }, async (t) => {
  const mp = h.phone(t, { config: { useWeChatLogin: true }, loginCode: 'code-unused' });
  let loginError = null;
  mp.client.on('loginError', (e) => {
    loginError = e;
  });
  await h.waitFor(() => mp.client.ready, 'hi');
  assert.equal(mp.logins, 1);
  assert.equal(mp.requests.length, 1);
  assert.deepEqual(
    [mp.requests[0].method, mp.requests[0].url, mp.requests[0].data, mp.requests[0].statusCode],
    ['POST', h.server().http + '/applet/login', { code: 'code-unused' }, 404],
  );
  assert.deepEqual(loginError && [loginError.status, loginError.code], [404, 'login_unavailable']);
  assert.equal(mp.lastSocket.sent[0].token, undefined);

  // It does not try again on the next connection.
  mp.lastSocket.drop();
  await h.waitFor(() => mp.sockets.length === 2 && mp.client.ready, 'reconnect');
  assert.equal(mp.logins, 1);
  assert.equal(
    mp.lastSocket.sent[0].token,
    mp.sockets[0].received.find((m) => m.type === 'hi').token,
  );
});

// (5) error unavailable: the server knows the token but cannot load its player right now
// (its storage is failing). The client keeps the token and says hello again after a
// growing delay, showing "server busy" meanwhile; unlike invalid_token it never starts
// over as a guest.
//
// A real server only answers unavailable while its disk fails, so these tests run
// against a small fake of the game socket (npm "ws") that refuses the first hellos with
// the error the real one sends (game_server/service.py), then says hi.

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { WebSocketServer } = require('ws');
const h = require('./helpers.js');

const TOKEN = 'v1.p_0123456789abcdef0123.9999999999.c3RvcmVkLXRva2Vu';
const PLAYER = 'p_0123456789abcdef0123';
const MIN = 100;
const MAX = 1000;

// The fake server: `failures` hellos get error unavailable, later ones hi with a fresh
// token. `hellos` records every hello with its arrival time and connection number.
async function fakeServer(t, failures) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/applet/websocket' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const fake = { hellos: [], frames: [], connections: 0, refused: 0 };
  wss.on('connection', (ws) => {
    fake.connections += 1;
    const connection = fake.connections;
    let greeted = false;
    const reply = (message) => ws.send(JSON.stringify(message));
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString('utf8'));
      fake.frames.push(message);
      if (message.type === 'hello') {
        fake.hellos.push({ at: Date.now(), connection, message });
        if (fake.refused < failures) {
          fake.refused += 1;
          reply({
            type: 'error',
            code: 'unavailable',
            message: 'your player cannot be loaded right now; say hello again in a moment',
            ref: message.id,
          });
          return;
        }
        greeted = true;
        reply({
          type: 'hi',
          player_id: PLAYER,
          name: 'Ann',
          token: TOKEN + '.fresh' + fake.hellos.length,
          online: 1,
          protocol: 1,
          ref: message.id,
        });
      } else if (!greeted) {
        reply({
          type: 'error',
          code: 'hello_required',
          message: 'say hello first',
          ref: message.id,
        });
      } else if (message.type === 'join') {
        reply({ type: 'queued', waiting: 1, ref: message.id });
      } else if (message.type === 'ping') {
        reply({ type: 'pong', t: message.t, ref: message.id });
      }
    });
  });
  t.after(() => {
    for (const ws of wss.clients) ws.terminate();
    wss.close();
  });
  const { port } = wss.address();
  fake.urls = {
    ws: 'ws://127.0.0.1:' + port + '/applet/websocket',
    http: 'http://127.0.0.1:' + port,
  };
  return fake;
}

test(
  'unavailable: the token is kept and hello is said again, later and later, on the same socket',
  { timeout: 10000 },
  async (t) => {
    const fake = await fakeServer(t, 2);
    const mp = h.phone(t, {
      server: fake.urls,
      storage: { 'rps.token': TOKEN },
      config: { busyRetryMinMs: MIN, busyRetryMaxMs: MAX },
    });
    const lobby = mp.openPage('pages/lobby/lobby');
    const states = [];
    mp.client.on('state', (state) => states.push(state));
    const errors = [];
    mp.client.on('error', (m) => errors.push(m.code));

    await h.waitFor(() => mp.client.state === 'busy', 'the client to be busy');
    assert.match(lobby.data.connectionText, /server busy, retrying/i);
    assert.equal(mp.storage.get('rps.token'), TOKEN, 'the token is kept');
    assert.equal(mp.client.token, TOKEN);
    // "Play a bot now" meanwhile: the game page shows the connection, not the error, and
    // its join waits for the hi.
    const game = mp.openPage('pages/game/game', { bot: 'now' });
    assert.match(game.data.connectionText, /server busy, retrying/i);
    assert.equal(game.data.status, 'A house bot is sitting down…');

    await h.waitFor(() => mp.client.ready, 'hi after two refused hellos', 5000);
    assert.deepEqual(errors, ['unavailable', 'unavailable']);
    assert.equal(mp.sockets.length, 1, 'on the same connection');
    assert.equal(fake.connections, 1);
    assert.deepEqual(
      fake.hellos.map((hello) => hello.message.token),
      [TOKEN, TOKEN, TOKEN],
      'every hello carries the stored token: never a guest',
    );
    const [first, second, third] = fake.hellos.map((hello) => hello.at);
    // Timers never fire early; the jitter is +-20 %, so the second wait is the longer.
    assert.ok(second - first >= MIN * 0.8 - 2, 'first retry after ' + (second - first) + ' ms');
    const wait = third - second;
    assert.ok(wait >= 2 * MIN * 0.8 - 2, 'second retry after ' + wait + ' ms');
    assert.ok(third - second > second - first, 'the delay grows');
    // Busy from the first refusal to the hi, with no reconnect in between.
    assert.deepEqual(states, ['open', 'busy', 'ready']);
    assert.equal(lobby.data.connectionText, 'Online');
    assert.equal(game.data.connectionText, 'Online');
    assert.equal(game.data.status, 'A house bot is sitting down…');

    // The join goes out after the hi; the fresh token replaces the stored one.
    await h.waitFor(() => mp.lastSocket.received.some((m) => m.type === 'queued'), 'queued');
    assert.deepEqual(
      fake.frames.map((m) => m.type),
      ['hello', 'hello', 'hello', 'join'],
    );
    assert.equal(mp.storage.get('rps.token'), TOKEN + '.fresh3');
    assert.equal(mp.client.player.id, PLAYER);
  },
);

test(
  'unavailable: the delay is capped, and a socket lost meanwhile reconnects with the token',
  { timeout: 10000 },
  async (t) => {
    const fake = await fakeServer(t, 5);
    const mp = h.phone(t, {
      server: fake.urls,
      storage: { 'rps.token': TOKEN },
      config: { busyRetryMinMs: 30, busyRetryMaxMs: 60 },
    });
    await h.waitFor(() => fake.hellos.length === 5, 'five hellos');
    const gaps = fake.hellos.slice(1).map((hello, i) => hello.at - fake.hellos[i].at);
    // Nominal 30, 60, 60, 60 ms (capped, +-20 %); uncapped the last would be 240 +-20 %.
    assert.ok(Math.max(gaps[2], gaps[3]) < 150, 'capped: ' + gaps);
    assert.equal(mp.client.state, 'busy');

    // The network goes while the client waits to say hello again.
    await h.waitFor(() => mp.lastSocket.received.length === 5, 'the fifth refusal');
    mp.lastSocket.drop();
    await h.waitFor(() => mp.client.ready, 'hi on a new socket');
    assert.equal(mp.sockets.length, 2);
    assert.equal(fake.hellos.length, 6);
    assert.equal(fake.hellos[5].connection, 2);
    assert.equal(fake.hellos[5].message.token, TOKEN, 'the new socket says hello with the token');
    assert.equal(mp.sockets[0].sent.filter((m) => m.type === 'hello').length, 5);
  },
);

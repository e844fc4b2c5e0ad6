// (3) The app-level heartbeat: {"type":"ping"} on an interval once identified, the pong
// seen; and a socket whose pongs stop coming is dropped and replaced.

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers.js');

test('pings every heartbeatMs after hi, and sees the pongs', { timeout: 10000 }, async (t) => {
  const mp = h.phone(t, { config: { heartbeatMs: 100 } });
  const pong = await h.next(mp.client, 'pong', 3000);
  const socket = mp.lastSocket;
  assert.equal(
    socket.sent[0].type,
    'hello',
    'nothing before hello (a ping would get hello_required)',
  );
  const ping = socket.sent.find((m) => m.type === 'ping');
  assert.ok(ping, 'a ping was sent');
  assert.equal(typeof ping.t, 'number');
  assert.equal(pong.t, ping.t, 'the pong echoes the ping');
  assert.ok(pong.rtt >= 0 && pong.rtt < 2000, 'rtt ' + pong.rtt);

  // It keeps going on the same socket; the server answers every one.
  await h.waitFor(() => socket.received.filter((m) => m.type === 'pong').length >= 4, 'four pongs');
  const pings = socket.sent.filter((m) => m.type === 'ping');
  const gaps = pings.slice(1).map((p, i) => p.t - pings[i].t);
  assert.ok(
    gaps.every((gap) => gap >= 90),
    'pings about 100 ms apart: ' + gaps,
  );
  assert.equal(mp.sockets.length, 1);
  assert.equal(socket.received.filter((m) => m.type === 'error').length, 0);
});

test('no pong within pongTimeoutMs: the socket is replaced', { timeout: 10000 }, async (t) => {
  const mp = h.phone(t, { config: { heartbeatMs: 100, pongTimeoutMs: 300 } });
  await h.waitFor(() => mp.client.ready, 'hi');
  const playerId = mp.client.player.id;
  const first = mp.lastSocket;
  let stale = false;
  mp.client.on('stale', () => {
    stale = true;
  });
  first.mute(); // the connection is dead but nobody said so
  await h.waitFor(() => mp.sockets.length === 2 && mp.client.ready, 'a new socket', 5000);
  assert.ok(stale, 'stale was reported');
  assert.equal(mp.client.player.id, playerId);
  assert.equal(mp.lastSocket.sent[0].token, first.received.find((m) => m.type === 'hi').token);
  await h.waitFor(() => first.closed, 'the dead socket closed by the client');
  assert.equal(first.closeInfo.code, 1000);
});

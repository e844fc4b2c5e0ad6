// Plays one game with the real socket.io-client 2.x against the server's legacy dialect,
// the way a 2016-demo client does, and prints what it saw as one JSON object.
//
//   node play.js http://127.0.0.1:9595 [uid] [path]
//
// path is socket.io-client's `path` option, /applet/websocket/socket.io by default. The
// client strips one trailing slash from it and appends "/?EIO=3...", so
// /applet/websocket/socket.io// dials .../socket.io//?EIO=3&transport=websocket, the URL
// the 2016 demo's page builds.
//
// It says hello, joins, taps scissors then paper (a changed choice), and waits for the
// result. On the way it checks acks and the "error" event. Exit 0 once the result came,
// 1 on a connection error or after 20 s.
'use strict';

const io = require('socket.io-client');

const base = process.argv[2] || 'http://127.0.0.1:9595';
const uid = process.argv[3] || 'node-' + process.pid;
const path = process.argv[4] || '/applet/websocket/socket.io';
const seen = { uid, connected: false, events: [], ackErrors: {}, errors: [] };

const socket = io(base, {
  path,
  transports: ['websocket'], // no polling: the server serves WebSocket only
  reconnection: false,
  forceNew: true,
});

function finish(code) {
  process.stdout.write(JSON.stringify(seen) + '\n');
  socket.close();
  process.exit(code);
}

const timer = setTimeout(() => {
  seen.timeout = true;
  finish(1);
}, 20000);

socket.on('connect_error', (err) => {
  seen.connectError = String(err && err.message ? err.message : err);
  clearTimeout(timer);
  finish(1);
});

socket.on('connect', () => {
  seen.connected = true;
  seen.sid = socket.io.engine.id;
  seen.url = socket.io.engine.transport.uri(); // what it dialed
  // An acked event the server does not know: the error comes back in the ack.
  socket.emit('dance', {}, (err) => {
    seen.ackErrors.dance = err;
  });
  // And without an ack it comes back as an "error" event.
  socket.emit('dance');
  socket.emit('hello', {
    user: { uid, uname: 'Node ' + uid, uavatar: 'https://example.com/' + uid + '.png' },
  });
});

socket.on('error', (err) => {
  seen.errors.push(err);
});

socket.on('hi', (data) => {
  seen.events.push(['hi', data]);
  socket.emit('join', (err) => {
    seen.ackErrors.join = err; // null: accepted
  });
});

socket.on('start', (data) => {
  seen.events.push(['start', data]);
  socket.emit('choice', { choice: 1 }); // scissors...
  setTimeout(() => socket.emit('choice', { choice: 3 }), 300); // ...no, paper
});

socket.on('movement', (data) => {
  seen.events.push(['movement', data]);
});

socket.on('result', (data) => {
  seen.events.push(['result', data]);
  clearTimeout(timer);
  finish(0);
});

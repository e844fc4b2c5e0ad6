// (9) Playing a friend: a room shared as a card, the friend's phone opening it (cold start),
// a rematch, a declined one, a wrong code; the avatar picked the WeChat way and uploaded;
// and the two languages.

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers.js');
const { ROOT } = require('./wx-stub.js');

function sources(dir, ext) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (['node_modules', 'test'].includes(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...sources(full, ext));
    else if (entry.name.endsWith(ext)) found.push(full);
  }
  return found;
}

// Both phones play the open match to its end: Ann rock, Bob scissors.
async function playOut(a, b) {
  for (;;) {
    await h.waitFor(
      () =>
        (a.data.phase === 'over' && b.data.phase === 'over') ||
        (a.data.phase === 'choosing' && b.data.phase === 'choosing'),
      'a round on both phones, or the end',
      8000,
    );
    if (a.data.phase === 'over') return;
    const round = a.data.round;
    h.tap(a, 'onChoose', { choice: 'rock' });
    h.tap(b, 'onChoose', { choice: 'scissors' });
    await h.waitFor(
      () => a.data.phase === 'over' || (a.data.round > round && b.data.round > round),
      'round ' + round + ' resolved',
      8000,
    );
  }
}

// Ann opens a room in Chinese; Bob's phone is cold-started on the share card's path.
async function friendMatch(t) {
  const ann = h.phone(t, { storage: { 'rps.name': 'Ann' }, language: 'zh_CN' });
  await h.waitFor(() => ann.client.ready, 'Ann online');
  const lobby = ann.openPage('pages/lobby/lobby');
  assert.equal(lobby.data.s.inviteFriend, '👫 邀请好友');
  h.tap(lobby, 'onInvite');
  const a = await h.gamePage(ann);
  await h.waitFor(() => a.data.roomCode, 'the room code');
  assert.match(a.data.roomCode, /^[2-9A-HJKMNP-Z]{6}$/);
  assert.match(a.data.roomHint, /10 分钟/);
  assert.deepEqual(ann.shareMenus.at(-1).menus, ['shareAppMessage', 'shareTimeline']);
  const card = a.onShareAppMessage();
  assert.equal(card.path, '/pages/game/game?room=' + a.data.roomCode);
  assert.equal(card.title, 'Ann邀请你来一局石头剪刀布！');
  assert.ok(fs.existsSync(path.join(ROOT, card.imageUrl)), card.imageUrl);

  // The friend taps the card: WeChat starts the app on that page, before any socket.
  const bob = h.phone(t, { storage: { 'rps.name': 'Bob' } });
  assert.equal(bob.client.ready, false);
  const b = bob.openPage('pages/game/game', { room: a.data.roomCode.toLowerCase() });
  await h.waitFor(
    () => a.data.phase === 'choosing' && b.data.phase === 'choosing',
    'round 1 on both phones',
  );
  assert.equal(a.data.matchId, b.data.matchId);
  assert.equal(a.data.opponentName, 'Bob');
  assert.equal(b.data.opponentName, 'Ann');
  assert.equal(a.data.roomCode, '');
  assert.equal(a.data.roundText, '第 1 / 3 回合');
  assert.equal(b.data.roundText, 'Round 1 / 3');
  return { ann, bob, a, b };
}

test('a friend joins from the share card and both ask for a rematch', { timeout: 30000 }, async (t) => {
  const { a, b } = await friendMatch(t);
  const first = a.data.matchId;
  await playOut(a, b);
  assert.equal(a.data.headline, '你赢得了比赛！');
  assert.equal(b.data.headline, 'You lose the match');
  assert.equal(a.data.rematchState, 'ready');
  h.tap(a, 'onRematch');
  assert.equal(a.data.rematchState, 'asked');
  assert.equal(a.data.rematchText, '已邀请对手再来一局，等待回应…');
  await h.waitFor(() => b.data.rematchState === 'offered', 'the offer on Bob\'s phone');
  assert.equal(b.data.rematchText, 'Ann wants a rematch!');
  h.tap(b, 'onRematch');
  await h.waitFor(
    () =>
      a.data.phase === 'choosing' &&
      b.data.phase === 'choosing' &&
      a.data.matchId !== first &&
      a.data.matchId === b.data.matchId,
    'the rematch started on both phones',
  );
  assert.equal(a.data.round, 1);
  assert.equal(a.data.rematchState, '');
});

test('a rematch declined says why', { timeout: 30000 }, async (t) => {
  const { a, b } = await friendMatch(t);
  await playOut(a, b);
  h.tap(a, 'onRematch');
  await h.waitFor(() => b.data.rematchState === 'offered', 'the offer');
  h.tap(b, 'onPlayAgain'); // Bob goes to the queue instead
  await h.waitFor(() => a.data.rematchState === 'closed', 'the decline on Ann\'s phone');
  assert.equal(a.data.rematchText, 'Bob去找别的对手了');
});

test('a wrong code on a card says so', { timeout: 15000 }, async (t) => {
  const mp = h.phone(t);
  const page = mp.openPage('pages/game/game', { room: 'ZZZZZZ' });
  await h.waitFor(() => page.data.status === 'That room code is unknown or has expired', 'the error');
  assert.equal(page.data.phase, 'waiting');
  assert.equal(page.data.roomCode, '');
});

test('the avatar is chosen, uploaded with the token, and sent in hello', { timeout: 15000 }, async (t) => {
  const mp = h.phone(t, { storage: { 'rps.name': 'Ann' } });
  await h.waitFor(() => mp.client.ready, 'online');
  const lobby = mp.openPage('pages/lobby/lobby');
  // chooseAvatar hands over a temporary file: a PNG here.
  lobby.onChooseAvatar({ detail: { avatarUrl: path.join(ROOT, 'images', 'share.png') } });
  await h.waitFor(() => lobby.data.avatar, 'the avatar URL');
  assert.match(lobby.data.avatar, /\/applet\/avatars\/[\w-]+$/);
  assert.equal(lobby.data.avatarStatus, 'Avatar updated');
  const upload = mp.uploads[0];
  assert.equal(upload.statusCode, 200);
  assert.equal(upload.header.Authorization, 'Bearer ' + mp.client.token);
  assert.equal(mp.storage.get('rps.avatar'), lobby.data.avatar);
  // The next connection's hello carries it.
  await h.waitFor(
    () => mp.sockets.some((s) => s.sent.some((m) => m.type === 'hello' && m.avatar === lobby.data.avatar)),
    'a hello with the avatar',
  );
  // A file that is no picture: refused, nothing changes.
  lobby.onChooseAvatar({ detail: { avatarUrl: path.join(ROOT, 'app.json') } });
  await h.waitFor(() => lobby.data.avatarStatus === 'The avatar could not be uploaded; try again later', 'refused');
  assert.equal(mp.uploads[1].statusCode, 400);
  assert.equal(mp.storage.get('rps.avatar'), lobby.data.avatar);
});

test('both languages have every word, and the pages use no other', () => {
  const { TABLES } = require('../utils/i18n.js');
  const zh = Object.keys(TABLES.zh).sort();
  const en = Object.keys(TABLES.en).sort();
  assert.deepEqual(zh, en);
  const used = new Set();
  for (const file of sources(ROOT, '.wxml')) {
    for (const [, key] of fs.readFileSync(file, 'utf8').matchAll(/\bs\.(\w+)/g)) used.add(key);
  }
  for (const file of sources(ROOT, '.js')) {
    for (const [, key] of fs.readFileSync(file, 'utf8').matchAll(/\bt\('(\w+)'/g)) used.add(key);
  }
  assert.ok(used.size > 40, [...used].join(', '));
  for (const key of used) assert.ok(TABLES.en[key] !== undefined, 'no word for ' + key);
  // No English sentence written into a template.
  for (const file of sources(ROOT, '.wxml')) {
    const visible = fs
      .readFileSync(file, 'utf8')
      .replace(/<[^>]*>/g, ' ')
      .replace(/\{\{[^}]*\}\}/g, ' ');
    assert.doesNotMatch(visible, /[A-Za-z]{3,}/, path.relative(ROOT, file));
  }
});

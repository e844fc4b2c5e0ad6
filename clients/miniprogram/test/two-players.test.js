// (2) Two mini-program phones play each other to the end: names, movements (a choice, a
// face, the opponent's connection dropping and coming back), results and scores.

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers.js');

test('two phones play a whole match against each other', { timeout: 30000 }, async (t) => {
  const ann = h.phone(t, { storage: { 'rps.name': 'Ann' } });
  const bob = h.phone(t, { storage: { 'rps.name': 'Bob' } });
  await h.waitFor(() => ann.client.ready && bob.client.ready, 'both hi');
  const annId = ann.client.player.id;
  const annToken = ann.client.token;

  // Both ask for a human only, so they can only meet each other.
  const a = ann.openPage('pages/game/game', { bot: 'never' });
  await h.waitFor(() => ann.client.queued, 'Ann queued');
  const b = bob.openPage('pages/game/game', { bot: 'never' });
  await h.waitFor(
    () => a.data.phase === 'choosing' && b.data.phase === 'choosing',
    'round 1 on both phones',
  );
  assert.equal(a.data.matchId, b.data.matchId);
  assert.deepEqual([a.data.opponentName, a.data.opponentBot], ['Bob', false]);
  assert.deepEqual([b.data.opponentName, b.data.opponentBot], ['Ann', false]);
  assert.equal(b.data.opponentStatus, 'is choosing…');

  // Round 1: Ann makes a face and plays rock; Bob sees both, then plays scissors.
  h.tap(a, 'onFace', { face: 2 });
  await h.waitFor(() => b.data.opponentFace === '😮', "the face on Bob's phone");
  h.tap(a, 'onChoose', { choice: 'rock' });
  assert.equal(a.data.phase, 'chosen');
  assert.equal(a.data.myChoice, 'rock');
  await h.waitFor(() => b.data.opponentStatus === 'has chosen', "Ann's movement on Bob's phone");
  assert.equal(b.data.rounds.length, 0, 'no result before both chose');
  h.tap(b, 'onChoose', { choice: 'scissors' });
  await h.waitFor(
    () => a.data.rounds.length === 1 && b.data.rounds.length === 1,
    'round 1 results',
  );
  assert.deepEqual(
    [a.data.lastRound.you, a.data.lastRound.opponent, a.data.lastRound.outcome],
    ['rock', 'scissors', 'win'],
  );
  assert.deepEqual(
    [b.data.lastRound.you, b.data.lastRound.opponent, b.data.lastRound.outcome],
    ['scissors', 'rock', 'lose'],
  );
  assert.deepEqual([a.data.scoreYou, a.data.scoreOpponent], [1, 0]);
  assert.deepEqual([b.data.scoreYou, b.data.scoreOpponent], [0, 1]);

  // Round 2: Ann's network drops; Bob sees her leave and come back, and she is put back
  // into the same round by resume.
  await h.waitFor(
    () => a.data.round === 2 && a.data.phase === 'choosing' && b.data.round === 2,
    'round 2',
  );
  ann.lastSocket.drop();
  await h.waitFor(() => /^left/.test(b.data.opponentStatus), "Ann left, on Bob's phone");
  await h.waitFor(() => ann.sockets.length === 2 && ann.client.ready, 'Ann reconnected');
  const hello = ann.lastSocket.sent[0];
  assert.equal(hello.type, 'hello');
  assert.equal(hello.token, annToken);
  assert.equal(ann.client.player.id, annId);
  await h.waitFor(() => b.data.opponentStatus === 'is back', "Ann back, on Bob's phone");
  const resume = ann.lastSocket.received.find((m) => m.type === 'resume');
  assert.ok(resume, 'resume after hi');
  assert.equal(resume.match_id, a.data.matchId);
  assert.equal(a.data.round, 2);
  assert.equal(a.data.phase, 'choosing');

  h.tap(a, 'onChoose', { choice: 'rock' });
  await h.waitFor(() => b.data.opponentStatus === 'has chosen', 'Ann chose in round 2');
  h.tap(b, 'onChoose', { choice: 'scissors' });
  await h.waitFor(() => a.data.phase === 'over' && b.data.phase === 'over', 'the end');

  // 2-0 after two rounds of best of 3; first match for both.
  assert.deepEqual(
    a.data.rounds.map((r) => [r.round, r.you, r.opponent, r.outcome]),
    [
      [1, 'rock', 'scissors', 'win'],
      [2, 'rock', 'scissors', 'win'],
    ],
  );
  assert.deepEqual(
    [a.data.winner, a.data.scoreYou, a.data.scoreOpponent, a.data.totalScore, a.data.winStreak],
    ['you', 2, 0, 1, 1],
  );
  assert.deepEqual(
    [b.data.winner, b.data.scoreYou, b.data.scoreOpponent, b.data.totalScore, b.data.winStreak],
    ['opponent', 0, 2, 0, 0],
  );
  assert.equal(a.data.headline, 'You win the match!');
  assert.equal(b.data.headline, 'You lose the match');
});

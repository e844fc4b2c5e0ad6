// (1) A whole match against a house bot through the pages: the lobby's name entry and
// "Play a bot now", then the game page's choice buttons, the result and "play again".

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers.js');

const HANDS = ['rock', 'paper', 'scissors'];

function checkFinished(page, played, before) {
  const data = page.data;
  assert.equal(data.phase, 'over');
  assert.equal(data.matchOver, true);
  assert.deepEqual(
    data.rounds.map((r) => r.round),
    played,
    'a result for every round we chose in (the bot never misses one)',
  );
  h.checkRounds(data.rounds);
  data.rounds.forEach((r, i) =>
    assert.equal(r.you, HANDS[played[i] % 3], 'our hand in round ' + r.round),
  );
  const wins = data.rounds.filter((r) => r.outcome === 'win').length;
  const losses = data.rounds.filter((r) => r.outcome === 'lose').length;
  assert.deepEqual([data.scoreYou, data.scoreOpponent], [wins, losses]);
  let winner = 'draw';
  if (wins > losses) winner = 'you';
  else if (losses > wins) winner = 'opponent';
  assert.equal(data.winner, winner);
  assert.equal(data.reasonText, '', 'the match ended on rounds');
  assert.ok(data.headline.length > 0);
  const totals = h.expectedTotals(before, winner);
  assert.deepEqual({ totalScore: data.totalScore, winStreak: data.winStreak }, totals);
  return totals;
}

test('lobby -> play a bot now -> a whole match, then play again', { timeout: 30000 }, async (t) => {
  const mp = h.phone(t);
  const lobby = mp.openPage('pages/lobby/lobby');
  await h.waitFor(() => mp.client.ready && lobby.data.playerName, 'hi on the lobby');
  const first = mp.lastSocket.received.find((m) => m.type === 'hi');
  assert.match(lobby.data.playerName, /^Player \d{4}$/);

  // A name typed in the lobby goes out in a new hello with the token: same player.
  lobby.onNameInput({ type: 'input', detail: { value: '  Mini Wei  ' } });
  h.tap(lobby, 'onPlayBot');
  const game = await h.gamePage(mp);
  assert.equal(game.data.mode, 'now');
  await h.waitFor(() => game.data.phase === 'choosing', 'round 1 on the game page');
  assert.equal(mp.sockets.length, 2, 'the name change reconnected once');
  const hello = mp.lastSocket.sent[0];
  assert.deepEqual(
    { type: hello.type, name: hello.name, token: hello.token },
    { type: 'hello', name: 'Mini Wei', token: first.token },
  );
  const hi = mp.lastSocket.received.find((m) => m.type === 'hi');
  assert.equal(hi.player_id, first.player_id);
  assert.equal(hi.name, 'Mini Wei');
  assert.equal(mp.storage.get('rps.name'), 'Mini Wei');
  assert.ok(mp.lastSocket.sent.some((m) => m.type === 'join' && m.bot === 'now'));

  const data = game.data;
  assert.equal(data.round, 1);
  assert.equal(data.bestOf, 3);
  assert.equal(data.opponentBot, true);
  assert.ok(data.opponentName.length > 0);
  assert.deepEqual([data.scoreYou, data.scoreOpponent], [0, 0]);
  assert.ok(data.secondsLeft >= 1 && data.secondsLeft <= 2, 'countdown from round_ms 2000');
  assert.deepEqual(
    data.choices.map((c) => c.value),
    HANDS,
  );

  const played = await h.playToEnd(game, (round) => HANDS[round % 3]);
  const matchId = game.data.matchId;
  const choices = mp.lastSocket.sent.filter((m) => m.type === 'choice');
  assert.deepEqual(
    choices.map((m) => [m.match_id, m.round, m.choice]),
    played.map((round) => [matchId, round, HANDS[round % 3]]),
  );
  const totals = checkFinished(game, played, { totalScore: 0, winStreak: 0 });

  // The buttons do nothing once the match is over.
  h.tap(game, 'onChoose', { choice: 'rock' });
  assert.equal(mp.lastSocket.sent.filter((m) => m.type === 'choice').length, choices.length);

  h.tap(game, 'onPlayAgain');
  await h.waitFor(
    () => game.data.phase === 'choosing' && game.data.matchId !== matchId,
    'the second match',
  );
  assert.equal(game.data.round, 1);
  assert.deepEqual(game.data.rounds, []);
  const again = await h.playToEnd(game, (round) => HANDS[round % 3]);
  checkFinished(game, again, totals);
});

test(
  'leaving the game page mid-match forfeits it; the lobby button goes back',
  { timeout: 15000 },
  async (t) => {
    const mp = h.phone(t);
    const lobby = mp.openPage('pages/lobby/lobby');
    h.tap(lobby, 'onPlayBot');
    h.tap(lobby, 'onPlayBot'); // a double tap opens one game page
    const game = await h.gamePage(mp);
    await h.waitFor(() => game.data.phase === 'choosing', 'round 1');
    assert.equal(mp.pageStack.length, 2);

    mp.wx.navigateBack(); // WeChat's back button
    await h.waitFor(() => mp.topPage === lobby, 'back on the lobby');
    const socket = mp.lastSocket;
    await h.waitFor(() => socket.received.some((m) => m.type === 'left'), 'left');
    const result = socket.received.find((m) => m.type === 'result' && m.match_over);
    assert.deepEqual([result.reason, result.winner], ['forfeit', 'opponent']);
    assert.equal(mp.client.match, null);

    // A finished match: "Lobby" goes back without sending anything.
    h.tap(lobby, 'onPlayBot');
    const next = await h.waitFor(() => mp.topPage !== lobby && mp.topPage, 'the game page again');
    await h.playToEnd(next, () => 'rock');
    const sent = socket.sent.length;
    h.tap(next, 'onBackToLobby');
    await h.waitFor(() => mp.topPage === lobby, 'back on the lobby');
    assert.equal(socket.sent.length, sent, 'no leave after a finished match');
    assert.equal(mp.pageStack.length, 1);
  },
);

// (8) Ratings and the leaderboard: the rating beside both names in a match and its
// change at the end, the lobby's rating, and the leaderboard page's tabs, each around
// the player with its own row highlighted and scrolled into view.

'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers.js');

const SIGNS = { '+': 1, '\u2212': -1, '\u00b1': 0 };

test('ratings in a match, then the leaderboard around the player', { timeout: 30000 }, async (t) => {
  const mp = h.phone(t, { storage: { 'rps.name': 'Board Wei' } });
  const lobby = mp.openPage('pages/lobby/lobby');
  await h.waitFor(() => mp.client.ready && lobby.data.playerName, 'hi on the lobby');
  const hi = mp.lastSocket.received.find((m) => m.type === 'hi');
  const before = hi.rating;
  assert.equal(typeof before, 'number');
  assert.equal(lobby.data.playerRating, String(before));

  h.tap(lobby, 'onPlayBot');
  const game = await h.gamePage(mp);
  await h.waitFor(() => game.data.phase === 'choosing', 'round 1');
  const start = mp.lastSocket.received.find((m) => m.type === 'start');
  assert.equal(game.data.myRating, String(before));
  assert.equal(game.data.opponentRating, String(start.opponent.rating));
  await h.playToEnd(game, () => 'rock');
  const final = mp.lastSocket.received.filter((m) => m.type === 'result' && m.match_over)[0];
  assert.equal(game.data.rating, String(final.rating));
  const change = game.data.ratingChange;
  assert.equal(SIGNS[change[0]] * Number(change.slice(1)), final.rating_change);
  assert.equal(final.rating, before + final.rating_change);
  assert.equal(game.data.ratingSign, { 1: 'up', '-1': 'down', 0: 'none' }[Math.sign(final.rating_change)]);
  assert.equal(game.data.myRating, String(final.rating));

  // Back in the lobby, the new rating; then the leaderboard.
  h.tap(game, 'onBackToLobby');
  await h.waitFor(() => mp.topPage === lobby, 'back in the lobby');
  assert.equal(lobby.data.playerRating, String(final.rating));
  h.tap(lobby, 'onLeaderboard');
  const board = await h.waitFor(
    () => mp.topPage && mp.topPage.route === 'pages/board/board' && mp.topPage,
    'the leaderboard page',
  );
  const me = mp.client.player.id;

  async function showTab(key) {
    h.tap(board, 'onTab', { tab: key });
    await h.waitFor(() => board.data.tab === key && !board.data.loading, 'the ' + key + ' tab');
    const request = mp.requests[mp.requests.length - 1];
    assert.match(request.url, /\/applet\/leaderboard\?/);
    assert.equal(new URL(request.url).searchParams.get('around'), me);
    return board.data.rows.filter((row) => row.mine);
  }

  for (const key of ['all', 'rating']) {
    const mine = await showTab(key);
    assert.equal(mine.length, 1, key + ': one own row');
    assert.equal(board.data.scrollTo, mine[0].anchor, key + ': scrolled to it');
    assert.equal(mine[0].rating, final.rating);
    assert.ok(mine[0].rank >= 1);
  }
  const rating = await showTab('rating');
  assert.equal(rating[0].value, String(final.rating));
  // Today's and this week's boards count points won: on them only after a win.
  for (const key of ['day', 'week']) {
    const mine = await showTab(key);
    assert.equal(mine.length, final.winner === 'you' ? 1 : 0, key);
    if (mine.length) assert.equal(mine[0].value, final.total_score + ' pts');
  }
  assert.ok(mp.requests.every((r) => r.statusCode === 200), JSON.stringify(mp.requests));
});

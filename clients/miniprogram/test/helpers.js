// Shared by the tests: the server under test, waiting, and a phone running the mini-program.

'use strict';

const assert = require('node:assert/strict');
const { MiniProgram } = require('./wx-stub.js');

// The server: RPS_WS_URL (ws://host:port/applet/websocket) and RPS_HTTP_URL
// (http://host:port). tests/test_miniprogram.py starts one and sets both.
function server() {
  const ws = process.env.RPS_WS_URL;
  const http = process.env.RPS_HTTP_URL;
  if (!ws || !http) {
    throw new Error(
      'set RPS_WS_URL and RPS_HTTP_URL to a running game server ' +
        '(e.g. ws://127.0.0.1:9595/applet/websocket and http://127.0.0.1:9595), ' +
        'or run tests/test_miniprogram.py with pytest',
    );
  }
  return { ws, http };
}

// Fast settings for tests; anything in `config` wins.
function fastConfig(urls, config) {
  return Object.assign(
    {
      socketUrl: urls.ws,
      httpBase: urls.http,
      useWeChatLogin: false,
      heartbeatMs: 60000,
      pongTimeoutMs: 2000,
      reconnectMinMs: 50,
      reconnectMaxMs: 400,
      resumeWaitMs: 500,
    },
    config || {},
  );
}

// A phone with the mini-program launched on it, disposed when the test ends.
function phone(t, options) {
  const opts = options || {};
  const mp = new MiniProgram({
    config: fastConfig(opts.server || server(), opts.config),
    loginCode: opts.loginCode,
    storage: opts.storage,
    language: opts.language,
  });
  t.after(() => mp.dispose());
  mp.launch();
  return mp;
}

async function waitFor(predicate, what, timeoutMs) {
  const limit = timeoutMs || 5000;
  const until = Date.now() + limit;
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() > until) throw new Error('timed out after ' + limit + ' ms waiting for ' + what);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// The next event of this name from the client, as a promise.
function next(client, event, timeoutMs) {
  const limit = timeoutMs || 5000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no "' + event + '" event within ' + limit + ' ms'));
    }, limit);
    const off = client.once(event, (payload) => {
      clearTimeout(timer);
      resolve(payload);
    });
  });
}

// A tap as WeChat delivers it to a bindtap handler, with the element's data-* attributes.
function tap(page, handler, dataset) {
  assert.equal(typeof page[handler], 'function', page.route + ' has no handler ' + handler);
  const target = { id: '', dataset: dataset || {} };
  page[handler]({ type: 'tap', timeStamp: Date.now(), currentTarget: target, target, detail: {} });
}

// The game page opened by navigation (the lobby's buttons, or the app on resume).
async function gamePage(mp) {
  return waitFor(
    () => mp.topPage && mp.topPage.route === 'pages/game/game' && mp.topPage,
    'the game page to open',
  );
}

// Play the match on this game page to its end, tapping pick(round) in every round the
// page lets us choose in; returns the rounds seen. `beforeChoose` may await something.
async function playToEnd(page, pick, beforeChoose) {
  const played = [];
  for (;;) {
    await waitFor(
      () =>
        page.data.phase === 'over' ||
        (page.data.phase === 'choosing' && !played.includes(page.data.round)),
      'a new round or the end of the match on ' + page.route,
      8000,
    );
    if (page.data.phase === 'over') return played;
    const round = page.data.round;
    if (beforeChoose) await beforeChoose(round);
    if (page.data.phase !== 'choosing' || page.data.round !== round) continue;
    played.push(round);
    tap(page, 'onChoose', { choice: pick(round) });
  }
}

const BEATS = { rock: 'scissors', paper: 'rock', scissors: 'paper' };

// Every round's outcome on the page must follow from the two hands shown.
function checkRounds(rounds) {
  for (const round of rounds) {
    let expected = 'draw';
    if (round.you && !round.opponent) expected = 'win';
    else if (!round.you && round.opponent) expected = 'lose';
    else if (round.you && round.opponent && round.you !== round.opponent) {
      expected = BEATS[round.you] === round.opponent ? 'win' : 'lose';
    }
    assert.equal(round.outcome, expected, 'round ' + round.round + ': ' + JSON.stringify(round));
  }
}

// The win-streak scoring (protocol §6.7): totals after a match from those before it.
function expectedTotals(before, winner) {
  if (winner === 'you') {
    const streak = before.winStreak + 1;
    return { totalScore: before.totalScore + streak, winStreak: streak };
  }
  if (winner === 'opponent') return { totalScore: before.totalScore, winStreak: 0 };
  return { totalScore: before.totalScore, winStreak: before.winStreak };
}

module.exports = {
  server,
  fastConfig,
  phone,
  waitFor,
  next,
  tap,
  gamePage,
  playToEnd,
  checkRounds,
  expectedTotals,
};

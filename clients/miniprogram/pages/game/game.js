// The game: opponent, round, countdown, three big choice buttons, the opponent's
// movement, round results, the match result with total score and win streak, and
// "play again". Opened from the lobby with ?bot=auto|now|never, or with ?resume=1 by the
// app when a reconnect finds the player in a match.
const text = require('../../utils/text.js');

const MODES = ['auto', 'now', 'never'];
const CHOICES = ['rock', 'paper', 'scissors'].map((value) => ({
  value,
  label: text.hand(value).label,
  icon: text.hand(value).icon,
}));
const FACES = [1, 2, 3, 4].map((value) => ({ value, icon: text.face(value) }));

// Everything about one match; reset by a new match.
function blankMatch() {
  return {
    phase: 'waiting', // waiting | choosing | chosen | between | over
    status: '',
    matchId: '',
    round: 0,
    bestOf: 0,
    secondsLeft: 0,
    opponentName: '',
    opponentAvatar: '',
    opponentBot: false,
    opponentRating: '',
    myRating: '',
    opponentStatus: '',
    opponentFace: '',
    scoreYou: 0,
    scoreOpponent: 0,
    myChoice: '',
    myChoiceIcon: '',
    rounds: [],
    lastRound: null,
    matchOver: false,
    winner: '',
    headline: '',
    reasonText: '',
    totalScore: 0,
    winStreak: 0,
    rating: '',
    ratingChange: '',
    ratingSign: 'none',
  };
}

// A signed change as players read it: +12, −8, ±0.
function signed(n) {
  if (n > 0) return '+' + n;
  if (n < 0) return '\u2212' + Math.abs(n);
  return '\u00b10';
}

Page({
  data: Object.assign(
    {
      mode: 'auto',
      choices: CHOICES,
      faces: FACES,
      connection: 'closed',
      connectionText: '',
    },
    blankMatch(),
  ),

  onLoad(query) {
    const options = query || {};
    const client = getApp().globalData.client;
    this.client = client;
    this.deadline = 0;
    this.timer = null;
    const mode = MODES.indexOf(options.bot) >= 0 ? options.bot : client.lastJoin || 'auto';
    this.setData({ mode });
    this.showConnection(client.state);
    this.unsubscribe = [
      client.on('state', (state) => this.showConnection(state)),
      client.on('queued', (m) => this.handleQueued(m)),
      client.on('start', (m) => this.handleStart(m)),
      client.on('resume', (m) => this.handleResume(m)),
      client.on('movement', (m) => this.handleMovement(m)),
      client.on('result', (m) => this.handleResult(m)),
      client.on('error', (m) => this.handleError(m)),
      client.on('lost', (m) => this.handleLost(m)),
      client.on('bye', (m) => this.handleBye(m)),
    ];
    if (options.resume === '1' && client.match) {
      this.showMatch(client.match);
    } else {
      this.join();
    }
  },

  onUnload() {
    (this.unsubscribe || []).forEach((off) => off());
    this.unsubscribe = [];
    this.stopCountdown();
    // Leaving the page leaves the queue, or forfeits a match in progress (a join still
    // waiting for the connection goes out first, then this leave).
    if (this.data.phase !== 'over') this.client.leave();
  },

  // --- taps -------------------------------------------------------------------------

  onChoose(e) {
    const choice = e.currentTarget.dataset.choice;
    if (this.data.phase !== 'choosing' || !text.HANDS[choice]) return;
    if (!this.client.choose(choice)) {
      this.setData({ status: 'Not connected, try again in a moment' });
      return;
    }
    this.setData({
      phase: 'chosen',
      myChoice: choice,
      myChoiceIcon: text.hand(choice).icon,
      status: 'You chose ' + text.hand(choice).label + '. Waiting for the result…',
    });
  },

  onFace(e) {
    this.client.face(Number(e.currentTarget.dataset.face));
  },

  onPlayAgain() {
    this.join();
  },

  onBackToLobby() {
    // Opened on resume right after launch, the game page may be the only one.
    wx.navigateBack({ fail: () => wx.redirectTo({ url: '/pages/lobby/lobby' }) });
  },

  // --- server messages --------------------------------------------------------------

  join() {
    this.stopCountdown();
    const waiting =
      this.data.mode === 'now' ? 'A house bot is sitting down…' : 'Looking for an opponent…';
    this.setData(Object.assign(blankMatch(), { status: waiting }));
    this.client.join(this.data.mode);
  },

  handleQueued() {
    if (this.data.phase === 'waiting' && this.data.mode !== 'now') {
      this.setData({ status: 'Looking for an opponent…' });
    }
  },

  handleStart(m) {
    const fresh = m.match_id !== this.data.matchId;
    this.setData(
      Object.assign(fresh ? blankMatch() : {}, this.roundFields(m), {
        phase: 'choosing',
        myChoice: '',
        myChoiceIcon: '',
        opponentStatus: 'is choosing…',
        opponentFace: '',
        status: 'Round ' + m.round + ': choose!',
      }),
    );
    this.startCountdown(m.round_ms);
  },

  handleResume(m) {
    this.showMatch({
      matchId: m.match_id,
      round: m.round,
      bestOf: m.best_of,
      deadline: Date.now() + m.deadline_ms,
      open: m.deadline_ms > 0,
      opponent: m.opponent,
      opponentAway: !!m.opponent_away,
      score: m.score,
      choice: m.choice || '',
      final: !!m.final,
    });
  },

  // Draw a match from the client's snapshot (after a reconnect).
  showMatch(match) {
    const fresh = match.matchId !== this.data.matchId;
    const chosen = match.choice && match.final;
    let phase = 'between';
    if (match.open) phase = chosen ? 'chosen' : 'choosing';
    let opponentStatus = match.open ? 'is choosing…' : '';
    if (match.opponentAway) opponentStatus = 'left, waiting for them to come back…';
    this.setData(
      Object.assign(
        fresh ? blankMatch() : {},
        this.roundFields({
          match_id: match.matchId,
          round: match.round,
          best_of: match.bestOf,
          opponent: match.opponent,
          score: match.score,
        }),
        {
          phase,
          myChoice: match.choice,
          myChoiceIcon: match.choice ? text.hand(match.choice).icon : '',
          opponentStatus,
          status: match.open ? 'Back in round ' + match.round : 'Next round coming…',
        },
      ),
    );
    if (match.open) {
      this.startCountdown(match.deadline - Date.now());
    } else {
      this.stopCountdown();
      this.setData({ secondsLeft: 0 });
    }
  },

  roundFields(m) {
    const opponent = m.opponent || {};
    return {
      matchId: m.match_id,
      round: m.round,
      bestOf: m.best_of,
      opponentName: opponent.name || 'Opponent',
      opponentAvatar: opponent.avatar || '',
      opponentBot: !!opponent.bot,
      opponentRating: typeof opponent.rating === 'number' ? String(opponent.rating) : '',
      myRating: this.myRating(),
      scoreYou: m.score.you,
      scoreOpponent: m.score.opponent,
    };
  },

  myRating() {
    const player = this.client.player;
    return player && typeof player.rating === 'number' ? String(player.rating) : '';
  },

  handleMovement(m) {
    if (m.match_id !== this.data.matchId) return;
    if (m.kind === 'choice') {
      this.setData({ opponentStatus: 'has chosen' });
    } else if (m.kind === 'face') {
      this.setData({ opponentFace: text.face(m.face) });
    } else if (m.kind === 'left') {
      this.setData({ opponentStatus: 'left, waiting for them to come back…' });
    } else if (m.kind === 'back') {
      this.setData({ opponentStatus: 'is back' });
    }
  },

  handleResult(m) {
    if (m.match_id !== this.data.matchId) return;
    this.stopCountdown();
    const lastRound = {
      round: m.round,
      you: m.you || '',
      opponent: m.opponent || '',
      youIcon: text.hand(m.you).icon,
      opponentIcon: text.hand(m.opponent).icon,
      outcome: m.outcome,
      text: text.outcome(m.outcome),
    };
    const fields = {
      rounds: this.data.rounds.concat([lastRound]),
      lastRound,
      scoreYou: m.score.you,
      scoreOpponent: m.score.opponent,
      secondsLeft: 0,
      opponentStatus: '',
    };
    if (m.match_over) {
      Object.assign(fields, {
        phase: 'over',
        matchOver: true,
        winner: m.winner,
        headline: text.headline(m.winner),
        reasonText: text.reason(m.reason),
        totalScore: m.total_score,
        winStreak: m.win_streak,
        status: '',
      });
      if (typeof m.rating === 'number') {
        const change = m.rating_change || 0;
        Object.assign(fields, {
          rating: String(m.rating),
          ratingChange: signed(change),
          ratingSign: change > 0 ? 'up' : change < 0 ? 'down' : 'none',
          myRating: String(m.rating),
        });
      }
    } else {
      Object.assign(fields, { phase: 'between', status: lastRound.text + '. Next round…' });
    }
    this.setData(fields);
  },

  handleError(m) {
    let status;
    if (m.code === 'wrong_round') status = 'Too late for that round';
    else if (['invalid_token', 'unavailable', 'already_in_match'].indexOf(m.code) >= 0) return;
    else status = m.message || m.code;
    this.setData({ status });
  },

  handleLost(m) {
    if (m.what === 'queue') {
      this.join();
      return;
    }
    if (this.data.phase === 'over') return;
    this.stopCountdown();
    this.setData({
      phase: 'over',
      matchOver: true,
      headline: 'The match ended while you were away',
      reasonText: '',
      secondsLeft: 0,
    });
  },

  handleBye(m) {
    if (m.reason === 'replaced') this.setData({ status: 'Playing on another device' });
  },

  showConnection(state) {
    this.setData({ connection: state, connectionText: text.connection(state) });
  },

  // --- countdown --------------------------------------------------------------------

  startCountdown(ms) {
    this.stopCountdown();
    this.deadline = Date.now() + Math.max(0, ms);
    this.tick();
    this.timer = setInterval(() => this.tick(), 250);
  },

  stopCountdown() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  },

  tick() {
    const left = Math.max(0, Math.ceil((this.deadline - Date.now()) / 1000));
    if (left !== this.data.secondsLeft) this.setData({ secondsLeft: left });
    if (left === 0) {
      this.stopCountdown();
      if (this.data.phase === 'choosing') this.setData({ status: "Time's up" });
    }
  },
});

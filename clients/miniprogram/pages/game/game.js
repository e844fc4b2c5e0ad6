// The game: opponent, round, countdown, three big choice buttons, the opponent's
// movement, round results, the match result with total score and win streak, "rematch"
// and "play again". Opened from the lobby with ?bot=auto|now|never, with ?invite=1 to
// open a private room and share it, from a friend's share card with ?room=CODE, or with
// ?resume=1 by the app when a reconnect finds the player in a match.
const text = require('../../utils/text.js');

const MODES = ['auto', 'now', 'never'];
const SHARE_IMAGE = '/images/share.png';

function choices() {
  return ['rock', 'paper', 'scissors'].map((value) => ({
    value,
    label: text.hand(value).label,
    icon: text.hand(value).icon,
  }));
}
const FACES = [1, 2, 3, 4].map((value) => ({ value, icon: text.face(value) }));

// Everything about one match; reset by a new match.
function blankMatch() {
  return {
    phase: 'waiting', // waiting | choosing | chosen | between | over
    status: '',
    matchId: '',
    round: 0,
    bestOf: 0,
    roundText: '',
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
    rematchState: '', // '' | ready | asked | offered | closed
    rematchText: '',
    roomCode: '',
    roomHint: '',
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
      s: {},
      mode: 'auto',
      choices: choices(), // again in onLoad: the words in the phone's language
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
    this.setData({ mode, s: text.table(), choices: choices() });
    wx.setNavigationBarTitle({ title: text.t('appTitle') });
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
      client.on('room', (m) => this.handleRoom(m)),
      client.on('room_closed', () => this.handleRoomClosed()),
      client.on('rematch', (m) => this.handleRematch(m)),
      client.on('rematch_declined', (m) => this.handleRematchDeclined(m)),
    ];
    if (options.resume === '1' && client.match) {
      this.showMatch(client.match);
    } else if (options.room) {
      this.joinFriend(String(options.room));
    } else if (options.invite === '1') {
      this.openRoom();
    } else {
      this.join();
    }
  },

  // The share card of a room: the friend who taps it opens this page with ?room=CODE
  // (after a cold start too: the join waits for the connection). Elsewhere, the game.
  onShareAppMessage() {
    const code = this.data.roomCode;
    if (!code) return { title: text.t('appTitle'), path: '/pages/lobby/lobby' };
    const player = this.client.player;
    return {
      title: text.t('shareTitle', { name: player ? player.name : '' }),
      path: '/pages/game/game?room=' + code,
      imageUrl: SHARE_IMAGE,
    };
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
      this.setData({ status: text.t('notConnected') });
      return;
    }
    this.setData({
      phase: 'chosen',
      myChoice: choice,
      myChoiceIcon: text.hand(choice).icon,
      status: text.t('youChose', { hand: text.hand(choice).label }),
    });
  },

  onFace(e) {
    this.client.face(Number(e.currentTarget.dataset.face));
  },

  onPlayAgain() {
    this.join();
  },

  onRematch() {
    const state = this.data.rematchState;
    if (state !== 'ready' && state !== 'offered') return;
    if (!this.client.rematch(this.data.matchId)) {
      this.setData({ status: text.t('notConnected') });
      return;
    }
    this.setData({
      rematchState: 'asked',
      rematchText: state === 'offered' ? '' : text.t('rematchWaiting'),
    });
  },

  onBackToLobby() {
    // Opened on resume right after launch, the game page may be the only one.
    wx.navigateBack({ fail: () => wx.redirectTo({ url: '/pages/lobby/lobby' }) });
  },

  // --- server messages --------------------------------------------------------------

  join() {
    this.stopCountdown();
    const waiting =
      this.data.mode === 'now' ? text.t('botSittingDown') : text.t('lookingForOpponent');
    this.setData(Object.assign(blankMatch(), { status: waiting }));
    this.client.join(this.data.mode);
  },

  openRoom() {
    this.stopCountdown();
    this.setData(Object.assign(blankMatch(), { status: text.t('roomOpening') }));
    this.client.createRoom();
  },

  joinFriend(code) {
    this.stopCountdown();
    this.setData(Object.assign(blankMatch(), { status: text.t('joiningRoom') }));
    this.client.joinRoom(code);
  },

  handleQueued() {
    if (this.data.phase === 'waiting' && this.data.mode !== 'now') {
      this.setData({ status: text.t('lookingForOpponent') });
    }
  },

  handleRoom(m) {
    const minutes = Math.max(1, Math.round(m.expires_in / 60));
    this.setData({
      phase: 'waiting',
      roomCode: m.code,
      roomHint: text.t('roomHint', { minutes }),
      status: '',
    });
    wx.showShareMenu({ withShareTicket: false, menus: ['shareAppMessage', 'shareTimeline'] });
  },

  handleRoomClosed() {
    if (!this.data.roomCode) return;
    this.setData({ roomCode: '', roomHint: '', status: text.t('roomExpired') });
  },

  handleRematch(m) {
    if (m.match_id !== this.data.matchId || this.data.phase !== 'over') return;
    if (this.data.rematchState === 'closed') return;
    const asked = this.data.rematchState === 'asked';
    this.setData({
      rematchState: asked ? 'asked' : 'offered',
      rematchText: text.t('rematchAsked', { name: this.data.opponentName }),
    });
  },

  handleRematchDeclined(m) {
    if (m.match_id !== this.data.matchId) return;
    this.setData({
      rematchState: 'closed',
      rematchText: text.declined(m.reason, this.data.opponentName),
    });
  },

  handleStart(m) {
    const fresh = m.match_id !== this.data.matchId;
    this.setData(
      Object.assign(fresh ? blankMatch() : {}, this.roundFields(m), {
        phase: 'choosing',
        myChoice: '',
        myChoiceIcon: '',
        opponentStatus: text.t('opponentChoosing'),
        opponentFace: '',
        status: text.t('roundChoose', { round: m.round }),
        roundText: text.t('roundOf', { round: m.round, bestOf: m.best_of }),
        roomCode: '',
        roomHint: '',
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
    let opponentStatus = match.open ? text.t('opponentChoosing') : '';
    if (match.opponentAway) opponentStatus = text.t('opponentLeft');
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
          status: match.open
            ? text.t('backInRound', { round: match.round })
            : text.t('nextRoundComing'),
          roundText: text.t('roundOf', { round: match.round, bestOf: match.bestOf }),
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
      opponentName: opponent.name || text.t('opponent'),
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
      this.setData({ opponentStatus: text.t('opponentChosen') });
    } else if (m.kind === 'face') {
      this.setData({ opponentFace: text.face(m.face) });
    } else if (m.kind === 'left') {
      this.setData({ opponentStatus: text.t('opponentLeft') });
    } else if (m.kind === 'back') {
      this.setData({ opponentStatus: text.t('opponentBack') });
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
    lastRound.line = text.t('historyRow', {
      round: m.round,
      you: lastRound.youIcon,
      opponent: lastRound.opponentIcon,
      outcome: lastRound.text,
    });
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
        rematchState: 'ready',
        rematchText: '',
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
      Object.assign(fields, { phase: 'between', status: text.t('nextRound', { outcome: lastRound.text }) });
    }
    this.setData(fields);
  },

  handleError(m) {
    const ref = typeof m.ref === 'string' ? m.ref : '';
    if (ref.indexOf('room-') === 0 || ref.indexOf('friend-') === 0) {
      // A room we tried to open or join: say why, with the way back to the lobby.
      if (m.code === 'already_queued' || m.code === 'already_in_match') return;
      this.setData({ roomCode: '', roomHint: '', status: text.roomError(m.code) || m.message || m.code });
      return;
    }
    if (ref.indexOf('rematch-') === 0) {
      if (m.code === 'no_rematch') this.setData({ rematchState: 'closed', rematchText: text.t('noRematch') });
      return;
    }
    let status;
    if (m.code === 'wrong_round') status = text.t('tooLate');
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
      headline: text.t('endedAway'),
      reasonText: '',
      secondsLeft: 0,
    });
  },

  handleBye(m) {
    if (m.reason === 'replaced') this.setData({ status: text.t('replacedStatus') });
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
      if (this.data.phase === 'choosing') this.setData({ status: text.t('timesUp') });
    }
  },
});

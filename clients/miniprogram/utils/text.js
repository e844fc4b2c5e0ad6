// Words the pages show, in the phone's language (utils/i18n.js), kept out of page logic.
const i18n = require('./i18n.js');

const HANDS = {
  rock: { icon: '✊' },
  paper: { icon: '✋' },
  scissors: { icon: '✌️' },
};

const FACES = ['', '😀', '😮', '😢', '😠'];

const CONNECTION = {
  login: 'connLogin',
  connecting: 'connConnecting',
  open: 'connConnecting',
  busy: 'connBusy',
  ready: 'connReady',
  reconnecting: 'connReconnecting',
  suspended: 'connSuspended',
  replaced: 'connReplaced',
  closed: 'connClosed',
};

const REASONS = {
  rounds: '',
  afk: 'reasonAfk',
  forfeit: 'reasonForfeit',
  opponent_left: 'reasonOpponentLeft',
};

const DECLINED = {
  queued: 'declinedQueued',
  left: 'declinedLeft',
  gone: 'declinedGone',
  timeout: 'declinedTimeout',
  unavailable: 'declinedUnavailable',
};

const ROOM_ERRORS = {
  room_not_found: 'roomNotFound',
  room_full: 'roomFull',
  own_room: 'ownRoom',
  unavailable: 'roomsUnavailable',
  rate_limited: 'roomsRateLimited',
};

function hand(choice) {
  if (!HANDS[choice]) return { label: i18n.t('nothing'), icon: '…' };
  return { label: i18n.t(choice), icon: HANDS[choice].icon };
}

function face(number) {
  return FACES[number] || '';
}

function connection(state) {
  return CONNECTION[state] ? i18n.t(CONNECTION[state]) : state;
}

function outcome(value) {
  if (value === 'win') return i18n.t('winRound');
  if (value === 'lose') return i18n.t('loseRound');
  return i18n.t('draw');
}

function headline(winner) {
  if (winner === 'you') return i18n.t('winMatch');
  if (winner === 'opponent') return i18n.t('loseMatch');
  return i18n.t('drawMatch');
}

function reason(value) {
  if (!(value in REASONS)) return value;
  return REASONS[value] ? i18n.t(REASONS[value]) : '';
}

function declined(value, name) {
  return i18n.t(DECLINED[value] || 'declinedTimeout', { name });
}

function roomError(code) {
  return ROOM_ERRORS[code] ? i18n.t(ROOM_ERRORS[code]) : '';
}

module.exports = {
  HANDS,
  hand,
  face,
  connection,
  outcome,
  headline,
  reason,
  declined,
  roomError,
  t: i18n.t,
  table: i18n.table,
};

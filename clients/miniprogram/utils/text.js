// Words the pages show, kept out of the page logic.

const HANDS = {
  rock: { label: 'Rock', icon: '✊' },
  paper: { label: 'Paper', icon: '✋' },
  scissors: { label: 'Scissors', icon: '✌️' },
};

const FACES = ['', '😀', '😮', '😢', '😠'];

const CONNECTION = {
  login: 'Logging in…',
  connecting: 'Connecting…',
  open: 'Connecting…',
  busy: 'Server busy, retrying…',
  ready: 'Online',
  reconnecting: 'Connection lost, reconnecting…',
  suspended: 'Paused',
  replaced: 'Playing on another device',
  closed: 'Offline',
};

const REASONS = {
  rounds: '',
  afk: 'no choice in two rounds in a row',
  forfeit: 'you left the match',
  opponent_left: 'your opponent left',
};

function hand(choice) {
  return HANDS[choice] || { label: 'nothing', icon: '…' };
}

function face(number) {
  return FACES[number] || '';
}

function connection(state) {
  return CONNECTION[state] || state;
}

function outcome(value) {
  if (value === 'win') return 'You win the round';
  if (value === 'lose') return 'You lose the round';
  return 'Draw';
}

function headline(winner) {
  if (winner === 'you') return 'You win the match!';
  if (winner === 'opponent') return 'You lose the match';
  return 'The match is a draw';
}

function reason(value) {
  return value in REASONS ? REASONS[value] : value;
}

module.exports = { HANDS, hand, face, connection, outcome, headline, reason };

"""One match between two seats, as a sans-I/O state machine.

The match never reads a clock or touches a socket: every call takes ``now`` (seconds on
any monotonic clock) and returns the messages to deliver, addressed by seat; the owner
asks ``next_wakeup`` when to call ``tick`` again. That makes every rule below testable
with a fake clock and no sleeps.

Rules: best of ``best_of`` rounds; a round resolves as soon as both seats hold a final
choice, or at its deadline with each seat's latest choice. A missing choice loses to any
choice. The match ends once the leader's lead exceeds the rounds left (so best-of-3 can
end 2-0), when every round has been played, when a seat misses ``afk_rounds`` rounds in a
row, or when a seat forfeits.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import attrs

from game_server.core.rating import NEW_RATING, Rating, rate
from game_server.core.scoring import PlayerStats, settle
from protocol import (
    Choice,
    EndReason,
    ErrorCode,
    Movement,
    MovementKind,
    Opponent,
    Outcome,
    ProtocolError,
    Result,
    Resume,
    Score,
    ServerMessage,
    Start,
    Winner,
    judge,
)
from protocol.fields import ROUND_MAX


@attrs.frozen
class MatchRules:
    best_of: int = 3
    round_seconds: float = 5.0
    round_pause: float = 1.5
    afk_rounds: int = 2
    rated: bool = True  # False: nobody's rating moves (friends' rooms with rating off)

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.best_of <= ROUND_MAX:
            raise ValueError(f"best_of must be from 1 to {ROUND_MAX}")
        if self.round_seconds <= 0:
            raise ValueError("round_seconds must be positive")
        if self.round_pause < 0:
            raise ValueError("round_pause must not be negative")
        if self.afk_rounds < 1:
            raise ValueError("afk_rounds must be at least 1")


@attrs.frozen
class Seat:
    """Who sits at one side of the table; ``stats`` is the player's live totals, ``rating``
    its rating as the match began (a house bot's fixed one: it never moves)."""

    player_id: str
    name: str
    stats: PlayerStats
    avatar: str | None = None
    bot: bool = False
    rating: Rating = NEW_RATING

    def as_opponent(self) -> Opponent:
        return Opponent(
            id=self.player_id,
            name=self.name,
            avatar=self.avatar,
            bot=self.bot,
            rating=self.rating.shown,
        )


class Send(NamedTuple):
    """One message for one seat (a tuple: the match makes several per choice)."""

    seat: int
    message: ServerMessage


@attrs.frozen
class RoundRecord:
    round: int
    choices: tuple[Choice | None, Choice | None]
    outcome: Outcome  # from seat 0's point of view
    seconds: float = 0.0  # from start to resolution


@attrs.frozen
class MatchState:
    """What a match has settled so far: its resolved rounds. Enough to carry the match on
    elsewhere (a cluster's takeover) from the round after the last one resolved."""

    round: int  # rounds resolved
    wins: tuple[int, int]
    missed: tuple[int, int]  # rounds each seat has missed in a row
    history: tuple[RoundRecord, ...]


class Phase(enum.Enum):
    READY = "ready"
    CHOOSING = "choosing"
    PAUSED = "paused"
    OVER = "over"


# Scores are values: one instance per pair, made on first use (a round sends four).
_SCORES: dict[tuple[int, int], Score] = {}


def _score_of(you: int, opponent: int) -> Score:
    score = _SCORES.get((you, opponent))
    if score is None:
        score = _SCORES[you, opponent] = Score(you=you, opponent=opponent)
    return score


class Match:
    def __init__(self, match_id: str, seats: tuple[Seat, Seat], rules: MatchRules) -> None:
        if seats[0].player_id == seats[1].player_id:
            raise ValueError("a player cannot play against itself")
        self.match_id = match_id
        self.seats = seats
        self.player_ids = (seats[0].player_id, seats[1].player_id)
        self.rules = rules
        self.phase = Phase.READY
        self.round = 0
        self.wins = [0, 0]
        self.history: list[RoundRecord] = []
        self.winner: int | None = None  # seat index; None with phase OVER means a draw
        self.reason: EndReason | None = None
        # Each seat's rating after the match, once it is over (a bot's stays as it was).
        self.ratings_after: tuple[Rating, Rating] = (seats[0].rating, seats[1].rating)
        self._choices: list[Choice | None] = [None, None]
        self._final = [False, False]
        self._missed = [0, 0]
        self._deadline = 0.0
        self._resume_at = 0.0
        self._round_started = 0.0
        # What each seat is told about the other, made once: seats do not change.
        self._opponents = (seats[1].as_opponent(), seats[0].as_opponent())
        self._round_ms = round(rules.round_seconds * 1000)

    # ------------------------------------------------------------ queries

    @property
    def over(self) -> bool:
        return self.phase is Phase.OVER

    @property
    def next_wakeup(self) -> float | None:
        if self.phase is Phase.CHOOSING:
            return self._deadline
        if self.phase is Phase.PAUSED:
            return self._resume_at
        return None

    def seat_of(self, player_id: str) -> int:
        ids = self.player_ids
        if ids[0] == player_id:
            return 0
        if ids[1] == player_id:
            return 1
        raise KeyError(player_id)

    def state(self) -> MatchState:
        """The resolved rounds (a round in progress is not part of it)."""
        resolved = len(self.history)
        return MatchState(
            round=resolved,
            wins=(self.wins[0], self.wins[1]),
            missed=(self._missed[0], self._missed[1]),
            history=tuple(self.history),
        )

    @classmethod
    def carried_on(
        cls,
        match_id: str,
        seats: tuple[Seat, Seat],
        rules: MatchRules,
        state: MatchState,
        now: float,
    ) -> Match:
        """A match taken over from ``state``: the round after the last one resolved is
        open, with a fresh deadline (its players are sent ``resume``, not ``start``)."""
        match = cls(match_id, seats, rules)
        match.round = state.round
        match.wins = list(state.wins)
        match._missed = list(state.missed)
        match.history = list(state.history)
        match._start_round(now)
        return match

    def resume_for(self, seat: int, now: float) -> Resume:
        """Everything a reconnecting seat needs to carry on from here."""
        choosing = self.phase is Phase.CHOOSING
        left = max(0.0, self._deadline - now) if choosing else 0.0
        return Resume(
            match_id=self.match_id,
            round=max(self.round, 1),
            best_of=self.rules.best_of,
            round_ms=self._round_ms,
            deadline_ms=math.ceil(left * 1000),
            opponent=self._opponents[seat],
            opponent_away=False,
            score=self._score(seat),
            choice=self._choices[seat] if choosing else None,
            final=self._final[seat] if choosing else False,
        )

    # ------------------------------------------------------------ events

    def begin(self, now: float) -> list[Send]:
        if self.phase is not Phase.READY:
            raise RuntimeError("match already begun")
        return self._start_round(now)

    def choose(
        self, seat: int, round_number: int, choice: Choice, final: bool, now: float
    ) -> list[Send]:
        """Record a choice; raises ``ProtocolError`` (wrong_round, choice_locked) on misuse.

        The owner must ``tick`` due timers first; a choice at or past the deadline is refused
        rather than resolved here, so no message is ever produced and then lost.
        """
        if self.phase is Phase.OVER:
            raise ProtocolError(ErrorCode.NOT_IN_MATCH, f"match {self.match_id} is over")
        open_now = self.phase is Phase.CHOOSING and now < self._deadline
        if not open_now or round_number != self.round:
            if round_number == self.round:
                detail = f"round {round_number} is closed; wait for the next start"
            else:
                detail = f"round {round_number} is not open; the current round is {self.round}"
            raise ProtocolError(ErrorCode.WRONG_ROUND, detail)
        if self._final[seat]:
            raise ProtocolError(
                ErrorCode.CHOICE_LOCKED, f"your choice for round {self.round} is final"
            )
        first = self._choices[seat] is None
        self._choices[seat] = choice
        self._final[seat] = final
        out: list[Send] = []
        if first:
            out.append(Send(1 - seat, self._movement(MovementKind.CHOICE)))
        if self._final[0] and self._final[1]:
            out += self._resolve_round(now)
        return out

    def face(self, seat: int, face: int) -> list[Send]:
        if self.phase is Phase.OVER:
            raise ProtocolError(ErrorCode.NOT_IN_MATCH, f"match {self.match_id} is over")
        return [Send(1 - seat, self._movement(MovementKind.FACE, face))]

    def forfeit(self, seat: int) -> list[Send]:
        """``seat`` leaves: it loses at once (``forfeit``); the other wins (``opponent_left``)."""
        if self.phase is Phase.OVER:
            return []
        choices = tuple(self._choices) if self.phase is Phase.CHOOSING else (None, None)
        self._finish(winner=1 - seat, reason=EndReason.FORFEIT)
        out = []
        for side in (0, 1):
            mine, theirs = choices[side], choices[1 - side]
            if side == seat:
                result = self._result_for(side, mine, theirs, Outcome.LOSE)
            else:
                result = self._result_for(side, mine, theirs, Outcome.WIN, EndReason.OPPONENT_LEFT)
            out.append(Send(side, result))
        return out

    def tick(self, now: float) -> list[Send]:
        out: list[Send] = []
        while True:
            if self.phase is Phase.CHOOSING and now >= self._deadline:
                out += self._resolve_round(now)
            elif self.phase is Phase.PAUSED and now >= self._resume_at:
                out += self._start_round(now)
            else:
                return out

    # ------------------------------------------------------------ internals

    def _movement(self, kind: MovementKind, face: int | None = None) -> Movement:
        return Movement(match_id=self.match_id, round=self.round, kind=kind, face=face)

    def start_for(self, side: int) -> Start:
        """The ``start`` of the open round as ``side`` was (or would have been) sent it."""
        return Start(
            match_id=self.match_id,
            round=self.round,
            best_of=self.rules.best_of,
            round_ms=self._round_ms,
            opponent=self._opponents[side],
            score=self._score(side),
        )

    def _start_round(self, now: float) -> list[Send]:
        self.round += 1
        self.phase = Phase.CHOOSING
        self._choices = [None, None]
        self._final = [False, False]
        self._deadline = now + self.rules.round_seconds
        self._round_started = now
        return [Send(side, self.start_for(side)) for side in (0, 1)]

    def _resolve_round(self, now: float) -> list[Send]:
        mine, theirs = self._choices
        outcome = judge(mine, theirs)
        if outcome is Outcome.WIN:
            self.wins[0] += 1
        elif outcome is Outcome.LOSE:
            self.wins[1] += 1
        self.history.append(
            RoundRecord(self.round, (mine, theirs), outcome, now - self._round_started)
        )
        missed = self._missed
        missed[0] = 0 if mine is not None else missed[0] + 1
        missed[1] = 0 if theirs is not None else missed[1] + 1
        afk_rounds = self.rules.afk_rounds
        afk0, afk1 = missed[0] >= afk_rounds, missed[1] >= afk_rounds
        lead = abs(self.wins[0] - self.wins[1])
        rounds_left = self.rules.best_of - self.round
        if afk0 or afk1:
            self._finish(winner=None if afk0 and afk1 else (1 if afk0 else 0), reason=EndReason.AFK)
        elif rounds_left == 0 or lead > rounds_left:
            self._finish(winner=self._leader(), reason=EndReason.ROUNDS)
        else:
            self.phase = Phase.PAUSED
            self._resume_at = now + self.rules.round_pause

        out = [
            Send(0, self._result_for(0, mine, theirs)),
            Send(1, self._result_for(1, theirs, mine)),
        ]
        if self.phase is Phase.PAUSED and self.rules.round_pause == 0:
            out += self._start_round(now)
        return out

    def _leader(self) -> int | None:
        if self.wins[0] == self.wins[1]:
            return None
        return 0 if self.wins[0] > self.wins[1] else 1

    def _finish(self, winner: int | None, reason: EndReason) -> None:
        self.phase = Phase.OVER
        self.winner = winner
        self.reason = reason
        if winner is None:
            settle(self.seats[0].stats, self.seats[1].stats, draw=True)
        else:
            settle(self.seats[winner].stats, self.seats[1 - winner].stats)
        # Forfeits and AFK count as results, draws as draws; each side is rated against
        # the other as both stood when the match began.
        scores = (0.5, 0.5) if winner is None else ((1.0, 0.0) if winner == 0 else (0.0, 1.0))
        first, second = self.seats
        if not self.rules.rated:
            return  # ratings_after stays as the seats began
        self.ratings_after = (
            first.rating if first.bot else rate(first.rating, second.rating, scores[0]),
            second.rating if second.bot else rate(second.rating, first.rating, scores[1]),
        )

    def _score(self, side: int) -> Score:
        return _score_of(self.wins[side], self.wins[1 - side])

    def _result_for(
        self,
        side: int,
        mine: Choice | None,
        theirs: Choice | None,
        outcome: Outcome | None = None,
        reason: EndReason | None = None,
    ) -> Result:
        """The round's result for ``side``; on the last one, the match's too.

        ``outcome`` and ``reason`` override the round's (a forfeit).
        """
        if outcome is None:
            outcome = judge(mine, theirs)
        winner = total_score = win_streak = rating = rating_change = None
        over = self.over
        if over:
            if self.winner is None:
                winner = Winner.DRAW
            else:
                winner = Winner.YOU if self.winner == side else Winner.OPPONENT
            reason = reason or self.reason
            stats = self.seats[side].stats
            total_score, win_streak = stats.total_score, stats.win_streak
            rating = self.ratings_after[side].shown
            rating_change = rating - self.seats[side].rating.shown
        return Result(
            match_id=self.match_id,
            round=self.round,
            you=mine,
            opponent=theirs,
            outcome=outcome,
            score=self._score(side),
            match_over=over,
            winner=winner,
            reason=reason if over else None,
            total_score=total_score,
            win_streak=win_streak,
            rating=rating,
            rating_change=rating_change,
        )

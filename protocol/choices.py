"""The three hands and who beats whom; shared by the server, the bots and the clients."""

from __future__ import annotations

import enum


class Choice(enum.StrEnum):
    """A hand. The value is the wire word, so orjson encodes it as-is."""

    ROCK = "rock"
    PAPER = "paper"
    SCISSORS = "scissors"

    @property
    def beats(self) -> Choice:
        """The hand this one defeats."""
        return _BEATS[self]

    @property
    def beaten_by(self) -> Choice:
        """The hand that defeats this one: what to play against a predicted ``self``."""
        return _BEATEN_BY[self]

    @property
    def legacy_number(self) -> int:
        """The 2016 demo's number for this hand (1 = scissors, 2 = rock, 3 = paper)."""
        return _TO_LEGACY[self]


class Outcome(enum.StrEnum):
    """A round or match outcome from one player's point of view."""

    WIN = "win"
    LOSE = "lose"
    DRAW = "draw"

    @property
    def mirrored(self) -> Outcome:
        """The same outcome seen from the other side."""
        return _MIRROR[self]


_BEATS = {Choice.ROCK: Choice.SCISSORS, Choice.PAPER: Choice.ROCK, Choice.SCISSORS: Choice.PAPER}
_BEATEN_BY = {loser: winner for winner, loser in _BEATS.items()}
_TO_LEGACY = {Choice.SCISSORS: 1, Choice.ROCK: 2, Choice.PAPER: 3}
LEGACY_NUMBERS: dict[int, Choice] = {number: choice for choice, number in _TO_LEGACY.items()}
_MIRROR = {Outcome.WIN: Outcome.LOSE, Outcome.LOSE: Outcome.WIN, Outcome.DRAW: Outcome.DRAW}


def judge(mine: Choice | None, theirs: Choice | None) -> Outcome:
    """Judge one round for ``mine``. A missing hand loses to any hand; two missing hands draw."""
    if mine is theirs:
        return Outcome.DRAW
    if theirs is None:
        return Outcome.WIN
    if mine is None:
        return Outcome.LOSE
    return Outcome.WIN if _BEATS[mine] is theirs else Outcome.LOSE

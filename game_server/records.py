"""What is stored about players and finished matches: plain values, no I/O."""

from __future__ import annotations

import attrs


@attrs.frozen
class PlayerRecord:
    id: str
    name: str
    created_at: float  # Unix seconds
    last_seen: float
    avatar: str | None = None
    openid: str | None = None  # WeChat identity, for players who logged in
    unionid: str | None = None
    total_score: int = 0
    win_streak: int = 0
    wins: int = 0
    losses: int = 0
    draws: int = 0


@attrs.frozen
class RoundRow:
    round: int
    choices: tuple[str | None, str | None]  # seat 0's, seat 1's
    outcome: str  # from seat 0's point of view


@attrs.frozen
class SeatRow:
    player_id: str
    name: str
    bot: bool


@attrs.frozen
class MatchRecord:
    id: str
    seats: tuple[SeatRow, SeatRow]
    winner: str | None  # a player id; None for a draw
    reason: str
    best_of: int
    started_at: float
    ended_at: float
    rounds: tuple[RoundRow, ...]
    # The humans' totals after this match, written in the same transaction.
    players: tuple[PlayerRecord, ...]

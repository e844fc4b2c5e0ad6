"""What is stored about players and finished matches: plain values, no I/O."""

from __future__ import annotations

from typing import Any

import attrs

from game_server.core.rating import NEW_RATING, Rating
from game_server.core.scoring import PlayerStats


@attrs.frozen
class PlayerRecord:
    id: str
    name: str
    created_at: float  # Unix seconds
    last_seen: float
    avatar: str | None = None
    openid: str | None = None  # WeChat identity, for players who logged in
    unionid: str | None = None
    # Never the live player's own object (which goes on changing): a copy of it.
    stats: PlayerStats = attrs.Factory(PlayerStats)
    # Like the totals, it moves only with a finished match (storage writes it then).
    rating: Rating = NEW_RATING

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON types (for processes that hand players to each other)."""
        raw = attrs.asdict(self, recurse=False)
        return {**raw, "stats": attrs.asdict(self.stats), "rating": self.rating.to_json()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PlayerRecord:
        # A record a process older than ratings wrote has none: a new player's then.
        return cls(
            **{
                **raw,
                "stats": PlayerStats(**raw["stats"]),
                "rating": Rating.from_json(raw.get("rating")),
            }
        )


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
    # The seat's rating as the match began and after it (a house bot's: the same): a
    # profile draws its history from them. None in a record made before ratings.
    rating_before: float | None = None
    rating_after: float | None = None


@attrs.frozen
class PlayerResult:
    """What one finished match changed for one human, applied to the stored totals as
    increments: processes sharing the database never overwrite each other's gains."""

    player_id: str
    outcome: str  # "win", "lose" or "draw"
    points: int = 0  # added to the total score


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
    # The humans after this match, written in the same transaction: their profiles, and
    # their totals only for a row storage does not have yet.
    players: tuple[PlayerRecord, ...]
    # Added to the stored totals of each human with a result (the others' are left alone).
    results: tuple[PlayerResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON types (a cluster keeps it in Redis until it is stored)."""
        raw = attrs.asdict(self)
        raw["players"] = [player.to_json() for player in self.players]
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> MatchRecord:
        return cls(
            id=raw["id"],
            seats=(SeatRow(**raw["seats"][0]), SeatRow(**raw["seats"][1])),
            winner=raw["winner"],
            reason=raw["reason"],
            best_of=raw["best_of"],
            started_at=raw["started_at"],
            ended_at=raw["ended_at"],
            rounds=tuple(
                RoundRow(row["round"], (row["choices"][0], row["choices"][1]), row["outcome"])
                for row in raw["rounds"]
            ),
            players=tuple(PlayerRecord.from_json(player) for player in raw["players"]),
            results=tuple(PlayerResult(**result) for result in raw["results"]),
        )


@attrs.frozen
class Picture:
    """An uploaded avatar as stored: re-encoded bytes, named by their hash (``id``), so
    one picture is kept once however often it is uploaded, and a URL naming it never
    shows anything else (it may be cached for ever)."""

    id: str
    content_type: str
    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    uploaded_by: str  # the first player who uploaded it
    created_at: float

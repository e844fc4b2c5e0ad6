"""The 2016 demo's streak scoring, applied once per finished match."""

from __future__ import annotations

import attrs


@attrs.define
class PlayerStats:
    """A player's running totals; shared by reference with the matches the player is in."""

    total_score: int = 0
    win_streak: int = 0
    wins: int = 0
    losses: int = 0
    draws: int = 0

    def copy(self) -> PlayerStats:
        """A copy to hand out (a record must not change with the live totals); the
        constructor, not ``attrs.evolve``, on a path taken for every player of every match."""
        return PlayerStats(self.total_score, self.win_streak, self.wins, self.losses, self.draws)


# Their names, in this order: storage's columns and the public player JSON follow them.
STAT_FIELDS: tuple[str, ...] = tuple(field.name for field in attrs.fields(PlayerStats))


def settle(winner: PlayerStats | None, loser: PlayerStats | None, *, draw: bool = False) -> None:
    """Apply one match result.

    The winner's streak grows by one and the total grows by the new streak, so a run of
    wins is worth 1, 2, 3, ... points; a loss resets the streak; a draw changes neither.
    ``None`` stands for a side whose totals nobody keeps (never the case for humans).
    """
    if draw:
        for stats in (winner, loser):
            if stats is not None:
                stats.draws += 1
        return
    if winner is not None:
        winner.win_streak += 1
        winner.total_score += winner.win_streak
        winner.wins += 1
    if loser is not None:
        loser.win_streak = 0
        loser.losses += 1


def points_won(stats: PlayerStats) -> int:
    """What ``settle`` just added to a winner's total: its new streak."""
    return stats.win_streak

"""Glicko-2 ratings: what a match does to a player's rating, and the house bots' fixed ones.

Every finished match is one Glicko-2 rating period with one game in it, so a rating moves
after every match (a player expects to see it move), and its deviation shrinks as the
player plays. A day without a rated match counts as an empty rating period: the deviation
grows back (Glickman's step 6), so a player who comes back after months moves fast again.

The maths is the ``glicko2-py`` package's (``glicko2.math.algorithm``), pinned in
``constraints.txt``. Why that one: it is typed, has no dependencies, and is pure functions
on (mu, phi, sigma), which suits a sans-I/O core. The better known ``glicko2`` package
(2.1.0) reproduces Glickman's worked example but solves the volatility step with the
player's rating (mu squared) where the paper has its deviation (phi squared), so its
results change when every rating is shifted by the same amount; ``openskill`` is a
different model (Weng-Lin), not Glicko-2. ``tests/core/test_rating.py`` checks the
package against the published worked example and against that shift, so an upgrade that
breaks either fails the build.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
from glicko2.math.algorithm import update_rating

from game_server.core.ladder import shown

SCALE = 173.7178  # Glicko-2's internal scale: mu = (rating - 1500) / SCALE
TAU = 0.5  # the system constant: how fast volatility may change (Glickman suggests 0.3-1.2)
PERIOD = 86400.0  # seconds: a day without a rated match is one empty rating period
MAX_DEVIATION = 350.0  # a new player's; idle time never makes a rating less known than that


@attrs.frozen
class Rating:
    """A player's Glicko-2 rating, in the usual display scale (1500, RD 350)."""

    rating: float = 1500.0
    deviation: float = 350.0
    volatility: float = 0.06
    rated_at: float | None = None  # Unix seconds of its last rated match; None: never

    @property
    def shown(self) -> int:
        """The integer players see (the wire's ``rating``): to the nearest point, halves
        up, as the rating leaderboard ranks them (``core/ladder.py``)."""
        return shown(self.rating)

    def stamped(self, rated_at: float) -> Rating:
        """The same rating, rated at ``rated_at`` (Unix seconds)."""
        return Rating(self.rating, self.deviation, self.volatility, rated_at)

    def to_json(self) -> list[float | None]:
        return [self.rating, self.deviation, self.volatility, self.rated_at]

    @classmethod
    def from_json(cls, raw: list[Any] | None) -> Rating:
        """The inverse of ``to_json``; None (a record from before ratings) is a new one."""
        if raw is None:
            return NEW_RATING
        rating, deviation, volatility, rated_at = raw
        return cls(float(rating), float(deviation), float(volatility), rated_at)


NEW_RATING = Rating()


def aged(rating: Rating, now: float) -> Rating:
    """``rating`` as of ``now``: each whole ``PERIOD`` since its last rated match is an
    empty rating period, which widens the deviation by the volatility (capped at 350)."""
    if rating.rated_at is None:
        return rating
    periods = math.floor(max(0.0, now - rating.rated_at) / PERIOD)
    if periods == 0:
        return rating
    phi = rating.deviation / SCALE
    wider = math.sqrt(phi * phi + periods * rating.volatility**2) * SCALE
    return Rating(rating.rating, min(MAX_DEVIATION, wider), rating.volatility, rating.rated_at)


def rate(player: Rating, opponent: Rating, score: float) -> Rating:
    """The player's rating after one match against ``opponent`` (both as they stood when
    the match began); ``score`` is 1 for a win, 0.5 for a draw, 0 for a loss. The result's
    ``rated_at`` is left as it was: the caller stamps it with the time of the match."""
    updated = update_rating(
        (player.rating - 1500.0) / SCALE,
        player.deviation / SCALE,
        player.volatility,
        [((opponent.rating - 1500.0) / SCALE, opponent.deviation / SCALE, score)],
        tau=TAU,
    )
    # The constructor, not ``attrs.evolve``: this runs twice a match, and evolve looks
    # the fields up each time (several µs).
    return Rating(updated.mu * SCALE + 1500.0, updated.phi * SCALE, updated.sigma, player.rated_at)


# The house bots' fixed ratings, one per strategy. A match against a bot moves the human's
# rating against this and never the bot's. Measured by ``bench/bot_ratings.py`` (every
# strategy against every other in best-of-3 matches, ratings fitted with random anchored
# at 1500: it wins exactly half its matches against anyone); docs/bots.md has the method
# and the run. The deviation says how far a person's result against a bot may stray from
# what the bots' results against each other predict.
BOT_DEVIATION = 80.0
BOT_RATINGS: Mapping[str, Rating] = {
    "random": Rating(1500.0, BOT_DEVIATION),  # the anchor: half its matches against anyone
    "cycle": Rating(1516.0, BOT_DEVIATION),
    "frequency": Rating(1556.0, BOT_DEVIATION),
    "markov": Rating(1517.0, BOT_DEVIATION),
    "copycat": Rating(1410.0, BOT_DEVIATION),
    "wsls": Rating(1493.0, BOT_DEVIATION),
}


def bot_rating(strategy: str) -> Rating:
    """The fixed rating of a house bot playing ``strategy`` (1500 for one not measured)."""
    return BOT_RATINGS.get(strategy, Rating(1500.0, BOT_DEVIATION))

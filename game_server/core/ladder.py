"""The leaderboards' periods and ranks: plain values, no I/O.

Points won count on a day's and a week's board as well as all time. WeChat's players live
in UTC+8 (China has one time zone and no daylight saving), so a day is a calendar day there
and a week an ISO week (Monday to Sunday) there, whatever the server's own time zone.
"""

from __future__ import annotations

import datetime
import enum
import math

UTC8 = datetime.timezone(datetime.timedelta(hours=8))


class Board(enum.StrEnum):
    SCORE = "score"  # the 2016 demo's streak points
    RATING = "rating"  # Glicko-2


class Period(enum.StrEnum):
    ALL = "all"
    WEEK = "week"
    DAY = "day"


def period_keys(when: float) -> tuple[str, str]:
    """The day's and the week's keys of a moment (Unix seconds), in UTC+8: ``d2026-12-03``
    and ``w2026-W49``."""
    local = datetime.datetime.fromtimestamp(when, UTC8)
    year, week, _ = local.isocalendar()
    return f"d{local.date().isoformat()}", f"w{year}-W{week:02d}"


def periods_before(when: float) -> tuple[tuple[str, str], ...]:
    """Every day and week before the ones that hold ``when``, as ranges of their keys:
    ``low <= key < high``, one a kind (within a kind, keys sort in time order)."""
    day, week = period_keys(when)
    return (("d", day), ("w", week))


def period_key(period: Period, when: float) -> str | None:
    """The key of the ``period`` that holds ``when`` (None for all time)."""
    if period is Period.ALL:
        return None
    day, week = period_keys(when)
    return day if period is Period.DAY else week


def shown(rating: float) -> int:
    """A rating as players see it: to the nearest point, halves up (as SQL can say with a
    comparison: ``shown(r) > n`` exactly when ``r >= n + 0.5``)."""
    return math.floor(rating + 0.5)


def ranks(first_rank: int, offset: int, values: list[int]) -> list[int]:
    """Competition ranks (1, 2, 2, 4) of a page of a board: ``values`` in board order,
    starting at 0-based position ``offset``, whose first row ranks ``first_rank`` (one
    more than the rows with a greater value). Ties share a rank."""
    out: list[int] = []
    for index, value in enumerate(values):
        if index == 0:
            out.append(first_rank)
        elif value == values[index - 1]:
            out.append(out[-1])
        else:
            out.append(offset + index + 1)
    return out

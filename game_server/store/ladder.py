"""The leaderboards on either engine: pages of a board with competition ranks, and where
one player stands on it.

Every board is read from an index in its own order, so a page costs the rows it returns
(the page around a player is read by its values, not skipped to), and a rank costs one
count over the index (``COUNT`` of the rows above a value): no sort of the table,
whatever its size. The boards:

- ``score``, all time: players who played, by total score (``players_played_by_score``
  on SQLite, ``players_by_score`` on PostgreSQL: both partial, on players who played);
- ``score``, a day or a week: ``period_scores`` (points won in that UTC+8 day or ISO
  week, added as matches are stored), by points;
- ``rating``: players who played, by rating. Ranks go by the rating players see (to the
  nearest point, halves up): ``shown(r) > n`` is ``r >= n + 0.5``, a range of the index.

Ties share a rank (1, 2, 2, 4) and are listed by player id (in byte order on both
engines). The SQL is written once with ``?`` and given each engine's placeholder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from game_server.core.ladder import Board, Period, period_key, ranks, shown
from game_server.core.records import PlayerRecord
from game_server.store.schema import PROFILE_ROW, player_from_row

PLAYED = "wins + losses + draws > 0"
_COLUMNS = ", ".join(f"p.{column}" for column in PROFILE_ROW)

# Runs one statement on the writer's connection: its rows as mappings by column name.
Query = Callable[[str, Sequence[Any]], list[Mapping[str, Any]]]


@attrs.frozen
class Standing:
    """One row of a board: its rank, the player, and its points in the period (a day's or
    a week's board; None all time)."""

    rank: int
    player: PlayerRecord
    points: int | None = None


@attrs.frozen
class _Sql:
    """One board's statements. Its rows are ordered by ``value`` (descending), ties by
    ``key`` (ascending); the board's index has that order, and each statement reads a
    range of it."""

    top: str  # the first rows: LIMIT ?
    tie_above: str  # rows with the value ? listed above the id ?, nearest first: LIMIT ?
    greater: str  # rows with a value greater than ?, nearest first: LIMIT ?
    tie_below: str  # rows with the value ? from the id ? on, in order: LIMIT ?
    less: str  # rows with a value less than ?, in order: LIMIT ?
    above: str  # how many rows have a value greater than ? (a rank is one more)
    mine: str  # the player's own value
    before: str  # rows listed before the player: a greater value, or equal and a lower id
    value: Callable[[Mapping[str, Any]], Any]  # the value the order goes by
    rank_value: Callable[[Mapping[str, Any]], int]  # the value a rank goes by


def _board_sql(
    select: str,
    source: str,
    value: str,
    key: str,
    count_source: str,
    count_key: str,
    above: str = ">",
) -> dict[str, str]:
    """The statements of a board read from ``source`` (``FROM ... WHERE ...``), ordered
    by ``value`` then ``key``; ``count_source`` and ``count_key`` name the same rows
    without the join a page needs (the counts read the index alone); ``above`` compares
    for a rank (the rating board's ``>=``: a threshold of shown + 0.5)."""
    count_value = value.split(".")[-1]
    return {
        "top": f"SELECT {select} FROM {source} ORDER BY {value} DESC, {key} LIMIT ?",
        "tie_above": f"SELECT {select} FROM {source} AND {value} = ? AND {key} < ? "
        f"ORDER BY {key} DESC LIMIT ?",
        "greater": f"SELECT {select} FROM {source} AND {value} > ? "
        f"ORDER BY {value} ASC, {key} DESC LIMIT ?",
        "tie_below": f"SELECT {select} FROM {source} AND {value} = ? AND {key} >= ? "
        f"ORDER BY {key} LIMIT ?",
        "less": f"SELECT {select} FROM {source} AND {value} < ? "
        f"ORDER BY {value} DESC, {key} LIMIT ?",
        "above": f"SELECT count(*) AS n FROM {count_source} AND {count_value} {above} ?",
        "before": f"SELECT (SELECT count(*) FROM {count_source} AND {count_value} > ?) + "
        f"(SELECT count(*) FROM {count_source} AND {count_value} = ? AND {count_key} < ?) "
        "AS n",
    }


def _sql(board: Board, period: Period, mark: str) -> _Sql:
    if board is Board.RATING:
        sql = _Sql(
            **_board_sql(
                _COLUMNS,
                f"players p WHERE {PLAYED}",
                "rating",
                "id",
                f"players WHERE {PLAYED}",
                "id",
                above=">=",
            ),
            mine=f"SELECT rating AS v FROM players WHERE id = ? AND {PLAYED}",
            value=lambda row: row["rating"],
            rank_value=lambda row: shown(row["rating"]),
        )
    elif period is Period.ALL:
        sql = _Sql(
            **_board_sql(
                _COLUMNS,
                f"players p WHERE {PLAYED}",
                "total_score",
                "id",
                f"players WHERE {PLAYED}",
                "id",
            ),
            mine=f"SELECT total_score AS v FROM players WHERE id = ? AND {PLAYED}",
            value=lambda row: row["total_score"],
            rank_value=lambda row: int(row["total_score"]),
        )
    else:
        sql = _Sql(
            **_board_sql(
                f"{_COLUMNS}, s.points AS period_points",
                "period_scores s JOIN players p ON p.id = s.player_id WHERE s.period = ?",
                "s.points",
                "s.player_id",
                "period_scores WHERE period = ?",
                "player_id",
            ),
            mine="SELECT points AS v FROM period_scores WHERE period = ? AND player_id = ?",
            value=lambda row: row["period_points"],
            rank_value=lambda row: int(row["period_points"]),
        )
    if mark == "?":
        return sql
    statements = ("top", "tie_above", "greater", "tie_below", "less", "above", "mine", "before")
    return attrs.evolve(sql, **{name: getattr(sql, name).replace("?", mark) for name in statements})


def standings(
    query: Query,
    mark: str,
    board: Board,
    period: Period,
    limit: int,
    around: str | None,
    now: float,
) -> list[Standing] | None:
    """A page of ``limit`` rows of a board: the top, or the rows around the player
    ``around`` (it in the middle, as far as the board's top and bottom allow). None if
    that player is not on the board (never played; won nothing in the period).

    Around a player, the page is read by its values (a keyset): the rows just above it
    and from it down, each a short range of the index, however far down it is; only the
    ranks need counts."""
    sql = _sql(board, period, mark)
    key = period_key(period, now) if board is Board.SCORE else None
    scope: tuple[Any, ...] = () if key is None else (key,)
    if around is None:
        rows = query(sql.top, (*scope, limit))
        offset = 0
    else:
        mine = query(sql.mine, (*scope, around))
        if not mine:
            return None
        value = mine[0]["v"]
        # Nearest first above it, in order from it down; as many as could be needed.
        above = query(sql.tie_above, (*scope, value, around, limit - 1))
        if len(above) < limit - 1:
            above += query(sql.greater, (*scope, value, limit - 1 - len(above)))
        below = query(sql.tie_below, (*scope, value, around, limit))
        if len(below) < limit:
            below += query(sql.less, (*scope, value, limit - len(below)))
        # The player in the middle; near the bottom, more from above to fill the page.
        taken = min(len(above), max((limit - 1) // 2, limit - len(below)))
        rows = [*reversed(above[:taken]), *below[: limit - taken]]
        before = int(query(sql.before, (*scope, value, *scope, value, around))[0]["n"])
        offset = before - taken
    if not rows:
        return []
    values = [sql.rank_value(row) for row in rows]
    # The first row's rank: one more than the rows whose value is greater than its own
    # (on the rating board, greater as shown: r >= shown + 0.5).
    threshold: Any = values[0] + 0.5 if board is Board.RATING else sql.value(rows[0])
    first = 1 + int(query(sql.above, (*scope, threshold))[0]["n"])
    return [
        Standing(rank, player_from_row(row), None if key is None else int(row["period_points"]))
        for rank, row in zip(ranks(first, offset, values), rows, strict=True)
    ]


def rank_by_score(query: Query, mark: str, player_id: str) -> int | None:
    """The player's rank on the all-time score board (None if it never played)."""
    sql = _sql(Board.SCORE, Period.ALL, mark)
    mine = query(sql.mine, (player_id,))
    if not mine:
        return None
    return 1 + int(query(sql.above, (mine[0]["v"],))[0]["n"])

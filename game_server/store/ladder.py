"""The leaderboards on either engine: pages of a board with competition ranks, and where
one player stands on it.

Every board is read from an index in its own order, so a page costs the rows it returns
plus the rows it skips, and a rank costs one count over the index (``COUNT`` of the rows
above a value): no sort of the table, whatever its size. The boards:

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
    page: str  # rows in board order: LIMIT ? OFFSET ?
    above: str  # how many rows have a greater value than ?
    mine: str  # the player's own value
    before: str  # rows listed before the player: a greater value, or equal and a lower id
    value: Callable[[Mapping[str, Any]], int]  # the value a rank goes by


def _sql(board: Board, period: Period, mark: str) -> _Sql:
    if board is Board.RATING:
        sql = _Sql(
            page=f"SELECT {_COLUMNS} FROM players p WHERE {PLAYED} "
            "ORDER BY rating DESC, id LIMIT ? OFFSET ?",
            above=f"SELECT count(*) AS n FROM players WHERE {PLAYED} AND rating >= ?",
            mine=f"SELECT rating AS v FROM players WHERE id = ? AND {PLAYED}",
            before=f"SELECT (SELECT count(*) FROM players WHERE {PLAYED} AND rating > ?) + "
            f"(SELECT count(*) FROM players WHERE {PLAYED} AND rating = ? AND id < ?) AS n",
            value=lambda row: shown(row["rating"]),
        )
    elif period is Period.ALL:
        sql = _Sql(
            page=f"SELECT {_COLUMNS} FROM players p WHERE {PLAYED} "
            "ORDER BY total_score DESC, id LIMIT ? OFFSET ?",
            above=f"SELECT count(*) AS n FROM players WHERE {PLAYED} AND total_score > ?",
            mine=f"SELECT total_score AS v FROM players WHERE id = ? AND {PLAYED}",
            before=f"SELECT (SELECT count(*) FROM players WHERE {PLAYED} AND total_score > ?) "
            f"+ (SELECT count(*) FROM players WHERE {PLAYED} AND total_score = ? AND id < ?) "
            "AS n",
            value=lambda row: int(row["total_score"]),
        )
    else:
        sql = _Sql(
            page=f"SELECT {_COLUMNS}, s.points AS period_points FROM period_scores s "
            "JOIN players p ON p.id = s.player_id WHERE s.period = ? "
            "ORDER BY s.points DESC, s.player_id LIMIT ? OFFSET ?",
            above="SELECT count(*) AS n FROM period_scores WHERE period = ? AND points > ?",
            mine="SELECT points AS v FROM period_scores WHERE period = ? AND player_id = ?",
            before="SELECT (SELECT count(*) FROM period_scores WHERE period = ? AND points > ?) "
            "+ (SELECT count(*) FROM period_scores WHERE period = ? AND points = ? "
            "AND player_id < ?) AS n",
            value=lambda row: int(row["period_points"]),
        )
    if mark == "?":
        return sql
    return attrs.evolve(
        sql,
        page=sql.page.replace("?", mark),
        above=sql.above.replace("?", mark),
        mine=sql.mine.replace("?", mark),
        before=sql.before.replace("?", mark),
    )


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
    ``around`` (it in the middle, as far as the board allows). None if that player is
    not on the board (never played; won nothing in the period)."""
    sql = _sql(board, period, mark)
    key = period_key(period, now) if board is Board.SCORE else None
    scope: tuple[Any, ...] = () if key is None else (key,)
    offset = 0
    if around is not None:
        mine = query(sql.mine, (*scope, around))
        if not mine:
            return None
        value = mine[0]["v"]
        before_args = (*scope, value, *scope, value, around)
        before = int(query(sql.before, before_args)[0]["n"])
        offset = max(0, before - (limit - 1) // 2)
    rows = query(sql.page, (*scope, limit, offset))
    if around is not None and len(rows) < limit and offset > 0:
        # Near the bottom: start earlier so the page stays full.
        offset = max(0, offset - (limit - len(rows)))
        rows = query(sql.page, (*scope, limit, offset))
    if not rows:
        return []
    values = [sql.value(row) for row in rows]
    # The first row's rank: one more than the rows whose value is greater than its own.
    threshold: float = values[0] + 0.5 if board is Board.RATING else values[0]
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

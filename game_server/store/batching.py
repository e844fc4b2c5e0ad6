"""A run of finished matches as a handful of bulk statements, on either engine.

The writer hands over finished matches in runs (``store/writer.py``). Storing a run as one
statement per table instead of a statement per row halves the writer's CPU per match, and
the players of a run are tallied first, so each human's profile and totals are written
once per run with the same effect as one match at a time.

A run reaches the database as one JSON text per statement, made on the loop when the run
is handed over. The writer thread then binds one value per statement and the database
reads the rows itself (SQLite inside ``sqlite3_step``, PostgreSQL in its own process),
with the GIL released: bound value by value, the writer held the GIL for every one and
kept taking it from the loop (the loop thread blocked ~500 times a second at saturation).

Each match is counted once, whatever happens: the matches go in first with ``ON CONFLICT
DO NOTHING RETURNING id``, and only the matches that were new add their rounds, profiles
and results. A match recorded again (a node taking over a match whose host recorded it
before dying, a repeat inside the same run) adds nothing. In the usual case every match
is new and the statements made on the loop run as they are; otherwise the run is tallied
again, on the thread, from the matches that went in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
import orjson

from game_server.core.ladder import period_keys
from game_server.core.records import MatchRecord, PlayerRecord, PlayerResult
from game_server.store.schema import PLAYER_COLUMNS, PROFILE_ROW, RATING_COLUMNS

MATCH_ROW = (
    "id", "player1", "name1", "bot1", "player2", "name2", "bot2", "winner", "reason",
    "best_of", "started_at", "ended_at",
    "rating1_before", "rating1_after", "rating2_before", "rating2_after",
)  # fmt: skip
ROUND_ROW = ("match_id", "round", "choice1", "choice2", "outcome")
# Points won in a UTC+8 day or ISO week (core/ladder.py's keys), added up per run.
PERIOD_ROW = ("period", "player_id", "points")
# A rating is not an increment: the run's last one is written as it is (only the process
# that owns a player rates it, one match after the other).
UPDATE_ROW = (
    "id", "name", "avatar", "openid", "unionid", "last_seen",
    "points", "won", "lost", "drawn", "reset", "streak", *RATING_COLUMNS,
)  # fmt: skip


@attrs.frozen
class RunSql:
    """One engine's statements for a run, each taking one JSON parameter (a JSON array of
    rows, each an array in the order of ``MATCH_ROW``, ``ROUND_ROW``, ``PROFILE_ROW`` or
    ``UPDATE_ROW``)."""

    matches: str  # must return the ids it inserted (ON CONFLICT DO NOTHING RETURNING id)
    rounds: str
    # The players of a run in two statements, whatever the run's length: a row is made for
    # a player storage does not have yet (with its totals as they were before the run),
    # then every player's profile is brought up to date as a single save would and the
    # run's results are added, in one update: one new row version per player and run (an
    # upsert of the profile and then an update of the totals made two, and row versions
    # are most of what a run costs PostgreSQL). Same effect as the matches one by one.
    new_players: str
    updates: str
    periods: str  # points won today and this week, added to the leaderboards' rows
    encode: Callable[[bytes], Any]  # the JSON text as the engine's driver binds it

    @classmethod
    def build(
        cls,
        from_json: Callable[[tuple[str, ...]], str],
        *,
        matches_tail: str,
        rows_tail: str,
        latest: str,
        lock_in_order: bool,
        encode: Callable[[bytes], Any],
        periods_tail: str = "WHERE true",
    ) -> RunSql:
        """The same four statements in each engine's words: ``from_json`` makes a table of
        the given columns from the one JSON parameter, ``matches_tail`` and ``rows_tail``
        end the selects the inserts read (SQLite needs ``WHERE true`` to read ON CONFLICT
        as the INSERT's; PostgreSQL takes ``ORDER BY id`` for the players, so nodes lock
        shared players in one order), ``latest`` names the engine's greater-of-two
        function (``max`` in SQLite, ``greatest`` in PostgreSQL), and ``lock_in_order``
        has the update lock its rows in id order first (PostgreSQL, where nodes write at
        once: an update takes rows in whatever order its join reads them)."""
        # An openid another player holds is not taken over (the column is unique): the
        # save that would move it keeps the player's own instead.
        openid_free = """CASE WHEN EXISTS (
            SELECT 1 FROM players p WHERE p.openid = v.openid AND p.id <> v.id
        ) THEN NULL ELSE v.openid END"""
        held = """, held AS (
            SELECT p.id FROM players p JOIN v ON p.id = v.id ORDER BY p.id FOR UPDATE OF p
        )"""
        in_held = " AND v.id IN (SELECT id FROM held)"
        return cls(
            matches=f"""
                INSERT INTO matches ({", ".join(MATCH_ROW)}) {from_json(MATCH_ROW)}
                {matches_tail}
                ON CONFLICT (id) DO NOTHING RETURNING id
            """,
            rounds=f"INSERT INTO rounds ({', '.join(ROUND_ROW)}) {from_json(ROUND_ROW)}",
            new_players=f"""
                WITH v AS ({from_json(PROFILE_ROW)})
                INSERT INTO players ({PLAYER_COLUMNS})
                SELECT id, name, avatar, {openid_free},
                    unionid, total_score, win_streak, wins, losses, draws, created_at, last_seen,
                    {", ".join(RATING_COLUMNS)}
                FROM v {rows_tail}
                ON CONFLICT (id) DO NOTHING
            """,
            updates=f"""
                WITH v AS ({from_json(UPDATE_ROW)}){held if lock_in_order else ""}
                UPDATE players SET
                    name = v.name, avatar = v.avatar,
                    openid = coalesce({openid_free}, players.openid),
                    unionid = coalesce(v.unionid, players.unionid),
                    last_seen = {latest}(players.last_seen, v.last_seen),
                    total_score = total_score + v.points,
                    wins = wins + v.won, losses = losses + v.lost, draws = draws + v.drawn,
                    win_streak = CASE WHEN v.reset THEN v.streak ELSE win_streak + v.streak END,
                    {", ".join(f"{name} = v.{name}" for name in RATING_COLUMNS)}
                FROM v WHERE players.id = v.id{in_held if lock_in_order else ""}
            """,
            periods=f"""
                INSERT INTO period_scores ({", ".join(PERIOD_ROW)})
                SELECT {", ".join(PERIOD_ROW)} FROM ({from_json(PERIOD_ROW)}) AS v
                {periods_tail}
                ON CONFLICT (period, player_id)
                DO UPDATE SET points = period_scores.points + excluded.points
            """,
            encode=encode,
        )


class Cursor(Protocol):
    def fetchall(self) -> Sequence[Sequence[Any]]: ...


class Connection(Protocol):
    """What a run needs of a connection: sqlite3's and psycopg's both have it."""

    def execute(self, sql: Any, params: Any = ..., /) -> Cursor: ...


def match_row(record: MatchRecord) -> tuple[Any, ...]:
    first, second = record.seats
    return (
        record.id,
        first.player_id,
        first.name,
        int(first.bot),  # as an integer, which SQLite returns and PostgreSQL stores
        second.player_id,
        second.name,
        int(second.bot),
        record.winner,
        record.reason,
        record.best_of,
        record.started_at,
        record.ended_at,
        first.rating_before,
        first.rating_after,
        second.rating_before,
        second.rating_after,
    )


def round_rows(records: list[MatchRecord]) -> list[tuple[Any, ...]]:
    return [
        (record.id, r.round, r.choices[0], r.choices[1], r.outcome)
        for record in records
        for r in record.rounds
    ]


class Tally:
    """One player's share of a run of matches: its latest profile and what to add."""

    __slots__ = ("drawn", "lost", "points", "profile", "reset", "streak", "won")

    def __init__(self, profile: PlayerRecord) -> None:
        self.profile = profile
        self.points = self.won = self.lost = self.drawn = 0
        self.reset = False  # a loss ends the stored streak ...
        self.streak = 0  # ... and these wins are added to it (or to 0 after a reset)

    def add(self, result: PlayerResult) -> None:
        self.points += result.points
        if result.outcome == "win":
            self.won += 1
            self.streak += 1
        elif result.outcome == "lose":
            self.lost += 1
            self.reset, self.streak = True, 0
        else:
            self.drawn += 1

    def profile_row(self) -> tuple[Any, ...]:
        """The profile, with the totals as they were before the run: a new row made from
        it, plus the run's results added, ends at the profile's own totals."""
        p, stats = self.profile, self.profile.stats
        streak = stats.win_streak if self.reset else stats.win_streak - self.streak
        return (
            p.id,
            p.name,
            p.avatar,
            p.openid,
            p.unionid,
            stats.total_score - self.points,
            streak,
            stats.wins - self.won,
            stats.losses - self.lost,
            stats.draws - self.drawn,
            p.created_at,
            p.last_seen,
            *p.rating.to_json(),  # for a new row; the results set it in any case
        )

    def update_row(self) -> tuple[Any, ...]:
        """The profile as it is now, and what the run adds to the totals."""
        p = self.profile
        return (
            p.id,
            p.name,
            p.avatar,
            p.openid,
            p.unionid,
            p.last_seen,
            self.points,
            self.won,
            self.lost,
            self.drawn,
            self.reset,
            self.streak,
            *self.profile.rating.to_json(),
        )


def tally_players(records: list[MatchRecord]) -> list[Tally]:
    """Each human of a run once, in the order first met, with its share of the run."""
    tallies: dict[str, Tally] = {}
    for record in records:
        outcomes = {result.player_id: result for result in record.results}
        for player in record.players:
            tally = tallies.get(player.id)
            if tally is None:
                tally = tallies[player.id] = Tally(player)
            else:
                tally.profile = player
            result = outcomes.get(player.id)
            if result is not None:
                tally.add(result)
    return list(tallies.values())


class Run:
    """A run's statements, made on the loop; called on the writer thread with its
    connection."""

    __slots__ = ("matches", "records", "rest", "sql")

    def __init__(self, sql: RunSql, records: list[MatchRecord]) -> None:
        self.sql = sql
        self.records = records
        self.matches = sql.encode(orjson.dumps([match_row(record) for record in records]))
        self.rest = rest_params(sql, records)

    def __call__(self, conn: Connection) -> None:
        sql = self.sql
        inserted = {row[0] for row in conn.execute(sql.matches, (self.matches,)).fetchall()}
        rest = self.rest
        if len(inserted) != len(self.records):
            # Some were stored already, or a match came twice: tally what went in, once.
            kept = []
            for record in self.records:
                if record.id in inserted:
                    kept.append(record)
                    inserted.discard(record.id)
            if not kept:
                return
            rest = rest_params(sql, kept)
        statements = (sql.rounds, sql.new_players, sql.updates, sql.periods)
        for statement, param in zip(statements, rest, strict=True):
            conn.execute(statement, (param,))


def period_rows(records: list[MatchRecord]) -> list[tuple[str, str, int]]:
    """The points each winner won, per day and per week of the matches' ends, added up;
    in key order (the order nodes lock the rows in)."""
    points: dict[tuple[str, str], int] = {}
    for record in records:
        won = [(result.player_id, result.points) for result in record.results if result.points]
        if not won:
            continue
        for period in period_keys(record.ended_at):
            for player_id, gained in won:
                points[period, player_id] = points.get((period, player_id), 0) + gained
    return sorted((period, player_id, n) for (period, player_id), n in points.items())


def rest_params(sql: RunSql, records: list[MatchRecord]) -> tuple[Any, Any, Any, Any]:
    """The rounds', new players', updates' and periods' parameters of matches that all
    went in."""
    tallies = tally_players(records)
    return (
        sql.encode(orjson.dumps(round_rows(records))),
        # In id order: two processes sharing a database lock the players' rows they share
        # in the same order, so their runs wait for each other instead of deadlocking.
        sql.encode(orjson.dumps(sorted(tally.profile_row() for tally in tallies))),
        sql.encode(orjson.dumps(sorted(tally.update_row() for tally in tallies))),
        sql.encode(orjson.dumps(period_rows(records))),
    )


def insert_matches(sql: RunSql, conn: Connection, records: list[MatchRecord]) -> None:
    """Store a run of matches now (on the thread that owns ``conn``)."""
    Run(sql, records)(conn)


def bulk_maker(sql: RunSql) -> Callable[[list[MatchRecord]], Callable[[Any], None]]:
    """The writer's ``make_bulk``: a run's job, its statements made on the loop's thread."""
    return lambda records: Run(sql, records)

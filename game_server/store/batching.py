"""A run of finished matches as a handful of bulk statements.

The writer hands over finished matches in runs (``store/writer.py``). Storing a run as one
statement per table instead of a statement per row halves the writer's CPU per match, and
the players of a run are tallied first, so each human's profile and totals are written
once per run with the same effect as one match at a time.

A run reaches SQLite as one JSON text per statement, made on the loop when the run is
handed over. The writer thread then binds one value per statement and SQLite reads the
rows inside ``sqlite3_step`` with the GIL released: bound value by value, the writer held
the GIL for every one and kept taking it from the loop (the loop thread blocked ~500
times a second at saturation).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from game_server.core.records import MatchRecord, PlayerRecord, PlayerResult
from game_server.store.schema import PLAYER_COLUMNS, PROFILE_ROW


def _from_json(columns: tuple[str, ...]) -> str:
    """A table of ``columns`` from one parameter: a JSON array of rows (arrays)."""
    picks = ", ".join(f"value ->> {index} AS {name}" for index, name in enumerate(columns))
    return f"SELECT {picks} FROM json_each(?)"


MATCH_ROW = (
    "id", "player1", "name1", "bot1", "player2", "name2", "bot2", "winner", "reason",
    "best_of", "started_at", "ended_at",
)  # fmt: skip
ROUND_ROW = ("match_id", "round", "choice1", "choice2", "outcome")
RESULT_ROW = ("id", "points", "won", "lost", "drawn", "reset", "streak")

_INSERT_MATCHES = f"INSERT INTO matches {_from_json(MATCH_ROW)}"
_INSERT_ROUNDS = f"INSERT INTO rounds {_from_json(ROUND_ROW)}"

# The players of a run of matches in two statements, whatever the run's length: a row is
# made for a player storage does not have yet (with its totals as they were before the
# run), every profile is brought up to date as a single save would, then the run's
# results are added. Same effect as the matches' upserts one by one, in order.
_RECORD_PROFILES = f"""
        WITH v AS ({_from_json(PROFILE_ROW)})
        INSERT INTO players ({PLAYER_COLUMNS})
        SELECT id, name, avatar,
            CASE WHEN EXISTS (SELECT 1 FROM players p WHERE p.openid = v.openid AND p.id <> v.id)
                THEN NULL ELSE openid END,
            unionid, total_score, win_streak, wins, losses, draws, created_at, last_seen
        FROM v WHERE true
        ON CONFLICT (id) DO UPDATE SET
            name = excluded.name, avatar = excluded.avatar,
            openid = coalesce(excluded.openid, openid),
            unionid = coalesce(excluded.unionid, unionid),
            last_seen = max(last_seen, excluded.last_seen)
    """
_ADD_RESULTS = f"""
        WITH v AS ({_from_json(RESULT_ROW)})
        UPDATE players SET
            total_score = total_score + v.points,
            wins = wins + v.won, losses = losses + v.lost, draws = draws + v.drawn,
            win_streak = CASE WHEN v.reset THEN v.streak ELSE win_streak + v.streak END
        FROM v WHERE players.id = v.id
    """


def match_row(record: MatchRecord) -> tuple[Any, ...]:
    first, second = record.seats
    return (
        record.id,
        first.player_id,
        first.name,
        first.bot,
        second.player_id,
        second.name,
        second.bot,
        record.winner,
        record.reason,
        record.best_of,
        record.started_at,
        record.ended_at,
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
        )

    def result_row(self) -> tuple[Any, ...]:
        return (
            self.profile.id,
            self.points,
            self.won,
            self.lost,
            self.drawn,
            self.reset,
            self.streak,
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


Statements = list[tuple[str, tuple[bytes]]]


def match_statements(records: list[MatchRecord]) -> Statements:
    """The statements that store a run of finished matches: the matches, their rounds,
    and each human's profile and result, with the same effect as one match at a time."""
    tallies = tally_players(records)
    return [
        (_INSERT_MATCHES, (orjson.dumps([match_row(record) for record in records]),)),
        (_INSERT_ROUNDS, (orjson.dumps(round_rows(records)),)),
        (_RECORD_PROFILES, (orjson.dumps([tally.profile_row() for tally in tallies]),)),
        (_ADD_RESULTS, (orjson.dumps([tally.result_row() for tally in tallies]),)),
    ]


def run_statements(conn: sqlite3.Connection, statements: Statements) -> None:
    for sql, params in statements:
        conn.execute(sql, params)


def insert_matches(conn: sqlite3.Connection, records: list[MatchRecord]) -> None:
    run_statements(conn, match_statements(records))


def bulk_writer(records: list[MatchRecord]) -> Callable[[sqlite3.Connection], None]:
    """The writer's bulk job for a run: statements made now, on the loop's thread."""
    statements = match_statements(records)
    return lambda conn: run_statements(conn, statements)

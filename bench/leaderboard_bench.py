"""How fast the leaderboards answer with 100,000 players and 1,000,000 matches. Prints a
table.

    .venv/bin/python bench/leaderboard_bench.py                 # SQLite; ~2 min to fill
    .venv/bin/python bench/leaderboard_bench.py --postgresql    # and PostgreSQL beside it
    .venv/bin/python bench/leaderboard_bench.py --players 10000 --matches 100000

Fills a database through the store's own schema (its migrations, so its indexes): the
players (totals, ratings), the matches (each with its two players and ratings; no
rounds, which no board reads) and a month of day and week points, as the stored matches
would have made them. Then times, through the store as the HTTP API calls it
(``standings``, ``rank_by_score``, ``rating_history``), each query ``--repeats`` times and
prints the median and the worst in milliseconds: the top 10 of every board, the page
around a player ranked about 50,000th, and a profile's rank and rating history.

PostgreSQL comes from tests/support/postgres.py (its programs must be installed).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the real PostgreSQL starter lives in tests/support

from game_server.core.ladder import Board, Period, period_keys  # noqa: E402
from game_server.store.base import ThreadedStore  # noqa: E402
from game_server.store.sqlite import SqliteStore  # noqa: E402

NOW = 1_796_000_000.0  # a fixed "now", so the day and week boards have data
DAY = 86400.0
BATCH = 20_000


def players(count: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for n in range(count):
        wins = rng.randrange(0, 60)
        losses = rng.randrange(0, 60)
        yield (
            f"p_{n:08d}",
            f"Player {n}",
            None,
            None,
            None,
            rng.randrange(0, 400),  # total_score: many ties, as streak points have
            rng.randrange(0, 5),
            wins,
            losses,
            rng.randrange(0, 5),
            NOW - 90 * DAY,
            NOW - rng.random() * 30 * DAY,
            rng.gauss(1500.0, 250.0),
            rng.uniform(50.0, 350.0),
            0.06,
            NOW - rng.random() * 30 * DAY,
        )


def matches(count: int, player_count: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for n in range(count):
        one, two = rng.randrange(player_count), rng.randrange(player_count)
        if one == two:
            two = (two + 1) % player_count
        ended = NOW - rng.random() * 30 * DAY
        r1, r2 = rng.gauss(1500.0, 250.0), rng.gauss(1500.0, 250.0)
        yield (
            f"m_{n:09d}",
            f"p_{one:08d}",
            f"Player {one}",
            0,
            f"p_{two:08d}",
            f"Player {two}",
            0,
            f"p_{one:08d}",
            "rounds",
            3,
            ended - 10.0,
            ended,
            r1,
            r1 + 10.0,
            r2,
            r2 - 10.0,
        )


def period_rows(count: int, player_count: int, rng: random.Random) -> list[tuple[str, str, int]]:
    """Points won per day and week, as ``count`` matches spread over 30 days would add."""
    points: dict[tuple[str, str], int] = {}
    for _ in range(count):
        winner = f"p_{rng.randrange(player_count):08d}"
        gained = rng.randrange(1, 6)
        for key in period_keys(NOW - rng.random() * 30 * DAY):
            points[key, winner] = points.get((key, winner), 0) + gained
    return [(key, player, n) for (key, player), n in points.items()]


def fill(conn: Any, mark: str, player_count: int, match_count: int) -> None:
    """Rows in batches, through a plain connection on the migrated schema."""
    rng = random.Random(16)

    def put(table: str, columns: int, rows: Iterator[tuple[Any, ...]] | list[Any]) -> None:
        statement = f"INSERT INTO {table} VALUES ({', '.join([mark] * columns)})"
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH:
                _many(conn, statement, batch)
                batch = []
        if batch:
            _many(conn, statement, batch)

    put(
        "players (id, name, avatar, openid, unionid, total_score, win_streak, wins, losses, "
        "draws, created_at, last_seen, rating, rating_deviation, rating_volatility, rated_at)",
        16,
        players(player_count, rng),
    )
    put(
        "matches (id, player1, name1, bot1, player2, name2, bot2, winner, reason, best_of, "
        "started_at, ended_at, rating1_before, rating1_after, rating2_before, rating2_after)",
        16,
        matches(match_count, player_count, rng),
    )
    put("period_scores (period, player_id, points)", 3, period_rows(match_count, player_count, rng))


def _many(conn: Any, statement: str, rows: list[tuple[Any, ...]]) -> None:
    if isinstance(conn, sqlite3.Connection):
        conn.execute("BEGIN")
        conn.executemany(statement, rows)
        conn.execute("COMMIT")
    else:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(statement, rows)


async def timed(repeats: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs), max(runs)


async def measure(
    store: ThreadedStore[Any], repeats: int, players: int
) -> list[tuple[str, float, float]]:
    # A player listed about 50,000th by score (half-way down a smaller board): found
    # once, untimed.
    probe = await _player_at(store, min(50_000, players // 2))
    week_player = await _period_player(store)
    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("score, all time, top 10", lambda: store.standings(Board.SCORE, Period.ALL, 10, now=NOW)),
        (
            "score, this week, top 10",
            lambda: store.standings(Board.SCORE, Period.WEEK, 10, now=NOW),
        ),
        ("score, today, top 10", lambda: store.standings(Board.SCORE, Period.DAY, 10, now=NOW)),
        ("rating, top 10", lambda: store.standings(Board.RATING, Period.ALL, 10, now=NOW)),
        (
            "score, all time, around #50,000",
            lambda: store.standings(Board.SCORE, Period.ALL, 20, around=probe, now=NOW),
        ),
        (
            "rating, around #50,000",
            lambda: store.standings(Board.RATING, Period.ALL, 20, around=probe, now=NOW),
        ),
        (
            "score, this week, around a player",
            lambda: store.standings(Board.SCORE, Period.WEEK, 20, around=week_player, now=NOW),
        ),
        ("profile: rank by score", lambda: store.rank_by_score(probe)),
        ("profile: rating history (50)", lambda: store.rating_history(probe, 50)),
    ]
    out = []
    for name, call in cases:
        median, worst = await timed(repeats, call)
        out.append((name, median, worst))
    return out


async def _player_at(store: ThreadedStore[Any], position: int) -> str:
    def read(conn: Any) -> str:
        rows = store._query(  # a bench may reach in
            conn,
            "SELECT id FROM players WHERE wins + losses + draws > 0 "
            f"ORDER BY total_score DESC, id LIMIT 1 OFFSET {position - 1}",
            (),
        )
        return str(rows[0]["id"])

    return await store.writer.read(read)


async def _period_player(store: ThreadedStore[Any]) -> str:
    rows = await store.standings(Board.SCORE, Period.WEEK, 100, now=NOW)
    assert rows
    return rows[-1].player.id


async def run(args: argparse.Namespace) -> int:
    results: dict[str, list[tuple[str, float, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        path = str(Path(scratch) / "board.db")
        await SqliteStore(path).close()  # it migrates the new file
        started = time.perf_counter()
        conn = sqlite3.connect(path, isolation_level=None)
        fill(conn, "?", args.players, args.matches)
        conn.execute("ANALYZE")
        conn.close()
        print(f"SQLite filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        store = SqliteStore(path)
        try:
            results["SQLite"] = await measure(store, args.repeats, args.players)
        finally:
            await store.close()
        if args.postgresql:
            results["PostgreSQL"] = await on_postgresql(args)
    engines = list(results)
    print(
        f"leaderboard queries, {args.players:,} players, {args.matches:,} matches: "
        f"ms, median / worst of {args.repeats}"
    )
    print(f"{'query':<36}" + "".join(f"{engine:>20}" for engine in engines))
    for index, (name, _, _) in enumerate(results[engines[0]]):
        cells = "".join(
            f"{results[e][index][1]:>11.2f} / {results[e][index][2]:>6.2f}" for e in engines
        )
        print(f"{name:<36}{cells}")
    return 0


async def on_postgresql(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    import psycopg

    from game_server.store.postgres import PostgresStore
    from tests.support.postgres import postgres_session

    session = postgres_session()
    server = next(session)
    try:
        url = server.fresh_database()
        await PostgresStore(url).close()  # it migrates the new database
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            fill(conn, "%s", args.players, args.matches)
            # As autovacuum leaves a table in use: statistics, and a visibility map that
            # lets counts read the index alone.
            conn.execute("VACUUM ANALYZE")
        print(f"PostgreSQL filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        store = PostgresStore(url)
        try:
            return await measure(store, args.repeats, args.players)
        finally:
            await store.close()
    finally:
        for _ in session:  # runs the starter's clean-up
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--matches", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--postgresql", action="store_true")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

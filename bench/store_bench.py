"""What storing finished matches costs on SQLite and on PostgreSQL. Prints a table.

    .venv/bin/python bench/store_bench.py            # 1,000 matches, medians of 5
    .venv/bin/python bench/store_bench.py --matches 200 --repeats 3

A run of ``--matches`` finished matches (best of 3, 3 rounds each, 200 players with
profiles), each engine at its default durability (SQLite: WAL with synchronous=NORMAL, as
the server runs it; PostgreSQL: a server started here as installed, fsync and
synchronous_commit on), timed four ways:

1. loop: making the run's statements (``make_bulk``: tally and JSON), on the event loop;
2. thread: the bulk job on a connection, one transaction (what the writer thread does);
3. end to end: ``record_match`` for every match, then ``flush`` (committed), through the
   store as the server uses it;
4. one at a time: each match in its own transaction, as without batching.

Each figure is the median of ``--repeats`` runs, every run on new match ids. Then the
disk each match takes (tables and indexes, divided by the matches stored). PostgreSQL
comes from tests/support/postgres.py (its programs must be installed); without it, only
SQLite is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the real PostgreSQL starter lives in tests/support

from game_server.core.records import (  # noqa: E402
    MatchRecord,
    PlayerRecord,
    PlayerResult,
    RoundRow,
    SeatRow,
)
from game_server.core.scoring import PlayerStats  # noqa: E402
from game_server.store.base import ThreadedStore  # noqa: E402
from game_server.store.batching import RunSql, bulk_maker, insert_matches  # noqa: E402
from game_server.store.sqlite import RUN_SQL as SQLITE_SQL  # noqa: E402
from game_server.store.sqlite import SqliteDatabase, SqliteStore  # noqa: E402
from game_server.store.writer import Database  # noqa: E402

PLAYERS = 200


def matches(count: int, prefix: str, seed: int) -> list[MatchRecord]:
    """``count`` finished matches between ``PLAYERS`` players, ids starting ``prefix``."""
    rng = random.Random(seed)
    profiles = {
        n: PlayerRecord(id=f"p_{n:04d}", name=f"Player {n}", created_at=1.0, last_seen=1.0)
        for n in range(PLAYERS)
    }
    out = []
    for n in range(count):
        a, b = rng.sample(range(PLAYERS), 2)
        first, second = profiles[a], profiles[b]
        ended = 1_000_000.0 + n
        for pid, outcome in ((a, "win"), (b, "lose")):
            old = profiles[pid]
            stats = PlayerStats(
                total_score=old.stats.total_score + (outcome == "win"),
                win_streak=old.stats.win_streak + 1 if outcome == "win" else 0,
                wins=old.stats.wins + (outcome == "win"),
                losses=old.stats.losses + (outcome == "lose"),
                draws=old.stats.draws,
            )
            profiles[pid] = PlayerRecord(
                id=old.id, name=old.name, created_at=1.0, last_seen=ended, stats=stats
            )
        seats = (SeatRow(first.id, first.name, False), SeatRow(second.id, second.name, False))
        out.append(
            MatchRecord(
                id=f"{prefix}_{n:06d}",
                seats=seats,
                winner=first.id,
                reason="rounds",
                best_of=3,
                started_at=ended - 9.0,
                ended_at=ended,
                rounds=(
                    RoundRow(1, ("rock", "scissors"), "win"),
                    RoundRow(2, ("rock", "paper"), "lose"),
                    RoundRow(3, ("paper", "rock"), "win"),
                ),
                players=(profiles[a], profiles[b]),
                results=(PlayerResult(first.id, "win", 1), PlayerResult(second.id, "lose")),
            )
        )
    return out


class Engine:
    """One engine's store, its raw connection, and how big its tables are."""

    def __init__(
        self,
        name: str,
        database: Database[Any],
        sql: RunSql,
        open_store: Callable[[], ThreadedStore[Any]],
        size: Callable[[Any], int],
    ) -> None:
        self.name = name
        self.database = database
        self.sql = sql
        self.open_store = open_store
        self.size = size
        self.conn = database.connect()

    def transaction(self, work: Callable[[Any], None]) -> None:
        self.database.begin(self.conn, write=True)
        work(self.conn)
        self.database.execute(self.conn, "COMMIT")


def store_one(sql: RunSql, record: MatchRecord, conn: Any) -> None:
    insert_matches(sql, conn, [record])


def timed(work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


async def measure(engine: Engine, count: int, repeats: int) -> dict[str, float]:
    make_bulk = bulk_maker(engine.sql)
    rows: dict[str, list[float]] = {"loop": [], "thread": [], "end to end": [], "one at a time": []}
    store = engine.open_store()
    try:
        for repeat in range(repeats):
            records = matches(count, f"m{repeat}b", repeat)
            job: list[Callable[[Any], None]] = []
            rows["loop"].append(timed(lambda: job.append(make_bulk(records))))  # noqa: B023
            rows["thread"].append(timed(lambda: engine.transaction(job[0])))  # noqa: B023

            records = matches(count, f"m{repeat}e", repeat)
            start = time.perf_counter()
            for record in records:
                store.record_match(record)
            await store.flush()
            rows["end to end"].append(time.perf_counter() - start)

            records = matches(count, f"m{repeat}o", repeat)

            def one_by_one(records: list[MatchRecord] = records) -> None:
                for record in records:
                    engine.transaction(partial(store_one, engine.sql, record))

            rows["one at a time"].append(timed(one_by_one))
    finally:
        await store.close()
    return {name: statistics.median(values) for name, values in rows.items()}


def sqlite_engine(directory: Path) -> Engine:
    path = str(directory / "bench.db")

    def size(conn: sqlite3.Connection) -> int:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages: int = conn.execute("PRAGMA page_count").fetchone()[0]
        page: int = conn.execute("PRAGMA page_size").fetchone()[0]
        return pages * page

    return Engine("SQLite", SqliteDatabase(path, 5.0), SQLITE_SQL, lambda: SqliteStore(path), size)


def postgres_engine(directory: Path) -> tuple[Engine, Any] | None:
    try:
        from game_server.store.postgres import RUN_SQL, PostgresDatabase, PostgresStore
        from tests.support.postgres import start_postgres

        server = start_postgres(directory / "pg", durable=True)
    except BaseException as exc:  # psycopg or PostgreSQL's programs missing (a skip, too)
        print(f"no PostgreSQL ({exc!r}): SQLite only", file=sys.stderr)
        return None
    url = server.create_database("bench")

    def size(conn: Any) -> int:
        conn.execute("CHECKPOINT")
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(c)) FROM unnest("
            "ARRAY['players', 'matches', 'rounds']::regclass[]) AS c"
        ).fetchone()
        return int(row[0])

    engine = Engine("PostgreSQL", PostgresDatabase(url), RUN_SQL, lambda: PostgresStore(url), size)
    return engine, server


def report(count: int, results: dict[str, dict[str, float]], sizes: dict[str, float]) -> str:
    lines = [
        f"{count} matches, median of the runs: ms per run (us per match)",
        f"{'':16}" + "".join(f"{name:>24}" for name in results),
    ]
    for row in ("loop", "thread", "end to end", "one at a time"):
        cells = "".join(
            f"{results[name][row] * 1000:>14.1f} ({results[name][row] / count * 1e6:>6.0f})"
            for name in results
        )
        lines.append(f"{row:16}{cells}")
    cells = "".join(f"{sizes[name] / 1024:>24.2f}" for name in results)
    lines.append(f"{'KB per match':16}{cells}")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matches", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # not stdout
    directory = Path(tempfile.mkdtemp(prefix="rps-store-bench-"))
    engines = [sqlite_engine(directory)]
    found = postgres_engine(directory)
    server = None
    if found is not None:
        engine, server = found
        engines.append(engine)
    results: dict[str, dict[str, float]] = {}
    sizes: dict[str, float] = {}
    try:
        for engine in engines:
            print(f"{engine.name} ...", file=sys.stderr, flush=True)
            results[engine.name] = await measure(engine, args.matches, args.repeats)
            stored = engine.conn.execute("SELECT count(*) FROM matches").fetchone()[0]
            sizes[engine.name] = engine.size(engine.conn) / stored
            engine.database.close(engine.conn)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(report(args.matches, results, sizes))


if __name__ == "__main__":
    asyncio.run(main())

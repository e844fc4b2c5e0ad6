"""What only the SQLite store does: its file, WAL and checkpoints, its migrations, its
failures (a full disk, a failed commit, another process's lock) and its guest sweep.

What every store does, SQLite or PostgreSQL, is in test_shared.py."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from game_server.core.ladder import Board, Period, shown
from game_server.core.ports import StoreUnavailable
from game_server.core.rating import NEW_RATING, Rating
from game_server.store import ladder
from game_server.store import sqlite as storage
from game_server.store.schema import (
    MIGRATIONS,
    PROFILE_ROW,
    migrate,
    player_params,
    split_script,
)
from game_server.store.sqlite import SqliteStore, prune_guests
from tests.store.test_shared import WAIT, hold, loads, player, rated, still_works


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "rps.db"))
    yield opened
    await opened.close()


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two stores on one file, as two server processes would have."""
    path = str(tmp_path / "rps.db")
    here, there = SqliteStore(path), SqliteStore(path)
    yield here, there
    await here.close()
    await there.close()


async def test_wal_lets_another_connection_read_while_open(
    store: SqliteStore, tmp_path: Path
) -> None:
    store.save_player(player("p_1"))
    await store.flush()
    other = sqlite3.connect(tmp_path / "rps.db")
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert other.execute("SELECT id FROM players").fetchall() == [("p_1",)]
    other.close()
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get_player("p_1")


def test_migrations_run_once_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) == len(MIGRATIONS)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    assert migrate(conn) == len(MIGRATIONS)  # idempotent
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        migrate(conn)
    conn.close()


def test_an_unopenable_path_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError):
        SqliteStore(str(tmp_path / "no" / "such" / "dir" / "rps.db"))


async def test_checkpoints_run_beside_the_writer_and_close_leaves_no_log(
    store: SqliteStore, tmp_path: Path
) -> None:
    path = tmp_path / "rps.db"
    store.save_player(player("p_1"))
    await store.flush()

    def in_main_file() -> list[tuple[str]]:
        # immutable=1 reads the database file alone, ignoring the write-ahead log: rows
        # show up there only once a checkpoint has copied them back.
        conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return conn.execute("SELECT id FROM players").fetchall()
        except sqlite3.OperationalError:  # not even the schema has been copied yet
            return []
        finally:
            conn.close()

    for _ in range(60):  # the checkpoint thread runs every second
        if in_main_file() == [("p_1",)]:
            break
        await asyncio.sleep(0.1)
    assert in_main_file() == [("p_1",)]
    await store.close()
    wal = tmp_path / "rps.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


async def test_a_long_log_gets_a_restart_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under steady writes PASSIVE checkpoints never quite catch up, and the log (and its
    index, mapped into memory) grew for as long as the server ran (seen in the 10-minute
    soak); past WAL_RESTART_BYTES the checkpoint thread makes the log start over."""
    monkeypatch.setattr(storage, "CHECKPOINT_SECONDS", 0.02)
    modes: list[str] = []
    log_frames = [10, 10, 5000, 10]  # what successive PASSIVE checkpoints report

    def checkpoint(conn: sqlite3.Connection, mode: str) -> int:
        modes.append(mode)
        if mode != "PASSIVE":
            return 0
        return log_frames.pop(0) if log_frames else 10

    monkeypatch.setattr(SqliteStore, "_checkpoint", staticmethod(checkpoint))
    monkeypatch.setattr(storage, "WAL_RESTART_BYTES", 1000 * 4096)  # 1,000 pages
    store = SqliteStore(str(tmp_path / "rps.db"))
    for _ in range(100):
        if store.restarts:
            break
        await asyncio.sleep(0.02)
    await store.close()
    assert store.restarts == 1
    assert modes[:4] == ["PASSIVE", "PASSIVE", "PASSIVE", "RESTART"]
    assert "RESTART" not in modes[4:]
    assert modes[-1] == "TRUNCATE"


# ---------------------------------------------------------------- failures


async def test_a_full_disk_fails_its_batch_but_not_the_writer(store: SqliteStore) -> None:
    store.save_player(player("p_1"))
    # The database may not grow: SQLite fails the next growing write with "database or
    # disk is full" and rolls the whole transaction back by itself.
    await store.writer.read(lambda conn: conn.execute("PRAGMA max_page_count = 1").fetchone())
    gate = await hold(store)
    store.writer.write(  # a one-row INSERT has no statement journal: the transaction goes
        lambda conn: conn.execute(
            "INSERT INTO players (id, name, created_at, last_seen) VALUES ('p_big', ?, 1, 1)",
            ("x" * 200_000,),
        )
    )
    load = loads(store, "p_1")
    read = asyncio.ensure_future(store.get_player("p_1"))
    await asyncio.sleep(0)  # the task queues its read
    gate.set()
    assert isinstance(await asyncio.wait_for(load, WAIT), StoreUnavailable)
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(read, WAIT)
    assert (store.failures, store.writes_dropped) == (1, 1)
    await still_works(store)  # on a fresh connection, where the disk has room again
    assert await store.get_player("p_big") is None


async def test_a_failed_commit_fails_its_batch_but_not_the_writer(store: SqliteStore) -> None:
    def orphan_round(conn: sqlite3.Connection) -> None:
        # A deferred foreign key fails at COMMIT, which leaves the transaction open.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute("INSERT INTO rounds VALUES ('m_nowhere', 1, NULL, NULL, 'draw')")

    gate = await hold(store)
    store.writer.write(orphan_round)
    store.save_player(player("p_1"))
    read = asyncio.ensure_future(store.get_player("p_1"))
    await asyncio.sleep(0)  # the task queues its read
    gate.set()
    with pytest.raises(StoreUnavailable, match="FOREIGN KEY"):
        await asyncio.wait_for(read, WAIT)
    assert (store.failures, store.writes_dropped) == (1, 2)
    await still_works(store)
    assert await store.get_player("p_1") is None  # it went down with its batch


async def test_a_lock_held_too_long_by_another_process_fails_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "rps.db"
    store = SqliteStore(str(path), busy_timeout=0.1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    gate = await hold(store)
    store.save_player(player("p_1"))
    load = loads(store, "p_1")
    gate.set()
    assert isinstance(await asyncio.wait_for(load, WAIT), StoreUnavailable)
    assert (store.failures, store.writes_dropped) == (1, 1)
    other.execute("COMMIT")
    other.close()
    await still_works(store)
    await store.close()


# ---------------------------------------------------------------- several processes


async def test_a_write_after_a_read_survives_another_process_committing(
    two_processes: tuple[SqliteStore, SqliteStore],
) -> None:
    here, there = two_processes
    their_commits = 0

    def read_then_write(conn: sqlite3.Connection) -> None:
        nonlocal their_commits
        conn.execute("SELECT count(*) FROM players").fetchone()
        # Meanwhile the other process commits a write (if it can get the lock at all).
        there.save_player(player(f"p_there_{their_commits}"))
        their_commits += 1
        with contextlib.suppress(TimeoutError):
            there.writer.submit(lambda conn: None, write=False).result(timeout=0.5)
        conn.execute(
            "INSERT INTO players (id, name, created_at, last_seen) VALUES ('p_here', 'H', 1, 1)"
        )

    await asyncio.wait_for(
        asyncio.wrap_future(here.writer.submit(read_then_write, write=True)), WAIT
    )
    await asyncio.wait_for(there.flush(), WAIT)
    assert await here.get_player("p_here") is not None
    assert await here.get_player("p_there_0") is not None
    assert here.failures == there.failures == 0


def test_two_processes_migrating_a_new_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    other_done: list[int] = []
    other: list[threading.Thread] = []

    class FirstProcess(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            cursor = super().execute(sql, *args)
            if sql == "PRAGMA user_version" and not other:
                # Just after the first process read version 0, a second one starts.
                def second_process() -> None:
                    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
                    other_done.append(migrate(conn))
                    conn.close()

                other.append(threading.Thread(target=second_process))
                other[0].start()
                other[0].join(0.5)  # it either finishes, or waits for our write lock
            return cursor

    first = sqlite3.connect(path, isolation_level=None, timeout=10, factory=FirstProcess)
    assert migrate(first) == len(MIGRATIONS)
    other[0].join(WAIT)
    assert other_done == [len(MIGRATIONS)]
    assert first.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    first.close()


# ---------------------------------------------------------------- unreachable guests


def test_prune_guests_deletes_only_unreachable_guests_in_bounded_batches(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    migrate(conn)
    rows = [
        ("p_old1", None, 0, 10.0),
        ("p_old2", None, 0, 11.0),
        ("p_old3", None, 0, 12.0),
        ("p_played", None, 1, 10.0),  # has a game: on the leaderboard, in matches
        ("p_wechat", "o_1", 0, 10.0),  # can always log in again
        ("p_recent", None, 0, 500.0),  # its token may still be valid
    ]
    conn.executemany(
        "INSERT INTO players (id, name, openid, wins, created_at, last_seen) "
        "VALUES (?, 'X', ?, ?, 1.0, ?)",
        rows,
    )
    plan = " ".join(
        str(row)
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM players INDEXED BY players_idle_guests "
            "WHERE openid IS NULL AND wins + losses + draws = 0 AND last_seen < 100"
        )
    )
    assert "players_idle_guests" in plan
    assert [prune_guests(conn, 100.0, 2) for _ in range(3)] == [2, 1, 0]
    left = {row[0] for row in conn.execute("SELECT id FROM players")}
    assert left == {"p_played", "p_wechat", "p_recent"}
    conn.close()


def test_the_sweep_of_old_matches_reads_them_by_age_not_by_scanning(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn)
    plan = " ".join(
        str(row)
        for row in conn.execute(
            "EXPLAIN QUERY PLAN DELETE FROM matches WHERE id IN ("
            "SELECT id FROM matches WHERE ended_at < 100 ORDER BY ended_at, id LIMIT 10)"
        )
    )
    assert "matches_by_end" in plan
    assert "USE TEMP B-TREE" not in plan  # no sort: the index is in that order
    conn.close()


def test_a_journal_that_cannot_be_wal_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with structlog.testing.capture_logs() as events:
        monkeypatch.setattr(storage, "log", structlog.get_logger("game_server.store.sqlite"))
        # "" is a private temporary database, which SQLite keeps in rollback-journal mode.
        asyncio.run(SqliteStore("").close())
        asyncio.run(SqliteStore(str(tmp_path / "rps.db")).close())
        asyncio.run(SqliteStore(":memory:").close())
    warnings = [e for e in events if e["log_level"] != "info"]
    assert [(e["event"], e["log_level"], e["path"]) for e in warnings] == [
        ("wal_unavailable", "warning", "")
    ]
    assert warnings[0]["journal_mode"] == "delete"


# What a database made before ratings holds (schema version 2): a player who played and a
# match, in the columns of that time.
OLD_PLAYER = (
    "INSERT INTO players (id, name, total_score, win_streak, wins, losses, draws, created_at, "
    "last_seen) VALUES ('p_old', 'Old', 6, 3, 3, 1, 0, 1.0, 2.0)"
)
OLD_MATCH = (
    "INSERT INTO matches (id, player1, name1, bot1, player2, name2, bot2, winner, reason, "
    "best_of, started_at, ended_at) VALUES "
    "('m_old', 'p_old', 'Old', 0, 'bot_1', 'Rocky', 1, 'p_old', 'rounds', 3, 1.0, 2.0)"
)


async def test_a_database_from_before_ratings_is_migrated_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:2]:
        for statement in split_script(step):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(OLD_PLAYER)
    conn.execute(OLD_MATCH)
    conn.close()

    store = SqliteStore(str(path))
    try:
        old = await store.get_player("p_old")
        assert old is not None
        assert (old.stats.total_score, old.stats.wins, old.stats.losses) == (6, 3, 1)
        assert old.rating == NEW_RATING  # rated from now on, as a new player is
        (match,) = await store.recent_matches("p_old", 5)
        assert (match["rating1_before"], match["rating1_after"]) == (None, None)
        assert await store.rating_history("p_old", 50) == []  # no rating to draw
        store.record_match(rated("m_new", old, player("p_foe"), 3.0, (1662.3, 1337.7)))
        assert await store.rating_history("p_old", 50) == [("m_new", 3.0, 1662.3)]
        after = await store.get_player("p_old")
        assert after is not None
        assert (after.stats.total_score, after.rating.rating) == (7, 1662.3)
    finally:
        await store.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    check.close()


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.integers(0, 4), min_size=1, max_size=25),
    limit=st.integers(1, 8),
    pick=st.integers(0, 24),
    by_rating=st.booleans(),
)
def test_a_page_around_any_player_is_the_sorted_boards_slice(
    scores: list[int], limit: int, pick: int, by_rating: bool
) -> None:
    """Against a brute force: the board sorted (value down, id up), the player in the
    middle of its page (or as near as the top and bottom allow), ranks shared by ties."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    migrate(conn)
    for n, score in enumerate(scores):
        record = player(f"p_{n:02d}", total_score=score, wins=1)
        # Ratings a hair apart where shown equal (1600.2 and 1599.6 both show 1600).
        record = attrs.evolve(record, rating=Rating(1500.0 + 50 * score + (n % 3) * 0.3, 90.0))
        params = player_params(record)
        conn.execute(
            f"INSERT INTO players ({', '.join(PROFILE_ROW)}) "
            f"VALUES ({', '.join('?' * len(PROFILE_ROW))})",
            tuple(params[column] for column in PROFILE_ROW),
        )
    board = Board.RATING if by_rating else Board.SCORE

    def value(n: int) -> float:
        return 1500.0 + 50 * scores[n] + (n % 3) * 0.3 if by_rating else scores[n]

    def shown_value(n: int) -> float:
        return shown(value(n)) if by_rating else value(n)

    order = sorted(range(len(scores)), key=lambda n: (-value(n), f"p_{n:02d}"))
    me = order[pick % len(order)]
    at = order.index(me)
    taken = min(at, max((limit - 1) // 2, limit - (len(order) - at)))
    expected = [
        (1 + sum(shown_value(m) > shown_value(n) for m in order), f"p_{n:02d}")
        for n in order[at - taken : at - taken + limit]
    ]

    def query(sql: str, params: Any) -> Any:
        return conn.execute(sql, tuple(params)).fetchall()

    rows = ladder.standings(query, "?", board, Period.ALL, limit, f"p_{me:02d}", 0.0)
    assert rows is not None
    assert [(row.rank, row.player.id) for row in rows] == expected
    top = ladder.standings(query, "?", board, Period.ALL, limit, None, 0.0)
    assert top is not None
    assert [row.player.id for row in top] == [f"p_{n:02d}" for n in order[:limit]]
    conn.close()

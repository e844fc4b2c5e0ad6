"""The SQLite store: migrations, round trips, batching and durability across reopen."""

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

from game_server.core.ports import StoreUnavailable
from game_server.core.records import MatchRecord, PlayerRecord, PlayerResult, RoundRow, SeatRow
from game_server.core.scoring import STAT_FIELDS, PlayerStats
from game_server.store import batching, schema, writer
from game_server.store import sqlite as storage
from game_server.store.batching import insert_matches
from game_server.store.schema import MIGRATIONS, migrate
from game_server.store.sqlite import SqliteStore, prune_guests

WAIT = 10.0  # a store that has stopped answering fails the test instead of hanging it


def player(pid: str, **fields: Any) -> PlayerRecord:
    """A record; the stats fields (``wins=3``) go into its ``stats``."""
    stats = PlayerStats(**{name: fields.pop(name) for name in STAT_FIELDS if name in fields})
    base: dict[str, Any] = {"name": pid.upper(), "created_at": 1.0, "last_seen": 2.0}
    return PlayerRecord(id=pid, stats=stats, **{**base, **fields})


def match(mid: str, a: PlayerRecord, b: PlayerRecord, ended: float) -> MatchRecord:
    return MatchRecord(
        id=mid,
        seats=(SeatRow(a.id, a.name, False), SeatRow(b.id, b.name, False)),
        winner=a.id,
        reason="rounds",
        best_of=3,
        started_at=ended - 10,
        ended_at=ended,
        rounds=(RoundRow(1, ("rock", "scissors"), "win"), RoundRow(2, ("paper", None), "win")),
        players=(a, b),
    )


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


async def test_players_round_trip_and_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "rps.db")
    store = SqliteStore(path)
    record = player("p_1", avatar="https://a/b.png", openid="o1", total_score=7, wins=3)
    store.save_player(record)
    assert await store.get_player("p_1") == record
    assert await store.find_by_openid("o1") == record
    assert await store.find_by_openid("o2") is None
    store.save_player(player("p_1", name="Renamed", total_score=9, last_seen=5.0))
    await store.close()

    reopened = SqliteStore(path)
    got = await reopened.get_player("p_1")
    assert got is not None
    # An update keeps the WeChat identity it does not mention, and the creation time; the
    # totals move only by matches' increments (a stale copy must not overwrite them).
    assert (got.name, got.stats.total_score, got.openid, got.created_at, got.last_seen) == (
        "Renamed",
        7,
        "o1",
        1.0,
        5.0,
    )
    await reopened.close()


async def test_load_player_answers_on_the_event_loop(store: SqliteStore) -> None:
    store.save_player(player("p_1"))
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[PlayerRecord | None] = asyncio.Queue()

    def done(record: PlayerRecord | None) -> None:
        assert asyncio.get_running_loop() is loop  # called on the loop, not the thread
        answers.put_nowait(record)

    store.load_player("p_1", done)
    store.load_player("p_missing", done)
    first, second = await answers.get(), await answers.get()
    assert first is not None
    assert first.id == "p_1"
    assert second is None
    await store.close()


async def test_a_finished_match_stores_rounds_and_totals_together(store: SqliteStore) -> None:
    a, b = player("p_a", total_score=1, wins=1), player("p_b", losses=1)
    store.record_match(match("m_1", a, b, ended=100.0))
    store.record_match(match("m_2", b, a, ended=200.0))
    recent = await store.recent_matches("p_a", limit=10)
    assert [m["id"] for m in recent] == ["m_2", "m_1"]  # newest first
    assert recent[1]["rounds"] == [
        {"round": 1, "choice1": "rock", "choice2": "scissors", "outcome": "win"},
        {"round": 2, "choice1": "paper", "choice2": None, "outcome": "win"},
    ]
    assert await store.recent_matches("p_a", limit=1) == recent[:1]
    stored = await store.get_player("p_a")
    assert stored is not None
    assert (stored.stats.total_score, stored.stats.wins) == (1, 1)
    await store.close()


async def test_a_run_of_matches_in_one_batch_adds_up_in_order(store: SqliteStore) -> None:
    """341 matches in one hand-off: bulk statements of every chunk size, one player in
    all of them, renamed halfway; every match, round and result lands once, in order."""
    count = 341  # 256 + 64 + 16 + 4 + 1: one chunk of each size
    store.save_player(player("p_ann"))
    for n in range(count):
        if n == 200:
            store.save_player(player("p_ann", name="Ann", last_seen=3.0))
        ann = player("p_ann", name="Ann" if n >= 200 else "P_ANN", last_seen=4.0 + n)
        foe = player(f"p_foe{n}")
        won = (PlayerResult("p_ann", "win", n + 1), PlayerResult(foe.id, "lose"))
        store.record_match(attrs.evolve(match(f"m_{n:03d}", ann, foe, 10.0 + n), results=won))
    await store.flush()
    stored = await store.get_player("p_ann")
    assert stored is not None
    assert (stored.stats.wins, stored.stats.win_streak) == (count, count)
    assert stored.stats.total_score == sum(range(1, count + 1))
    assert (stored.name, stored.last_seen) == ("Ann", 4.0 + count - 1)
    recent = await store.recent_matches("p_ann", limit=count + 1)
    assert [m["id"] for m in recent] == [f"m_{n:03d}" for n in reversed(range(count))]
    assert all(len(m["rounds"]) == 2 for m in recent)
    assert await store.get_player(f"p_foe{count - 1}") is not None


async def test_a_failing_write_is_rolled_back_alone(store: SqliteStore) -> None:
    a, b = player("p_a"), player("p_b")
    store.record_match(match("m_1", a, b, ended=1.0))
    # Same id again: the insert fails; its player updates must not land either.
    store.record_match(match("m_1", player("p_a", total_score=99), b, ended=2.0))
    store.save_player(player("p_c"))  # queued in the same batch: still committed
    await store.flush()
    stored = await store.get_player("p_a")
    assert stored is not None
    assert stored.stats.total_score == 0
    assert await store.get_player("p_c") is not None
    await store.close()


async def test_leaderboard_ranks_players_who_played(store: SqliteStore) -> None:
    store.save_player(player("p_idle", total_score=0))
    store.save_player(player("p_low", total_score=1, wins=1))
    store.save_player(player("p_top", total_score=6, wins=3))
    store.save_player(player("p_mid", total_score=3, wins=2, losses=4))
    board = await store.leaderboard(limit=10)
    assert [p.id for p in board] == ["p_top", "p_mid", "p_low"]
    assert [p.id for p in await store.leaderboard(limit=2)] == ["p_top", "p_mid"]
    await store.close()


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


async def hold(store: SqliteStore) -> threading.Event:
    """Keep the writer thread busy until the returned event is set, so that everything
    queued meanwhile runs as one batch (one transaction)."""
    started, gate = threading.Event(), threading.Event()

    def wait(conn: sqlite3.Connection) -> None:
        started.set()
        gate.wait(WAIT)

    store.writer.submit(wait, write=False)
    assert await asyncio.to_thread(started.wait, WAIT)
    return gate


def loads(store: SqliteStore, player_id: str) -> asyncio.Future[Any]:
    """``load_player`` as a future of what it hands to its callback."""
    answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    store.load_player(player_id, answer.set_result)
    return answer


async def still_works(store: SqliteStore) -> None:
    store.save_player(player("p_after"))
    got = await asyncio.wait_for(store.get_player("p_after"), WAIT)
    assert got is not None
    assert got.id == "p_after"


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


async def test_a_reader_that_gave_up_does_not_stop_the_writer(store: SqliteStore) -> None:
    gate = await hold(store)
    with pytest.raises(TimeoutError):
        # The HTTP handler is cancelled (its client went away) before the answer comes.
        await asyncio.wait_for(store.get_player("p_1"), 0.05)
    gate.set()
    await still_works(store)
    assert store.failures == 0


async def test_writes_made_on_the_loop_reach_the_writer_together(store: SqliteStore) -> None:
    await store.flush()
    before = store.writer.batches
    for n in range(200):  # a busy moment: many matches finishing within a few turns
        store.save_player(player(f"p_{n:03d}"))
        if n % 20 == 0:
            await asyncio.sleep(0)
    assert store.backlog == 200  # gathered on the loop: the writer was not woken per write
    await asyncio.sleep(writer.HANDOFF_SECONDS * 2)  # handed over without a read asking
    assert store.backlog == 0
    await store.flush()
    assert store.writer.batches - before <= 2  # one transaction for all (plus the flush's own)
    assert await store.get_player("p_199") is not None


async def test_a_read_sees_the_writes_made_before_it(store: SqliteStore) -> None:
    store.save_player(player("p_new"))
    assert await store.get_player("p_new") is not None  # no wait for the hand-off timer


async def test_the_backlog_is_bounded_while_the_writer_is_stuck(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "rps.db"), backlog_max=10)
    gate = await hold(store)
    for n in range(25):
        store.save_player(player(f"p_{n:02d}"))
    assert store.backlog == 10
    assert store.writes_dropped == 15
    gate.set()
    await store.flush()
    assert await store.get_player("p_09") is not None
    assert await store.get_player("p_10") is None
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


async def test_match_results_from_two_processes_add_up(
    two_processes: tuple[SqliteStore, SqliteStore],
) -> None:
    here, there = two_processes
    ann, bob = player("p_ann"), player("p_bob")
    here.save_player(ann)
    here.save_player(bob)
    await here.flush()
    # Both processes loaded Ann with no wins; each sees her win once and her new totals
    # in its own (now stale) copy: streak 1, total 1, one win.
    after = player("p_ann", total_score=1, win_streak=1, wins=1)
    lost = player("p_bob", losses=1)
    won = (PlayerResult("p_ann", "win", 1), PlayerResult("p_bob", "lose"))
    for store, mid in ((here, "m_here"), (there, "m_there")):
        store.record_match(attrs.evolve(match(mid, after, lost, 10.0), results=won))
        await store.flush()
    there.save_player(ann)  # a stale copy saved at a disconnect: totals untouched
    await there.flush()
    stored = await here.get_player("p_ann")
    assert stored is not None
    assert (stored.stats.wins, stored.stats.win_streak, stored.stats.total_score) == (2, 2, 2)
    beaten = await here.get_player("p_bob")
    assert beaten is not None
    assert (beaten.stats.losses, beaten.stats.win_streak) == (2, 0)
    # A draw counts once and keeps the streak; a loss ends it.
    drawn = (PlayerResult("p_ann", "draw"), PlayerResult("p_bob", "draw"))
    there.record_match(attrs.evolve(match("m_draw", ann, bob, 11.0), winner=None, results=drawn))
    await there.flush()
    stored = await here.get_player("p_ann")
    assert stored is not None
    assert (stored.stats.draws, stored.stats.win_streak, stored.stats.total_score) == (1, 2, 2)


async def test_a_new_wechat_user_made_by_two_processes_at_once_is_one_player(
    two_processes: tuple[SqliteStore, SqliteStore],
) -> None:
    here, there = two_processes
    first = await here.claim_openid(player("p_here", openid="o_wei", name="Wei"))
    second = await there.claim_openid(player("p_there", openid="o_wei"))
    assert first.id == second.id == "p_here"
    assert second.name == "Wei"
    assert await there.claim_openid(player("p_again", openid="o_wei")) == first


async def test_a_duplicate_openid_from_another_process_never_fails_a_match(
    two_processes: tuple[SqliteStore, SqliteStore],
) -> None:
    here, there = two_processes
    here.save_player(player("p_here", openid="o_wei"))
    await here.flush()
    # The other process made its own player for the same WeChat user meanwhile.
    twin = player("p_there", openid="o_wei", total_score=1, win_streak=1, wins=1)
    there.save_player(player("p_there"))  # the guest row it starts as, then the openid
    there.save_player(twin)
    there.record_match(
        attrs.evolve(
            match("m_1", twin, player("p_bob", losses=1), 10.0),
            results=(PlayerResult("p_there", "win", 1), PlayerResult("p_bob", "lose")),
        )
    )
    await there.flush()
    assert there.failures == 0
    assert [m["id"] for m in await there.recent_matches("p_there", 5)] == ["m_1"]
    stored = await there.get_player("p_there")
    assert stored is not None
    assert (stored.stats.wins, stored.openid) == (1, None)  # the openid stays with the first
    found = await there.find_by_openid("o_wei")
    assert found is not None
    assert found.id == "p_here"


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


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_the_store_sweeps_unreachable_guests_at_start_and_hourly(tmp_path: Path) -> None:
    path = str(tmp_path / "rps.db")
    clock = Clock(10_000.0)
    first = SqliteStore(path)  # keeps everyone
    first.save_player(player("p_gone", created_at=1.0, last_seen=1_000.0))
    first.save_player(player("p_fresh", created_at=1.0, last_seen=9_950.0))
    first.save_player(player("p_played", wins=1, last_seen=1_000.0))
    await first.close()

    store = SqliteStore(path, guest_ttl=100.0, clock=clock)
    await store.flush()
    assert await store.get_player("p_gone") is None  # swept at start-up
    assert await store.get_player("p_played") is not None
    assert store.pruned == 1
    clock.now += 60  # p_fresh is now past the lifetime, but the next sweep is an hour away
    await store.flush()
    assert await store.get_player("p_fresh") is not None
    clock.now += 3600
    await store.flush()
    assert await store.get_player("p_fresh") is None
    assert await store.get_player("p_played") is not None
    assert store.pruned == 2
    await store.close()


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


# ---------------------------------------------------------------- bulk writes


# What a finished match means for one player, alone: its profile as save_player writes
# it, and the match's result added to the stored totals (a new row takes the profile's).
RECORD_PLAYER = (
    storage.SAVE_PLAYER
    + """,
        total_score = total_score + :points,
        wins = wins + :won, losses = losses + :lost, draws = draws + :drawn,
        win_streak = CASE :outcome WHEN 'win' THEN win_streak + 1
            WHEN 'lose' THEN 0 ELSE win_streak END
"""
)


def _one_by_one(conn: sqlite3.Connection, records: list[MatchRecord]) -> None:
    """The meaning of a run of matches: each match and each of its players in turn."""
    for record in records:
        conn.execute(
            "INSERT INTO matches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            batching.match_row(record),
        )
        for r in record.rounds:
            conn.execute(
                "INSERT INTO rounds VALUES (?, ?, ?, ?, ?)",
                (record.id, r.round, *r.choices, r.outcome),
            )
        results = {result.player_id: result for result in record.results}
        for p in record.players:
            params = schema.player_params(p)
            result = results[p.id]
            params.update(
                outcome=result.outcome,
                points=result.points,
                won=int(result.outcome == "win"),
                lost=int(result.outcome == "lose"),
                drawn=int(result.outcome == "draw"),
            )
            conn.execute(RECORD_PLAYER, params)


@settings(max_examples=60, deadline=None)
@given(
    games=st.lists(
        st.tuples(
            st.sampled_from(["p_a", "p_b", "p_c", "p_d"]),
            st.sampled_from(["p_a", "p_b", "p_c", "p_d"]),
            st.sampled_from(["win", "lose", "draw"]),
            st.integers(0, 9),
        ).filter(lambda game: game[0] != game[1]),
        max_size=40,
    ),
    stored=st.sets(st.sampled_from(["p_a", "p_b", "p_c", "p_d"])),
)
def test_a_bulk_run_of_matches_equals_its_matches_one_by_one(
    games: list[tuple[str, str, str, int]], stored: set[str]
) -> None:
    """Whatever the mix of new and stored players, wins, losses, draws and repeats."""
    live = {f"p_{pid}": player(f"p_{pid}", total_score=3, win_streak=2, wins=5) for pid in "abcd"}
    records = []
    for n, (first, second, outcome, points) in enumerate(games):
        mirrored = {"win": "lose", "lose": "win", "draw": "draw"}[outcome]
        results = (
            PlayerResult(first, outcome, points if outcome == "win" else 0),
            PlayerResult(second, mirrored, points if mirrored == "win" else 0),
        )
        for pid, result in zip((first, second), results, strict=True):  # the live copy
            old = live[pid]
            live[pid] = attrs.evolve(
                old,
                name=f"{pid} after {n}",
                last_seen=float(n),
                stats=PlayerStats(
                    total_score=old.stats.total_score + result.points,
                    wins=old.stats.wins + (result.outcome == "win"),
                    losses=old.stats.losses + (result.outcome == "lose"),
                    draws=old.stats.draws + (result.outcome == "draw"),
                    win_streak={"win": old.stats.win_streak + 1, "lose": 0}.get(
                        result.outcome, old.stats.win_streak
                    ),
                ),
            )
        base = match(f"m_{n}", live[first], live[second], float(n))
        records.append(attrs.evolve(base, results=results))
    tables = []
    for write in (insert_matches, _one_by_one):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        migrate(conn)
        for pid in sorted(stored):  # rows that exist before the run
            conn.execute(storage.SAVE_PLAYER, schema.player_params(player(pid, wins=1)))
        write(conn, records)
        tables.append(
            (
                conn.execute("SELECT * FROM players ORDER BY id").fetchall(),
                conn.execute("SELECT * FROM matches ORDER BY id").fetchall(),
                conn.execute("SELECT * FROM rounds ORDER BY match_id, round").fetchall(),
            )
        )
        conn.close()
    assert tables[0] == tables[1]

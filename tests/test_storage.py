"""The SQLite store: migrations, round trips, batching and durability across reopen."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from game_server.records import MatchRecord, PlayerRecord, RoundRow, SeatRow
from game_server.storage import MIGRATIONS, SqliteStore, migrate


def player(pid: str, **fields: object) -> PlayerRecord:
    base: dict[str, object] = {"name": pid.upper(), "created_at": 1.0, "last_seen": 2.0}
    return PlayerRecord(id=pid, **{**base, **fields})  # type: ignore[arg-type]


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
    # An update keeps the WeChat identity it does not mention, and the creation time.
    assert (got.name, got.total_score, got.openid, got.created_at, got.last_seen) == (
        "Renamed",
        9,
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
    assert (stored.total_score, stored.wins) == (1, 1)
    await store.close()


async def test_a_failing_write_is_rolled_back_alone(store: SqliteStore) -> None:
    a, b = player("p_a"), player("p_b")
    store.record_match(match("m_1", a, b, ended=1.0))
    # Same id again: the insert fails; its player updates must not land either.
    store.record_match(match("m_1", player("p_a", total_score=99), b, ended=2.0))
    store.save_player(player("p_c"))  # queued in the same batch: still committed
    await store.flush()
    stored = await store.get_player("p_a")
    assert stored is not None
    assert stored.total_score == 0
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

"""What only the PostgreSQL store does: a server that stops and comes back, write batches
of several nodes taking turns, migrations raced by several nodes, and the same answers as SQLite.

Everything that runs PostgreSQL is marked ``system``; the rest needs no server.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest

from game_server.cli.assembly import open_store
from game_server.config import ServerConfig
from game_server.core.ports import StoreUnavailable
from game_server.core.rating import NEW_RATING
from game_server.core.records import PlayerResult
from game_server.store.base import ThreadedStore
from game_server.store.sqlite import SqliteStore
from tests.store.test_shared import WAIT, match, player, rated, still_works, won
from tests.support.postgres import PostgresServer
from tests.support.waiting import until_blocking

ROOT = Path(__file__).resolve().parents[2]


def test_url_parameters_override_the_connection_defaults() -> None:
    from game_server.store.postgres import connection_string

    plain = connection_string("postgresql://rps@db:5432/rps")
    assert "keepalives=1" in plain
    assert "keepalives_idle=30" in plain
    assert "connect_timeout=5" in plain
    assert "host=db" in plain
    tuned = connection_string("postgres://rps@db/rps?keepalives_idle=5&connect_timeout=1")
    assert "keepalives_idle=5" in tuned
    assert "connect_timeout=1" in tuned
    assert "keepalives_idle=30" not in tuned


def test_a_sqlite_server_never_imports_psycopg(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from game_server.cli.assembly import open_store\n"
        "from game_server.config import ServerConfig\n"
        "async def main():\n"
        f"    store = await open_store(ServerConfig(db={str(tmp_path / 'rps.db')!r}))\n"
        "    await store.close()\n"
        "    return type(store).__name__\n"
        "name = asyncio.run(main())\n"
        "print('RESULT', name, 'psycopg' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.splitlines()[-1] == "RESULT SqliteStore False"


@pytest.mark.system
async def test_open_store_takes_either_scheme_to_postgresql(postgres_url: str) -> None:
    from game_server.store.postgres import PostgresStore

    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = await open_store(ServerConfig(db=url))
        assert isinstance(store, PostgresStore)
        store.save_player(player("p_1"))
        assert await store.get_player("p_1") is not None
        await store.close()


@pytest.mark.system
async def test_a_server_that_stops_and_comes_back(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """While PostgreSQL is down, batches fail (reads raise StoreUnavailable, writes are
    counted as lost) and nothing hangs; once it is back, the store goes on by itself."""
    from game_server.store.postgres import PostgresStore

    store = PostgresStore(postgres_url)
    try:
        store.save_player(player("p_before"))
        await store.flush()
        postgres_server.stop()
        try:
            store.save_player(player("p_lost"))
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(store.get_player("p_before"), WAIT)
            with pytest.raises(StoreUnavailable):  # cannot connect: that batch fails too
                await asyncio.wait_for(store.get_player("p_before"), WAIT)
            assert store.failures >= 2  # the write may have failed in a batch of its own
            assert store.writes_dropped == 1
        finally:
            postgres_server.restart()
        await still_works(store)
        assert await store.get_player("p_before") is not None
        assert await store.get_player("p_lost") is None
    finally:
        await store.close()


def write_lock_holders(url: str, *, granted: bool) -> int:
    """Transactions holding (``granted``) or waiting for the stores' write lock."""
    import psycopg

    from game_server.store.postgres import WRITE_LOCK

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objid::text::bigint = %s AND granted = %s",
            (WRITE_LOCK, granted),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.system
async def test_two_stores_writing_rows_in_opposite_orders_take_turns(postgres_url: str) -> None:
    """Two nodes' batches take two players' rows in opposite orders. Without the write
    lock each would hold one row and wait for the other's: a deadlock PostgreSQL breaks
    only after a second, by failing one batch (whose retry, write by write, could meet
    the next batch the same way). With it, the second batch waits for the first to
    commit, and both go through whole: no failure, no retry."""
    from game_server.store.postgres import PostgresStore

    here, there = PostgresStore(postgres_url), PostgresStore(postgres_url)
    try:
        for pid in ("p_x", "p_y"):
            here.save_player(player(pid))
        await here.flush()

        def add_win(pid: str) -> Any:
            return lambda conn: conn.execute(
                "UPDATE players SET wins = wins + 1 WHERE id = %s", (pid,)
            )

        def until_the_other_waits(conn: Any) -> None:
            # ``here`` holds p_x's row; ``there`` has begun, and waits for the lock.
            until_blocking(lambda: write_lock_holders(postgres_url, granted=False) == 1, WAIT)

        here.writer.write(add_win("p_x"))
        here.writer.write(until_the_other_waits)
        here.writer.write(add_win("p_y"))
        here.writer.hand_over()
        await asyncio.to_thread(
            until_blocking, lambda: write_lock_holders(postgres_url, granted=True), WAIT
        )
        there.writer.write(add_win("p_y"))
        there.writer.write(add_win("p_x"))
        there.writer.hand_over()
        await asyncio.wait_for(asyncio.gather(here.flush(), there.flush()), WAIT)
        for pid in ("p_x", "p_y"):
            stored = await here.get_player(pid)
            assert stored is not None
            assert stored.stats.wins == 2  # both batches' writes
        assert here.writer.retries == there.writer.retries == 0
        assert here.failures == there.failures == 0
        assert here.writes_dropped == there.writes_dropped == 0
        # Reads take no lock: while one store's write batch holds it, the other reads.
        release = threading.Event()
        here.writer.write(lambda conn: release.wait(WAIT))
        here.writer.hand_over()
        await asyncio.to_thread(
            until_blocking, lambda: write_lock_holders(postgres_url, granted=True), WAIT
        )
        try:
            seen = await asyncio.wait_for(there.get_player("p_y"), WAIT / 2)
            assert seen is not None
            assert seen.stats.wins == 2
        finally:
            release.set()
        await here.flush()
    finally:
        await here.close()
        await there.close()


@pytest.mark.system
def test_six_nodes_migrating_a_new_database_at_once(postgres_url: str) -> None:
    import psycopg

    from game_server.store.postgres import MIGRATIONS, PostgresStore

    start = threading.Barrier(6, timeout=WAIT)
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def node() -> None:
        start.wait()
        try:
            stores.append(PostgresStore(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=node) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert errors == []
    assert len(stores) == 6
    for store in stores:
        asyncio.run(store.close())
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        versions = conn.execute("SELECT version FROM rps_schema_migrations ORDER BY 1").fetchall()
        assert versions == [(n + 1,) for n in range(len(MIGRATIONS))]
        conn.execute("INSERT INTO rps_schema_migrations (version) VALUES (%s)", (99,))
    with pytest.raises(RuntimeError, match="newer"):
        PostgresStore(postgres_url)


async def _history(store: ThreadedStore[Any]) -> list[str]:
    """The same writes and questions for any store; the answers, types included."""
    ann = player("p_ann", openid="o_ann", avatar="https://a/ann.png")
    bob, cid = player("p_bob"), player("p_Cid")
    for record in (ann, bob, cid, player("p_idle")):
        store.save_player(record)
    ann1 = player("p_ann", openid="o_ann", total_score=3, win_streak=1, wins=1, last_seen=9.5)
    store.record_match(won("m_1", ann1, player("p_bob", losses=1), 10.0, points=3))
    draw = (PlayerResult("p_bob", "draw"), PlayerResult("p_Cid", "draw"))
    bob2, cid1 = player("p_bob", losses=1, draws=1), player("p_Cid", draws=1)
    store.record_match(attrs.evolve(match("m_2", bob2, cid1, 10.0), winner=None, results=draw))
    cid2 = player("p_Cid", total_score=3, win_streak=1, wins=1, draws=1)
    store.record_match(won("m_3", cid2, player("p_bob", losses=2, draws=1), 10.0, points=3))
    store.record_match(won("m_1", ann1, player("p_bob", losses=1), 10.0, points=3))  # again
    bot = attrs.evolve(match("m_4", ann1, player("b_house"), 12.5), reason="forfeit")
    ann2 = attrs.evolve(ann1, stats=attrs.evolve(ann1.stats, wins=2, win_streak=2))
    alone = (PlayerResult("p_ann", "win", 0),)
    store.record_match(attrs.evolve(bot, players=(ann2,), results=alone))  # a bot has no row
    store.record_match(rated("m_5", ann2, cid2, 20.0, (1512.25, 1487.75)))
    claimed = await store.claim_openid(player("p_new", openid="o_new"))
    again = await store.claim_openid(player("p_other", openid="o_ann"))
    return [
        repr(answer)
        for answer in (
            claimed,
            again,
            await store.get_player("p_ann"),
            await store.get_player("p_bob"),
            await store.get_player("p_nobody"),
            await store.find_by_openid("o_ann"),
            await store.leaderboard(10),
            await store.leaderboard(1),
            await store.recent_matches("p_bob", 10),
            await store.recent_matches("p_ann", 1),
            await store.recent_matches("b_house", 10),
            await store.rating_history("p_ann", 50),
            await store.rating_history("p_Cid", 1),
        )
    ]


@pytest.mark.system
async def test_the_same_history_gives_the_same_answers_on_both_engines(
    postgres_url: str, tmp_path: Path
) -> None:
    from game_server.store.postgres import PostgresStore

    answers = []
    for store in (SqliteStore(str(tmp_path / "rps.db")), PostgresStore(postgres_url)):
        try:
            answers.append(await _history(store))
        finally:
            await store.close()
    sqlite, postgres = answers
    assert "m_3" in sqlite[-5]  # the history is what it says
    assert "'bot1': 0" in sqlite[-5]
    assert sqlite[-2] == "[('m_5', 20.0, 1512.25)]"
    assert sqlite[-1] == "[('m_5', 20.0, 1487.75)]"
    for asked, (a, b) in enumerate(zip(sqlite, postgres, strict=True)):
        assert a == b, f"answer {asked} differs"


@pytest.mark.system
async def test_a_database_from_before_ratings_is_migrated_and_loses_nothing(
    postgres_url: str,
) -> None:
    import psycopg

    from game_server.store.postgres import MIGRATIONS, PostgresStore
    from tests.store.test_storage import OLD_MATCH, OLD_PLAYER

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE rps_schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(MIGRATIONS[0])
        conn.execute("INSERT INTO rps_schema_migrations (version) VALUES (1)")
        conn.execute(OLD_PLAYER)
        conn.execute(OLD_MATCH)

    store = PostgresStore(postgres_url)
    try:
        old = await store.get_player("p_old")
        assert old is not None
        assert (old.stats.total_score, old.stats.wins, old.stats.losses) == (6, 3, 1)
        assert old.rating == NEW_RATING
        (stored,) = await store.recent_matches("p_old", 5)
        assert (stored["rating1_before"], stored["rating1_after"]) == (None, None)
        assert await store.rating_history("p_old", 50) == []
        store.record_match(rated("m_new", old, player("p_foe"), 3.0, (1662.3, 1337.7)))
        assert await store.rating_history("p_old", 50) == [("m_new", 3.0, 1662.3)]
        after = await store.get_player("p_old")
        assert after is not None
        assert (after.stats.total_score, after.rating.rating) == (7, 1662.3)
    finally:
        await store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        versions = conn.execute("SELECT version FROM rps_schema_migrations ORDER BY 1").fetchall()
    assert versions == [(n + 1,) for n in range(len(MIGRATIONS))]

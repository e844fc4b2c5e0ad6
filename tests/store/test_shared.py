"""One storage suite, run over SQLite and a real PostgreSQL: what ``Storage`` promises,
whichever engine keeps it.

The PostgreSQL case is marked ``system`` (it runs a real server), so ``python3 dev.py
test --fast`` needs no database server.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game_server.core.ladder import UTC8, Board, Period, period_keys
from game_server.core.ports import StoreUnavailable
from game_server.core.rating import NEW_RATING, Rating
from game_server.core.records import (
    MatchRecord,
    Picture,
    PlayerRecord,
    PlayerResult,
    RoundRow,
    SeatRow,
)
from game_server.core.scoring import STAT_FIELDS, PlayerStats
from game_server.store import batching, schema
from game_server.store.base import ThreadedStore
from game_server.store.schema import PLAYER_COLUMNS, PROFILE_ROW
from game_server.store.sqlite import SqliteStore

WAIT = 10.0  # a store that has stopped answering fails the test instead of hanging it
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.system)]

Store = ThreadedStore[Any]


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


def won(
    mid: str, winner: PlayerRecord, loser: PlayerRecord, ended: float, points: int = 1
) -> MatchRecord:
    """A match ``winner`` won, with both players' results."""
    results = (PlayerResult(winner.id, "win", points), PlayerResult(loser.id, "lose"))
    return attrs.evolve(match(mid, winner, loser, ended), results=results)


@attrs.define
class Engine:
    """Stores on one database of an engine (several, as several processes would have)."""

    name: str
    location: str  # a SQLite path or a postgresql:// URL
    opened: list[Store] = attrs.Factory(list)

    def open(self, **options: Any) -> Store:
        store: Store
        if self.name == "sqlite":
            store = SqliteStore(self.location, **options)
        else:
            from game_server.store.postgres import PostgresStore

            store = PostgresStore(self.location, **options)
        self.opened.append(store)
        return store


@pytest.fixture(params=ENGINES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    if request.param == "sqlite":
        location = str(tmp_path / "rps.db")
    else:
        location = request.getfixturevalue("postgres_url")
    opened = Engine(request.param, location)
    yield opened
    for store in opened.opened:
        await store.close()


@pytest.fixture
def store(engine: Engine) -> Store:
    return engine.open()


@pytest.fixture
def two_processes(engine: Engine) -> tuple[Store, Store]:
    """Two stores on one database, as two server processes would have."""
    return engine.open(), engine.open()


async def hold(store: Store) -> threading.Event:
    """Keep the writer thread busy until the returned event is set, so that everything
    queued meanwhile runs as one batch (one transaction)."""
    started, gate = threading.Event(), threading.Event()

    def wait(conn: Any) -> None:
        started.set()
        gate.wait(WAIT)

    store.writer.submit(wait, write=False)
    assert await asyncio.to_thread(started.wait, WAIT)
    return gate


def loads(store: Store, player_id: str) -> asyncio.Future[Any]:
    """``load_player`` as a future of what it hands to its callback."""
    answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    store.load_player(player_id, answer.set_result)
    return answer


async def still_works(store: Store) -> None:
    store.save_player(player("p_after"))
    got = await asyncio.wait_for(store.get_player("p_after"), WAIT)
    assert got is not None
    assert got.id == "p_after"


# ---------------------------------------------------------------- round trips


async def test_players_round_trip_and_survive_reopening(engine: Engine) -> None:
    store = engine.open()
    record = player("p_1", avatar="https://a/b.png", openid="o1", total_score=7, wins=3)
    store.save_player(record)
    assert await store.get_player("p_1") == record
    assert await store.find_by_openid("o1") == record
    assert await store.find_by_openid("o2") is None
    store.save_player(player("p_1", name="Renamed", total_score=9, last_seen=5.0))
    await store.close()

    reopened = engine.open()
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
    # An older copy saved late does not move last_seen back.
    reopened.save_player(player("p_1", name="Renamed", last_seen=3.0))
    got = await reopened.get_player("p_1")
    assert got is not None
    assert got.last_seen == 5.0


async def test_an_avatar_is_kept_once_and_read_from_every_process(
    two_processes: tuple[Store, Store],
) -> None:
    here, there = two_processes
    here.save_player(player("p_ann"))
    data = bytes(range(256)) * 40  # every byte value: the picture comes back byte for byte
    picture = Picture("a" * 32, "image/jpeg", data, "p_ann", 5.0)
    url = "https://game.example.com/applet/avatars/" + "a" * 32
    assert await here.store_avatar(picture, "p_ann", url) is True
    # Committed when it returns: the other process reads it at once.
    assert await there.get_avatar("a" * 32) == picture
    stored = await there.get_player("p_ann")
    assert stored is not None
    assert stored.avatar == url
    # The same picture again (another player uploaded the same bytes): kept once, as first.
    again = attrs.evolve(picture, uploaded_by="p_bob", created_at=9.0)
    assert await there.store_avatar(again, "p_bob", url) is False  # no such stored player
    assert await here.get_avatar("a" * 32) == picture
    assert await here.get_avatar("b" * 32) is None
    assert await there.get_player("p_bob") is None


async def test_load_player_answers_on_the_event_loop(store: Store) -> None:
    store.save_player(player("p_1"))
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[PlayerRecord | StoreUnavailable | None] = asyncio.Queue()

    def done(record: PlayerRecord | StoreUnavailable | None) -> None:
        assert asyncio.get_running_loop() is loop  # called on the loop, not the thread
        answers.put_nowait(record)

    store.load_player("p_1", done)
    store.load_player("p_missing", done)
    first, second = await answers.get(), await answers.get()
    assert isinstance(first, PlayerRecord)
    assert first.id == "p_1"
    assert second is None


async def test_a_finished_match_stores_rounds_and_totals_together(store: Store) -> None:
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
    assert await store.recent_matches("p_nobody", limit=5) == []
    stored = await store.get_player("p_a")
    assert stored is not None
    assert (stored.stats.total_score, stored.stats.wins) == (1, 1)


async def test_recent_matches_that_ended_together_come_newest_id_first(store: Store) -> None:
    a, b = player("p_a"), player("p_b")
    for mid in ("m_b", "m_c", "m_a"):
        store.record_match(match(mid, a, b, ended=50.0))
    store.record_match(match("m_old", a, b, ended=10.0))
    assert [m["id"] for m in await store.recent_matches("p_b", limit=10)] == [
        "m_c",
        "m_b",
        "m_a",
        "m_old",
    ]
    assert [m["id"] for m in await store.recent_matches("p_a", limit=2)] == ["m_c", "m_b"]


async def test_a_run_of_matches_in_one_batch_adds_up_in_order(store: Store) -> None:
    """341 matches in one hand-off, one player in all of them, renamed halfway; every
    match, round and result lands once, in order."""
    count = 341
    store.save_player(player("p_ann"))
    for n in range(count):
        if n == 200:
            store.save_player(player("p_ann", name="Ann", last_seen=3.0))
        ann = player("p_ann", name="Ann" if n >= 200 else "P_ANN", last_seen=4.0 + n)
        foe = player(f"p_foe{n}")
        results = (PlayerResult("p_ann", "win", n + 1), PlayerResult(foe.id, "lose"))
        store.record_match(attrs.evolve(match(f"m_{n:03d}", ann, foe, 10.0 + n), results=results))
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


def rated(
    mid: str, winner: PlayerRecord, loser: PlayerRecord, ended: float, after: tuple[float, float]
) -> MatchRecord:
    """``winner`` beat ``loser``; their ratings move from their records' to ``after``."""
    base = won(mid, winner, loser, ended)
    seats = (
        SeatRow(winner.id, winner.name, False, winner.rating.rating, after[0]),
        SeatRow(loser.id, loser.name, False, loser.rating.rating, after[1]),
    )
    players = (
        attrs.evolve(winner, rating=Rating(after[0], 200.0, 0.06, ended)),
        attrs.evolve(loser, rating=Rating(after[1], 200.0, 0.06, ended)),
    )
    return attrs.evolve(base, seats=seats, players=players)


async def test_ratings_move_with_matches_and_each_match_keeps_before_and_after(
    store: Store,
) -> None:
    ann, bob = player("p_ann"), player("p_bob")
    store.record_match(rated("m_1", ann, bob, 100.0, (1662.3, 1337.7)))
    ann2 = attrs.evolve(ann, rating=Rating(1662.3, 200.0, 0.06, 100.0))
    bob2 = attrs.evolve(bob, rating=Rating(1337.7, 200.0, 0.06, 100.0))
    store.record_match(rated("m_2", bob2, ann2, 200.0, (1400.5, 1600.25)))
    stored = await store.get_player("p_ann")
    assert stored is not None
    assert stored.rating == Rating(1600.25, 200.0, 0.06, 200.0)
    # A profile saved with a stale rating (another connection's copy) does not move it:
    # like the totals, only matches do.
    store.save_player(attrs.evolve(ann, name="Ann", rating=NEW_RATING))
    again = await store.get_player("p_ann")
    assert again is not None
    assert (again.name, again.rating) == ("Ann", stored.rating)
    # A match recorded again changes nothing, its rating included.
    store.record_match(rated("m_1", ann, bob, 100.0, (1662.3, 1337.7)))
    assert await store.get_player("p_ann") == again
    recent = await store.recent_matches("p_ann", limit=5)
    assert [(m["rating1_before"], m["rating1_after"]) for m in recent] == [
        (1337.7, 1400.5),
        (1500.0, 1662.3),
    ]
    assert (recent[0]["rating2_before"], recent[0]["rating2_after"]) == (1662.3, 1600.25)
    assert await store.rating_history("p_ann", 50) == [
        ("m_2", 200.0, 1600.25),
        ("m_1", 100.0, 1662.3),
    ]
    assert await store.rating_history("p_bob", 1) == [("m_2", 200.0, 1400.5)]
    assert await store.rating_history("p_nobody", 50) == []


async def test_a_new_player_row_from_a_match_carries_its_rating(store: Store) -> None:
    ann, bob = player("p_ann"), player("p_bob")
    store.record_match(rated("m_1", ann, bob, 100.0, (1662.3, 1337.7)))
    stored = await store.get_player("p_bob")
    assert stored is not None
    assert stored.rating == Rating(1337.7, 200.0, 0.06, 100.0)
    fresh = player("p_new")
    store.save_player(fresh)
    got = await store.get_player("p_new")
    assert got is not None
    assert got.rating == NEW_RATING


async def test_committed_waits_for_the_writes_without_hurrying_them(store: Store) -> None:
    """A cluster waits for each finished match's commit before it forgets the match in
    Redis; the wait must leave the writes in their batch (a flush hands them over at once:
    at 400 matches a second that was a transaction per match)."""
    ann, bob = player("p_ann"), player("p_bob")
    store.record_match(won("m_1", ann, bob, 10.0))
    batches = store.writer.batches
    waited = asyncio.ensure_future(store.committed())
    store.record_match(won("m_2", ann, bob, 11.0))
    await asyncio.sleep(0.01)  # well within the hand-off delay: nothing handed over yet
    assert not waited.done()
    assert store.writer.batches == batches
    await asyncio.wait_for(waited, 5)
    assert store.writer.batches == batches + 1  # both matches and the wait: one batch
    assert [m["id"] for m in await store.recent_matches("p_ann", 5)] == ["m_2", "m_1"]


async def test_leaderboard_ranks_players_who_played(store: Store) -> None:
    store.save_player(player("p_idle", total_score=0))
    store.save_player(player("p_low", total_score=1, wins=1))
    store.save_player(player("p_top", total_score=6, wins=3))
    store.save_player(player("p_mid", total_score=3, wins=2, losses=4))
    # Ties by id in byte order: upper case before lower, "p_Z" before "p_a".
    store.save_player(player("p_tie_b", total_score=2, draws=1))
    store.save_player(player("p_tie_B", total_score=2, draws=1))
    store.save_player(player("p_tie_a", total_score=2, draws=1))
    board = await store.leaderboard(limit=10)
    assert [p.id for p in board] == ["p_top", "p_mid", "p_tie_B", "p_tie_a", "p_tie_b", "p_low"]
    assert [p.id for p in await store.leaderboard(limit=2)] == ["p_top", "p_mid"]


def _board(rows: list[Any] | None) -> list[tuple[int, str, int | None]]:
    assert rows is not None
    return [(row.rank, row.player.id, row.points) for row in rows]


async def test_standings_rank_ties_together_and_page_around_a_player(store: Store) -> None:
    store.save_player(player("p_idle", total_score=0))  # never played: on no board
    for pid, total in [("p_a", 9), ("p_b", 7), ("p_c", 7), ("p_d", 7), ("p_e", 4), ("p_f", 2)]:
        store.save_player(player(pid, total_score=total, wins=1))
    top = await store.standings(Board.SCORE, Period.ALL, 10)
    # Ties share a rank, the next rank skips (1, 2, 2, 2, 5): listed by id.
    assert _board(top) == [
        (1, "p_a", None),
        (2, "p_b", None),
        (2, "p_c", None),
        (2, "p_d", None),
        (5, "p_e", None),
        (6, "p_f", None),
    ]
    # Around p_d (5th listed): it in the middle of three, the page's first rank is its tie's.
    around = await store.standings(Board.SCORE, Period.ALL, 3, around="p_d")
    assert _board(around) == [(2, "p_c", None), (2, "p_d", None), (5, "p_e", None)]
    # Near the top or the bottom, the page stays full.
    assert [r[1] for r in _board(await store.standings(Board.SCORE, Period.ALL, 3, "p_a"))] == [
        "p_a",
        "p_b",
        "p_c",
    ]
    assert _board(await store.standings(Board.SCORE, Period.ALL, 2, "p_f")) == [
        (5, "p_e", None),
        (6, "p_f", None),
    ]
    assert await store.standings(Board.SCORE, Period.ALL, 3, around="p_idle") is None
    assert await store.standings(Board.SCORE, Period.ALL, 3, around="p_nobody") is None
    assert await store.rank_by_score("p_c") == 2
    assert await store.rank_by_score("p_f") == 6
    assert await store.rank_by_score("p_idle") is None


async def test_the_rating_board_ranks_by_the_rating_players_see(store: Store) -> None:
    ratings = {"p_a": 1700.4, "p_b": 1699.5, "p_c": 1699.4, "p_d": 1500.0}
    for pid, rating in ratings.items():
        store.save_player(player(pid, wins=1, rating=Rating(rating, 80.0)))
    board = await store.standings(Board.RATING, Period.ALL, 10)
    # 1700.4 and 1699.5 both show 1700: one rank; 1699.4 shows 1699.
    assert _board(board) == [(1, "p_a", None), (1, "p_b", None), (3, "p_c", None), (4, "p_d", None)]
    assert _board(await store.standings(Board.RATING, Period.ALL, 1, around="p_c")) == [
        (3, "p_c", None)
    ]


async def test_day_and_week_boards_count_the_points_won_then(store: Store) -> None:
    """UTC+8: Wednesday 2026-12-02 23:30 and Thursday 00:30 there are two days of one
    ISO week; the Monday after starts a new week."""
    wednesday = datetime.datetime(2026, 12, 2, 23, 30, tzinfo=UTC8).timestamp()
    thursday = wednesday + 3600.0
    monday = wednesday + 5 * 86400.0
    ann, bob, cid = player("p_ann"), player("p_bob"), player("p_cid")
    store.record_match(won("m_1", ann, bob, wednesday, points=1))
    store.record_match(won("m_2", ann, bob, thursday, points=2))
    store.record_match(won("m_3", bob, ann, thursday, points=1))
    store.record_match(won("m_4", cid, bob, thursday, points=1))
    store.record_match(won("m_1", ann, bob, wednesday, points=1))  # again: counts once
    assert _board(await store.standings(Board.SCORE, Period.DAY, 10, now=wednesday)) == [
        (1, "p_ann", 1)
    ]
    assert _board(await store.standings(Board.SCORE, Period.DAY, 10, now=thursday + 60)) == [
        (1, "p_ann", 2),
        (2, "p_bob", 1),
        (2, "p_cid", 1),
    ]
    assert _board(await store.standings(Board.SCORE, Period.WEEK, 10, now=thursday)) == [
        (1, "p_ann", 3),
        (2, "p_bob", 1),
        (2, "p_cid", 1),
    ]
    assert await store.standings(Board.SCORE, Period.WEEK, 10, now=monday) == []
    around = await store.standings(Board.SCORE, Period.DAY, 1, around="p_cid", now=thursday)
    assert _board(around) == [(2, "p_cid", 1)]
    # Won nothing that day: not on its board.
    assert await store.standings(Board.SCORE, Period.DAY, 5, "p_bob", now=wednesday) is None


# ---------------------------------------------------------------- each match once


async def test_a_match_recorded_twice_in_one_run_counts_once(store: Store) -> None:
    ann, bob = player("p_ann", total_score=1, win_streak=1, wins=1), player("p_bob", losses=1)
    store.record_match(won("m_1", ann, bob, 10.0))
    store.record_match(won("m_1", ann, bob, 10.0))  # the same hand-off: one bulk run
    store.record_match(won("m_2", player("p_ann", total_score=2, win_streak=2, wins=2), bob, 11.0))
    await store.flush()
    stored = await store.get_player("p_ann")
    assert stored is not None
    assert (stored.stats.wins, stored.stats.total_score, stored.stats.win_streak) == (2, 2, 2)
    recent = await store.recent_matches("p_ann", 10)
    assert [m["id"] for m in recent] == ["m_2", "m_1"]
    assert [len(m["rounds"]) for m in recent] == [2, 2]
    assert store.failures == 0


async def test_a_match_already_stored_adds_nothing_later(store: Store) -> None:
    ann, bob = player("p_ann", total_score=1, win_streak=1, wins=1), player("p_bob", losses=1)
    store.record_match(won("m_1", ann, bob, 10.0))
    await store.flush()
    # Recorded again later (another node took the match over), even with other totals.
    again = won("m_1", player("p_ann", name="Else", total_score=9, wins=9), bob, 12.0, points=5)
    store.record_match(again)
    store.record_match(won("m_2", player("p_ann", total_score=2, wins=2), bob, 13.0))
    await store.flush()
    stored = await store.get_player("p_ann")
    assert stored is not None
    assert (stored.name, stored.stats.wins, stored.stats.total_score) == ("P_ANN", 2, 2)
    recent = await store.recent_matches("p_bob", 10)
    assert [(m["id"], m["ended_at"]) for m in recent] == [("m_2", 13.0), ("m_1", 10.0)]
    assert store.failures == store.writes_dropped == 0


async def test_a_match_two_stores_record_at_once_counts_once(
    two_processes: tuple[Store, Store],
) -> None:
    here, there = two_processes
    ann, bob = player("p_ann", total_score=1, win_streak=1, wins=1), player("p_bob", losses=1)
    gates = [await hold(here), await hold(there)]
    for store in (here, there):
        store.record_match(won("m_1", ann, bob, 10.0))
        store.writer.hand_over()
    for gate in gates:
        gate.set()
    await asyncio.gather(here.flush(), there.flush())
    stored = await here.get_player("p_ann")
    beaten = await there.get_player("p_bob")
    assert stored is not None
    assert beaten is not None
    assert (stored.stats.wins, stored.stats.total_score, beaten.stats.losses) == (1, 1, 1)
    assert [m["id"] for m in await there.recent_matches("p_ann", 5)] == ["m_1"]
    assert here.failures == there.failures == 0
    assert here.writes_dropped == there.writes_dropped == 0


# ---------------------------------------------------------------- failures


async def test_a_failing_write_is_rolled_back_alone(store: Store) -> None:
    a, b = player("p_a"), player("p_b")
    gate = await hold(store)
    store.record_match(match("m_1", a, b, ended=1.0))
    # No reason: the insert fails, and the player updates of that match must not land.
    broken = match("m_2", player("p_a", total_score=99), b, ended=2.0)
    broken = attrs.evolve(broken, reason=None)  # type: ignore[arg-type]
    store.record_match(broken)
    store.save_player(player("p_c"))  # queued in the same batch: still committed
    store.save_player(attrs.evolve(player("p_d"), name=None))  # type: ignore[arg-type] # fails
    store.save_player(player("p_e"))
    gate.set()
    await store.flush()
    stored = await store.get_player("p_a")
    assert stored is not None
    assert stored.stats.total_score == 0
    assert [m["id"] for m in await store.recent_matches("p_a", 5)] == ["m_1"]
    assert await store.get_player("p_c") is not None
    assert await store.get_player("p_d") is None
    assert await store.get_player("p_e") is not None
    assert store.failures == 0
    assert store.writer.retries == 1


async def test_a_failing_read_fails_alone(store: Store) -> None:
    gate = await hold(store)
    store.save_player(player("p_1"))
    bad = asyncio.ensure_future(
        store.writer.read(lambda conn: conn.execute("SELECT * FROM no_such_table").fetchall())
    )
    await asyncio.sleep(0)  # the task queues its read
    store.save_player(player("p_2"))
    good = asyncio.ensure_future(store.get_player("p_1"))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(Exception, match="no_such_table"):
        await asyncio.wait_for(bad, WAIT)
    got = await asyncio.wait_for(good, WAIT)
    assert got is not None
    assert got.id == "p_1"
    assert await store.get_player("p_2") is not None
    assert (store.failures, store.writes_dropped) == (0, 0)


async def test_a_reader_that_gave_up_does_not_stop_the_writer(store: Store) -> None:
    gate = await hold(store)
    with pytest.raises(TimeoutError):
        # The HTTP handler is cancelled (its client went away) before the answer comes.
        await asyncio.wait_for(store.get_player("p_1"), 0.05)
    gate.set()
    await still_works(store)
    assert store.failures == 0


async def test_writes_made_on_the_loop_reach_the_writer_together(store: Store) -> None:
    from game_server.store import writer

    await store.flush()
    before = store.writer.batches
    for n in range(200):  # a busy moment: many matches finishing within a few turns
        store.save_player(player(f"p_{n:03d}"))
        if n % 20 == 0:
            await asyncio.sleep(0)
    assert store.backlog == 200  # gathered on the loop: the writer was not woken per write
    await asyncio.sleep(writer.HANDOFF_SECONDS * 2)  # handed over without a read asking
    for _ in range(100):
        if store.backlog == 0:
            break
        await asyncio.sleep(0.01)
    assert store.backlog == 0
    await store.flush()
    assert store.writer.batches - before <= 2  # one transaction for all (plus the flush's own)
    assert await store.get_player("p_199") is not None


async def test_a_read_sees_the_writes_made_before_it(store: Store) -> None:
    store.save_player(player("p_new"))
    assert await store.get_player("p_new") is not None  # no wait for the hand-off timer


async def test_the_backlog_is_bounded_while_the_writer_is_stuck(engine: Engine) -> None:
    store = engine.open(backlog_max=10)
    gate = await hold(store)
    for n in range(25):
        store.save_player(player(f"p_{n:02d}"))
    assert store.backlog == 10
    assert store.writes_dropped == 15
    gate.set()
    await store.flush()
    assert await store.get_player("p_09") is not None
    assert await store.get_player("p_10") is None


@pytest.mark.system
async def test_a_lost_connection_fails_its_batch_and_the_next_reconnects(
    postgres_url: str,
) -> None:
    """The server ends the store's session (a restart, a failover, an admin): the batch
    that finds it gone fails as a whole, and the one after runs on a new connection."""
    import psycopg

    from game_server.store.postgres import PostgresStore

    paused, gate = threading.Event(), threading.Event()
    armed = False

    class Pausing(PostgresStore):
        """Its guest sweep (on the writer thread, between batches) waits when armed: so
        the jobs queued meanwhile all go into the next batch, deterministically."""

        def _prune_guests(self, conn: Any, before: float, limit: int) -> int:
            if armed:
                paused.set()
                gate.wait(WAIT)
            return 0

    clock = Clock(10_000.0)
    store = Pausing(postgres_url, guest_ttl=100.0, clock=clock)
    try:
        store.save_player(player("p_before"))
        pid = await store.writer.read(lambda conn: conn.info.backend_pid)

        def arm(conn: Any) -> None:
            # On the writer thread, inside a batch: the sweep is due the moment the batch
            # ends, and not before (armed from the loop, the thread could find it due
            # before that batch, and the batch would wait behind the paused sweep).
            nonlocal armed
            armed = True
            clock.now += 3600

        await store.writer.read(arm)
        assert await asyncio.to_thread(paused.wait, WAIT)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            for _ in range(100):  # until the backend has gone
                gone = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
                if gone.fetchone() is None:
                    break
                await asyncio.sleep(0.02)
        store.save_player(player("p_lost"))
        load = loads(store, "p_before")
        read = asyncio.ensure_future(store.get_player("p_before"))
        await asyncio.sleep(0)  # the task queues its read
        armed = False
        gate.set()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(read, WAIT)
        assert isinstance(await asyncio.wait_for(load, WAIT), StoreUnavailable)
        assert (store.failures, store.writes_dropped) == (1, 1)
        await still_works(store)
        assert await store.get_player("p_before") is not None
        assert await store.get_player("p_lost") is None
        assert await store.writer.read(lambda conn: conn.info.backend_pid) != pid
    finally:
        gate.set()
        await store.close()


# ---------------------------------------------------------------- several processes


async def test_match_results_from_two_processes_add_up(
    two_processes: tuple[Store, Store],
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
    for store, mid in ((here, "m_here"), (there, "m_there")):
        store.record_match(won(mid, after, lost, 10.0))
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


async def test_increments_from_two_stores_at_once_add_up(
    two_processes: tuple[Store, Store],
) -> None:
    """Two nodes storing runs of matches with the same players at the same time."""
    here, there = two_processes
    players = [player(f"p_{n}") for n in range(6)]
    for p in players:  # stored first: a new row would take its totals from the profile
        here.save_player(p)
    await here.flush()
    for store, side in ((here, "h"), (there, "t")):
        for n in range(60):
            first, second = players[n % 6], players[(n + 1 + n // 6) % 6]
            if first.id != second.id:
                store.record_match(won(f"m_{side}{n}", first, second, float(n)))
        store.writer.hand_over()
    await asyncio.gather(here.flush(), there.flush())
    board = await here.leaderboard(10)
    wins = sum(p.stats.wins for p in board)
    losses = sum(p.stats.losses for p in board)
    matches = {m["id"] for p in players for m in await there.recent_matches(p.id, 200)}
    assert wins == losses == len(matches)
    assert sum(p.stats.total_score for p in board) == len(matches)
    assert here.failures == there.failures == 0
    assert here.writes_dropped == there.writes_dropped == 0


async def test_a_new_wechat_user_made_by_two_processes_at_once_is_one_player(
    two_processes: tuple[Store, Store],
) -> None:
    here, there = two_processes
    first, second = await asyncio.gather(
        here.claim_openid(player("p_here", openid="o_wei", name="Wei")),
        there.claim_openid(player("p_there", openid="o_wei", name="Wei")),
    )
    assert first.id == second.id
    assert second.name == "Wei"
    assert await there.claim_openid(player("p_again", openid="o_wei")) == first
    assert await here.find_by_openid("o_wei") == first


async def test_a_duplicate_openid_from_another_process_never_fails_a_match(
    two_processes: tuple[Store, Store],
) -> None:
    here, there = two_processes
    here.save_player(player("p_here", openid="o_wei"))
    await here.flush()
    # The other process made its own player for the same WeChat user meanwhile.
    twin = player("p_there", openid="o_wei", total_score=1, win_streak=1, wins=1)
    there.save_player(player("p_there"))  # the guest row it starts as, then the openid
    there.save_player(twin)
    there.record_match(won("m_1", twin, player("p_bob", losses=1), 10.0))
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


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_the_store_sweeps_unreachable_guests_at_start_and_hourly(engine: Engine) -> None:
    clock = Clock(10_000.0)
    first = engine.open()  # keeps everyone
    first.save_player(player("p_gone", created_at=1.0, last_seen=1_000.0))
    first.save_player(player("p_gone2", created_at=1.0, last_seen=1_001.0))
    first.save_player(player("p_fresh", created_at=1.0, last_seen=9_950.0))
    first.save_player(player("p_played", wins=1, last_seen=1_000.0))
    first.save_player(player("p_wechat", openid="o_1", last_seen=1_000.0))
    await first.close()

    store = engine.open(guest_ttl=100.0, clock=clock, prune_batch=1)
    await store.flush()
    await store.flush()  # a full batch sweeps again at the next turn
    assert await store.get_player("p_gone") is None  # swept at start-up
    assert await store.get_player("p_gone2") is None
    assert await store.get_player("p_played") is not None
    assert await store.get_player("p_wechat") is not None
    assert store.pruned == 2
    clock.now += 60  # p_fresh is now past the lifetime, but the next sweep is an hour away
    await store.flush()
    assert await store.get_player("p_fresh") is not None
    clock.now += 3600
    await store.flush()
    assert await store.get_player("p_fresh") is None
    assert await store.get_player("p_played") is not None
    assert store.pruned == 3


# ---------------------------------------------------------------- old history (--keep-matches)

DAY = 86400.0


def _column(store: Store, sql: str) -> Any:
    """The first column of every row of ``sql`` (no parameters: either engine takes it)."""
    return store.writer.read(lambda conn: sorted(row[0] for row in conn.execute(sql).fetchall()))


async def test_the_store_sweeps_matches_and_points_older_than_it_keeps(engine: Engine) -> None:
    now = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=UTC8).timestamp()
    ann, bob = player("p_ann"), player("p_bob")
    ended = {"m_a_month": now - 30 * DAY, "m_b_8_days": now - 8 * DAY}
    ended |= {"m_c_yesterday": now - DAY, "m_d_a_minute": now - 60}
    first = engine.open()  # keeps everything
    for mid, when in ended.items():
        first.record_match(won(mid, ann, bob, when))
    await first.flush()
    assert len(await first.recent_matches("p_ann", 10)) == 4
    periods_before = await _column(first, "SELECT period FROM period_scores")
    players_before = [await first.get_player(pid) for pid in ("p_ann", "p_bob")]
    assert None not in players_before
    await first.close()

    clock = Clock(now)
    store = engine.open(keep_matches=7 * DAY, clock=clock, prune_batch=1)
    for _ in range(12):  # one row of each kind a turn; a full turn sweeps again after a batch
        await store.flush()
    kept = [row["id"] for row in await store.recent_matches("p_ann", 10)]
    assert kept == ["m_d_a_minute", "m_c_yesterday"]
    rounds = "SELECT DISTINCT match_id FROM rounds"
    assert await _column(store, rounds) == ["m_c_yesterday", "m_d_a_minute"]
    # Days and weeks before the one that holds the moment a week ago go; the rest stay.
    day, week = period_keys(now - 7 * DAY)
    periods = await _column(store, "SELECT period FROM period_scores")
    assert periods == [p for p in periods_before if p >= (day if p < "w" else week)]
    assert len(periods) < len(periods_before)
    swept = len(periods_before) - len(periods)
    assert store.swept == {"guests": 0, "matches": 2, "period_rows": swept}
    # Players (totals, ratings) stay whatever the window.
    assert [await store.get_player(pid) for pid in ("p_ann", "p_bob")] == players_before

    clock.now += 6.5 * DAY  # yesterday's match is now past the window: swept within the hour
    await store.flush()
    await store.flush()
    kept = [row["id"] for row in await store.recent_matches("p_ann", 10)]
    assert kept == ["m_d_a_minute"]
    assert store.swept["matches"] == 3


def test_keeping_matches_for_no_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        SqliteStore(str(tmp_path / "rps.db"), keep_matches=0)


# ---------------------------------------------------------------- bulk writes


def _one_by_one(conn: Any, mark: str, records: list[MatchRecord]) -> None:
    """The meaning of a run of matches, written out plainly: each match in turn, skipped
    if its id is stored already; each of its humans' profiles saved and result added."""

    def run(sql: str, params: tuple[Any, ...] = ()) -> Any:
        return conn.execute(sql.replace("?", mark), params)

    for record in records:
        if run("SELECT 1 FROM matches WHERE id = ?", (record.id,)).fetchone():
            continue
        marks = ", ".join("?" * len(batching.MATCH_ROW))
        run(
            f"INSERT INTO matches ({', '.join(batching.MATCH_ROW)}) VALUES ({marks})",
            batching.match_row(record),
        )
        for r in record.rounds:
            run(
                "INSERT INTO rounds (match_id, round, choice1, choice2, outcome) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.id, r.round, *r.choices, r.outcome),
            )
        results = {result.player_id: result for result in record.results}
        for result in record.results:
            if result.points:
                for period in period_keys(record.ended_at):
                    run(
                        "INSERT INTO period_scores (period, player_id, points) VALUES (?, ?, ?) "
                        "ON CONFLICT (period, player_id) "
                        "DO UPDATE SET points = period_scores.points + excluded.points",
                        (period, result.player_id, result.points),
                    )
        for p in record.players:
            result = results[p.id]
            row = run(
                "SELECT openid, unionid, last_seen, total_score, win_streak, wins, losses, "
                "draws FROM players WHERE id = ?",
                (p.id,),
            ).fetchone()
            if row is None:  # a new row: the profile as it is, its totals included
                taken = run(
                    "SELECT 1 FROM players WHERE openid = ? AND id <> ?", (p.openid, p.id)
                ).fetchone()
                params = schema.player_params(p)
                if taken:
                    params["openid"] = None
                run(
                    f"INSERT INTO players ({PLAYER_COLUMNS}) "
                    f"VALUES ({', '.join('?' * len(PROFILE_ROW))})",
                    tuple(params[column] for column in PROFILE_ROW),
                )
                continue
            openid, unionid, last_seen, total, streak, wins, losses, draws = row
            outcome = result.outcome
            run(
                "UPDATE players SET name = ?, avatar = ?, openid = ?, unionid = ?, "
                "last_seen = ?, total_score = ?, win_streak = ?, wins = ?, losses = ?, "
                "draws = ?, rating = ?, rating_deviation = ?, rating_volatility = ?, "
                "rated_at = ? WHERE id = ?",
                (
                    p.name,
                    p.avatar,
                    p.openid if p.openid is not None else openid,
                    p.unionid if p.unionid is not None else unionid,
                    max(last_seen, p.last_seen),
                    total + result.points,
                    {"win": streak + 1, "lose": 0}.get(outcome, streak),
                    wins + (outcome == "win"),
                    losses + (outcome == "lose"),
                    draws + (outcome == "draw"),
                    *p.rating.to_json(),  # a rating is set, not added
                    p.id,
                ),
            )


@pytest.fixture(params=ENGINES)
def raw_connection(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str, batching.RunSql]]:
    """A bare connection to a migrated database, the engine's placeholder and run SQL.
    Each hypothesis example works in a transaction it rolls back."""
    if request.param == "sqlite":
        from game_server.store import sqlite

        conn: Any = sqlite3.connect(":memory:", isolation_level=None)
        schema.migrate(conn)
        yield conn, "?", sqlite.RUN_SQL
        conn.close()
        return
    import psycopg

    from game_server.store import postgres

    url = request.getfixturevalue("postgres_url")
    with psycopg.connect(url, autocommit=True) as conn:
        postgres.migrate(conn)
    with psycopg.connect(url) as conn:  # not autocommit: every example is rolled back
        yield conn, "%s", postgres.RUN_SQL


def _begin(conn: Any) -> None:
    if isinstance(conn, sqlite3.Connection):
        conn.execute("BEGIN")


PIDS = ["p_a", "p_b", "p_c", "p_d"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    games=st.lists(
        st.tuples(
            st.sampled_from(PIDS),
            st.sampled_from(PIDS),
            st.sampled_from(["win", "lose", "draw"]),
            st.integers(0, 9),
            st.none() | st.integers(0, 40),  # a repeat of an earlier match (by index)
        ).filter(lambda game: game[0] != game[1]),
        max_size=40,
    ),
    stored=st.sets(st.sampled_from(PIDS)),
    stored_matches=st.sets(st.integers(0, 40), max_size=3),
)
def test_a_bulk_run_of_matches_equals_its_matches_one_by_one(
    raw_connection: tuple[Any, str, batching.RunSql],
    games: list[tuple[str, str, str, int, int | None]],
    stored: set[str],
    stored_matches: set[int],
) -> None:
    """Whatever the mix of new and stored players, wins, losses, draws, matches repeated
    inside the run and matches stored before it."""
    conn, mark, run_sql = raw_connection
    live = {pid: player(pid, total_score=3, win_streak=2, wins=5) for pid in PIDS}
    records: list[MatchRecord] = []
    for n, (first, second, outcome, points, repeat) in enumerate(games):
        if repeat is not None and records:
            records.append(records[repeat % len(records)])  # recorded again, as it was
            continue
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
                rating=Rating(1500.0 + 7 * n, 300.0 - n, 0.06 + n / 1000, float(n)),
            )
        # Matches a few hours apart: the day's and the week's points change hands.
        base = match(f"m_{n}", live[first], live[second], 1_764_700_000.0 + n * 20_000.0)
        records.append(attrs.evolve(base, results=results))
    tables = []
    writes: list[Callable[[Any, list[MatchRecord]], None]] = [
        lambda conn, records: batching.insert_matches(run_sql, conn, records),
        lambda conn, records: _one_by_one(conn, mark, records),
    ]
    for write in writes:
        _begin(conn)
        try:
            for pid in sorted(stored):  # rows that exist before the run
                params = schema.player_params(player(pid, wins=1))
                conn.execute(
                    f"INSERT INTO players ({PLAYER_COLUMNS}) "
                    f"VALUES ({', '.join([mark] * len(PROFILE_ROW))})",
                    tuple(params[column] for column in PROFILE_ROW),
                )
            # Matches stored before the run (by another node): they add nothing again.
            before = [records[index] for index in sorted(stored_matches) if index < len(records)]
            batching.insert_matches(run_sql, conn, before)
            write(conn, records)
            tables.append(
                tuple(
                    conn.execute(sql).fetchall()
                    for sql in (
                        "SELECT * FROM players ORDER BY id",
                        "SELECT * FROM matches ORDER BY id",
                        "SELECT * FROM rounds ORDER BY match_id, round",
                        "SELECT * FROM period_scores ORDER BY period, player_id",
                    )
                )
            )
        finally:
            if isinstance(conn, sqlite3.Connection):
                conn.execute("ROLLBACK")
            else:
                conn.rollback()
    assert tables[0] == tables[1]

"""Several server processes on one real redis-server behave as one server: real sockets,
real processes, SIGKILL for a crash."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from bots.soak import SoakConfig, run_soak
from tests.support.processes import FAST_GAME, ServerProcess, launch
from tests.support.redis import RedisServer
from tests.support.wire import Player

SECRET = "the cluster's shared token secret"
TTL = "1.5"  # a node silent this long is dead: takeovers within a few seconds


def flush(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()


@pytest.fixture
async def cluster(
    redis_server: RedisServer, postgres_url: str
) -> AsyncIterator[Callable[[int], Awaitable[list[ServerProcess]]]]:
    """``await cluster(n, *options)``: n nodes on one Redis and one PostgreSQL database,
    as a real cluster runs (so "recorded once" below is checked on the shared store)."""
    flush(redis_server)
    started: list[ServerProcess] = []

    async def start(count: int, *options: str) -> list[ServerProcess]:
        common = (
            *FAST_GAME,
            "--rate-limit",  # the soaks' bots answer at once, faster than a person
            "1000",
            "--redis",
            redis_server.url,
            "--token-secret",
            SECRET,
            "--db",
            postgres_url,
            "--node-ttl",
            TTL,
            *options,
        )
        first = len(started)
        launched = await asyncio.gather(
            *(launch(*common, "--node-id", f"n{first + i}") for i in range(count)),
            return_exceptions=True,
        )
        nodes = [node for node in launched if isinstance(node, ServerProcess)]
        started.extend(nodes)  # stopped at the end, even if another failed to start
        for failure in launched:
            if isinstance(failure, BaseException):
                raise failure
        return nodes

    yield start
    for node in started:
        await node.stop()


async def connect(http: aiohttp.ClientSession, node: ServerProcess, **hello: Any) -> Player:
    player = Player(await http.ws_connect(node.url))
    await player.send(type="hello", **hello)
    player.hi = await player.expect("hi")
    return player


async def paired(
    http: aiohttp.ClientSession, waiting_on: ServerProcess, joining_on: ServerProcess
) -> tuple[Player, Player, dict[str, Any], dict[str, Any]]:
    """Bob waits on one node, Ann joins on another: the match runs on Ann's."""
    bob = await connect(http, waiting_on, name="Bob")
    await bob.send(type="join", bot="never")
    await bob.expect("queued")
    await asyncio.sleep(0.1)  # Bob's ticket is in the shared queue
    ann = await connect(http, joining_on, name="Ann")
    await ann.send(type="join", bot="never")
    await ann.expect("queued")
    return ann, bob, await ann.expect("start"), await bob.expect("start")


async def within(
    player: Player, kind: str, seconds: float, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The next ``kind`` message, allowing ``seconds`` (a node's death takes a TTL)."""
    async with asyncio.timeout(seconds):
        while True:
            try:
                return await player.expect(kind, skip=skip)
            except TimeoutError:  # one read's own timeout: keep waiting
                continue


async def play_round(ann: Player, bob: Player, match_id: str, number: int) -> None:
    await ann.send(type="choice", match_id=match_id, round=number, choice="rock")
    await bob.send(type="choice", match_id=match_id, round=number, choice="scissors")


async def play_match(
    ann: Player, bob: Player, start_ann: dict[str, Any], start_bob: dict[str, Any]
) -> dict[str, Any]:
    """Ann and Bob, both told ``start``, play their match to its end (Ann wins two
    rounds); Bob's final result."""
    match_id = start_ann["match_id"]
    assert start_bob["match_id"] == match_id
    assert start_bob["opponent"]["name"] == "Ann"
    for number in (1, 2):
        await play_round(ann, bob, match_id, number)
        await ann.expect("result", skip=("movement", "start"))
        result = await bob.expect("result", skip=("movement", "start"))
    assert result["match_over"]
    return result


async def test_players_on_different_nodes_play_a_match(
    cluster: Any, http: aiohttp.ClientSession
) -> None:
    n0, n1 = await cluster(2)
    ann, bob, start_ann, start_bob = await paired(http, n1, n0)
    result = await play_match(ann, bob, start_ann, start_bob)
    assert result["winner"] == "opponent"
    health = [await (await http.get(f"{node.http}/healthz")).json() for node in (n0, n1)]
    assert {h["node"] for h in health} == {"n0", "n1"}
    assert all(h["redis"] == "ok" for h in health)
    assert health[1]["relayed_out"] > 0  # Bob's frames went to n0
    assert health[0]["queue"] == 0


async def test_a_friend_on_another_node_joins_a_room_plays_and_rematches(
    cluster: Any, http: aiohttp.ClientSession
) -> None:
    """A private room's code works from any node (as behind a round-robin proxy): the
    friend's player moves to the room's process, and both stay there for a rematch."""
    n0, n1 = await cluster(2)
    ann = await connect(http, n0, name="Ann")
    await ann.send(type="create_room", id=1)
    code = (await ann.expect("room"))["code"]
    await asyncio.sleep(0.1)  # its code is in Redis (one round trip)
    bob = await connect(http, n1, name="Bob")
    await bob.send(type="join", room="ZZZZZZ", id=9)  # a wrong code: looked up, not found
    error = await bob.expect("error")
    assert (error["code"], error["ref"]) == ("room_not_found", 9)
    await bob.send(type="join", room=code, id=2)
    start_ann = await ann.expect("start")
    await play_match(ann, bob, start_ann, await bob.expect("start"))
    match_id = start_ann["match_id"]
    await bob.send(type="rematch", match_id=match_id)
    await ann.expect("rematch")  # Bob asks
    await ann.send(type="rematch", match_id=match_id)
    again = await ann.expect("start")
    assert again["match_id"] != match_id
    assert (await bob.expect("start"))["match_id"] == again["match_id"]


async def test_the_host_is_killed_and_the_match_ends_on_a_survivor(
    cluster: Any, http: aiohttp.ClientSession
) -> None:
    n0, n1, n2 = await cluster(3)
    ann, bob, start, _ = await paired(http, n1, n0)  # hosted on n0
    match_id = start["match_id"]
    await play_round(ann, bob, match_id, 1)
    await bob.expect("result", skip=("movement",))
    n0.process.send_signal(signal.SIGKILL)  # Ann's socket dies with it
    resume = await within(bob, "resume", 15, skip=("start", "movement"))
    assert (resume["match_id"], resume["round"], resume["opponent_away"]) == (match_id, 2, True)
    again = await connect(http, n2, token=ann.hi["token"])
    assert (await again.expect("resume"))["score"] == {"you": 1, "opponent": 0}
    await play_round(again, bob, match_id, 2)
    final = await again.expect("result", skip=("movement",))
    assert final["match_over"]
    assert (final["winner"], final["score"]) == ("you", {"you": 2, "opponent": 0})
    assert (await bob.expect("result", skip=("movement",)))["match_over"]
    # Recorded once, on whichever survivor finished it.
    await asyncio.sleep(0.2)
    profile = await (await http.get(f"{n1.http}/applet/players/{ann.hi['player_id']}")).json()
    assert [m["id"] for m in profile["matches"]] == [match_id]
    assert (profile["player"]["wins"], profile["player"]["total_score"]) == (1, 1)
    takeovers = [
        (await (await http.get(f"{n.http}/healthz")).json())["takeovers"] for n in (n1, n2)
    ]
    assert sorted(takeovers) == [0, 1]


async def test_a_node_that_only_held_a_connection_is_killed(
    cluster: Any, http: aiohttp.ClientSession
) -> None:
    # Rounds long enough for the kill to be noticed and Bob to come back within one.
    n0, n1, n2 = await cluster(3, "--round-seconds", "8")
    ann, bob, start, _ = await paired(http, n1, n0)  # hosted on n0; Bob's socket on n1
    match_id = start["match_id"]
    n1.process.send_signal(signal.SIGKILL)
    # n0 sees n1 die (within the TTL, more on a loaded machine): Bob away, seat kept.
    movement = await within(ann, "movement", 15)
    assert movement["kind"] == "left"
    again = await connect(http, n2, token=bob.hi["token"])
    assert (await again.expect("resume"))["match_id"] == match_id
    assert (await ann.expect("movement"))["kind"] == "back"
    for number in (1, 2):
        await play_round(ann, again, match_id, number)
        await ann.expect("result", skip=("movement", "start"))
        result = await again.expect("result", skip=("movement", "start"))
    assert result["match_over"]


async def test_a_soak_over_three_nodes_is_clean(cluster: Any) -> None:
    nodes = await cluster(3)
    summary = await run_soak(
        SoakConfig(
            url=nodes[0].url,
            more_urls=(nodes[1].url, nodes[2].url),
            clients=30,
            duration=6,
            seed=14,
        )
    )
    assert summary.ok, summary.format_table()
    assert summary.matches > 30
    assert summary.rounds_cross_checked > 0
    assert summary.abandoned == 0
    # Three writers on one database never deadlock (their write batches take turns), so
    # no write is lost, and every node stops at once when told.
    for node in nodes:
        failed = [e for e in node.events if e["event"] in STORAGE_FAILURES]
        assert not failed, failed[0]
    stops = await asyncio.gather(*(node.stop(within=5) for node in nodes))
    assert stops == [0, 0, 0]


async def test_friends_soak_over_two_nodes_is_clean(
    cluster: Any, http: aiohttp.ClientSession
) -> None:
    """Pairs of friends, each host on one node and its guest on the other: every room is
    joined across nodes, and the rematches after it too."""
    nodes = await cluster(2)
    summary = await run_soak(
        SoakConfig(
            url=nodes[0].url,
            more_urls=(nodes[1].url,),
            clients=8,
            duration=4,
            seed=15,
            opponents="friends",
            room_every=1.0,
        )
    )
    assert summary.ok, summary.format_table()
    assert summary.matches > 20
    assert summary.house_bot_matches == 0
    assert summary.unpaired_rounds == 0
    health = [await (await http.get(f"{node.http}/healthz")).json() for node in nodes]
    assert health[0]["friends_in"] >= 4  # every guest came to its host's room at least once
    stops = await asyncio.gather(*(node.stop(within=5) for node in nodes))
    assert stops == [0, 0]


STORAGE_FAILURES = {"store_write_failed", "store_batch_failed", "store_read_failed"}


def recorded_over(postgres_url: str, match_ids: tuple[str, ...]) -> set[str]:
    """Which of ``match_ids`` the shared database holds as finished matches."""
    import psycopg

    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute(
            "SELECT id FROM matches WHERE id = ANY(%s)", (list(match_ids),)
        ).fetchall()
    return {row[0] for row in rows}


async def test_a_node_dies_mid_soak_and_no_match_is_lost(cluster: Any, postgres_url: str) -> None:
    nodes = await cluster(3)
    soak = asyncio.create_task(
        run_soak(
            SoakConfig(
                url=nodes[0].url,
                more_urls=(nodes[1].url, nodes[2].url),
                clients=30,
                duration=10,
                think=(0.05, 0.3),
                max_reconnects=20,
                seed=15,
            )
        )
    )
    await asyncio.sleep(3)
    nodes[2].process.send_signal(signal.SIGKILL)
    summary = await soak
    assert summary.violations == 0, summary.format_table()
    assert summary.errors == 0, summary.format_table()
    assert summary.resumes > 0  # the dead node's matches were taken over and resumed
    # Every started match ended. A client may miss the end of one: its final result went
    # to its connection on the node as that node died, and by its reconnect the match was
    # over (hi, and nothing to resume). Such a match must still be recorded, once, as over.
    assert summary.abandoned == len(summary.abandoned_matches), summary.format_table()
    if summary.abandoned_matches:
        await asyncio.sleep(0.5)  # the store's last batch
    missing = set(summary.abandoned_matches) - recorded_over(
        postgres_url, summary.abandoned_matches
    )
    assert not missing, f"matches started, never seen over and never recorded: {missing}"


async def test_redis_restarts_empty_mid_soak_and_the_nodes_meet_again(
    cluster: Any, redis_server: RedisServer, http: aiohttp.ClientSession
) -> None:
    # A short grace, so that the soak's players are gone from the queue soon after it.
    n0, n1 = await cluster(2, "--reconnect-grace", "2")
    soak = asyncio.create_task(
        run_soak(
            SoakConfig(
                url=n0.url,
                more_urls=(n1.url,),
                clients=20,
                duration=8,
                think=(0.05, 0.2),
                max_reconnects=50,
                seed=16,
            )
        )
    )
    await asyncio.sleep(2)
    redis_server.stop()
    await asyncio.sleep(0.5)
    assert (await http.get(f"{n0.http}/readyz")).status == 503  # no new joins meanwhile
    await asyncio.sleep(1.5)
    redis_server.restart()  # empty: no tickets, no owners, no heartbeats
    summary = await soak
    assert summary.violations == 0, summary.format_table()
    assert summary.matches > 0
    # The nodes said again what they own: a player waiting on one meets one joining on
    # the other, and a reconnect to the other node finds its player.
    assert (await http.get(f"{n0.http}/readyz")).status == 200
    await asyncio.sleep(2.5)  # the soak's last queue entries have expired
    _, bob, start_ann, start_bob = await paired(http, n0, n1)
    assert start_ann["match_id"] == start_bob["match_id"]
    await bob.ws.close()
    again = await connect(http, n1, token=bob.hi["token"])
    assert (await again.expect("resume"))["match_id"] == start_ann["match_id"]
    health = [await (await http.get(f"{n.http}/healthz")).json() for n in (n0, n1)]
    assert all(h["redis"] == "ok" for h in health)


async def test_health_and_metrics_say_what_the_cluster_does(
    cluster: Any, http: aiohttp.ClientSession
) -> None:
    n0, n1 = await cluster(2)
    await paired(http, n1, n0)
    text = await (await http.get(f"{n0.http}/metrics")).text()
    assert 'rps_cluster_node{node="n0"} 1.0' in text
    assert "rps_cluster_redis_up 1.0" in text
    assert "rps_cluster_handovers_total 1.0" in text  # Bob came over from n1
    relayed = [
        line for line in text.splitlines() if line.startswith("rps_cluster_relayed_out_total")
    ]
    assert float(relayed[0].split()[-1]) > 0
    health = await (await http.get(f"{n1.http}/healthz")).json()
    assert (health["node"], health["redis"]) == ("n1", "ok")
    ready = await http.get(f"{n1.http}/readyz")
    assert (ready.status, (await ready.json())["status"]) == (200, "ready")


async def test_an_idle_player_whose_node_died_comes_back_on_a_survivor(
    cluster: Any, http: aiohttp.ClientSession
) -> None:
    n0, n1 = await cluster(2)
    ann, bob, start, _ = await paired(http, n1, n0)  # hosted on n0, which owns both
    match_id = start["match_id"]
    for number in (1, 2):
        await play_round(ann, bob, match_id, number)
        await bob.expect("result", skip=("movement", "start"))
        final = await ann.expect("result", skip=("movement", "start"))
    assert final["match_over"]
    await asyncio.sleep(0.5)  # stored (the kill below is not what this test is about)
    n0.process.send_signal(signal.SIGKILL)  # Ann, idle now, was n0's
    # Until n1 sees n0 dead, it passes the hello on to n0 and then closes with 1012
    # ("reconnect"): a client reconnects at once, as the protocol says.
    async with asyncio.timeout(15):
        while True:
            again = Player(await http.ws_connect(n1.url))
            await again.send(type="hello", token=ann.hi["token"])
            frame = await again.ws.receive()
            if frame.type is aiohttp.WSMsgType.TEXT:
                break
            assert again.ws.close_code == 1012, (frame, again.ws.close_code)
    hi = orjson.loads(frame.data)
    assert hi["type"] == "hi", hi
    assert hi["player_id"] == ann.hi["player_id"]
    # Its totals came back too: the match ended (and was stored) before the kill.
    profile = await (await http.get(f"{n1.http}/applet/players/{hi['player_id']}")).json()
    assert (profile["player"]["wins"], profile["player"]["total_score"]) == (1, 1)
    await again.send(type="join", bot="now")  # and it plays on
    assert (await again.expect("queued"))["type"] == "queued"
    assert (await again.expect("start"))["round"] == 1

"""The shared queue's Lua scripts, run on a real redis-server, against the in-memory
queue as the model: whatever the joins, leaves and process deaths, they pair the same
players in the same order (first come, first served) and keep the same waiting line."""

from __future__ import annotations

import itertools

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from game_server.cluster.keys import Keys
from game_server.cluster.queue import LEAVE, PAIR
from game_server.core.matchmaker import InMemoryMatchmaker
from protocol import BotMode, ProtocolError
from tests.support.redis import RedisServer

PLAYERS = [f"p{n}" for n in range(8)]
NODES = ["n0", "n1", "n2"]
_prefixes = itertools.count()

op = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(PLAYERS), st.sampled_from(NODES)),
    st.tuples(st.just("leave"), st.sampled_from(PLAYERS), st.just("")),
    st.tuples(st.just("kill"), st.just(""), st.sampled_from(NODES)),
)


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(op, max_size=40))
# The moments that matter, always tried: a pair; a leave before anyone came; a waiting
# player whose process died (its ticket is skipped, and replaced when it comes back).
@example(ops=[("join", "p0", "n0"), ("join", "p1", "n1")])
@example(ops=[("join", "p0", "n0"), ("leave", "p0", ""), ("join", "p1", "n1")])
@example(ops=[("join", "p0", "n0"), ("kill", "", "n0"), ("join", "p1", "n1")])
@example(ops=[("join", "p0", "n0"), ("kill", "", "n0"), ("join", "p0", "n1"), ("join", "p1", "n2")])
def test_the_scripts_pair_as_the_in_memory_queue_does(
    client: redis.Redis, ops: list[tuple[str, str, str]]
) -> None:
    keys = Keys(f"model{next(_prefixes)}:")
    queue, tickets, seq = keys.queue("native"), keys.tickets("native"), keys.queue_seq("native")
    live = set(NODES)
    for node in NODES:
        client.set(keys.node(node), "alive")
    model = InMemoryMatchmaker(bot_after=1e9)
    where: dict[str, str] = {}  # each waiting player's process
    for action, player, node in ops:
        if action == "kill":
            if node in live:
                live.discard(node)
                client.delete(keys.node(node))
                for gone in [p for p, n in where.items() if n == node]:
                    model.leave(gone)  # swept: its process is dead (its ticket may linger)
                    del where[gone]
            continue
        if action == "leave":
            if player in where:  # a live waiting player leaves: its ticket goes
                assert client.eval(LEAVE, 2, queue, tickets, player) == 1
                assert model.leave(player)
                del where[player]
            continue
        if node not in live or player in model:
            continue  # no process to join through, or already waiting (refused locally)
        pairings = model.join(player, BotMode.NEVER, 0.0)
        reply = client.eval(
            PAIR, 3, queue, tickets, seq, player, node, "never", keys.node_prefix, ""
        )
        if pairings:
            (pairing,) = pairings
            assert reply[0] == b"paired", (pairing, reply)
            assert reply[1].decode() == pairing.first
            assert pairing.second == player
            where.pop(pairing.first, None)
        else:
            assert reply[0] == b"queued", reply
            where[player] = node
        # The waiting line, live tickets only, is the model's, in the same order.
        waiting = [
            p.decode() for p in client.zrange(queue, 0, -1) if where.get(p.decode(), "") in live
        ]
        assert waiting == list(model)


def test_a_join_while_waiting_is_refused_by_the_model_and_idempotent_in_redis(
    client: redis.Redis,
) -> None:
    keys = Keys(f"model{next(_prefixes)}:")
    client.set(keys.node("n0"), "alive")
    args = (3, keys.queue("native"), keys.tickets("native"), keys.queue_seq("native"))
    first = client.eval(PAIR, *args, "p0", "n0", "never", keys.node_prefix, "")
    again = client.eval(PAIR, *args, "p0", "n0", "never", keys.node_prefix, "")
    assert first[0] == again[0] == b"queued"
    assert first[2] == again[2]  # the same place in the line
    model = InMemoryMatchmaker(bot_after=1e9)
    model.join("p0", BotMode.NEVER, 0.0)
    with pytest.raises(ProtocolError):
        model.join("p0", BotMode.NEVER, 0.0)

"""The shared queue's Lua scripts, run on a real redis-server, against the in-memory
queue as the model: whatever the joins, leaves, waits and process deaths, they pair the
same players at the same moments (closest rating that fits both windows, longest-waiting
served first) and keep the same waiting line."""

from __future__ import annotations

import itertools

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from game_server.cluster.keys import Keys
from game_server.cluster.queue import LEAVE, PAIR
from game_server.core.matchmaker import WIDEN, WINDOW, InMemoryMatchmaker
from game_server.core.ports import Pairing
from protocol import BotMode, ProtocolError
from tests.support.redis import RedisServer

PLAYERS = [f"p{n}" for n in range(8)]
NODES = ["n0", "n1", "n2"]
T0 = 1000.0
_prefixes = itertools.count()

op = st.one_of(
    st.tuples(
        st.just("join"),
        st.sampled_from(PLAYERS),
        st.sampled_from(NODES),
        st.integers(100, 160).map(lambda n: n * 10),  # 1000..1600: ties and near misses
    ),
    st.tuples(st.just("leave"), st.sampled_from(PLAYERS), st.just(""), st.just(0)),
    st.tuples(st.just("kill"), st.just(""), st.sampled_from(NODES), st.just(0)),
    st.tuples(st.just("wait"), st.just(""), st.just(""), st.sampled_from([0, 0.5, 1, 2, 3, 5, 20])),
)


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


class LuaQueue:
    """The scripts driven as the nodes drive them: a join, then a probe of each waiting
    ticket when its window reaches the nearest rating beyond it (from the reply),
    longest-waiting first; every call with the same clock as the model's."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.probes: dict[str, tuple[float | None, int, float]] = {}  # id: probe, seq, joined
        self.where: dict[str, str] = {}  # each waiting player's process

    def pair(self, player: str, node: str, rating: int, kind: str, now: float) -> Pairing | None:
        keys = self.keys
        reply = self.client.eval(
            PAIR,
            3,
            keys.queue("native"),
            keys.tickets("native"),
            keys.queue_seq("native"),
            player,
            node,
            "never",
            keys.node_prefix,
            "",
            str(rating),
            "",
            repr(WINDOW),
            repr(WIDEN),
            kind,
            repr(now),
        )
        outcome = reply[0].decode()
        if outcome == "queued":
            seq, joined, beyond = int(reply[2]), float(reply[3]), float(reply[4])
            probe = None if beyond < 0 else joined + max(0.0, beyond - WINDOW) / WIDEN
            self.probes[player] = (probe, seq, joined)
            self.where[player] = node
            return None
        assert outcome == "paired", reply
        other = reply[1].decode()
        other_seq = int(reply[2].decode().split(",")[2])
        self.where.pop(other, None)
        self.probes.pop(other, None)
        mine = self.probes.pop(player, None)
        self.where.pop(player, None)
        if mine is not None and mine[1] < other_seq:
            return Pairing(player, other)
        return Pairing(other, player)

    def next_probe(self) -> float | None:
        return min((p for p, _, _ in self.probes.values() if p is not None), default=None)

    def tick(self, now: float) -> list[Pairing]:
        due = sorted(
            (seq, player)
            for player, (probe, seq, _) in self.probes.items()
            if probe is not None and probe <= now
        )
        pairings = []
        for _, player in due:
            if player in self.probes:
                made = self.pair(player, self.where[player], 0, "probe", now)
                if made is not None:
                    pairings.append(made)
        return pairings


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(op, max_size=40))
# The moments that matter, always tried: a pair at once; a pair once a window widened; a
# leave before anyone came; a waiting player whose process died (its ticket is skipped,
# and replaced when it comes back); the closest fit over the longest-waiting.
@example(ops=[("join", "p0", "n0", 1500), ("join", "p1", "n1", 1500)])
@example(ops=[("join", "p0", "n0", 1000), ("join", "p1", "n1", 1300), ("wait", "", "", 5)])
@example(ops=[("join", "p0", "n0", 1500), ("leave", "p0", "", 0), ("join", "p1", "n1", 1500)])
@example(ops=[("join", "p0", "n0", 1500), ("kill", "", "n0", 0), ("join", "p1", "n1", 1500)])
@example(
    ops=[
        ("join", "p0", "n0", 1500),
        ("kill", "", "n0", 0),
        ("join", "p0", "n1", 1500),
        ("join", "p1", "n2", 1500),
    ]
)
@example(ops=[("join", "p0", "n0", 1400), ("join", "p1", "n1", 1590), ("join", "p2", "n2", 1500)])
# Equally close on both sides: the longer-waiting one (above), not the first one looked at.
@example(ops=[("join", "p1", "n0", 1560), ("join", "p0", "n1", 1440), ("join", "p2", "n2", 1500)])
# An old player's probe meets a young one inside its window but outside the young one's
# own: they do not fit; the older fit beyond it does.
@example(
    ops=[
        ("join", "p0", "n0", 1000),
        ("join", "p1", "n1", 1300),
        ("wait", "", "", 3),
        ("wait", "", "", 0.5),
        ("join", "p2", "n2", 1150),
        ("wait", "", "", 5),
    ]
)
def test_the_scripts_pair_as_the_in_memory_queue_does(
    client: redis.Redis, ops: list[tuple[str, str, str, float]]
) -> None:
    keys = Keys(f"model{next(_prefixes)}:")
    queue, tickets = keys.queue("native"), keys.tickets("native")
    live = set(NODES)
    for node in NODES:
        client.set(keys.node(node), "alive")
    model = InMemoryMatchmaker(bot_after=1e9)
    lua = LuaQueue(client, keys)
    now = T0

    def advance(to: float) -> None:
        """Every probe due up to ``to``, at its moment, on both sides."""
        while True:
            times = [t for t in (model.next_wakeup, lua.next_probe()) if t is not None]
            when = min(times, default=None)
            if when is None or when > to:
                return
            assert sorted(lua.tick(when)) == sorted(model.tick(when)), when

    for action, player, node, value in ops:
        if action == "wait":
            now += value
            advance(now)
            continue
        if action == "kill":
            if node in live:
                live.discard(node)
                client.delete(keys.node(node))
                for gone in [p for p, n in lua.where.items() if n == node]:
                    model.leave(gone)  # swept: its process is dead (its ticket may linger)
                    del lua.where[gone], lua.probes[gone]
            continue
        if action == "leave":
            if player in lua.where:  # a live waiting player leaves: its ticket goes
                assert client.eval(LEAVE, 2, queue, tickets, player) == 1
                assert model.leave(player)
                del lua.where[player], lua.probes[player]
            continue
        if node not in live or player in model:
            continue  # no process to join through, or already waiting (refused locally)
        pairings = model.join(player, BotMode.NEVER, now, rating=value)
        made = lua.pair(player, node, int(value), "join", now)
        assert pairings == ([] if made is None else [made])
        # The waiting line, live tickets only, is the model's, in the same order.
        waiting = [
            p.decode() for p in client.zrange(queue, 0, -1) if lua.where.get(p.decode(), "") in live
        ]
        assert sorted(waiting) == sorted(model)
        assert sorted(lua.probes, key=lambda p: lua.probes[p][1]) == list(model)
    advance(now + 100)
    assert len(model) <= 1  # windows without limit: nobody is left with someone to meet


def test_a_join_while_waiting_is_refused_by_the_model_and_idempotent_in_redis(
    client: redis.Redis,
) -> None:
    keys = Keys(f"model{next(_prefixes)}:")
    client.set(keys.node("n0"), "alive")
    args = (3, keys.queue("native"), keys.tickets("native"), keys.queue_seq("native"))
    tail = (keys.node_prefix, "", "1500", "", "100.0", "50.0", "join", "1000.0")
    first = client.eval(PAIR, *args, "p0", "n0", "never", *tail)
    again = client.eval(PAIR, *args, "p0", "n0", "never", *tail)
    assert first[0] == again[0] == b"queued"
    assert first[2] == again[2]  # the same place in the line
    model = InMemoryMatchmaker(bot_after=1e9)
    model.join("p0", BotMode.NEVER, 0.0)
    with pytest.raises(ProtocolError):
        model.join("p0", BotMode.NEVER, 0.0)


def test_a_probe_of_a_ticket_another_process_took_says_gone(client: redis.Redis) -> None:
    keys = Keys(f"model{next(_prefixes)}:")
    client.set(keys.node("n0"), "alive")
    args = (3, keys.queue("native"), keys.tickets("native"), keys.queue_seq("native"))
    tail = (keys.node_prefix, "", "1500", "", "100.0", "50.0", "probe", "1000.0")
    assert client.eval(PAIR, *args, "p0", "n0", "never", *tail) == [b"gone"]
    assert client.zcard(keys.queue("native")) == 0


def test_the_walk_pages_past_players_who_do_not_fit(client: redis.Redis) -> None:
    """Forty young players inside an old player's window but too far from it for their
    own windows, and one old fit beyond them: the probe walks past them, a page at a
    time, and finds it."""
    keys = Keys(f"model{next(_prefixes)}:")
    client.set(keys.node("n0"), "alive")
    args = (3, keys.queue("native"), keys.tickets("native"), keys.queue_seq("native"))

    def pair(player: str, rating: float, kind: str, now: float) -> list[bytes]:
        reply: list[bytes] = client.eval(
            PAIR, *args, player, "n0", "never", keys.node_prefix, "", repr(rating), "",
            "100.0", "50.0", kind, repr(now),
        )  # fmt: skip
        return reply

    assert pair("old", 1000.0, "join", 0.0)[0] == b"queued"
    assert pair("far", 5289.0, "join", 0.0)[0] == b"queued"
    for n in range(40):  # 1200, 1301, ... 5139: 101 apart, none within another's reach
        assert pair(f"young{n}", 1200.0 + 101 * n, "join", 100.0)[0] == b"queued"
    reply = pair("old", 0.0, "probe", 100.0)  # old's window is 5,100 wide by now
    assert reply[:2] == [b"paired", b"far"]
    assert client.zcard(keys.queue("native")) == 40

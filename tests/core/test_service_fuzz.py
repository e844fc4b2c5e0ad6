"""Whatever clients send, in any order and at any time, the service neither raises nor
loses track of who is where."""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game_server.core.match import MatchRules
from game_server.core.service import GameService, ServiceConfig
from protocol import Error, Hi, Pong, Start
from tests.support.fakes import FakeClock, RecordingOutlet

TYPES = ["hello", "join", "choice", "face", "leave", "ping", "dance", "", None, 3]
FIELDS = [
    "name",
    "avatar",
    "token",
    "bot",
    "match_id",
    "round",
    "choice",
    "final",
    "face",
    "t",
    "id",
]
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["rock", "paper", "scissors", "auto", "now", "never", "m_", "https://a.b/c"]),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
message = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={name: json_value for name in FIELDS},
)


@st.composite
def frame(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["message", "bytes", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "json":
        return orjson.dumps(draw(json_value))
    return orjson.dumps(draw(message))


# One step: which client acts, and what it does.
step = st.tuples(
    st.integers(min_value=0, max_value=2),
    st.one_of(
        frame().map(lambda data: ("frame", data)),
        st.just(("valid_choice", b"")),
        st.just(("join", b"")),
        st.floats(min_value=0, max_value=8).map(lambda dt: ("advance", dt)),
        st.just(("disconnect", b"")),
        st.just(("reconnect", b"")),
    ),
)


def check_invariants(service: GameService) -> None:
    """Every player's state agrees with its fields (``core/players.py``), and every room
    with the players seated in it."""
    service.roster.check(service.online, service.lobbies.is_queued)
    for match_id, room in service.rooms.by_id.items():
        assert room.match.match_id == match_id
        assert not room.closed
        for human in room.humans:
            assert human.room is room
            assert human.id not in service.matchmaker
    for player in service.roster.by_id.values():
        if player.room is not None:
            assert player.room.match.match_id in service.rooms.by_id


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(step, max_size=60), st.randoms(use_true_random=False))
def test_any_sequence_of_frames_keeps_the_service_sound(
    steps: list[tuple[int, tuple[str, Any]]], rnd: random.Random
) -> None:
    clock = FakeClock()
    service = GameService(
        ServiceConfig(
            rules=MatchRules(best_of=3, round_seconds=2.0, round_pause=0.5),
            bot_after=1.0,
            bot_think=(0.0, 1.0),
        ),
        clock,
        rng=rnd,
    )
    outlets = [RecordingOutlet() for _ in range(3)]
    sessions = [service.connect(outlet) for outlet in outlets]
    for index in range(2):  # two clients start with hello, one never does unless fuzzed
        service.receive(sessions[index], b'{"type":"hello"}')
    for who, (action, value) in steps:
        session, outlet = sessions[who], outlets[who]
        if action == "frame":
            if session.closed:
                continue
            service.receive(session, value)
        elif action == "valid_choice":
            starts = outlet.of(Start)
            if starts and not session.closed:
                last = starts[-1]
                service.receive(
                    session,
                    orjson.dumps(
                        {
                            "type": "choice",
                            "match_id": last.match_id,
                            "round": last.round,
                            "choice": "rock",
                        }
                    ),
                )
        elif action == "join" and not session.closed:
            service.receive(session, b'{"type":"join","bot":"auto"}')
        elif action == "advance":
            clock.advance(value)
            service.tick()
        elif action == "disconnect":
            service.disconnect(session)
        elif action == "reconnect" and session.closed:
            his = outlet.of(Hi)
            outlets[who] = outlet = RecordingOutlet()
            sessions[who] = session = service.connect(outlet)
            token = his[-1].token if his else None
            hello: dict[str, Any] = {"type": "hello"}
            if token:
                hello["token"] = token
            service.receive(session, orjson.dumps(hello))
        check_invariants(service)
    # Every session still open still answers.
    clock.advance(100)  # past any flood-control penalty (and every hello deadline)
    service.tick()
    for session, outlet in zip(sessions, outlets, strict=True):
        if session.closed or outlet.closed:
            continue
        outlet.take()
        service.receive(session, b'{"type":"ping","t":1}')
        reply = outlet.sent[-1]
        if session.player is None:
            assert isinstance(reply, Error)
        else:
            assert reply == Pong(t=1)
    # And everything winds down: matches end, nothing leaks once players are forgotten.
    for session in sessions:
        service.disconnect(session)
    clock.advance(service.config.reconnect_grace)  # seats and queue entries given up
    service.tick()
    clock.advance(service.config.forget_after)
    service.tick()
    assert service.rooms.by_id == {}
    assert service.roster.by_id == {}
    assert len(service.matchmaker) == 0
    assert service.online == 0
    assert service.timers.pending == 0

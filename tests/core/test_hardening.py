"""Limits against abuse in the game core, on a fake clock: the hello deadline, guests that
cost nothing durable until they play, and the per-address bucket for token-less hellos."""

from __future__ import annotations

import random
from typing import Any

from game_server.core.match import MatchRules
from game_server.core.service import GameService, ServiceConfig
from protocol import Bye, CloseCode, Hi
from tests.support.fakes import FakeClock
from tests.support.service import connect


def make(**overrides: Any) -> tuple[GameService, FakeClock]:
    rules = overrides.pop("rules", MatchRules(best_of=1, round_seconds=5.0, round_pause=0.0))
    config = ServiceConfig(rules=rules, **{"bot_think": (0.0, 0.0), **overrides})
    clock = FakeClock()
    return GameService(config, clock, rng=random.Random(7)), clock


def test_a_connection_that_never_says_hello_is_closed_at_the_deadline() -> None:
    service, clock = make(hello_timeout=15.0)
    silent, talker = connect(service), connect(service)
    clock.advance(14.9)
    service.tick()
    assert silent.outlet.closed is None
    talker.hello(name="Talker")
    clock.advance(0.2)
    service.tick()
    assert silent.outlet.last(Bye).reason == "hello_timeout"
    assert silent.outlet.closed == (CloseCode.POLICY_VIOLATION, "hello_timeout")
    assert silent.session.closed
    assert talker.outlet.closed is None  # it said hello in time
    clock.advance(60)
    service.tick()
    assert talker.outlet.closed is None


def test_a_refused_hello_does_not_stop_the_deadline() -> None:
    service, clock = make(hello_timeout=15.0)
    client = connect(service)
    client.say(type="hello", token="forged")
    clock.advance(16)
    service.tick()
    assert client.outlet.closed == (CloseCode.POLICY_VIOLATION, "hello_timeout")
    assert not client.outlet.of(Hi)


def test_no_hello_deadline_when_turned_off() -> None:
    service, clock = make(hello_timeout=None)
    client = connect(service)
    clock.advance(3600)
    service.tick()
    assert client.outlet.closed is None
    assert service.timers.pending == 0

"""Limits against abuse in the game core, on a fake clock: the hello deadline, guests that
cost nothing durable until they play, and the per-address bucket for token-less hellos."""

from __future__ import annotations

import random
from typing import Any

from game_server.core.match import MatchRules
from game_server.core.players import GUEST_FORGET_AFTER
from game_server.core.ratelimit import AddressBuckets
from game_server.core.service import GameService, ServiceConfig
from protocol import Bye, CloseCode, Hi, Start
from tests.support.fakes import FakeClock, MemoryStore
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


def test_token_less_hellos_are_metered_per_address() -> None:
    service, clock = make(guest_rate=2.0, guest_burst=5.0)

    def guest(address: str) -> str:
        client = connect(service)
        client.session.address = address
        client.say(type="hello", id="h")
        if client.outlet.of(Hi):
            return "hi"
        error = client.error()
        assert error.ref == "h"
        return error.code.value

    assert [guest("198.51.100.1") for _ in range(7)] == ["hi"] * 5 + ["rate_limited"] * 2
    assert guest("198.51.100.2") == "hi"  # another address has its own bucket
    assert guest("2001:db8::1") == "hi"
    assert guest("2001:db8::2") == "hi"  # the same /64 shares one
    clock.advance(1.0)  # two a second come back
    assert [guest("198.51.100.1") for _ in range(3)] == ["hi", "hi", "rate_limited"]
    # A hello with a token is a returning player: never metered.
    first = connect(service)
    first.session.address = "198.51.100.3"
    token = first.hello().token
    for _ in range(10):
        again = connect(service)
        again.session.address = "198.51.100.1"
        again.say(type="hello", token=token)
        assert again.outlet.of(Hi)


def test_a_guest_costs_no_row_until_it_plays_and_no_memory_once_gone() -> None:
    store = MemoryStore()
    config = ServiceConfig(
        rules=MatchRules(best_of=1, round_seconds=5.0, round_pause=0.0),
        bot_think=(0.0, 0.0),
        guest_rate=None,
    )
    clock = FakeClock()
    service = GameService(config, clock, rng=random.Random(1), store=store)
    for _ in range(2000):  # a flood of guests that never play
        client = connect(service)
        client.hello(name="flood")
        service.disconnect(client.session)
    assert store.players == {}
    clock.advance(GUEST_FORGET_AFTER)  # time to come back after a dropped socket, then gone
    service.tick()
    assert service.roster.by_id == {}
    assert service.timers.pending == 0
    # One that plays is stored with its match, and remembered a while after it leaves.
    player = connect(service)
    player_id = player.hello(name="Player").player_id
    player.say(type="join", bot="now")
    player.choose("rock")
    clock.advance(5.0)
    service.tick()
    assert set(store.players) == {player_id}
    service.disconnect(player.session)
    assert set(service.roster.by_id) == {player_id}


def test_an_uploaded_avatar_reaches_opponents_and_is_stored_with_a_stored_player() -> None:
    store = MemoryStore()
    config = ServiceConfig(
        rules=MatchRules(best_of=1, round_seconds=5.0, round_pause=0.0), bot_think=(0.0, 0.0)
    )
    clock = FakeClock()
    service = GameService(config, clock, rng=random.Random(1), store=store)
    url = "https://game.example.com/applet/avatars/" + "c" * 32
    ann, bob = connect(service), connect(service)
    ann_id = ann.hello(name="Ann").player_id
    bob.hello(name="Bob")
    assert service.player_of(ann.outlet.last(Hi).token) == ann_id
    # A guest who never played: its live copy carries the avatar, nothing is stored yet.
    assert service.set_avatar(ann_id, url) is True
    assert store.players == {}
    ann.say(type="join", bot="never")
    bob.say(type="join", bot="never")
    assert bob.outlet.last(Start).opponent.avatar == url
    ann.choose("rock")
    clock.advance(5.0)
    service.tick()
    assert store.players[ann_id].avatar == url  # stored with its first match
    # A stored player's new avatar is saved at once; one this process does not hold is
    # the caller's to store.
    again = url.replace("c" * 32, "d" * 32)
    assert service.set_avatar(ann_id, again) is True
    assert store.players[ann_id].avatar == again
    assert service.set_avatar("p_elsewhere", url) is False


def test_address_buckets_stay_bounded() -> None:
    buckets = AddressBuckets(rate=1.0, burst=2.0, max_keys=100)
    for n in range(10_000):
        buckets.take(f"a{n}", now=float(n))
        assert len(buckets) <= 100
    # At a prune, an address still short of tokens keeps its bucket; full ones go.
    buckets = AddressBuckets(rate=1.0, burst=2.0, max_keys=3)
    assert buckets.take("busy", 0.0)
    assert buckets.take("busy", 0.0)
    assert buckets.take("idle1", 0.0)
    assert buckets.take("idle2", 0.0)
    assert buckets.take("new", 1.9)  # busy has 1.9 tokens, the idle ones 2 again
    assert len(buckets) == 2
    assert buckets.take("busy", 1.9)
    assert not buckets.take("busy", 1.9)


def test_a_guest_bucket_is_forgotten_once_full_again_and_no_timer_stays() -> None:
    service, clock = make(guest_rate=2.0, guest_burst=5.0)  # full again 2.5 s after empty
    guests = service.presence.guests
    assert guests is not None

    def hello_from(address: str) -> None:
        client = connect(service)
        client.session.address = address
        client.say(type="hello")

    for n in range(3):
        hello_from(f"198.51.100.{n}")
    assert len(guests) == 3
    clock.advance(2.0)
    service.tick()
    for _ in range(5):
        hello_from("198.51.100.9")  # this address empties its bucket
    assert len(guests) == 4
    clock.advance(0.5)  # the first prune, 2.5 s after the first hello
    service.tick()
    assert len(guests) == 1  # 198.51.100.9 has 1 token of 5 back: still remembered
    clock.advance(2.5)
    service.tick()
    assert len(guests) == 0
    assert service.timers.pending == 0  # the pruning timer is gone with the buckets
    hello_from("198.51.100.1")  # a new one starts over
    assert len(guests) == 1
    assert service.timers.pending == 1

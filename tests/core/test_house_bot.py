"""The house bot's plans: one final choice a round (the native lobby's), or a first choice
and a few changes of mind before the deadline (the legacy lobby's robot, as in the demo)."""

from __future__ import annotations

import itertools
import random

import pytest

from game_server.core.house_bot import HouseBot, PlannedChoice
from game_server.core.rooms import Room
from game_server.core.service import GameService, ServiceConfig
from game_server.core.strategies import make_strategy
from game_server.net.socketio import LEGACY_BOT_CHANGES, LEGACY_LOBBY, SocketIODialect
from protocol import BotMode, Hello, Join, Movement, MovementKind, Opponent, Result, Score, Start
from tests.support.fakes import FakeClock, RecordingOutlet

NOW = 100.0
THINK = (0.4, 1.6)


def start(round_ms: int = 3000) -> Start:
    return Start(
        match_id="m_1",
        round=1,
        best_of=1,
        round_ms=round_ms,
        opponent=Opponent(id="p_1", name="Ann"),
        score=Score(you=0, opponent=0),
    )


def bot(seed: int, changes: tuple[int, int] | None = None) -> HouseBot:
    strategy = make_strategy("random", random.Random(seed))
    rng = random.Random(seed + 1)
    if changes is None:
        return HouseBot("bot_1", "Rocky", strategy, THINK, rng)
    return HouseBot("bot_1", "Rocky", strategy, THINK, rng, changes=changes)


@pytest.mark.parametrize("seed", range(20))
def test_the_native_bot_plays_one_final_choice_as_before(seed: int) -> None:
    plan = bot(seed).on_message(start(), NOW)
    # What the bot always did, with the same random numbers in the same order.
    rng, strategy = random.Random(seed + 1), make_strategy("random", random.Random(seed))
    when = NOW + min(rng.uniform(*THINK), 3.0 * 0.8)
    assert plan == PlannedChoice(when, 1, strategy.next_choice(), final=True, then=None)
    assert plan is not None
    assert plan.chain() == [plan]


@pytest.mark.parametrize("seed", range(50))
def test_the_legacy_robot_changes_its_mind_before_the_deadline(seed: int) -> None:
    low, high = LEGACY_BOT_CHANGES
    assert low >= 2
    first = bot(seed, LEGACY_BOT_CHANGES).on_message(start(), NOW)
    assert first is not None
    plans = first.chain()
    assert low + 1 <= len(plans) <= high + 1
    times = [p.when for p in plans]
    assert times == sorted(times)
    assert len(set(times)) == len(times)  # several moments, not one
    assert NOW + THINK[0] <= times[0]
    assert times[-1] <= NOW + 3.0 * 0.8  # settled before the 3 s deadline
    assert [p.final for p in plans] == [False] * (len(plans) - 1) + [True]
    assert {p.round for p in plans} == {1}
    hands = [p.choice for p in plans]
    assert all(a is not b for a, b in itertools.pairwise(hands)), hands
    # It settles on its strategy's hand: the steady bot with the same seed plays it.
    steady = bot(seed).on_message(start(), NOW)
    assert steady is not None
    assert hands[-1] is steady.choice


def test_other_messages_plan_nothing() -> None:
    fickle = bot(1, LEGACY_BOT_CHANGES)
    assert (
        fickle.on_message(Movement(match_id="m_1", round=1, kind=MovementKind.CHOICE), NOW) is None
    )


def bot_choices(
    service: GameService, clock: FakeClock, room: Room
) -> list[tuple[float, str, bool]]:
    """Fire the bot's timers one by one: when it chose, what its seat holds, and if final."""
    seat = room.bot_seat
    assert seat is not None
    seen = []
    while room.bot_timer is not None and not room.bot_timer.cancelled:
        clock.now = room.bot_timer.when
        service.tick()
        resume = room.match.resume_for(seat, clock.now)
        assert resume.choice is not None
        seen.append((clock.now, resume.choice.value, resume.final))
    return seen


def test_in_the_service_only_the_legacy_lobby_robot_changes_its_mind() -> None:
    clock = FakeClock(NOW)
    service = GameService(ServiceConfig(bot_think=THINK), clock, rng=random.Random(3))
    SocketIODialect().install(service)
    outlet = RecordingOutlet()
    session = service.connect(outlet, LEGACY_LOBBY)
    service.handle(session, Hello(name="Ann"))
    service.handle(session, Join())
    clock.advance(1.0)  # the legacy robot's wait
    service.tick()
    begun = outlet.last(Start)
    room = service.rooms.by_id[begun.match_id]
    seen = bot_choices(service, clock, room)
    assert len(seen) >= 3, seen
    assert all(when < NOW + 1.0 + 3.0 for when, _, _ in seen)
    assert [final for _, _, final in seen] == [False] * (len(seen) - 1) + [True]
    hands = [hand for _, hand, _ in seen]
    assert all(a != b for a, b in itertools.pairwise(hands)), hands
    # The player sees that the robot chose (once: like a human's, later changes are not
    # announced), and the hand it settled on counts at the deadline.
    assert len(outlet.of(Movement)) == 1
    clock.now = NOW + 1.0 + 3.0
    service.tick()
    result = outlet.last(Result)
    assert result.opponent is not None
    assert result.opponent.value == hands[-1]

    # The native lobby's bot, in the same service: one final choice.
    native_outlet = RecordingOutlet()
    native = service.connect(native_outlet)
    service.handle(native, Hello(name="Bob"))
    service.handle(native, Join(bot=BotMode.NOW))
    room = service.rooms.by_id[native_outlet.last(Start).match_id]
    seen = bot_choices(service, clock, room)
    assert len(seen) == 1
    assert seen[0][2] is True

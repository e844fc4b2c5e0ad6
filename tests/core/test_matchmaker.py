"""Tests for the in-memory matchmaker (equals meet equals), driven by plain float clocks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from game_server.core.matchmaker import WIDEN, WINDOW, InMemoryMatchmaker
from game_server.core.ports import Matchmaker, Pairing
from protocol import BotMode, ErrorCode, ProtocolError

AUTO, NOW, NEVER = BotMode.AUTO, BotMode.NOW, BotMode.NEVER
BOT_AFTER = 10.0
T0 = 1000.0


@pytest.fixture
def queue() -> InMemoryMatchmaker:
    return InMemoryMatchmaker(bot_after=BOT_AFTER)


def test_satisfies_the_matchmaker_protocol(queue: InMemoryMatchmaker) -> None:
    port: Matchmaker = queue
    assert len(port) == 0
    assert port.next_wakeup is None


def test_negative_bot_after_is_refused() -> None:
    with pytest.raises(ValueError, match="bot_after"):
        InMemoryMatchmaker(bot_after=-1)


def test_first_come_first_served_pairing(queue: InMemoryMatchmaker) -> None:
    assert queue.join("alice", AUTO, T0) == []
    assert "alice" in queue
    assert queue.position("alice") == 1
    # the one who waited longest comes first
    assert queue.join("bob", AUTO, T0 + 1) == [Pairing("alice", "bob")]
    assert len(queue) == 0
    assert "alice" not in queue
    assert "bob" not in queue
    assert queue.next_wakeup is None
    # the alice ticket is gone: its bot deadline brings nothing
    assert queue.tick(T0 + BOT_AFTER) == []


@pytest.mark.parametrize("waiting_mode", [AUTO, NEVER])
@pytest.mark.parametrize("joining_mode", [AUTO, NEVER])
def test_any_two_humans_pair(
    queue: InMemoryMatchmaker, waiting_mode: BotMode, joining_mode: BotMode
) -> None:
    assert queue.join("alice", waiting_mode, T0) == []
    assert queue.join("bob", joining_mode, T0 + 5) == [Pairing("alice", "bob")]
    assert len(queue) == 0


def test_now_pairs_with_a_bot_immediately(queue: InMemoryMatchmaker) -> None:
    assert queue.join("alice", NOW, T0) == [Pairing("alice", None)]
    assert "alice" not in queue
    assert len(queue) == 0
    assert queue.next_wakeup is None


def test_now_does_not_take_a_waiting_human(queue: InMemoryMatchmaker) -> None:
    queue.join("alice", NEVER, T0)
    assert queue.join("bob", NOW, T0 + 1) == [Pairing("bob", None)]
    assert "alice" in queue
    assert "bob" not in queue
    assert len(queue) == 1


def test_auto_gets_a_bot_exactly_at_bot_after(queue: InMemoryMatchmaker) -> None:
    assert queue.join("alice", AUTO, T0) == []
    assert queue.next_wakeup == T0 + BOT_AFTER
    assert queue.tick(T0) == []
    assert queue.tick(T0 + BOT_AFTER - 0.001) == []
    assert "alice" in queue
    assert queue.tick(T0 + BOT_AFTER) == [Pairing("alice", None)]
    assert "alice" not in queue
    assert queue.next_wakeup is None
    assert queue.tick(T0 + BOT_AFTER + 1) == []  # only once


def test_auto_late_tick_still_pairs_once(queue: InMemoryMatchmaker) -> None:
    queue.join("alice", AUTO, T0)
    assert queue.tick(T0 + 3 * BOT_AFTER) == [Pairing("alice", None)]
    assert queue.tick(T0 + 4 * BOT_AFTER) == []


def test_never_waits_forever(queue: InMemoryMatchmaker) -> None:
    assert queue.join("alice", NEVER, T0) == []
    assert queue.next_wakeup is None
    assert queue.tick(T0 + BOT_AFTER) == []
    assert queue.tick(T0 + 1e9) == []
    assert "alice" in queue
    assert len(queue) == 1
    # ... until a human comes
    assert queue.join("bob", AUTO, T0 + 1e9) == [Pairing("alice", "bob")]


@pytest.mark.parametrize("first_mode", [AUTO, NEVER])
@pytest.mark.parametrize("second_mode", [AUTO, NEVER, NOW])
def test_double_join_is_already_queued(
    queue: InMemoryMatchmaker, first_mode: BotMode, second_mode: BotMode
) -> None:
    queue.join("alice", first_mode, T0)
    with pytest.raises(ProtocolError) as caught:
        queue.join("alice", second_mode, T0 + 1)
    assert caught.value.code is ErrorCode.ALREADY_QUEUED
    # the original ticket is untouched, and alice was not paired with herself
    assert len(queue) == 1
    assert queue.position("alice") == 1
    expected = T0 + BOT_AFTER if first_mode is AUTO else None
    assert queue.next_wakeup == expected


def test_leave_removes_and_reports(queue: InMemoryMatchmaker) -> None:
    assert queue.leave("alice") is False
    queue.join("alice", AUTO, T0)
    assert queue.leave("alice") is True
    assert "alice" not in queue
    assert len(queue) == 0
    assert queue.leave("alice") is False
    assert queue.next_wakeup is None
    assert queue.tick(T0 + BOT_AFTER) == []  # no bot for someone who left


def test_join_leave_join_never_pairs_with_itself(queue: InMemoryMatchmaker) -> None:
    assert queue.join("alice", AUTO, T0) == []
    assert queue.leave("alice") is True
    assert queue.join("alice", AUTO, T0 + 2) == []
    assert len(queue) == 1
    assert queue.position("alice") == 1
    # the new ticket's clock starts at the second join
    assert queue.next_wakeup == T0 + 2 + BOT_AFTER
    assert queue.tick(T0 + BOT_AFTER) == []
    assert queue.tick(T0 + 2 + BOT_AFTER) == [Pairing("alice", None)]


def test_rejoin_after_being_paired(queue: InMemoryMatchmaker) -> None:
    queue.join("alice", AUTO, T0)
    queue.join("bob", AUTO, T0 + 1)
    assert queue.join("alice", AUTO, T0 + 2) == []
    assert queue.join("bob", NEVER, T0 + 3) == [Pairing("alice", "bob")]


def test_zero_bot_after_pairs_auto_at_once() -> None:
    queue = InMemoryMatchmaker(bot_after=0)
    assert queue.join("alice", AUTO, T0) == [Pairing("alice", None)]
    assert "alice" not in queue
    assert queue.next_wakeup is None
    # never still waits
    assert queue.join("bob", NEVER, T0) == []
    assert queue.tick(T0 + 100) == []
    assert queue.join("carol", AUTO, T0 + 100) == [Pairing("bob", "carol")]


def test_next_wakeup_skips_never_tickets(queue: InMemoryMatchmaker) -> None:
    queue.join("alice", NEVER, T0)
    assert queue.next_wakeup is None
    queue.leave("alice")
    queue.join("bob", AUTO, T0 + 5)
    assert queue.next_wakeup == T0 + 5 + BOT_AFTER


def test_len_contains_and_position(queue: InMemoryMatchmaker) -> None:
    assert len(queue) == 0
    assert "alice" not in queue
    assert 42 not in queue
    assert queue.position("alice") is None
    queue.join("alice", NEVER, T0)
    assert len(queue) == 1
    assert "alice" in queue
    assert "bob" not in queue
    assert queue.position("bob") is None


def test_a_mix_of_three_players(queue: InMemoryMatchmaker) -> None:
    # alice waits for a human; bob wants a bot now; carol pairs with alice
    assert queue.join("alice", NEVER, T0) == []
    assert queue.join("bob", NOW, T0 + 1) == [Pairing("bob", None)]
    assert list(queue_state(queue)) == ["alice"]
    assert queue.join("carol", AUTO, T0 + 2) == [Pairing("alice", "carol")]
    assert len(queue) == 0

    # another round: alice (auto) waits, bob (never) arrives before her bot is due
    assert queue.join("alice", AUTO, T0 + 20) == []
    assert queue.tick(T0 + 20 + BOT_AFTER / 2) == []
    assert queue.join("bob", NEVER, T0 + 20 + BOT_AFTER / 2) == [Pairing("alice", "bob")]
    # carol (auto) is then alone and gets a bot on time
    assert queue.join("carol", AUTO, T0 + 40) == []
    assert queue.next_wakeup == T0 + 40 + BOT_AFTER
    assert queue.tick(T0 + 40 + BOT_AFTER) == [Pairing("carol", None)]
    assert len(queue) == 0


def queue_state(queue: InMemoryMatchmaker) -> list[str]:
    return [
        player
        for player in ("alice", "bob", "carol")
        if player in queue and queue.position(player) is not None
    ]


# ---------------------------------------------------------------- by rating


def test_the_defaults_are_the_issues() -> None:
    assert (WINDOW, WIDEN) == (100.0, 50.0)


def test_a_join_within_the_window_pairs_at_once(queue: InMemoryMatchmaker) -> None:
    assert queue.join("alice", NEVER, T0, rating=1500) == []
    assert queue.join("bob", NEVER, T0, rating=1600) == [Pairing("alice", "bob")]  # 100: in


def test_the_window_widens_with_the_younger_players_wait(queue: InMemoryMatchmaker) -> None:
    """150 apart: they fit once the younger one's window (100 + 50/s) reaches 150, a
    second after it joined; the older one's window is wider already."""
    assert queue.join("alice", NEVER, T0, rating=1500) == []
    assert queue.join("bob", NEVER, T0 + 0.5, rating=1650) == []
    assert queue.next_wakeup == T0 + 1.5
    assert queue.tick(T0 + 1.49) == []
    assert queue.tick(T0 + 1.5) == [Pairing("alice", "bob")]
    assert len(queue) == 0
    assert queue.next_wakeup is None


def test_the_closest_rated_fit_wins_over_the_longest_waiting(
    queue: InMemoryMatchmaker,
) -> None:
    queue.join("old", NEVER, T0, rating=1450)
    queue.join("near", NEVER, T0 + 1, rating=1580)  # 130 from old: not yet
    assert queue.join("carol", NEVER, T0 + 1, rating=1560) == [Pairing("near", "carol")]
    assert list(queue) == ["old"]


def test_equally_close_goes_to_the_longer_waiting(queue: InMemoryMatchmaker) -> None:
    queue.join("high", NEVER, T0, rating=1560)
    queue.join("low", NEVER, T0 + 1, rating=1440)  # 120 apart: not yet
    assert queue.join("mid", NEVER, T0 + 1, rating=1500) == [Pairing("high", "mid")]


def test_a_far_player_is_not_paired_before_its_window_reaches(
    queue: InMemoryMatchmaker,
) -> None:
    queue.join("alice", NEVER, T0, rating=1000)
    assert queue.join("bob", NEVER, T0, rating=2000) == []  # 1000 apart: 18 s of widening
    assert queue.next_wakeup == T0 + 18.0
    assert queue.tick(T0 + 17.9) == []
    assert queue.tick(T0 + 18.0) == [Pairing("alice", "bob")]


def test_never_widens_without_limit(queue: InMemoryMatchmaker) -> None:
    queue.join("alice", NEVER, T0, rating=500)
    queue.join("bob", NEVER, T0, rating=2900)
    assert queue.next_wakeup == T0 + (2400 - 100) / 50  # 46 s: no bot ever comes
    assert queue.tick(T0 + 45.9) == []
    assert queue.tick(T0 + 46) == [Pairing("alice", "bob")]


def test_the_longest_waiting_is_served_first() -> None:
    """A late tick finds every window wide: bob (who waited longer) is served before
    carol, and takes alice, closer to him than carol is; carol waits on."""
    queue = InMemoryMatchmaker(bot_after=BOT_AFTER)
    queue.join("alice", NEVER, T0, rating=1000)
    queue.join("bob", NEVER, T0 + 1, rating=1160)
    queue.join("carol", NEVER, T0 + 2, rating=1330)
    assert queue.tick(T0 + 100) == [Pairing("alice", "bob")]
    assert list(queue) == ["carol"]


def test_a_bot_comes_only_when_no_human_fits(queue: InMemoryMatchmaker) -> None:
    queue.join("alice", AUTO, T0, rating=1500)
    queue.join("bob", NEVER, T0 + 1, rating=2200)  # 700 apart: 13 s of bob's widening
    assert queue.next_wakeup == T0 + BOT_AFTER
    assert queue.tick(T0 + BOT_AFTER) == [Pairing("alice", None)]
    assert list(queue) == ["bob"]
    # A human who fits before the bot is due takes the seat instead.
    queue.join("carol", AUTO, T0 + 20, rating=1500)
    queue.join("dave", NEVER, T0 + 21, rating=1780)  # fits 3.6 s after dave joined
    assert queue.tick(T0 + 24.6) == [Pairing("carol", "dave")]
    assert list(queue) == ["bob"]


def test_a_leave_takes_the_ticket_out_of_the_rating_order(queue: InMemoryMatchmaker) -> None:
    queue.join("alice", NEVER, T0, rating=1500)
    queue.join("bob", NEVER, T0, rating=1520 + 150)
    assert queue.leave("alice") is True
    assert queue.tick(T0 + 100) == []  # bob's probe finds nobody
    assert queue.join("carol", NEVER, T0 + 100, rating=1500) == []  # 170: too far for carol
    assert queue.next_wakeup == T0 + 100 + 70 / 50


def test_the_2016_lobby_pairs_anyone_first_come_first_served() -> None:
    queue = InMemoryMatchmaker(bot_after=1.0, window=math.inf)
    queue.join("alice", AUTO, T0, rating=900)
    queue.join("bob", AUTO, T0, rating=2900)
    assert queue.join("carol", AUTO, T0, rating=2000) == []
    assert queue.tick(T0) == []


PLAYERS = [f"p{n}" for n in range(10)]
event = st.one_of(
    st.tuples(
        st.just("join"),
        st.sampled_from(PLAYERS),
        st.sampled_from([AUTO, NEVER, NOW]),
        st.integers(1000, 2200),  # ratings apart by up to 24 s of widening
        st.floats(0, 3),  # seconds since the event before
    ),
    st.tuples(
        st.just("leave"), st.sampled_from(PLAYERS), st.just(NEVER), st.just(0), st.floats(0, 3)
    ),
    st.tuples(st.just("wait"), st.just(""), st.just(NEVER), st.just(0), st.floats(0, 30)),
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(event, max_size=60))
def test_the_rule_holds_whatever_happens(
    events: list[tuple[str, str, BotMode, int, float]],
) -> None:
    """Driven as the service drives it (a tick at every ``next_wakeup``), against a brute
    force over every waiting player: a join takes the closest-rated player that fits
    (ties to the longer-waiting); every pair fits when made; no player is seated twice
    or while not waiting; nobody waits beside someone who fits; a bot only for an auto
    ticket that waited ``bot_after``."""
    queue = InMemoryMatchmaker(bot_after=BOT_AFTER)
    waiting: dict[str, tuple[float, float, BotMode, int]] = {}  # id: rating, joined, mode, n
    arrivals = 0
    now = T0

    def window(player: str, at: float) -> float:
        return WINDOW + WIDEN * (at - waiting[player][1])

    def fits(a: str, b: str, at: float) -> bool:
        distance = abs(waiting[a][0] - waiting[b][0])
        return distance <= min(window(a, at), window(b, at)) + 1e-6

    def seat(pairings: list[Pairing], at: float) -> None:
        for pairing in pairings:
            assert pairing.first in waiting
            if pairing.second is None:
                _, joined, mode, _ = waiting.pop(pairing.first)
                assert mode is AUTO
                assert joined + BOT_AFTER <= at + 1e-9
                continue
            assert pairing.second in waiting
            assert fits(pairing.first, pairing.second, at)
            del waiting[pairing.first], waiting[pairing.second]

    def run_until(at: float) -> float:
        """Every wake-up before ``at``, as the service's timers would fire them."""
        while (wake := queue.next_wakeup) is not None and wake <= at:
            seat(queue.tick(wake), wake)
            check(wake)
        return at

    def check(at: float) -> None:
        assert sorted(queue) == sorted(waiting)
        players = list(waiting)
        for index, a in enumerate(players):
            for b in players[index + 1 :]:
                distance = abs(waiting[a][0] - waiting[b][0])
                # Nobody fits anybody left waiting (a hair of slack for rounding).
                assert distance > min(window(a, at), window(b, at)) - 1e-6, (a, b, at)

    for action, player, mode, rating, gap in events:
        now = run_until(now + gap)
        if action == "leave":
            assert queue.leave(player) is (player in waiting)
            waiting.pop(player, None)
        elif action == "join" and player not in waiting:
            candidates = [
                other
                for other in waiting
                if abs(waiting[other][0] - rating) <= WINDOW and mode is not NOW
            ]
            arrivals += 1
            pairings = queue.join(player, mode, now, rating=rating)
            if mode is NOW:
                assert pairings == [Pairing(player, None)]
                continue
            if candidates:
                best = min(candidates, key=lambda o: (abs(waiting[o][0] - rating), waiting[o][3]))
                assert pairings[0] == Pairing(best, player)
                del waiting[best]
                seat(pairings[1:], now)
            else:
                waiting[player] = (float(rating), now, mode, arrivals)
                seat(pairings, now)
        check(now)
    run_until(now + 1000)
    assert len(waiting) <= 1  # anyone left had nobody at all to meet
    assert all(mode is NEVER for _, _, mode, _ in waiting.values())

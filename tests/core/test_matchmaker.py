"""Tests for the in-memory FIFO matchmaker, driven by plain float clocks."""

from __future__ import annotations

import pytest

from game_server.core.matchmaker import InMemoryMatchmaker
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

"""Tests for the sans-I/O timer heap and the per-connection flood guard (explicit times)."""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Callable

import pytest

from game_server.core.ratelimit import FloodGuard, TokenBucket, Verdict
from game_server.core.timers import Timer, TimerQueue

ACCEPT, REJECT, DISCONNECT = Verdict.ACCEPT, Verdict.REJECT, Verdict.DISCONNECT


# ---------------------------------------------------------------- TimerQueue


def recorder(log: list[tuple[str, float]], name: str) -> Callable[[float], None]:
    def fire(now: float) -> None:
        log.append((name, now))

    return fire


def test_fires_by_time_then_insertion_order() -> None:
    timers = TimerQueue()
    log: list[tuple[str, float]] = []
    timers.call_at(3.0, recorder(log, "c"))
    timers.call_at(1.0, recorder(log, "a1"))
    timers.call_at(2.0, recorder(log, "b"))
    timers.call_at(1.0, recorder(log, "a2"))
    timers.call_at(1.0, recorder(log, "a3"))
    assert timers.pending == 5
    assert timers.next_when == 1.0

    assert timers.run_due(10.0) == 5
    assert [name for name, _ in log] == ["a1", "a2", "a3", "b", "c"]
    assert {now for _, now in log} == {10.0}  # callbacks get the run's now
    assert timers.pending == 0
    assert timers.next_when is None


def test_run_due_fires_only_due_timers() -> None:
    timers = TimerQueue()
    log: list[tuple[str, float]] = []
    timers.call_at(1.0, recorder(log, "a"))
    timers.call_at(2.0, recorder(log, "b"))
    timers.call_at(3.0, recorder(log, "c"))

    assert timers.run_due(0.5) == 0
    assert log == []
    assert timers.run_due(2.0) == 2  # when == now is due
    assert log == [("a", 2.0), ("b", 2.0)]
    assert timers.pending == 1
    assert timers.next_when == 3.0
    assert timers.run_due(2.999) == 0
    assert timers.run_due(3.0) == 1
    assert log[-1] == ("c", 3.0)
    assert timers.run_due(100.0) == 0
    assert timers.pending == 0


def test_cancel() -> None:
    timers = TimerQueue()
    log: list[tuple[str, float]] = []
    a = timers.call_at(1.0, recorder(log, "a"))
    timers.call_at(2.0, recorder(log, "b"))
    assert timers.pending == 2

    timers.cancel(a)
    assert a.cancelled
    assert timers.pending == 1
    timers.cancel(a)  # twice is harmless
    timers.cancel(None)
    assert timers.pending == 1

    assert timers.run_due(5.0) == 1
    assert log == [("b", 5.0)]
    assert timers.pending == 0


def test_cancel_after_firing_does_not_change_pending() -> None:
    timers = TimerQueue()
    fired = timers.call_at(1.0, lambda now: None)
    timers.call_at(9.0, lambda now: None)
    timers.run_due(1.0)
    assert timers.pending == 1
    timers.cancel(fired)
    assert timers.pending == 1


def test_timer_cancel_method_alone_skips_firing() -> None:
    timers = TimerQueue()
    log: list[tuple[str, float]] = []
    timer = timers.call_at(1.0, recorder(log, "a"))
    timer.cancel()
    assert timers.run_due(2.0) == 0
    assert log == []


def test_timers_scheduled_during_run_due_that_are_due_also_fire() -> None:
    timers = TimerQueue()
    log: list[tuple[str, float]] = []

    def spawn(now: float) -> None:
        log.append(("spawn", now))
        timers.call_at(now - 1.0, recorder(log, "past"))
        timers.call_at(now, recorder(log, "now"))
        timers.call_at(now + 1.0, recorder(log, "future"))

    timers.call_at(1.0, spawn)
    timers.call_at(4.0, recorder(log, "later"))
    assert timers.run_due(5.0) == 4
    assert log == [("spawn", 5.0), ("later", 5.0), ("past", 5.0), ("now", 5.0)]
    assert timers.pending == 1
    assert timers.next_when == 6.0
    assert timers.run_due(6.0) == 1
    assert log[-1] == ("future", 6.0)


def test_a_callback_can_cancel_a_due_timer() -> None:
    timers = TimerQueue()
    log: list[tuple[str, float]] = []
    victim = timers.call_at(2.0, recorder(log, "victim"))
    timers.call_at(1.0, lambda now: timers.cancel(victim))
    assert timers.run_due(3.0) == 1
    assert log == []
    assert timers.pending == 0


def test_pending_counts_live_timers() -> None:
    timers = TimerQueue()
    handles = [timers.call_at(float(i), lambda now: None) for i in range(10)]
    assert timers.pending == 10
    for handle in handles[::2]:
        timers.cancel(handle)
    assert timers.pending == 5
    assert timers.run_due(4.0) == 2  # 1 and 3
    assert timers.pending == 3
    assert timers.run_due(100.0) == 3
    assert timers.pending == 0


def test_next_when_skips_cancelled() -> None:
    timers = TimerQueue()
    assert timers.next_when is None
    first = timers.call_at(1.0, lambda now: None)
    second = timers.call_at(2.0, lambda now: None)
    timers.call_at(3.0, lambda now: None)
    assert timers.next_when == 1.0
    timers.cancel(first)
    assert timers.next_when == 2.0
    timers.cancel(second)
    assert timers.next_when == 3.0
    assert timers.pending == 1
    timers.run_due(3.0)
    assert timers.next_when is None


def test_next_when_with_only_cancelled_timers_is_none() -> None:
    timers = TimerQueue()
    timers.cancel(timers.call_at(1.0, lambda now: None))
    assert timers.next_when is None
    assert timers.pending == 0


def test_cancelled_timers_do_not_pile_up_in_the_heap() -> None:
    # Every reconnect cancels an hour-long forget timer; the heap must not keep them all.
    timers = TimerQueue()
    live = [timers.call_at(float(i), lambda now: None) for i in range(3)]
    for n in range(10_000):
        timers.cancel(timers.call_at(3600.0 + n, lambda now: None))
        assert len(timers) <= 2 * timers.pending + 1
    assert timers.pending == 3
    assert len(timers) <= 7
    timers.cancel(live[0])
    assert timers.next_when == 1.0
    assert timers.run_due(10_000.0) == 2
    assert timers.pending == 0


def test_a_cancelled_timer_lets_go_of_its_callback() -> None:
    timers = TimerQueue()

    class Session:
        def fire(self, now: float) -> None:
            pass

    session = Session()
    ref = weakref.ref(session)
    timers.call_at(1.0, lambda now: None)
    timers.call_at(2.0, lambda now: None)
    timer = timers.call_at(3600.0, session.fire)  # still in the heap after the cancel
    timers.cancel(timer)
    assert len(timers) == 3
    del session
    gc.collect()
    assert ref() is None


def test_compaction_while_run_due_fires_keeps_order() -> None:
    timers = TimerQueue()
    log: list[tuple[str, float]] = []
    doomed = [timers.call_at(50.0 + i, recorder(log, f"doomed{i}")) for i in range(10)]

    def cancel_all(now: float) -> None:
        for timer in doomed:
            timers.cancel(timer)  # compacts the heap run_due is popping from

    timers.call_at(1.0, cancel_all)
    timers.call_at(2.0, recorder(log, "b"))
    timers.call_at(3.0, recorder(log, "c"))
    assert timers.run_due(100.0) == 3
    assert [name for name, _ in log] == ["b", "c"]
    assert len(timers) == 0


# ---------------------------------------------------------------- TokenBucket


def test_a_timer_ahead_of_every_other_is_announced() -> None:
    announced: list[float] = []
    timers = TimerQueue(on_earlier=announced.append)
    timers.call_at(5.0, lambda now: None)
    timers.call_at(7.0, lambda now: None)  # behind the earliest: nothing to re-arm
    timers.call_at(3.0, lambda now: None)
    timers.call_at(3.0, lambda now: None)  # the same deadline: the owner is armed already
    assert announced == [5.0, 3.0]


def test_an_owner_armed_by_announcements_never_misses_a_deadline() -> None:
    """Whatever the mix of timers, cancels and early firings, a real timer kept at the
    announced deadlines (and re-armed at ``next_when`` after each firing) is due no later
    than the earliest live timer."""
    rng = random.Random(5)
    armed: list[float] = []
    timers = TimerQueue(on_earlier=lambda when: armed.append(min([when, *armed[-1:]])))
    live: list[Timer] = []
    now = 0.0
    for _ in range(2000):
        action = rng.random()
        if action < 0.5:
            live.append(timers.call_at(now + rng.uniform(0, 10), lambda t: None))
        elif action < 0.7 and live:
            timers.cancel(live.pop(rng.randrange(len(live))))
        elif armed:
            now = max(now, armed[-1])  # the owner's timer fires
            timers.run_due(now)
            armed.clear()
            following = timers.next_when
            if following is not None:
                armed.append(following)
        earliest = min((t.when for t in live if not t.cancelled), default=None)
        if earliest is not None:
            assert armed, "a live timer with no real timer armed"
            assert armed[-1] <= earliest


def test_token_bucket_starts_full_and_refills_up_to_capacity() -> None:
    bucket = TokenBucket(rate=2.0, capacity=3.0)
    assert bucket.tokens == 3.0
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.25) is False  # half a token
    assert bucket.take(0.5) is True  # one token after half a second
    assert bucket.take(0.5) is False
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_token_bucket_explicit_tokens() -> None:
    bucket = TokenBucket(rate=1.0, capacity=10.0, tokens=0.0)
    assert bucket.take(0.0) is False
    assert bucket.take(1.0) is True


# ---------------------------------------------------------------- FloodGuard


def run(guard: FloodGuard, times: list[float]) -> list[Verdict]:
    return [guard.check(now) for now in times]


def steady(rate: float, seconds: float, start: float = 0.0) -> list[float]:
    count = round(rate * seconds)
    return [start + i / rate for i in range(count)]


def test_burst_of_forty_accepted_then_rejected() -> None:
    guard = FloodGuard()
    assert run(guard, [0.0] * 40) == [ACCEPT] * 40
    assert guard.check(0.0) is REJECT
    assert guard.check(0.0) is REJECT


def test_steady_twenty_per_second_is_accepted_indefinitely() -> None:
    guard = FloodGuard()
    verdicts = run(guard, steady(20, 60.0))
    assert len(verdicts) == 1200
    assert set(verdicts) == {ACCEPT}


def test_just_under_the_rate_after_a_burst_is_accepted() -> None:
    guard = FloodGuard()
    assert run(guard, [0.0] * 40) == [ACCEPT] * 40
    # the bucket is dry but refills slightly faster than the client sends
    verdicts = run(guard, steady(19.5, 60.0, start=0.1))
    assert set(verdicts) == {ACCEPT}


def test_twenty_five_per_second_is_warned_for_seconds_then_cut_off() -> None:
    guard = FloodGuard()
    times = steady(25, 60.0)
    verdicts = run(guard, times)
    first_reject = times[verdicts.index(REJECT)]
    first_disconnect = times[verdicts.index(DISCONNECT)]
    # 40 + 20 t = 25 t: the burst covers the first 8 seconds
    assert 7.0 <= first_reject <= 9.0
    assert set(verdicts[: verdicts.index(REJECT)]) == {ACCEPT}
    # then several seconds of warnings before the close
    assert first_disconnect - first_reject >= 5.0
    assert first_disconnect < 20.0
    warned = verdicts[verdicts.index(REJECT) : verdicts.index(DISCONNECT)]
    assert warned.count(REJECT) >= 20
    assert set(warned) == {ACCEPT, REJECT}


def test_two_hundred_per_second_is_cut_off_within_a_second() -> None:
    guard = FloodGuard()
    times = steady(200, 5.0)
    verdicts = run(guard, times)
    first_disconnect = times[verdicts.index(DISCONNECT)]
    assert first_disconnect < 1.0
    assert REJECT in verdicts[: verdicts.index(DISCONNECT)]


def test_waiting_refills_after_rejects() -> None:
    guard = FloodGuard()
    run(guard, [0.0] * 40)
    assert run(guard, [0.0] * 5) == [REJECT] * 5
    assert guard.check(0.05) is ACCEPT  # one message's worth
    assert guard.check(0.05) is REJECT
    # a few seconds later the whole burst is back (and no more than that)
    assert run(guard, [3.0] * 40) == [ACCEPT] * 40
    assert guard.check(3.0) is REJECT


def test_a_brief_spike_costs_warnings_not_the_connection() -> None:
    guard = FloodGuard()
    verdicts = run(guard, [0.0] * 60)
    assert verdicts == [ACCEPT] * 40 + [REJECT] * 20
    # after a quiet spell both the message and the strike budgets are back
    verdicts = run(guard, [20.0] * 60)
    assert verdicts == [ACCEPT] * 40 + [REJECT] * 20


@pytest.mark.parametrize("rate", [5.0, 10.0, 19.0, 20.0])
def test_rates_at_or_below_the_limit_are_never_bothered(rate: float) -> None:
    guard = FloodGuard()
    assert set(run(guard, steady(rate, 120.0))) == {ACCEPT}

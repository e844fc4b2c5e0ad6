"""The C heap is trimmed once enough sockets have ended, and not before."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

from game_server.ops.memory import AllocatorTrim, malloc_trim


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.later: list[tuple[float, Callable[[], None]]] = []
        self.executed: list[tuple[Any, ...]] = []

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock, firing what falls due (in order)."""
        self.now += seconds
        while True:
            due = [entry for entry in self.later if entry[0] <= self.now]
            if not due:
                return
            entry = min(due, key=lambda item: item[0])
            self.later.remove(entry)
            entry[1]()

    def call_later(self, delay: float, callback: Callable[[], None]) -> object:
        self.later.append((self.now + delay, callback))
        return object()

    def run_in_executor(self, executor: None, func: Callable[[int], int], arg: int) -> object:
        self.executed.append((executor, func, arg))
        return object()


def fake_trim(pad: int) -> int:
    return 1


def test_a_trim_follows_enough_ended_sockets_once_they_stop_ending() -> None:
    loop = FakeLoop()
    trim = AllocatorTrim(loop, after=3, quiet=1.0, latest=10.0, trim=fake_trim)
    trim.socket_ended()
    trim.socket_ended()
    assert loop.later == []
    trim.socket_ended()  # the third: a trim once they stop ending
    for _ in range(4):
        loop.advance(0.5)
        trim.socket_ended()  # a crowd still leaving
    assert loop.executed == []
    loop.advance(0.9)
    assert loop.executed == []
    loop.advance(0.2)  # 1 s without an end
    assert loop.executed == [(None, fake_trim, 0)]  # in a thread, never on the loop
    assert (trim.ended, trim.trims) == (0, 1)
    assert loop.later == []
    trim.socket_ended()
    assert loop.later == []  # counting again from zero


def test_sockets_that_keep_ending_delay_a_trim_only_so_long() -> None:
    loop = FakeLoop()
    trim = AllocatorTrim(loop, after=1, quiet=1.0, latest=10.0, trim=fake_trim)
    for _ in range(40):
        trim.socket_ended()
        loop.advance(0.5)
        if loop.executed:
            break
    assert loop.now == 10.0
    assert len(loop.executed) == 1


def test_without_a_trim_function_nothing_is_scheduled() -> None:
    loop = FakeLoop()
    trim = AllocatorTrim(loop, after=1, trim=None)
    trim.trim = None  # as on a C library without malloc_trim
    for _ in range(5):
        trim.socket_ended()
    assert loop.later == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
async def test_the_real_trim_runs_in_a_thread() -> None:
    real = malloc_trim()
    assert real is not None
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    calls: list[tuple[int, bool]] = []

    def trim(pad: int) -> int:
        on_loop = asyncio._get_running_loop() is not None
        calls.append((pad, on_loop))
        result = real(pad)
        loop.call_soon_threadsafe(done.set)
        return result

    trim_after = AllocatorTrim(loop, after=2, quiet=0.0, trim=trim)
    trim_after.socket_ended()
    trim_after.socket_ended()
    await asyncio.wait_for(done.wait(), 5)
    assert calls == [(0, False)]  # padding 0, and not on the loop's thread

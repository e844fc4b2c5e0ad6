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
        self.later: list[tuple[float, Callable[[], None]]] = []
        self.executed: list[tuple[Any, ...]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> object:
        self.later.append((delay, callback))
        return object()

    def run_in_executor(self, executor: None, func: Callable[[int], int], arg: int) -> object:
        self.executed.append((executor, func, arg))
        return object()


def fake_trim(pad: int) -> int:
    return 1


def test_a_trim_follows_enough_ended_sockets_once() -> None:
    loop = FakeLoop()
    trim = AllocatorTrim(loop, after=3, delay=2.0, trim=fake_trim)
    trim.socket_ended()
    trim.socket_ended()
    assert loop.later == []
    trim.socket_ended()
    trim.socket_ended()  # more before the trim: still one
    assert [delay for delay, _ in loop.later] == [2.0]
    loop.later.pop()[1]()
    assert loop.executed == [(None, fake_trim, 0)]  # in a thread, never on the loop
    assert (trim.ended, trim.trims) == (0, 1)
    trim.socket_ended()
    assert loop.later == []  # counting again from zero


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

    trim_after = AllocatorTrim(loop, after=2, delay=0.0, trim=trim)
    trim_after.socket_ended()
    trim_after.socket_ended()
    await asyncio.wait_for(done.wait(), 5)
    assert calls == [(0, False)]  # padding 0, and not on the loop's thread

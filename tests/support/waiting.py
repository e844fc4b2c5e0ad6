"""Waiting in a test for state it cannot be told about, only look at.

Most tests wait on a message or an event. Some must watch state that changes with no
notice to them: a server's tables after its sockets went, what a recorder saw, messages
between two cluster nodes, a counter in a browser test. ``until`` polls such a condition
on the running loop and fails with what it waited for, never hangs; ``until_answers``
does the same for a question that must be awaited (Redis, another process's health);
``until_blocking`` on a thread that must block (a job on a store's writer thread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    condition: Callable[[], object],
    within: float = 5.0,
    *,
    what: str | None = None,
    every: float = 0.005,
) -> None:
    """Return once ``condition()`` is true; checked every ``every`` seconds, and once more
    when ``within`` seconds have passed before failing with ``AssertionError``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            if condition():
                return
            raise AssertionError(f"timed out after {within} s waiting for {what or condition}")
        await asyncio.sleep(every)


async def until_answers(
    ask: Callable[[], Awaitable[Any]], expected: Any, within: float = 5.0, every: float = 0.01
) -> None:
    """Return once ``await ask()`` answers ``expected``; fail with the last answer after
    ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (answer := await ask()) != expected:
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {within} s: {answer!r}, not {expected!r}")
        await asyncio.sleep(every)


def until_blocking(
    condition: Callable[[], object],
    within: float = 5.0,
    *,
    what: str | None = None,
    every: float = 0.01,
) -> None:
    """``until`` for a thread that may block: the same checks, sleeping between them."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            if condition():
                return
            raise AssertionError(f"timed out after {within} s waiting for {what or condition}")
        time.sleep(every)


__all__ = ["until", "until_answers", "until_blocking"]

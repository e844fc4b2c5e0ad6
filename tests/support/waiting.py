"""Waiting in a test for state it cannot be told about, only look at.

Most tests wait on a message or an event. Some must watch state that changes with no
notice to them: a server's tables after its sockets went, what a recorder saw, messages
between two cluster nodes, a counter in a browser test. ``until`` polls such a condition
on the running loop and fails with what it waited for, never hangs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


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


__all__ = ["until"]

"""Giving memory back to the operating system once many connections have left.

Freed memory is not the process's RSS going down. CPython hands objects of 512 bytes
and less to its own allocator, which returns a 1 MiB arena only when nothing in it is
alive any more; larger blocks come from the C library's ``malloc``, which keeps what was
freed for the next ``malloc`` and returns it only from the top of its heap. After 15,000
idle players left, everything they held was freed (``tests/net/test_memory.py``), and
RSS stayed where it was: 150 MiB after 15,000 idle players, 156 MiB once they had gone
(docs/performance.md). ``malloc_trim(0)`` (glibc) gives back every free page of the C
heap, wherever it is, in a few milliseconds.

So the shell counts sockets that end, and once ``TRIM_AFTER`` have ended since the last
time, it trims ``TRIM_DELAY`` seconds later (a crowd leaving takes a moment), in a
thread so the event loop is not held up. Where there is no glibc, nothing is trimmed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger("game_server.ops.memory")

TRIM_AFTER = 1000  # sockets ended since the last trim (an idle one holds ~7 KiB)
TRIM_DELAY = 2.0  # seconds from the socket that reached it to the trim


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class Scheduler(Protocol):
    """The little of an event loop this needs."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> object: ...

    def run_in_executor(self, executor: None, func: Callable[[int], int], arg: int) -> object: ...


class AllocatorTrim:
    """Trims the C heap once ``after`` sockets have ended since the last trim."""

    def __init__(
        self,
        loop: Scheduler,
        *,
        after: int = TRIM_AFTER,
        delay: float = TRIM_DELAY,
        trim: Callable[[int], int] | None = None,
    ) -> None:
        self.loop = loop
        self.after = after
        self.delay = delay
        self.trim = malloc_trim() if trim is None else trim
        self.ended = 0  # sockets ended since the last trim
        self.trims = 0
        self._scheduled = False

    def socket_ended(self) -> None:
        self.ended += 1
        if self.ended >= self.after and not self._scheduled and self.trim is not None:
            self._scheduled = True
            self.loop.call_later(self.delay, self._run)

    def _run(self) -> None:
        self._scheduled = False
        trim = self.trim
        if trim is None:
            return
        log.debug("allocator_trim", sockets_ended=self.ended)
        self.ended = 0
        self.trims += 1
        self.loop.run_in_executor(None, trim, 0)

"""Giving memory back to the operating system once many connections have left.

Freed memory is not the process's RSS going down. CPython hands objects of 512 bytes
and less to its own allocator, which returns a 1 MiB arena only when nothing in it is
alive any more; larger blocks come from the C library's ``malloc``, which keeps what was
freed for the next ``malloc`` and returns it only from the top of its heap. After 15,000
idle players left, everything they held was freed (``tests/net/test_memory.py``), yet
RSS went from 122 MiB with them to 142 MiB once they had gone (closing a socket
allocates too) and stayed there; ``malloc_trim(0)`` (glibc) gives back every free page
of the C heap, wherever it is, in a few milliseconds: 121 MiB, then 114 MiB once their
guests were forgotten (docs/performance.md).

So the shell counts sockets that end, and once ``TRIM_AFTER`` have ended since the last
trim, it trims as soon as no socket has ended for ``TRIM_QUIET`` seconds (a crowd
leaving takes a moment, and a trim in the middle of it returns only part), but no later
than ``TRIM_LATEST`` seconds (sockets may keep ending on a busy server), in a thread so
the event loop is not held up. Where there is no glibc, nothing is trimmed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger("game_server.ops.memory")

TRIM_AFTER = 1000  # sockets ended since the last trim (an idle one holds ~4 KiB)
TRIM_QUIET = 1.0  # seconds without a socket ending
TRIM_LATEST = 10.0  # seconds after the socket that reached TRIM_AFTER, at the latest


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class Scheduler(Protocol):
    """The little of an event loop this needs."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> object: ...

    def run_in_executor(self, executor: None, func: Callable[[int], int], arg: int) -> object: ...


class AllocatorTrim:
    """Trims the C heap once ``after`` sockets have ended since the last trim and then
    none for ``quiet`` seconds (or ``latest`` seconds have passed)."""

    def __init__(
        self,
        loop: Scheduler,
        *,
        after: int = TRIM_AFTER,
        quiet: float = TRIM_QUIET,
        latest: float = TRIM_LATEST,
        trim: Callable[[int], int] | None = None,
    ) -> None:
        self.loop = loop
        self.after = after
        self.quiet = quiet
        self.latest = latest
        self.trim = malloc_trim() if trim is None else trim
        self.ended = 0  # sockets ended since the last trim
        self.trims = 0
        self._last_end = 0.0
        self._deadline: float | None = None  # set while a trim is scheduled

    def socket_ended(self) -> None:
        self.ended += 1
        self._last_end = now = self.loop.time()
        if self.ended >= self.after and self._deadline is None and self.trim is not None:
            self._deadline = now + self.latest
            self.loop.call_later(self.quiet, self._check)

    def _check(self) -> None:
        assert self._deadline is not None
        now = self.loop.time()
        quiet_at = self._last_end + self.quiet
        if now < quiet_at and now < self._deadline:
            self.loop.call_later(min(quiet_at, self._deadline) - now, self._check)
            return
        self._deadline = None
        trim = self.trim
        if trim is None:
            return
        log.debug("allocator_trim", sockets_ended=self.ended)
        self.ended = 0
        self.trims += 1
        self.loop.run_in_executor(None, trim, 0)

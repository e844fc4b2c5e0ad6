"""A timer heap for sans-I/O code: callers say when, the owner of the real clock says now."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import attrs


@attrs.define(eq=False)
class Timer:
    when: float
    callback: Callable[[float], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    """Like asyncio's scheduler, minus the loop: ``run_due(now)`` fires what is due, in order.

    Cancelled timers stay in the heap until they surface; ``pending`` counts live ones so a
    leak shows up in tests.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.pending = 0

    def call_at(self, when: float, callback: Callable[[float], None]) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        self.pending += 1
        return timer

    def cancel(self, timer: Timer | None) -> None:
        if timer is not None and not timer.cancelled:
            timer.cancel()
            self.pending -= 1

    @property
    def next_when(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> int:
        """Fire every live timer with ``when <= now``, including ones scheduled meanwhile."""
        fired = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            self.pending -= 1
            fired += 1
            timer.callback(now)
        return fired

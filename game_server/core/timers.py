"""A timer heap for sans-I/O code: callers say when, the owner of the real clock says now."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import attrs


def _cancelled(now: float) -> None:
    """What a cancelled timer holds instead of its callback (and whatever that kept alive)."""


@attrs.define(eq=False)
class Timer:
    when: float
    callback: Callable[[float], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _cancelled


class TimerQueue:
    """Like asyncio's scheduler, minus the loop: ``run_due(now)`` fires what is due, in order.

    Whoever owns the real clock learns when to call ``run_due`` from ``on_earlier``: it is
    called with the new deadline whenever a timer is scheduled ahead of every other one, so
    the owner keeps one real timer armed at (or before) the earliest deadline, whatever
    scheduled it: a message, a timer's own callback, storage answering. Cancelling the
    earliest timer is not announced: the owner's timer then fires early, finds nothing
    due, and re-arms at ``next_when``.

    A cancelled timer stays in the heap until it surfaces, but lets go of its callback at
    once, and the heap is rebuilt without the cancelled entries once they outnumber the live
    ones: every reconnect cancels an hour-long forget timer, which would otherwise sit in the
    heap for that hour. ``pending`` counts live timers so a leak shows up in tests.
    """

    def __init__(self, on_earlier: Callable[[float], None] | None = None) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.pending = 0
        self.on_earlier = on_earlier

    def __len__(self) -> int:
        """Entries in the heap, cancelled ones included (at most about twice ``pending``)."""
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[float], None]) -> Timer:
        timer = Timer(when, callback)
        heap = self._heap
        # Against the head as it is, cancelled or not: the owner's timer is armed no later.
        earlier = not heap or when < heap[0][0]
        heapq.heappush(heap, (when, next(self._seq), timer))
        self.pending += 1
        if earlier and self.on_earlier is not None:
            self.on_earlier(when)
        return timer

    def cancel(self, timer: Timer | None) -> None:
        if timer is not None and not timer.cancelled:
            timer.cancel()
            self.pending -= 1
            if len(self._heap) - self.pending > self.pending:
                self._compact()

    def _compact(self) -> None:
        # In place: run_due may be iterating over this very list (a callback cancelling).
        heap = self._heap
        heap[:] = [entry for entry in heap if not entry[2].cancelled]
        heapq.heapify(heap)
        self.pending = len(heap)  # also forgets timers cancelled by Timer.cancel() alone

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
            callback, timer.callback = timer.callback, _cancelled
            callback(now)
        return fired

"""What every part of the game service shares: time, timers, the ports, randomness."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from game_server.core.ports import Observer, PlayerStore, Relay
from game_server.core.timers import TimerQueue


@attrs.define(eq=False)
class Context:
    clock: Callable[[], float]  # monotonic seconds: deadlines and timers
    wall_clock: Callable[[], float]  # Unix seconds: what is stored and shown
    timers: TimerQueue
    relay: Relay
    store: PlayerStore
    observer: Observer
    rng: random.Random
    new_id: Callable[[str], str]

    def advance(self) -> float:
        """The time now, once every timer due by then has fired."""
        now = self.clock()
        self.timers.run_due(now)
        return now

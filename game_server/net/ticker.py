"""The one loop timer that drives the sans-I/O core."""

from __future__ import annotations

import asyncio

import structlog

from game_server.core.service import GameService

log = structlog.get_logger("game_server")


class Ticker:
    """One loop timer, armed at (or before) the service's next wake-up.

    The service announces every wake-up that moves earlier (``watch_wakeups``), whatever
    scheduled it; after each tick the timer is armed again at ``next_wakeup``.
    """

    def __init__(self, service: GameService, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        service.watch_wakeups(self.arm)

    def arm(self, when: float) -> None:
        if self._when is not None and self._when <= when:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = self.loop.call_at(when, self._fire, when)

    def _fire(self, when: float) -> None:
        self._handle = None
        self._when = None
        try:
            # The loop may fire a hair early (clock resolution); the timer is due regardless.
            self.service.tick(max(self.loop.time(), when))
        except Exception:
            log.exception("tick_failed")
        following = self.service.next_wakeup
        if following is not None:
            self.arm(following)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._when = float("-inf")  # announcements after the stop arm nothing

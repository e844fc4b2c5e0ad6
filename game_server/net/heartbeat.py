"""WebSocket keep-alive for every connection from one periodic sweep.

aiohttp's own ``heartbeat=`` re-arms a loop timer on every frame received: a cancel and a
new timer per message, about 8 % of the server's CPU at saturation. Here a connection only
sets a flag when a frame arrives, and one timer walks all connections every half
interval: a connection quiet for a whole interval gets a ping frame, and one still quiet
half an interval later is cut, as aiohttp's heartbeat would (its reader then ends, which
the game service sees as a disconnect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Protocol

import structlog

log = structlog.get_logger("game_server.net.heartbeat")

# Sweeps run every half interval; counts of sweeps that heard nothing.
PING_AFTER = 2  # quiet for a whole interval: ping
CUT_AFTER = 3  # and half an interval more with no answer: cut


class Pingable(Protocol):
    heard: bool
    quiet_sweeps: int

    def ping(self) -> None: ...

    def cut(self, reason: str) -> None: ...


def sweep(connections: Collection[Pingable]) -> int:
    """One pass over every connection; returns how many were cut."""
    cut = 0
    for connection in connections:
        if connection.heard:
            connection.heard = False
            connection.quiet_sweeps = 0
            continue
        connection.quiet_sweeps += 1
        if connection.quiet_sweeps == PING_AFTER:
            connection.ping()
        elif connection.quiet_sweeps >= CUT_AFTER:
            connection.cut("no pong within half the heartbeat interval")
            cut += 1
    return cut


class Heartbeat:
    """Runs ``sweep`` over a live collection of connections every ``interval / 2``."""

    def __init__(
        self,
        connections: Collection[Pingable],
        interval: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.connections = connections
        self.period = interval / 2
        self.loop = loop
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = self.loop.call_later(self.period, self._run)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        try:
            cut = sweep([*self.connections])  # a cut may change the set
            if cut:
                log.info("heartbeat_timeouts", connections=cut)
        except Exception:
            log.exception("heartbeat_failed")
        self.start()

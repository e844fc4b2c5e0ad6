"""The seams between the game core and the world, so the in-memory defaults can be swapped.

A Redis-backed ``Matchmaker`` and ``Relay`` (one queue and one message bus shared by many
processes) implement these same protocols; the game service does not change.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from protocol import BotMode, ServerMessage


class Outlet(Protocol):
    """One client connection as the core sees it: fire-and-forget sends, and a close."""

    def send(self, message: ServerMessage) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class Relay(Protocol):
    """Delivers messages to a player wherever its connection lives."""

    def attach(self, player_id: str, outlet: Outlet) -> None: ...

    def detach(self, player_id: str, outlet: Outlet) -> None: ...

    def deliver(self, player_id: str, message: ServerMessage) -> bool: ...


@attrs.frozen
class Pairing:
    """Two players to seat together; ``second`` is None when a bot takes the seat."""

    first: str
    second: str | None


class Matchmaker(Protocol):
    """A first-come, first-served queue; sans-I/O, driven by ``now`` and ``tick``."""

    def join(self, player_id: str, mode: BotMode, now: float) -> list[Pairing]: ...

    def leave(self, player_id: str) -> bool: ...

    def tick(self, now: float) -> list[Pairing]: ...

    @property
    def next_wakeup(self) -> float | None: ...

    def __len__(self) -> int: ...

    def __contains__(self, player_id: object) -> bool: ...

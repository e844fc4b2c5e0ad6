"""The in-process relay: every player's connection lives in this process."""

from __future__ import annotations

from game_server.core.ports import Outlet
from protocol import ServerMessage


class LocalRelay:
    def __init__(self) -> None:
        self._outlets: dict[str, Outlet] = {}

    def attach(self, player_id: str, outlet: Outlet) -> None:
        self._outlets[player_id] = outlet

    def detach(self, player_id: str, outlet: Outlet) -> None:
        # Only the outlet that is attached may detach itself: a replaced connection that
        # closes late must not unhook its successor.
        if self._outlets.get(player_id) is outlet:
            del self._outlets[player_id]

    def deliver(self, player_id: str, message: ServerMessage) -> bool:
        outlet = self._outlets.get(player_id)
        if outlet is None:
            return False
        outlet.send(message)
        return True

    def __len__(self) -> int:
        return len(self._outlets)

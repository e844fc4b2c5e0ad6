"""The in-memory matchmaking queue (the default ``Matchmaker``)."""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from game_server.core.ports import Pairing, PairingsDone
from protocol import BotMode, ErrorCode, ProtocolError


@attrs.frozen
class Ticket:
    player_id: str
    mode: BotMode
    joined_at: float


class InMemoryMatchmaker:
    """First come, first served: a new player is seated with whoever has waited longest.

    Any two waiting humans can play each other, so a human joining never waits while
    someone else is queued; bot fallback only concerns a lone waiter. ``auto`` tickets get
    a bot once they have waited ``bot_after`` seconds; ``never`` tickets wait for a human;
    ``now`` never enters the queue.
    """

    def __init__(self, bot_after: float) -> None:
        if bot_after < 0:
            raise ValueError("bot_after must not be negative")
        self.bot_after = bot_after
        self._tickets: dict[str, Ticket] = {}  # insertion order is queue order

    def listen(self, on_pairings: PairingsDone) -> None:
        """Every pairing is made at once (``join``, ``tick``): nothing comes later."""

    def join(self, player_id: str, mode: BotMode, now: float) -> list[Pairing]:
        if player_id in self._tickets:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already in the queue")
        if mode is BotMode.NOW:
            return [Pairing(player_id, None)]
        for waiting in self._tickets:
            # The guard above means the oldest ticket is never the joiner's own.
            del self._tickets[waiting]
            return [Pairing(waiting, player_id)]
        self._tickets[player_id] = Ticket(player_id, mode, now)
        return self.tick(now)

    def leave(self, player_id: str) -> bool:
        return self._tickets.pop(player_id, None) is not None

    def tick(self, now: float) -> list[Pairing]:
        due = [
            ticket.player_id
            for ticket in self._tickets.values()
            if ticket.mode is BotMode.AUTO and ticket.joined_at + self.bot_after <= now
        ]
        for player_id in due:
            del self._tickets[player_id]
        return [Pairing(player_id, None) for player_id in due]

    @property
    def next_wakeup(self) -> float | None:
        for ticket in self._tickets.values():
            if ticket.mode is BotMode.AUTO:
                return ticket.joined_at + self.bot_after
        return None

    def __len__(self) -> int:
        return len(self._tickets)

    def __contains__(self, player_id: object) -> bool:
        return player_id in self._tickets

    def __iter__(self) -> Iterator[str]:
        """The waiting players, longest-waiting first."""
        return iter(list(self._tickets))

    def position(self, player_id: str) -> int | None:
        """1-based place in the queue, or None when not queued."""
        for index, queued in enumerate(self._tickets, start=1):
            if queued == player_id:
                return index
        return None

"""Sessions: one per connection, from the upgrade to the close.

A session is what the service knows of a socket: its outlet, its flood guard, the lobby
its endpoint queues in and, once it said ``hello``, its player. While a ``hello`` waits for
its player to load from storage, what the client sends meanwhile is kept in order
(``pending``) and handled once the player is there. In a cluster, a session whose player
is owned by another process has that process as its ``owner``: it forwards its frames
there (``ports.Forwarder``) and has no player here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs

from game_server.core.ports import Observer, Outlet
from game_server.core.ratelimit import FloodGuard, TokenBucket, Verdict
from game_server.core.timers import Timer
from protocol import ClientMessage, Error, ErrorCode, MessageId

if TYPE_CHECKING:
    from game_server.core.lobbies import Lobby
    from game_server.core.players import Player

# Messages a client sends after a ``hello`` whose player is still being read from storage.
PENDING_MAX = 32


@attrs.define(eq=False)
class Session:
    id: int
    outlet: Outlet
    guard: FloodGuard
    lobby: Lobby
    player: Player | None = None
    closed: bool = False
    # Not None while its ``hello`` waits for the player to load: what came in meanwhile.
    pending: list[ClientMessage] | None = None
    owner: str | None = None  # the process its frames are forwarded to (a cluster's)
    address: str | None = None  # the client's address, for logs and per-address limits
    hello_timer: Timer | None = None  # until a hello is accepted: the deadline for one
    room_lookups: TokenBucket | None = None  # room codes it tried (made at its first)


class Sessions:
    """The open sessions, their flood guards and the errors they are answered with."""

    def __init__(self, observer: Observer, flood_rate: float, flood_burst: float) -> None:
        self.observer = observer
        self.flood_rate = flood_rate
        self.flood_burst = flood_burst
        self.by_id: dict[int, Session] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self) -> Iterator[Session]:
        """The open sessions, as they are now (closing one while iterating is fine)."""
        return iter(list(self.by_id.values()))

    def connect(self, outlet: Outlet, lobby: Lobby, address: str | None = None) -> Session:
        guard = FloodGuard(rate=self.flood_rate, burst=self.flood_burst)
        session = Session(next(self._ids), outlet, guard, lobby, address=address)
        self.by_id[session.id] = session
        return session

    def close(self, session: Session) -> bool:
        """Mark the session closed; False if it already was."""
        if session.closed:
            return False
        session.closed = True
        del self.by_id[session.id]
        return True

    def admit(self, session: Session, now: float) -> Verdict:
        """The flood guard's verdict on one more message; a rejection is answered here,
        a disconnect is the caller's to carry out."""
        verdict = session.guard.check(now)
        if verdict is Verdict.REJECT:
            self.refuse(
                session,
                ErrorCode.RATE_LIMITED,
                f"too many messages; at most {self.flood_rate:g} a second, this one was dropped",
            )
        elif verdict is Verdict.DISCONNECT:
            self.observer.error(ErrorCode.RATE_LIMITED.value)
        return verdict

    def refuse(
        self, session: Session, code: ErrorCode, message: str, ref: MessageId | None = None
    ) -> None:
        """Tell the client what was wrong (and count it): an ``error`` message."""
        self.observer.error(code.value)
        session.outlet.send(Error(code=code, message=message, ref=ref))

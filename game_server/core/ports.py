"""The seams between the game core and the world, so the in-memory defaults can be swapped.

One process on its own uses the defaults here and in ``core/``; a cluster of processes
(``game_server/cluster/``) plugs a shared queue (``Matchmaker``), a way to find the process
that owns a player (``Locator``), frames forwarded to it (``Forwarder``), match
checkpoints (``Journal``) and where each private room's code and each player is
(``FriendsDirectory``) into the same service, which does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from game_server.core.ladder import Board, Period
from game_server.core.records import MatchRecord, Picture, PlayerRecord
from protocol import BotMode, ClientMessage, ServerMessage


class Outlet(Protocol):
    """One client connection as the core sees it: fire-and-forget sends, and a close."""

    def send(self, message: ServerMessage) -> None: ...

    def send_encoded(self, data: bytes) -> None:
        """A message encoded once elsewhere (a frame another process addressed to it)."""
        ...

    def close(self, code: int, reason: str) -> None: ...


class Relay(Protocol):
    """Delivers messages to a player wherever its connection lives."""

    def attach(self, player_id: str, outlet: Outlet) -> None: ...

    def detach(self, player_id: str, outlet: Outlet) -> None: ...

    def deliver(self, player_id: str, message: ServerMessage) -> bool: ...


class Observer(Protocol):
    """What the game reports for monitoring; the Prometheus exporter is one implementation."""

    def message_in(self, kind: str) -> None: ...

    def message_out(self, kind: str) -> None: ...

    def error(self, code: str) -> None: ...

    def match_started(self, bot: bool) -> None: ...

    def match_finished(self, reason: str, bot: bool) -> None: ...

    def round_resolved(self, seconds: float) -> None: ...

    def dropped(self) -> None: ...

    def limited(self, limit: str) -> None:
        """A limit against abuse turned something away (``LIMITS`` names them)."""
        ...


# Every limit against abuse, as ``Observer.limited`` names it (``rps_limited{limit}``).
LIMITS = (
    "flooding",  # a connection closed for flooding (messages or control frames)
    "hello_timeout",  # a socket that did not say hello in time, closed
    "guest_rate",  # a token-less hello refused by its address's bucket
    "address_connections",  # an upgrade refused: its address holds too many sockets
    "max_connections",  # an upgrade refused: the process holds --max-connections
    "origin",  # a browser upgrade from an origin not in --allowed-origins
    "unmasked_frame",  # a client frame without a mask, closed with 1002
    "room_lookups",  # a room code refused: its connection or address tried too many
)


class NullObserver:
    """The default: observe nothing, cost nothing."""

    def message_in(self, kind: str) -> None:
        pass

    def message_out(self, kind: str) -> None:
        pass

    def error(self, code: str) -> None:
        pass

    def match_started(self, bot: bool) -> None:
        pass

    def match_finished(self, reason: str, bot: bool) -> None:
        pass

    def round_resolved(self, seconds: float) -> None:
        pass

    def dropped(self) -> None:
        pass

    def limited(self, limit: str) -> None:
        pass


@attrs.frozen
class Pairing:
    """Two players to seat together; ``second`` is None when a bot takes the seat."""

    first: str
    second: str | None
    # A rematch against a house bot: the same strategy and name come back.
    bot_strategy: str | None = None
    bot_name: str | None = None


PairingsDone = Callable[[list[Pairing]], None]


class Matchmaker(Protocol):
    """A queue that pairs players of about the same rating (protocol §6.5); sans-I/O,
    driven by ``now`` and ``tick``.

    ``join`` and ``tick`` return the pairings they make at once. A queue shared by many
    processes answers a join later: it returns nothing then, and hands its pairings to the
    callback given to ``listen`` when they come (on the event loop, later, like
    ``PlayerStore.load_player``'s answer).
    """

    def listen(self, on_pairings: PairingsDone) -> None: ...

    def join(
        self, player_id: str, mode: BotMode, now: float, rating: float = 1500.0
    ) -> list[Pairing]: ...

    def leave(self, player_id: str) -> bool: ...

    def tick(self, now: float) -> list[Pairing]: ...

    @property
    def next_wakeup(self) -> float | None: ...

    def __len__(self) -> int: ...

    def __contains__(self, player_id: object) -> bool: ...


class Forwarder(Protocol):
    """Carries a session's frames to the process that owns its player (a cluster's).

    A connection whose player lives in another process (found by ``Locator``) stays a
    session here, for its socket, its flood guard and its lobby, but everything it sends
    goes to the owner, and the owner's answers come back through its outlet.
    """

    def begin(self, session: Any, owner: str, frames: list[bytes]) -> None:
        """From now on ``session`` forwards to ``owner``; ``frames`` (the hello and what
        came after it) go first."""
        ...

    def forward(self, session: Any, data: bytes) -> None: ...

    def closed(self, session: Any) -> None:
        """The session's connection is gone."""
        ...


class Journal(Protocol):
    """Keeps each running match's progress where another process can carry it on if this
    one dies (a cluster's). Told at the start, at every resolved round, when a player's
    connection moves, and at the end with the record handed to storage (kept until
    storage has it, so a death in between loses no finished match)."""

    def checkpoint(self, room: Any) -> None: ...

    def finished(self, room: Any, record: MatchRecord) -> None: ...


class NullJournal:
    """One process on its own: a match dies with it, so nothing is kept."""

    def checkpoint(self, room: Any) -> None:
        pass

    def finished(self, room: Any, record: MatchRecord) -> None:
        pass


class StoreUnavailable(Exception):
    """Storage could not answer (disk full, I/O error, database locked): try again later.

    Reads of a batch that failed raise it; ``load_player`` hands it to ``done`` instead of
    a record, which is not the same as "no such player".
    """


LoadDone = Callable[[PlayerRecord | StoreUnavailable | None], None]
# Where a player lives: None, here (load it from storage and own it); a process id,
# elsewhere (forward to it); or StoreUnavailable if that cannot be told right now.
LocateDone = Callable[[str | StoreUnavailable | None], None]


class Locator(Protocol):
    """Finds the process that owns a player known to a token but not in memory here."""

    def locate(self, player_id: str, done: LocateDone) -> None: ...


class HereLocator:
    """One process on its own: every player is owned here."""

    def locate(self, player_id: str, done: LocateDone) -> None:
        done(None)


# Where a room's code or a player is: a process id, None if no live process (other than
# this one) holds it, or StoreUnavailable if that cannot be told right now.
NodeDone = Callable[[str | StoreUnavailable | None], None]


class FriendsDirectory(Protocol):
    """Which process holds each private room's code, and each player (a cluster's); one
    process on its own has none: every code and player is here.

    A code is unique across the processes: ``published`` claims it for this process and
    answers True, or False if another process holds the same code (the room then takes
    another), or StoreUnavailable if that cannot be told.
    A friend whose room is not here (``locate``), or a player asking for a rematch whose
    last opponent is held elsewhere (``where``), is moved there with its message: its
    player handed over, as to a match's host, and the message handled there as if it had
    been sent there.
    """

    def published(
        self, code: str, ttl: float, done: Callable[[bool | StoreUnavailable], None]
    ) -> None: ...

    def withdrawn(self, code: str) -> None: ...

    def locate(self, code: str, done: NodeDone) -> None: ...

    def where(self, player_id: str, done: NodeDone) -> None: ...

    def move(self, node: str, player_id: str, message: ClientMessage) -> bool:
        """Hand the idle, connected ``player_id`` over to ``node`` and have it handle
        ``message`` there; False if the player cannot be handed over now (or came here
        by such a move a moment ago: two players moving towards each other at once must
        not chase each other round)."""
        ...


class PlayerStore(Protocol):
    """Where players and finished matches are kept; the game never waits on it.

    Writes are fire-and-forget; a load answers through ``done``, called later on the
    event loop (or at once), so the sans-I/O service can use it without awaiting: with the
    record, None for an unknown player, or ``StoreUnavailable`` if storage failed.
    """

    def load_player(self, player_id: str, done: LoadDone) -> None: ...

    def save_player(self, record: PlayerRecord) -> None: ...

    def record_match(self, record: MatchRecord) -> None: ...


class Storage(PlayerStore, Protocol):
    """A whole store as the shell uses it: the game's port, and the queries of the HTTP
    API, health and shutdown. SQLite and PostgreSQL implement it."""

    async def find_by_openid(self, openid: str) -> PlayerRecord | None: ...

    async def claim_openid(self, record: PlayerRecord) -> PlayerRecord: ...

    async def get_player(self, player_id: str) -> PlayerRecord | None: ...

    async def leaderboard(self, limit: int) -> list[PlayerRecord]: ...

    async def recent_matches(self, player_id: str, limit: int) -> list[dict[str, Any]]: ...

    async def store_avatar(self, picture: Picture, player_id: str, url: str) -> bool:
        """Keep ``picture`` (once: a stored id is left alone) and make ``url`` the stored
        player's avatar, in one transaction, committed when this returns; False if
        storage holds no such player (the picture is kept all the same)."""
        ...

    async def get_avatar(self, picture_id: str) -> Picture | None: ...

    async def standings(
        self, board: Board, period: Period, limit: int, around: str | None = None
    ) -> list[Any] | None:
        """A page of a leaderboard, ranked (``store/ladder.py``); None when ``around``
        names a player not on that board."""
        ...

    async def rank_by_score(self, player_id: str) -> int | None: ...

    async def rating_history(self, player_id: str, limit: int) -> list[tuple[str, float, float]]:
        """The player's last ``limit`` rated matches, newest first: (match id, ended at,
        its rating after the match)."""
        ...

    @property
    def backlog(self) -> int: ...

    @property
    def failures(self) -> int: ...

    @property
    def writes_dropped(self) -> int: ...

    @property
    def swept(self) -> dict[str, int]:
        """Rows the store's sweeps deleted, by kind: ``guests`` (unreachable, never
        played), ``matches`` and ``period_rows`` (older than ``--keep-matches``)."""
        ...

    async def flush(self) -> None: ...

    async def committed(self) -> None:
        """Everything written so far is committed, without hurrying the writes."""
        ...

    async def close(self) -> None: ...


class NullStore:
    """Keeps nothing: players live only as long as the process remembers them."""

    def load_player(self, player_id: str, done: LoadDone) -> None:
        done(None)

    def save_player(self, record: PlayerRecord) -> None:
        pass

    def record_match(self, record: MatchRecord) -> None:
        pass

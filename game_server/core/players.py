"""Players: who is connected, queued, seated or away, as one explicit state machine.

A player's life is a handful of states, and the service moves it between them only
through ``Player.move(event)``, which checks the move against ``TRANSITIONS`` (the style
of h11's ``_state.py``): a move the table does not allow is a bug in the service, and it
raises at once instead of leaving a player half in a queue and half in a match.

``check_invariants`` says what each state means for the fields beside it (the session,
the queue, the seat, the timers); the fuzz test asserts it after every step, so the
meaning of a state is written down once and checked, not implied by five nullable fields.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import attrs
import structlog

from game_server.core.rating import NEW_RATING, Rating
from game_server.core.records import PlayerRecord
from game_server.core.scoring import PlayerStats
from game_server.core.timers import Timer, TimerQueue

if TYPE_CHECKING:
    from game_server.core.lobbies import Lobby
    from game_server.core.rooms import Room
    from game_server.core.sessions import Session

log = structlog.get_logger("game_server")


@attrs.define(eq=False)
class LastMatch:
    """What a player needs to ask for a rematch of the match it just finished."""

    match_id: str
    lobby: str
    ended_at: float  # the service clock's (monotonic, this process's)
    opponent: str | None  # None: a house bot
    bot_strategy: str | None = None
    bot_name: str | None = None


class PlayerState(enum.Enum):
    OFFLINE = "offline"  # no connection and nothing held; forgotten after a while
    IDLE = "idle"  # connected, neither queued nor seated
    QUEUED = "queued"  # connected, waiting in a lobby's queue
    PLAYING = "playing"  # connected, seated in a match
    AWAY_QUEUED = "away_queued"  # connection lost: the queue entry is held for the grace
    AWAY_PLAYING = "away_playing"  # connection lost: the seat is held for the grace


class PlayerEvent(enum.Enum):
    HELLO = "hello"  # a connection took the player (new, resumed, or replacing another)
    JOIN = "join"  # it entered a queue
    UNQUEUE = "unqueue"  # it left the queue without a match (leave, or given up)
    SEAT = "seat"  # it was paired into a match
    MATCH_OVER = "match_over"  # its match ended (played out, forfeited, or abandoned)
    DROP = "drop"  # its connection went; whatever it holds is held for the grace


S, E = PlayerState, PlayerEvent
TRANSITIONS: dict[PlayerState, dict[PlayerEvent, PlayerState]] = {
    S.OFFLINE: {E.HELLO: S.IDLE},
    S.IDLE: {E.HELLO: S.IDLE, E.JOIN: S.QUEUED, E.DROP: S.OFFLINE},
    S.QUEUED: {E.HELLO: S.QUEUED, E.UNQUEUE: S.IDLE, E.SEAT: S.PLAYING, E.DROP: S.AWAY_QUEUED},
    S.PLAYING: {E.HELLO: S.PLAYING, E.MATCH_OVER: S.IDLE, E.DROP: S.AWAY_PLAYING},
    S.AWAY_QUEUED: {E.HELLO: S.QUEUED, E.UNQUEUE: S.OFFLINE, E.SEAT: S.AWAY_PLAYING},
    S.AWAY_PLAYING: {E.HELLO: S.PLAYING, E.MATCH_OVER: S.OFFLINE},
}
del S, E

AWAY = frozenset({PlayerState.AWAY_QUEUED, PlayerState.AWAY_PLAYING})
CONNECTED = frozenset({PlayerState.IDLE, PlayerState.QUEUED, PlayerState.PLAYING})


# How long a guest that never finished a match is remembered once it holds nothing: long
# enough to come back after a dropped socket or a network change (its token names it
# only while it is remembered), short enough that a flood of guests never piles up.
GUEST_FORGET_AFTER = 60.0


class BadTransition(RuntimeError):
    """The service tried a move its state machine does not have: a bug, never a client's."""


@attrs.define(eq=False)
class Player:
    id: str
    name: str
    created_at: float  # Unix seconds
    stats: PlayerStats = attrs.Factory(PlayerStats)
    avatar: str | None = None
    openid: str | None = None
    unionid: str | None = None
    rating: Rating = NEW_RATING  # as of its last rated match (a value: matches replace it)
    state: PlayerState = PlayerState.OFFLINE
    session: Session | None = None
    room: Room | None = None
    lobby: Lobby | None = None  # set while queued
    forget_timer: Timer | None = None  # set while offline
    away_timer: Timer | None = None  # set while away
    # In storage, or to be: False for a new guest until its first finished match (or a
    # login), so a guest that never plays costs no row and is forgotten once it leaves.
    durable: bool = True
    last_match: LastMatch | None = None  # the match it finished last, for a rematch

    def move(self, event: PlayerEvent) -> PlayerState:
        moves = TRANSITIONS[self.state]
        new = moves.get(event)
        if new is None:
            raise BadTransition(f"player {self.id}: {event.value} while {self.state.value}")
        self.state = new
        return new

    @property
    def away(self) -> bool:
        return self.state in AWAY

    def record(self, last_seen: float) -> PlayerRecord:
        return PlayerRecord(
            id=self.id,
            name=self.name,
            created_at=self.created_at,
            last_seen=last_seen,
            avatar=self.avatar,
            openid=self.openid,
            unionid=self.unionid,
            stats=self.stats.copy(),
            rating=self.rating,
        )

    @classmethod
    def from_record(cls, record: PlayerRecord) -> Player:
        return cls(
            id=record.id,
            name=record.name,
            created_at=record.created_at,
            stats=record.stats.copy(),
            avatar=record.avatar,
            openid=record.openid,
            unionid=record.unionid,
            rating=record.rating,
        )


def check_invariants(player: Player) -> None:
    """What each state means for the fields beside it; raises ``AssertionError`` if off."""
    state = player.state
    where = f"player {player.id} {state.value}"
    connected = state in CONNECTED
    assert (player.session is not None) == connected, f"{where}: session {player.session}"
    assert (player.away_timer is not None) == (state in AWAY), f"{where}: away timer"
    queued = state in (PlayerState.QUEUED, PlayerState.AWAY_QUEUED)
    assert (player.lobby is not None) == queued, f"{where}: lobby {player.lobby}"
    if queued:
        assert player.lobby is not None, where
        assert player.id in player.lobby.matchmaker, f"{where}: not in its queue"
    seated = state in (PlayerState.PLAYING, PlayerState.AWAY_PLAYING)
    assert (player.room is not None) == seated, f"{where}: room {player.room}"
    if player.room is not None:
        assert not player.room.closed, f"{where}: its room is closed"
        assert player in player.room.humans, f"{where}: not in its room"
    if state is PlayerState.OFFLINE:
        assert player.forget_timer is not None, f"{where}: no forget timer"
        assert not player.forget_timer.cancelled, f"{where}: forget timer cancelled"
    else:
        assert player.forget_timer is None, f"{where}: forget timer"


class Roster:
    """Every player this process remembers, by id and by WeChat openid.

    A player is remembered while it is connected, holds a seat or a queue entry, and for
    ``forget_after`` seconds once offline (so a quick reconnect or a profile read finds it
    in memory); then it lives only in storage.
    """

    def __init__(self, timers: TimerQueue, forget_after: float) -> None:
        self.timers = timers
        self.forget_after = forget_after
        self.by_id: dict[str, Player] = {}
        self._by_openid: dict[str, str] = {}
        # A cluster's: this process owns a player from ``add`` to ``remove`` (owner keys).
        self.on_added: Callable[[Player], None] | None = None
        self.on_removed: Callable[[Player], None] | None = None

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, player_id: str) -> Player | None:
        return self.by_id.get(player_id)

    def by_openid(self, openid: str) -> Player | None:
        player_id = self._by_openid.get(openid)
        return None if player_id is None else self.by_id.get(player_id)

    def add(self, player: Player) -> Player:
        """Remember ``player``, or return the one already remembered under its id."""
        known = self.by_id.get(player.id)
        if known is not None:
            return known
        self.by_id[player.id] = player
        if player.openid is not None:
            self._by_openid[player.openid] = player.id
        if self.on_added is not None:
            self.on_added(player)
        return player

    def remove(self, player: Player) -> None:
        """Forget a player at once: another process owns it now."""
        self.timers.cancel(player.forget_timer)
        player.forget_timer = None
        del self.by_id[player.id]
        if player.openid is not None and self._by_openid.get(player.openid) == player.id:
            del self._by_openid[player.openid]
        if self.on_removed is not None:
            self.on_removed(player)

    def link_openid(self, player: Player, openid: str) -> None:
        player.openid = openid
        self._by_openid[openid] = player.id

    def offline(self, player: Player, now: float) -> None:
        """The player holds nothing any more: forget it after ``forget_after`` (a guest that
        never played after ``GUEST_FORGET_AFTER``: time to come back after a dropped
        socket, while nothing of it is stored)."""
        self.timers.cancel(player.forget_timer)
        after = self.forget_after if player.durable else min(self.forget_after, GUEST_FORGET_AFTER)
        player.forget_timer = self.timers.call_at(now + after, partial(self._forget, player))

    def online(self, player: Player) -> None:
        self.timers.cancel(player.forget_timer)
        player.forget_timer = None

    def _forget(self, player: Player, now: float) -> None:
        player.forget_timer = None
        if player.state is PlayerState.OFFLINE:
            self.remove(player)

    def check(self, online: int, is_queued: Callable[[str], bool]) -> None:
        """Every player's invariants, the connected count, and no queue entry without a
        queued player (for tests: ``is_queued`` asks every lobby)."""
        connected = 0
        for player in self.by_id.values():
            check_invariants(player)
            connected += player.state in CONNECTED
            queued = player.state in (PlayerState.QUEUED, PlayerState.AWAY_QUEUED)
            assert is_queued(player.id) == queued, f"player {player.id}: queue entry"
        assert connected == online, f"{online} online, {connected} connected"

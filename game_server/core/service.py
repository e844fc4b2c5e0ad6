"""The game service: the one object the network shell talks to.

It wires the parts together (``sessions``, ``roster`` of players, ``lobbies``, ``rooms``,
``presence``) and routes each client message to its handler through one table. Sans-I/O
like every part: it reads time only through the injected ``clock``, fires its timers from
``tick`` and talks to clients only through ``Outlet`` and ``Relay``. The shell feeds it
frames, and arms one real timer at ``next_wakeup``, which the timer queue announces
whenever it moves earlier (``watch_wakeups``); tests drive it the same way with a fake
clock and recording outlets.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import structlog

from game_server.core.context import Context
from game_server.core.friends import Friends, FriendsConfig
from game_server.core.house_bot import STEADY
from game_server.core.ids import time_ordered_id
from game_server.core.lobbies import DEFAULT_LOBBY, Lobbies, Lobby
from game_server.core.match import MatchRules, Seat
from game_server.core.matchmaker import WIDEN, WINDOW, InMemoryMatchmaker
from game_server.core.players import Player, Roster
from game_server.core.ports import (
    Forwarder,
    Locator,
    Matchmaker,
    NullObserver,
    NullStore,
    Observer,
    Outlet,
    PlayerStore,
    Relay,
)
from game_server.core.presence import Presence
from game_server.core.ratelimit import AddressBuckets, Verdict
from game_server.core.records import PlayerRecord
from game_server.core.relay import LocalRelay
from game_server.core.rooms import BotConfig, Room, Rooms
from game_server.core.sessions import PENDING_MAX, Session, Sessions
from game_server.core.strategies import make_strategy
from game_server.core.timers import TimerQueue
from game_server.core.tokens import TokenSigner
from protocol import (
    ClientMessage,
    CloseCode,
    CreateRoom,
    DeclinedReason,
    ErrorCode,
    Face,
    Hello,
    Join,
    Leave,
    Left,
    MakeChoice,
    Ping,
    Pong,
    ProtocolError,
    Rematch,
    decode_client,
)

log = structlog.get_logger("game_server")

TOKEN_TTL = 7 * 24 * 3600.0


@attrs.frozen
class ServiceConfig:
    rules: MatchRules = attrs.Factory(MatchRules)
    bot_after: float = 3.0
    match_window: float = WINDOW  # rating points either side a new ticket fits
    match_widen: float = WIDEN  # points a second its window widens while it waits
    bot_think: tuple[float, float] = (0.4, 1.6)
    bot_strategy: str = "mix"
    forget_after: float = 3600.0
    reconnect_grace: float = 20.0  # a dropped player keeps its seat or queue entry this long
    flood_rate: float = 20.0
    flood_burst: float = 40.0
    # Seconds a new connection has to say a hello that is accepted; None: no deadline.
    hello_timeout: float | None = 15.0
    # Hellos without a token (each a new guest) one client address may send a second,
    # with bursts of ``guest_burst``; None: no limit. Generous: a carrier NAT puts
    # thousands of phones behind one address (docs/internet.md).
    guest_rate: float | None = 20.0
    guest_burst: float = 200.0
    room_ttl: float = 600.0  # seconds a private room's code stays valid
    rematch_seconds: float = 15.0  # after a match, how long both have to ask for another
    rate_friend_matches: bool = True  # a room's matches move ratings like the queue's

    def __attrs_post_init__(self) -> None:
        low, high = self.bot_think
        if not 0 <= low <= high:
            raise ValueError("bot_think must be a range 0 <= low <= high")
        if self.match_window < 0 or self.match_widen < 0:
            raise ValueError("match_window and match_widen must not be negative")
        if self.room_ttl <= 0 or self.rematch_seconds <= 0:
            raise ValueError("room_ttl and rematch_seconds must be positive")
        make_strategy(self.bot_strategy)  # fail at start-up on an unknown name


Handler = Callable[[Session, Player, Any, float], None]


class GameService:
    def __init__(
        self,
        config: ServiceConfig,
        clock: Callable[[], float],
        *,
        matchmaker: Matchmaker | None = None,
        relay: Relay | None = None,
        rng: random.Random | None = None,
        new_id: Callable[[str], str] | None = None,
        observer: Observer | None = None,
        store: PlayerStore | None = None,
        signer: TokenSigner | None = None,
        wall_clock: Callable[[], float] = time.time,
        locator: Locator | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        """``matchmaker`` is the default lobby's queue; it, ``locator`` and ``forwarder``
        are a cluster's (``game_server/cluster/``) when several processes serve as one."""
        self.config = config
        self.signer = signer or TokenSigner.random(TOKEN_TTL)
        self.observer: Observer = observer or NullObserver()
        self.context = context = Context(
            clock=clock,
            wall_clock=wall_clock,
            timers=TimerQueue(),
            relay=LocalRelay() if relay is None else relay,
            store=store or NullStore(),
            observer=self.observer,
            rng=rng or random.Random(),
            new_id=new_id or partial(time_ordered_id, wall_clock=wall_clock),
        )
        self.clock = clock
        self.timers = context.timers
        self.sessions = Sessions(self.observer, config.flood_rate, config.flood_burst)
        self.roster = Roster(self.timers, config.forget_after)
        self.rooms = Rooms(context, self.roster, BotConfig(config.bot_strategy, config.bot_think))
        self.lobbies = Lobbies(context, self.rooms.seat)
        if matchmaker is None:  # not ``or``: an empty queue is falsy (it has a length)
            matchmaker = InMemoryMatchmaker(
                config.bot_after, config.match_window, config.match_widen
            )
        self.lobby = self.lobbies.add(Lobby(DEFAULT_LOBBY, config.rules, matchmaker))
        self.presence = Presence(
            context,
            self.roster,
            self.sessions,
            self.lobbies,
            self.rooms,
            self.signer,
            replay=self.handle,
            reconnect_grace=config.reconnect_grace,
            locator=locator,
            forwarder=forwarder,
            guests=None
            if config.guest_rate is None
            else AddressBuckets(config.guest_rate, config.guest_burst),
        )
        self.friends = Friends(
            context,
            FriendsConfig(
                config.room_ttl,
                config.rematch_seconds,
                config.rate_friend_matches,
                rooms_available=locator is None,
            ),
            self.roster,
            self.lobbies,
            self.rooms,
            config.rules,
            bot_think=config.bot_think,
            refuse=self.sessions.refuse,
        )
        self.rooms.on_closed = self._room_closed
        self._on_drained: Callable[[], None] | None = None
        # A cluster's: told when a match hosted here ended (its players may go home).
        self.on_match_over: Callable[[Room], None] | None = None
        self._handlers: dict[type, Handler] = {
            MakeChoice: self.rooms.on_choice,
            Join: self._join,
            Face: self.rooms.on_face,
            Leave: self._leave,
            Ping: self._ping,
            CreateRoom: self.friends.on_create_room,
            Rematch: self.friends.on_rematch,
        }

    # ------------------------------------------------------------ set-up

    @property
    def matchmaker(self) -> Matchmaker:
        """The default lobby's queue (the native protocol's)."""
        return self.lobby.matchmaker

    def add_lobby(
        self,
        name: str,
        rules: MatchRules,
        matchmaker: Matchmaker,
        *,
        reconnect_grace: float | None = None,
        bot_changes: tuple[int, int] = STEADY,
    ) -> Lobby:
        """Another queue with its own rules (the Socket.IO dialect plays one-round games,
        its clients have no token to come back with, so no reconnect grace, and its robot
        changes its mind a few times a round: ``bot_changes``, see ``HouseBot``)."""
        return self.lobbies.add(Lobby(name, rules, matchmaker, reconnect_grace, None, bot_changes))

    def watch_wakeups(self, arm: Callable[[float], None]) -> None:
        """Have ``arm(when)`` called whenever the next wake-up moves earlier."""
        self.timers.on_earlier = arm
        when = self.timers.next_when
        if when is not None:
            arm(when)

    # ------------------------------------------------------------ connections

    def connect(
        self, outlet: Outlet, lobby: str = DEFAULT_LOBBY, address: str | None = None
    ) -> Session:
        """A new connection from ``address`` (the client's, for per-address limits and
        logs); closed with ``bye {reason: "hello_timeout"}`` and 1008 if no hello of it is
        accepted within ``hello_timeout``."""
        session = self.sessions.connect(outlet, self.lobbies[lobby], address)
        timeout = self.config.hello_timeout
        if timeout is not None:
            session.hello_timer = self.timers.call_at(
                self.clock() + timeout, partial(self._hello_overdue, session)
            )
        return session

    def _hello_overdue(self, session: Session, now: float) -> None:
        session.hello_timer = None
        if session.closed or session.player is not None or session.owner is not None:
            return
        if session.pending is not None:  # its player is still loading: not the client's fault
            return
        self.observer.limited("hello_timeout")
        self.presence.kick(session, "hello_timeout", CloseCode.POLICY_VIOLATION)

    def admit(self, session: Session) -> bool:
        """The flood guard, for adapters: False means drop the frame (the client was told,
        or closed for flooding). ``receive`` applies it itself; ``handle`` does not."""
        now = self._advance()  # a timer due by now may close the session (hello_timeout)
        return not session.closed and self._admit(session, now)

    def _admit(self, session: Session, now: float) -> bool:
        verdict = self.sessions.admit(session, now)
        if verdict is Verdict.DISCONNECT:
            self.observer.limited("flooding")
            self.presence.kick(session, "flooding", CloseCode.POLICY_VIOLATION)
        return verdict is Verdict.ACCEPT

    def receive(self, session: Session, data: bytes | str) -> None:
        """Handle one text frame. Client mistakes become ``error`` replies, never exceptions."""
        if session.closed:
            return
        now = self._advance()
        if session.closed or not self._admit(session, now):
            return
        if session.owner is not None:  # a cluster's: its player lives in another process
            self.presence.forward(session, data if isinstance(data, bytes) else data.encode())
            return
        message: ClientMessage | None = None
        try:
            message = decode_client(data)
            self.observer.message_in(message.TYPE)
            self._dispatch(session, message, now)
        except ProtocolError as exc:
            ref = exc.ref if exc.ref is not None or message is None else message.id
            self.sessions.refuse(session, exc.code, exc.message, ref)

    def handle(self, session: Session, message: ClientMessage) -> None:
        """Handle one decoded message (for adapters that speak another dialect)."""
        if session.closed:
            return
        now = self._advance()
        if session.closed:
            return
        try:
            self.observer.message_in(message.TYPE)
            self._dispatch(session, message, now)
        except ProtocolError as exc:
            ref = exc.ref if exc.ref is not None else message.id
            self.sessions.refuse(session, exc.code, exc.message, ref)

    def receive_unsupported(self, session: Session, what: str) -> None:
        if self.admit(session):
            self.sessions.refuse(
                session,
                ErrorCode.UNSUPPORTED_FRAME,
                f"{what} frames are not supported; send JSON in text frames",
            )

    def disconnect(self, session: Session, *, keep_seat: bool = True) -> None:
        """The connection is gone (see ``Presence.disconnect``)."""
        if not session.closed:
            self.presence.disconnect(session, self._advance(), keep_seat=keep_seat)

    # ------------------------------------------------------------ messages

    def _dispatch(self, session: Session, message: ClientMessage, now: float) -> None:
        if session.pending is not None:
            if isinstance(message, Hello):
                raise ProtocolError(ErrorCode.ALREADY_HELLO, "you already said hello", message.id)
            if len(session.pending) >= PENDING_MAX:
                raise ProtocolError(
                    ErrorCode.RATE_LIMITED, "wait for hi before sending more", message.id
                )
            session.pending.append(message)
            return
        if isinstance(message, Hello):
            self.presence.hello(session, message, now)
            return
        player = session.player
        if player is None:
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "say hello first", message.id)
        self._handlers[type(message)](session, player, message, now)

    def _join(self, session: Session, player: Player, message: Join, now: float) -> None:
        if message.room is not None:
            self.friends.on_join_room(session, player, message, now)
            return
        self.lobbies.on_join(session, player, message, now)
        self.friends.withdraw(player, DeclinedReason.QUEUED)

    def _leave(self, session: Session, player: Player, message: Leave, now: float) -> None:
        self.lobbies.leave(player)
        self.rooms.forfeit(player, now)
        self.friends.withdraw(player, DeclinedReason.LEFT)
        session.outlet.send(Left(ref=message.id))

    def _ping(self, session: Session, player: Player, message: Ping, now: float) -> None:
        t = message.t if message.t is not None else int(now * 1000)
        session.outlet.send(Pong(t=t, ref=message.id))

    # ------------------------------------------------------------ logins (HTTP)

    def new_player_record(self, *, openid: str, unionid: str | None) -> PlayerRecord:
        """A new player for a first WeChat login, for storage to claim the openid with."""
        return self.presence.new_record(openid=openid, unionid=unionid)

    def login(
        self,
        openid: str,
        stored: PlayerRecord | None,
        *,
        name: str | None = None,
        avatar: str | None = None,
        unionid: str | None = None,
    ) -> tuple[PlayerRecord, str]:
        """A WeChat login: the player with this openid (made if new) and a token for it.

        ``stored`` is what storage holds for the openid; the live player wins if there is one.
        """
        player = self.presence.login(
            openid, stored, self._advance(), name=name, avatar=avatar, unionid=unionid
        )
        return player.record(self.context.wall_clock()), self.signer.issue(player.id)

    def player_of(self, token: str) -> str:
        """The player id a token names (signature and expiry checked), or ``InvalidToken``."""
        return self.signer.verify(token)

    def set_avatar(self, player_id: str, url: str) -> bool:
        """A new avatar for a player this process holds (an HTTP upload): opponents see it
        from the next ``start``. False if the player is not held here; the caller keeps
        it in storage either way. Saved with the profile when the player is kept in
        storage (a guest's live copy carries it until its first match stores it)."""
        player = self.roster.get(player_id)
        if player is None:
            return False
        player.avatar = url
        if player.durable:
            self.context.store.save_player(player.record(self.context.wall_clock()))
        return True

    @property
    def token_ttl(self) -> float:
        return self.signer.ttl

    # ------------------------------------------------------------ reading, for the shell

    def live_record(self, player_id: str) -> PlayerRecord | None:
        """A player in memory as storage would hold it (storage lags by a write)."""
        player = self.roster.get(player_id)
        return None if player is None else player.record(self.context.wall_clock())

    def is_online(self, player_id: str) -> bool:
        player = self.roster.get(player_id)
        return player is not None and player.session is not None

    def seats_of(self, match_id: str) -> tuple[Seat, Seat] | None:
        """Both seats of a running match, with the players' live totals."""
        return self.rooms.seats_of(match_id)

    @property
    def online(self) -> int:
        return self.presence.online

    @property
    def waiting(self) -> int:
        """Players waiting in every queue."""
        return self.lobbies.waiting()

    @property
    def live_matches(self) -> int:
        return len(self.rooms)

    @property
    def matches_finished(self) -> int:
        return self.rooms.finished

    def health(self) -> dict[str, Any]:
        return {
            "players": self.online,
            "matches": len(self.rooms),
            "queue": self.waiting,
            "matches_finished": self.rooms.finished,
        }

    # ------------------------------------------------------------ time

    def tick(self, now: float | None = None) -> None:
        """Fire every timer due at ``now`` (default: the clock)."""
        self.timers.run_due(self.clock() if now is None else now)

    @property
    def next_wakeup(self) -> float | None:
        return self.timers.next_when

    def _advance(self) -> float:
        return self.context.advance()

    # ------------------------------------------------------------ shutting down

    def begin_drain(self, on_drained: Callable[[], None] | None = None) -> None:
        """Shutting down: everyone not in a match leaves now; matches play to their end.

        Each player is sent ``bye {reason: "shutdown"}`` and closed with 1001 as soon as it
        has nothing left to play here, so clients reconnect (to another process) at once.
        ``on_drained`` is called once the last match has ended.
        """
        if not self.presence.draining:
            self._on_drained = on_drained
            self.presence.drain(self._advance())
            self._check_drained()

    def close_all(self, reason: str) -> None:
        self.presence.close_all(reason)

    def _room_closed(self, room: Room, now: float) -> None:
        self.friends.match_over(room, now)
        self.presence.room_closed(room)
        if self.on_match_over is not None and not self.presence.draining:
            self.on_match_over(room)
        self._check_drained()

    def _check_drained(self) -> None:
        if self.presence.draining and not len(self.rooms) and self._on_drained is not None:
            callback, self._on_drained = self._on_drained, None
            callback()

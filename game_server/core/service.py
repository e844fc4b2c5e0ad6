"""The game service: sessions, players, the queue, matches and house bots in one object.

Sans-I/O like the pieces it drives: it reads time only through the injected ``clock``,
fires its own timers from ``tick``, and talks to clients only through ``Outlet`` and
``Relay``. The aiohttp shell feeds it frames and calls ``tick`` at ``next_wakeup``; tests
feed it the same way with a fake clock and recording outlets.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import structlog

from game_server.core.house_bot import BOT_NAMES, STEADY, HouseBot, PlannedChoice
from game_server.core.match import Match, MatchRules, Seat, Send
from game_server.core.matchmaker import InMemoryMatchmaker
from game_server.core.ports import (
    Matchmaker,
    NullObserver,
    NullStore,
    Observer,
    Outlet,
    Pairing,
    PlayerStore,
    Relay,
    StoreUnavailable,
)
from game_server.core.ratelimit import FloodGuard, Verdict
from game_server.core.records import MatchRecord, PlayerRecord, PlayerResult, RoundRow, SeatRow
from game_server.core.relay import LocalRelay
from game_server.core.scoring import PlayerStats, points_won
from game_server.core.strategies import make_strategy
from game_server.core.timers import Timer, TimerQueue
from game_server.core.tokens import InvalidToken, TokenSigner
from protocol import (
    BotMode,
    Bye,
    ClientMessage,
    Error,
    ErrorCode,
    Face,
    Hello,
    Hi,
    Join,
    Leave,
    Left,
    MakeChoice,
    MessageId,
    Movement,
    MovementKind,
    Ping,
    Pong,
    ProtocolError,
    Queued,
    decode_client,
)

log = structlog.get_logger("game_server")

CLOSE_POLICY_VIOLATION = 1008
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001

DEFAULT_LOBBY = "native"
TOKEN_TTL = 7 * 24 * 3600.0
# Messages a client sends after a ``hello`` whose player is still being read from storage;
# they are handled once it is loaded.
PENDING_MAX = 32


@attrs.frozen
class ServiceConfig:
    rules: MatchRules = attrs.Factory(MatchRules)
    bot_after: float = 3.0
    bot_think: tuple[float, float] = (0.4, 1.6)
    bot_strategy: str = "mix"
    forget_after: float = 3600.0
    reconnect_grace: float = 20.0  # a dropped player keeps its seat or queue entry this long
    flood_rate: float = 20.0
    flood_burst: float = 40.0

    def __attrs_post_init__(self) -> None:
        low, high = self.bot_think
        if not 0 <= low <= high:
            raise ValueError("bot_think must be a range 0 <= low <= high")
        make_strategy(self.bot_strategy)  # fail at start-up on an unknown name


@attrs.define(eq=False)
class Lobby:
    """One queue and the rules of the matches it makes; a player queues in its session's."""

    name: str
    rules: MatchRules
    matchmaker: Matchmaker
    reconnect_grace: float | None = None  # None: the service's
    timer: Timer | None = None
    bot_changes: tuple[int, int] = STEADY  # how often its house bots change their mind


@attrs.define(eq=False)
class Player:
    id: str
    name: str
    created_at: float  # Unix seconds
    stats: PlayerStats = attrs.Factory(PlayerStats)
    avatar: str | None = None
    openid: str | None = None
    unionid: str | None = None
    session: Session | None = None
    room: Room | None = None
    lobby: Lobby | None = None  # set while queued
    forget_timer: Timer | None = None
    away_timer: Timer | None = None  # set while the reconnect grace runs

    def record(self, last_seen: float) -> PlayerRecord:
        return PlayerRecord(
            id=self.id,
            name=self.name,
            created_at=self.created_at,
            last_seen=last_seen,
            avatar=self.avatar,
            openid=self.openid,
            unionid=self.unionid,
            stats=attrs.evolve(self.stats),
        )

    @classmethod
    def from_record(cls, record: PlayerRecord) -> Player:
        return cls(
            id=record.id,
            name=record.name,
            created_at=record.created_at,
            stats=attrs.evolve(record.stats),
            avatar=record.avatar,
            openid=record.openid,
            unionid=record.unionid,
        )


@attrs.define(eq=False)
class Session:
    """One connection, from upgrade to close; it may carry a player once it said hello."""

    id: int
    outlet: Outlet
    guard: FloodGuard
    lobby: Lobby
    player: Player | None = None
    closed: bool = False
    # Not None while its ``hello`` waits for the player to load: what came in meanwhile.
    pending: list[ClientMessage] | None = None


@attrs.define(eq=False)
class Room:
    match: Match
    humans: list[Player]
    started_at: float  # Unix seconds
    bot: HouseBot | None = None
    bot_seat: int | None = None
    timer: Timer | None = None
    bot_timer: Timer | None = None
    closed: bool = False
    rounds_reported: int = 0


# Ids are public (opponents and profiles show them), so they need to be unique, not secret:
# a PRNG seeded from the OS (secrets.token_hex costs a system call, 3% of a busy server).
_ID_RANDOM = random.Random()


def time_ordered_id(prefix: str, wall_clock: Callable[[], float] = time.time) -> str:
    """The creation millisecond, then 64 random bits, in hex.

    Ids that sort by age land at the end of storage's indexes instead of on random pages
    (a third less of the writer's CPU per stored match, measured), and the random part
    keeps ids from processes sharing a database apart (two made in the same millisecond
    collide once in 2**64).
    """
    return f"{prefix}{int(wall_clock() * 1000):011x}{_ID_RANDOM.getrandbits(64):016x}"


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
    ) -> None:
        self.config = config
        self.clock = clock
        self.lobby = Lobby(
            DEFAULT_LOBBY, config.rules, matchmaker or InMemoryMatchmaker(config.bot_after)
        )
        self.lobbies: dict[str, Lobby] = {DEFAULT_LOBBY: self.lobby}
        self.relay: Relay = relay or LocalRelay()
        self.rng = rng or random.Random()
        self.new_id = new_id or partial(time_ordered_id, wall_clock=wall_clock)
        self.observer: Observer = observer or NullObserver()
        self.store: PlayerStore = store or NullStore()
        self.signer = signer or TokenSigner.random(TOKEN_TTL)
        self.wall_clock = wall_clock
        self.timers = TimerQueue()
        self.players: dict[str, Player] = {}
        self.rooms: dict[str, Room] = {}
        self.online = 0
        self.matches_finished = 0
        self.sessions: set[Session] = set()
        self.draining = False
        # Called once the last match ends while draining; the shell then closes up.
        self.on_drained: Callable[[], None] | None = None
        # Called after the service acted on its own (a player finished loading), so the
        # shell re-arms its timer; events it is handed directly need no such call.
        self.after_event: Callable[[], None] = lambda: None
        self._by_openid: dict[str, str] = {}
        self._session_ids = itertools.count(1)

    # ------------------------------------------------------------ the shell's API

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
        if name in self.lobbies:
            raise ValueError(f"lobby {name!r} exists")
        lobby = Lobby(name, rules, matchmaker, reconnect_grace, bot_changes=bot_changes)
        self.lobbies[name] = lobby
        return lobby

    def connect(self, outlet: Outlet, lobby: str = DEFAULT_LOBBY) -> Session:
        guard = FloodGuard(rate=self.config.flood_rate, burst=self.config.flood_burst)
        session = Session(next(self._session_ids), outlet, guard, self.lobbies[lobby])
        self.sessions.add(session)
        return session

    def admit(self, session: Session) -> bool:
        """The flood guard, for adapters: False means drop the frame (the client was told,
        or closed for flooding). ``receive`` applies it itself; ``handle`` does not."""
        if session.closed:
            return False
        return self._admit(session, self._advance())

    def handle(self, session: Session, message: ClientMessage) -> None:
        """Handle one decoded message (for adapters that speak another dialect)."""
        if session.closed:
            return
        now = self._advance()
        try:
            self.observer.message_in(message.TYPE)
            self._dispatch(session, message, now)
        except ProtocolError as exc:
            ref = exc.ref if exc.ref is not None else message.id
            self._refuse(session, exc.code, exc.message, ref)

    def seats_of(self, match_id: str) -> tuple[Seat, Seat] | None:
        """Both seats of a running match, with the players' live totals."""
        room = self.rooms.get(match_id)
        return None if room is None else room.match.seats

    def receive(self, session: Session, data: bytes | str) -> None:
        """Handle one text frame. Client mistakes become ``error`` replies, never exceptions."""
        if session.closed:
            return
        now = self._advance()
        if not self._admit(session, now):
            return
        message: ClientMessage | None = None
        try:
            message = decode_client(data)
            self.observer.message_in(message.TYPE)
            self._dispatch(session, message, now)
        except ProtocolError as exc:
            ref = exc.ref if exc.ref is not None or message is None else message.id
            self._refuse(session, exc.code, exc.message, ref)

    def receive_unsupported(self, session: Session, what: str) -> None:
        if session.closed:
            return
        now = self._advance()
        if self._admit(session, now):
            self._refuse(
                session,
                ErrorCode.UNSUPPORTED_FRAME,
                f"{what} frames are not supported; send JSON in text frames",
            )

    def disconnect(self, session: Session, *, keep_seat: bool = True) -> None:
        """The connection is gone: the player keeps its seat or queue entry for the grace.

        Past the grace window (or at once while draining, when nobody can come back, or
        when the server closed the session for misbehaving) it leaves the queue and
        forfeits the match, as after ``leave``.
        """
        if session.closed:
            return
        session.closed = True
        self.sessions.discard(session)
        player = session.player
        if player is None:
            return
        now = self._advance()
        self._detach(session, player)
        self.store.save_player(player.record(self.wall_clock()))
        grace = session.lobby.reconnect_grace
        if grace is None:
            grace = self.config.reconnect_grace
        holding = player.room is not None or player.lobby is not None
        if not holding or not keep_seat or self.draining or grace <= 0:
            self._give_up(player, now)
        else:
            player.away_timer = self.timers.call_at(now + grace, partial(self._grace_over, player))
            self._tell_opponent(player, MovementKind.LEFT)
        log.info("player_disconnected", player_id=player.id, session=session.id)

    def login(
        self,
        openid: str,
        stored: PlayerRecord | None,
        *,
        name: str | None = None,
        avatar: str | None = None,
        unionid: str | None = None,
    ) -> tuple[Player, str]:
        """A WeChat login: the player with this openid (made if new) and a token for it.

        ``stored`` is what storage holds for the openid; the live player wins if there is one.
        """
        player_id = self._by_openid.get(openid) or (stored.id if stored else None)
        player = self.players.get(player_id) if player_id else None
        if player is None and stored is not None:
            player = self._adopt(stored)
        if player is None:
            player = self._new_player()
        player.openid = openid
        player.unionid = unionid or player.unionid
        self._by_openid[openid] = player.id
        if name:
            player.name = name
        if avatar:
            player.avatar = avatar
        self.store.save_player(player.record(self.wall_clock()))
        if player.session is None and player.room is None and player.away_timer is None:
            self.timers.cancel(player.forget_timer)
            player.forget_timer = self.timers.call_at(
                self._advance() + self.config.forget_after, partial(self._forget, player)
            )
        log.info("login", player_id=player.id)
        return player, self.signer.issue(player.id)

    def begin_drain(self) -> None:
        """Shutting down: everyone not in a match leaves now; matches play to their end.

        Each player is sent ``bye {reason: "shutdown"}`` and closed with 1001 as soon as it
        has nothing left to play here, so clients reconnect (to another process) at once.
        """
        if self.draining:
            return
        self.draining = True
        now = self._advance()
        for away in [p for p in self.players.values() if p.away_timer is not None]:
            # Nobody can reconnect to a draining process: away players forfeit now.
            self.timers.cancel(away.away_timer)
            self._grace_over(away, now)
        for session in list(self.sessions):
            player = session.player
            if player is None or player.room is None:
                self._kick(session, "shutdown", CLOSE_GOING_AWAY)
        self._check_drained()

    def _check_drained(self) -> None:
        if self.draining and not self.rooms and self.on_drained is not None:
            callback, self.on_drained = self.on_drained, None
            callback()

    def tick(self, now: float | None = None) -> None:
        """Fire every timer due at ``now`` (default: the clock)."""
        self.timers.run_due(self.clock() if now is None else now)

    @property
    def next_wakeup(self) -> float | None:
        return self.timers.next_when

    def health(self) -> dict[str, Any]:
        return {
            "players": self.online,
            "matches": len(self.rooms),
            "queue": sum(len(lobby.matchmaker) for lobby in self.lobbies.values()),
            "matches_finished": self.matches_finished,
        }

    # ------------------------------------------------------------ dispatch

    def _advance(self) -> float:
        now = self.clock()
        self.timers.run_due(now)
        return now

    def _refuse(
        self, session: Session, code: ErrorCode, message: str, ref: MessageId | None = None
    ) -> None:
        """Tell the client what was wrong (and count it): an ``error`` message."""
        self.observer.error(code.value)
        session.outlet.send(Error(code=code, message=message, ref=ref))

    def _admit(self, session: Session, now: float) -> bool:
        verdict = session.guard.check(now)
        if verdict is Verdict.ACCEPT:
            return True
        if verdict is Verdict.REJECT:
            self._refuse(
                session,
                ErrorCode.RATE_LIMITED,
                f"too many messages; at most {self.config.flood_rate:g} a second, "
                "this one was dropped",
            )
            return False
        self.observer.error(ErrorCode.RATE_LIMITED.value)
        self._kick(session, "flooding", CLOSE_POLICY_VIOLATION)
        return False

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
            self._hello(session, message, now)
            return
        player = session.player
        if player is None:
            raise ProtocolError(ErrorCode.HELLO_REQUIRED, "say hello first", message.id)
        if isinstance(message, MakeChoice):
            self._choose(player, message, now)
        elif isinstance(message, Join):
            self._join(session, player, message, now)
        elif isinstance(message, Face):
            self._face(player, message, now)
        elif isinstance(message, Leave):
            self._leave(session, player, message, now)
        elif isinstance(message, Ping):
            t = message.t if message.t is not None else int(now * 1000)
            session.outlet.send(Pong(t=t, ref=message.id))

    def _hello(self, session: Session, message: Hello, now: float) -> None:
        if session.player is not None:
            raise ProtocolError(ErrorCode.ALREADY_HELLO, "you already said hello", message.id)
        if message.token is None:
            self._greet(session, self._new_player(), message, now)
            return
        try:
            player_id = self.signer.verify(message.token)
        except InvalidToken as exc:
            raise ProtocolError(ErrorCode.INVALID_TOKEN, str(exc), message.id) from None
        known = self.players.get(player_id)
        if known is not None:
            self._greet(session, known, message, now)
            return
        # Known to the token but not in memory (a restart, or forgotten): read it first.
        session.pending = []
        self.store.load_player(player_id, partial(self._loaded, session, message))

    def _loaded(
        self, session: Session, message: Hello, record: PlayerRecord | StoreUnavailable | None
    ) -> None:
        pending, session.pending = session.pending or [], None
        if session.closed:
            return
        if isinstance(record, StoreUnavailable):
            # Not "unknown player": the token is fine, so the client keeps it and retries.
            self._refuse(
                session,
                ErrorCode.UNAVAILABLE,
                "your player cannot be loaded right now; say hello again in a moment",
                message.id,
            )
        elif record is None:
            self._refuse(
                session,
                ErrorCode.INVALID_TOKEN,
                "this token's player is unknown here; log in again",
                message.id,
            )
        else:
            # Another session may have loaded the same player meanwhile: one object per id.
            player = self.players.get(record.id) or self._adopt(record)
            self._greet(session, player, message, self._advance())
        for queued in pending:
            self.handle(session, queued)
        self.after_event()

    def guest_name(self) -> str:
        """A new player's name, until it says another."""
        return f"Player {self.rng.randint(1000, 9999)}"

    def _new_player(self) -> Player:
        player = Player(id=self.new_id("p_"), name=self.guest_name(), created_at=self.wall_clock())
        self.players[player.id] = player
        self.store.save_player(player.record(player.created_at))
        return player

    def _adopt(self, record: PlayerRecord) -> Player:
        player = self.players[record.id] = Player.from_record(record)
        if player.openid is not None:
            self._by_openid[player.openid] = player.id
        return player

    def _greet(self, session: Session, player: Player, message: Hello, now: float) -> None:
        """Bind the session to the player and catch it up on its match or queue entry."""
        self.timers.cancel(player.forget_timer)
        player.forget_timer = None
        was_away = player.away_timer is not None
        self.timers.cancel(player.away_timer)
        player.away_timer = None
        changed = False
        if message.name is not None and message.name != player.name:
            player.name, changed = message.name, True
        if message.avatar is not None and message.avatar != player.avatar:
            player.avatar, changed = message.avatar, True
        if changed:
            self.store.save_player(player.record(self.wall_clock()))
        replaced = player.session is not None
        if player.session is not None:
            # One player, one connection: the newest wins and keeps the seat it had.
            old = player.session
            self._detach(old, player)
            self._kick(old, "replaced", CLOSE_NORMAL)
        player.session = session
        session.player = player
        self.online += 1
        self.relay.attach(player.id, session.outlet)
        session.outlet.send(
            Hi(
                player_id=player.id,
                name=player.name,
                token=self.signer.issue(player.id),
                online=self.online,
                ref=message.id,
            )
        )
        room = player.room
        if room is not None:
            seat = room.match.seat_of(player.id)
            opponent_id = room.match.seats[1 - seat].player_id
            opponent = self.players.get(opponent_id)
            away = opponent is not None and opponent.away_timer is not None
            session.outlet.send(attrs.evolve(room.match.resume_for(seat, now), opponent_away=away))
            if was_away:
                self._tell_opponent(player, MovementKind.BACK)
        elif player.lobby is not None and (was_away or replaced):
            session.outlet.send(Queued(waiting=len(player.lobby.matchmaker)))
        log.info(
            "hello", player_id=player.id, session=session.id, resumed=was_away, replaced=replaced
        )

    def _join(self, session: Session, player: Player, message: Join, now: float) -> None:
        if player.room is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_IN_MATCH,
                f"you are playing match {player.room.match.match_id}; leave it first",
            )
        if player.lobby is not None:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already in the queue")
        lobby = session.lobby
        # Everyone waiting once this player joins, counting the player (a bot=now join only
        # ever waits for itself).
        waiting = 1 if message.bot is BotMode.NOW else len(lobby.matchmaker) + 1
        session.outlet.send(Queued(waiting=waiting, ref=message.id))
        player.lobby = lobby
        self._seat(lobby, lobby.matchmaker.join(player.id, message.bot, now), now)
        self._arm_queue(lobby)

    def _choose(self, player: Player, message: MakeChoice, now: float) -> None:
        room = self._room_of(player, message.match_id)
        match = room.match
        sends = match.choose(
            match.seat_of(player.id), message.round, message.choice, message.final, now
        )
        self._deliver(room, sends, now)

    def _face(self, player: Player, message: Face, now: float) -> None:
        room = self._room_of(player, None)
        self._deliver(room, room.match.face(room.match.seat_of(player.id), message.face), now)

    def _leave(self, session: Session, player: Player, message: Leave, now: float) -> None:
        self._unqueue(player)
        if player.room is not None:
            room = player.room
            self._deliver(room, room.match.forfeit(room.match.seat_of(player.id)), now)
        session.outlet.send(Left(ref=message.id))

    def _room_of(self, player: Player, match_id: str | None) -> Room:
        room = player.room
        if room is None:
            raise ProtocolError(ErrorCode.NOT_IN_MATCH, "you are not in a match")
        if match_id is not None and match_id != room.match.match_id:
            raise ProtocolError(
                ErrorCode.NOT_IN_MATCH,
                f"you are not in match {match_id[:64]!r}; your match is {room.match.match_id}",
            )
        return room

    # ------------------------------------------------------------ matches

    def _seat(self, lobby: Lobby, pairings: list[Pairing], now: float) -> None:
        for pairing in pairings:
            first = self.players[pairing.first]
            first.lobby = None
            humans = [first]
            if pairing.second is None:
                bot = self._make_bot(lobby)
                seats = (
                    self._seat_for(first),
                    Seat(bot.player_id, bot.name, PlayerStats(), bot=True),
                )
                match = Match(self.new_id("m_"), seats, lobby.rules)
                room = Room(match, humans, self.wall_clock(), bot, 1)
            else:
                second = self.players[pairing.second]
                second.lobby = None
                humans.append(second)
                seats = (self._seat_for(first), self._seat_for(second))
                match = Match(self.new_id("m_"), seats, lobby.rules)
                room = Room(match, humans, self.wall_clock())
            for human in humans:
                human.room = room
            self.rooms[room.match.match_id] = room
            self.observer.match_started(room.bot is not None)
            # One info line per match, at its end (below): at thousands of matches a second
            # every line costs ~10 µs of the loop.
            log.debug(
                "match_started",
                match_id=room.match.match_id,
                players=[seat.player_id for seat in seats],
                bot=room.bot is not None,
            )
            self._deliver(room, room.match.begin(now), now)
            for human in humans:
                if human.away_timer is not None:
                    # Paired while away (queued, then dropped): its opponent should know.
                    self._tell_opponent(human, MovementKind.LEFT)

    @staticmethod
    def _seat_for(player: Player) -> Seat:
        return Seat(player.id, player.name, player.stats, avatar=player.avatar)

    def _make_bot(self, lobby: Lobby) -> HouseBot:
        seed = self.rng.getrandbits(64)
        strategy = make_strategy(self.config.bot_strategy, random.Random(seed))
        return HouseBot(
            player_id=self.new_id("bot_"),
            name=self.rng.choice(BOT_NAMES),
            strategy=strategy,
            think=self.config.bot_think,
            rng=random.Random(seed + 1),
            changes=lobby.bot_changes,
        )

    def _deliver(self, room: Room, sends: list[Send], now: float) -> None:
        match = room.match
        deliver = self.relay.deliver
        for seat, message in sends:
            if seat == room.bot_seat and room.bot is not None:
                plan = room.bot.on_message(message, now)
                if plan is not None:
                    self.timers.cancel(room.bot_timer)
                    room.bot_timer = self.timers.call_at(
                        plan.when, partial(self._bot_plays, room, plan)
                    )
            else:
                deliver(match.player_ids[seat], message)
        history = match.history
        while room.rounds_reported < len(history):
            self.observer.round_resolved(history[room.rounds_reported].seconds)
            room.rounds_reported += 1
        if match.over:
            self._close_room(room)
        else:
            self._arm_room(room)

    def _bot_plays(self, room: Room, plan: PlannedChoice, now: float) -> None:
        room.bot_timer = None
        if room.closed or room.bot_seat is None:
            return
        try:
            sends = room.match.choose(room.bot_seat, plan.round, plan.choice, plan.final, now)
        except ProtocolError:
            return  # the round closed first; the bot simply missed it
        if plan.then is not None:  # it will change its mind
            then = plan.then
            room.bot_timer = self.timers.call_at(then.when, partial(self._bot_plays, room, then))
        self._deliver(room, sends, now)

    def _arm_room(self, room: Room) -> None:
        when = room.match.next_wakeup
        timer = room.timer
        if when is not None and timer is not None and not timer.cancelled and timer.when <= when:
            # Due no later than needed: it fires, finds nothing due and re-arms. Rounds
            # played faster than their deadline then cost no timer each.
            return
        self.timers.cancel(timer)
        room.timer = (
            None if when is None else self.timers.call_at(when, partial(self._room_tick, room))
        )

    def _room_tick(self, room: Room, now: float) -> None:
        if not room.closed:
            self._deliver(room, room.match.tick(now), now)

    def _close_room(self, room: Room) -> None:
        if room.closed:
            return
        room.closed = True
        self.timers.cancel(room.timer)
        self.timers.cancel(room.bot_timer)
        for human in room.humans:
            if human.room is room:
                human.room = None
            if human.away_timer is not None:
                # Its match ended while it was away: nothing left to hold for it.
                self.timers.cancel(human.away_timer)
                human.away_timer = None
                self._give_up(human, self.clock())
        del self.rooms[room.match.match_id]
        if self.draining:
            for human in room.humans:
                if human.session is not None:
                    self._kick(human.session, "shutdown", CLOSE_GOING_AWAY)
        self.matches_finished += 1
        match = room.match
        self.store.record_match(self._match_record(room))
        self.observer.match_finished(
            match.reason.value if match.reason else "", room.bot is not None
        )
        log.info(
            "match_over",
            match_id=match.match_id,
            players=list(match.player_ids),
            bot=room.bot is not None,
            winner=None if match.winner is None else match.seats[match.winner].player_id,
            reason=match.reason.value if match.reason else None,
            rounds=match.round,
            seconds=round(self.wall_clock() - room.started_at, 3),
        )
        self._check_drained()

    # ------------------------------------------------------------ queue and players

    def _unqueue(self, player: Player) -> None:
        lobby = player.lobby
        if lobby is not None:
            player.lobby = None
            lobby.matchmaker.leave(player.id)
            self._arm_queue(lobby)

    def _arm_queue(self, lobby: Lobby) -> None:
        when = lobby.matchmaker.next_wakeup
        timer = lobby.timer
        if timer is not None and not timer.cancelled and timer.when == when:
            return
        self.timers.cancel(timer)
        lobby.timer = (
            None if when is None else self.timers.call_at(when, partial(self._queue_tick, lobby))
        )

    def _queue_tick(self, lobby: Lobby, now: float) -> None:
        self._seat(lobby, lobby.matchmaker.tick(now), now)
        self._arm_queue(lobby)

    def _detach(self, session: Session, player: Player) -> None:
        session.player = None
        player.session = None
        self.online -= 1
        self.relay.detach(player.id, session.outlet)

    def _kick(self, session: Session, reason: str, code: int) -> None:
        session.outlet.send(Bye(reason=reason))
        session.outlet.close(code, reason)
        log.info("session_closed", session=session.id, reason=reason, code=code)
        self.disconnect(session, keep_seat=False)

    def _tell_opponent(self, player: Player, kind: MovementKind) -> None:
        room = player.room
        if room is None:
            return
        match = room.match
        opponent = 1 - match.seat_of(player.id)
        if opponent != room.bot_seat:
            movement = Movement(match_id=match.match_id, round=max(match.round, 1), kind=kind)
            self.relay.deliver(match.seats[opponent].player_id, movement)

    def _grace_over(self, player: Player, now: float) -> None:
        player.away_timer = None
        if player.session is None:
            log.info("reconnect_grace_over", player_id=player.id)
            self._give_up(player, now)

    def _give_up(self, player: Player, now: float) -> None:
        """A player gone for good: out of the queue, out of its match, forgotten later."""
        self._unqueue(player)
        if player.room is not None:
            room = player.room
            self._deliver(room, room.match.forfeit(room.match.seat_of(player.id)), now)
        self.timers.cancel(player.forget_timer)
        player.forget_timer = self.timers.call_at(
            now + self.config.forget_after, partial(self._forget, player)
        )

    def _match_record(self, room: Room) -> MatchRecord:
        match = room.match
        winner = None if match.winner is None else match.seats[match.winner].player_id
        now = self.wall_clock()
        return MatchRecord(
            id=match.match_id,
            seats=(
                SeatRow(match.seats[0].player_id, match.seats[0].name, match.seats[0].bot),
                SeatRow(match.seats[1].player_id, match.seats[1].name, match.seats[1].bot),
            ),
            winner=winner,
            reason=match.reason.value if match.reason else "",
            best_of=match.rules.best_of,
            started_at=room.started_at,
            ended_at=now,
            rounds=tuple(
                RoundRow(
                    r.round,
                    (
                        None if r.choices[0] is None else r.choices[0].value,
                        None if r.choices[1] is None else r.choices[1].value,
                    ),
                    r.outcome.value,
                )
                for r in match.history
            ),
            players=tuple(human.record(now) for human in room.humans),
            results=tuple(self._result(match, human) for human in room.humans),
        )

    @staticmethod
    def _result(match: Match, human: Player) -> PlayerResult:
        if match.winner is None:
            return PlayerResult(human.id, "draw")
        if match.seats[match.winner].player_id == human.id:
            return PlayerResult(human.id, "win", points_won(human.stats))
        return PlayerResult(human.id, "lose")

    def _forget(self, player: Player, now: float) -> None:
        player.forget_timer = None
        if player.session is None and player.room is None and player.away_timer is None:
            del self.players[player.id]
            if player.openid is not None and self._by_openid.get(player.openid) == player.id:
                del self._by_openid[player.openid]

"""Presence: players arriving, coming back and going away.

``hello`` binds a session to a player: a new guest, one in memory, or one read from
storage first (the session holds its messages meanwhile). A player that reconnects within
the grace gets its seat or queue entry back, with ``resume``; a second connection
replaces the first. A dropped connection starts the grace; its end, or a drop the grace
does not cover, gives the player up: out of the queue, its match forfeited.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import attrs
import structlog

from game_server.core.context import Context
from game_server.core.lobbies import Lobbies
from game_server.core.players import LastMatch, Player, PlayerEvent, PlayerState, Roster
from game_server.core.ports import Forwarder, HereLocator, Locator, StoreUnavailable
from game_server.core.ratelimit import AddressBuckets, address_key
from game_server.core.records import PlayerRecord
from game_server.core.rooms import Rooms
from game_server.core.tokens import InvalidToken, TokenSigner
from protocol import (
    Bye,
    ClientMessage,
    CloseCode,
    ErrorCode,
    Hello,
    Hi,
    MovementKind,
    ProtocolError,
    encode,
)


@attrs.frozen
class PlayerSnapshot:
    """A player as one process hands it to another (a cluster's pairing, a player going
    home, a friend going to its room or its last opponent)."""

    record: PlayerRecord
    lobby: str | None  # the lobby it is queued in; None: idle
    session_id: int | None  # its connection in the process handing it over, if any
    away_left: float | None  # seconds of reconnect grace left, when away
    # The match it finished last (for a rematch), and how many seconds ago it ended:
    # each process's clock is its own.
    last_match: LastMatch | None = None
    last_match_age: float = 0.0


# The guest buckets are pruned every time one could have filled up again, but not more
# often than this.
GUEST_BUCKETS_PRUNE_MIN = 1.0

if TYPE_CHECKING:
    from game_server.core.rooms import Room
    from game_server.core.sessions import Session, Sessions

log = structlog.get_logger("game_server")


class Presence:
    def __init__(
        self,
        context: Context,
        roster: Roster,
        sessions: Sessions,
        lobbies: Lobbies,
        rooms: Rooms,
        signer: TokenSigner,
        *,
        replay: Callable[[Session, ClientMessage], None],
        reconnect_grace: float,
        locator: Locator | None = None,
        forwarder: Forwarder | None = None,
        guests: AddressBuckets | None = None,
    ) -> None:
        """``replay`` handles a message that arrived while the session's player loaded;
        ``locator`` and ``forwarder`` are a cluster's (one process owns every player);
        ``guests`` meters hellos without a token per client address."""
        self.roster = roster
        self.sessions = sessions
        self.lobbies = lobbies
        self.rooms = rooms
        self.signer = signer
        self.timers = context.timers
        self.relay = context.relay
        self.store = context.store
        self.rng = context.rng
        self.new_id = context.new_id
        self.wall_clock = context.wall_clock
        self.advance = context.advance
        self.replay = replay
        self.reconnect_grace = reconnect_grace
        self.locator: Locator = locator or HereLocator()
        self.forwarder = forwarder
        self.guests = guests
        self._guests_pruning = False  # a timer is armed to prune ``guests``
        self.observer = context.observer
        self.online = 0
        self.draining = False

    # ------------------------------------------------------------ arriving

    def hello(self, session: Session, message: Hello, now: float) -> None:
        if session.player is not None:
            raise ProtocolError(ErrorCode.ALREADY_HELLO, "you already said hello", message.id)
        if message.token is None:
            guests = self.guests
            if guests is not None:
                allowed = guests.take(address_key(session.address), now)
                if not self._guests_pruning:
                    self._guests_pruning = True
                    self.timers.call_at(now + self._prune_period(guests), self._prune_guests)
                if not allowed:
                    self.observer.limited("guest_rate")
                    raise ProtocolError(
                        ErrorCode.RATE_LIMITED,
                        "too many new players from your address; say hello again in a few seconds",
                        message.id,
                    )
            self._greet(session, self.new_guest(), message, now)
            return
        try:
            player_id = self.signer.verify(message.token)
        except InvalidToken as exc:
            raise ProtocolError(ErrorCode.INVALID_TOKEN, str(exc), message.id) from None
        known = self.roster.get(player_id)
        if known is not None and (known.state is not PlayerState.OFFLINE or self.forwarder is None):
            self._greet(session, known, message, now)
            return
        # Known to the token but not in memory (a restart, forgotten, or owned by another
        # process of a cluster): find it, then read it, holding what comes meanwhile.
        session.pending = []
        self.locator.locate(player_id, partial(self._located, session, message, player_id))

    def _located(
        self, session: Session, message: Hello, player_id: str, where: str | StoreUnavailable | None
    ) -> None:
        if session.closed:
            session.pending = None
            return
        if where is None:
            known = self.roster.get(player_id)
            if known is not None:  # an offline copy here, and the player is ours
                pending, session.pending = session.pending or [], None
                self._greet(session, known, message, self.advance())
                for queued in pending:
                    self.replay(session, queued)
                return
            self.store.load_player(player_id, partial(self._loaded, session, message))
            return
        if isinstance(where, StoreUnavailable):
            self._loaded(session, message, where)
            return
        # Another process owns the player: this session forwards everything to it, the
        # hello first, then what came meanwhile, in order.
        pending, session.pending = session.pending or [], None
        assert self.forwarder is not None, "a player located elsewhere needs a forwarder"
        session.owner = where
        self.forwarder.begin(session, where, [encode(message), *map(encode, pending)])

    def _loaded(
        self, session: Session, message: Hello, record: PlayerRecord | StoreUnavailable | None
    ) -> None:
        pending, session.pending = session.pending or [], None
        if session.closed:
            return
        if isinstance(record, StoreUnavailable):
            # Not "unknown player": the token is fine, so the client keeps it and retries.
            self.sessions.refuse(
                session,
                ErrorCode.UNAVAILABLE,
                "your player cannot be loaded right now; say hello again in a moment",
                message.id,
            )
        elif record is None:
            self.sessions.refuse(
                session,
                ErrorCode.INVALID_TOKEN,
                "this token's player is unknown here; log in again",
                message.id,
            )
        else:
            # Another session may have loaded the same player meanwhile: one object per id.
            player = self.roster.add(Player.from_record(record))
            self._greet(session, player, message, self.advance())
        for queued in pending:
            self.replay(session, queued)

    @staticmethod
    def _prune_period(guests: AddressBuckets) -> float:
        return max(GUEST_BUCKETS_PRUNE_MIN, guests.refill_seconds)

    def _prune_guests(self, now: float) -> None:
        """Forget the buckets of addresses that stopped sending hellos (full again): one
        timer while any bucket is kept, none once all are forgotten."""
        guests = self.guests
        assert guests is not None
        guests.prune(now)
        if len(guests):
            self.timers.call_at(now + self._prune_period(guests), self._prune_guests)
        else:
            self._guests_pruning = False

    def guest_name(self) -> str:
        """A new player's name, until it says another."""
        return f"Player {self.rng.randint(1000, 9999)}"

    def new_record(self, *, openid: str, unionid: str | None) -> PlayerRecord:
        """A new player for a first WeChat login, for storage to claim the openid with."""
        now = self.wall_clock()
        return PlayerRecord(
            id=self.new_id("p_"),
            name=self.guest_name(),
            created_at=now,
            last_seen=now,
            openid=openid,
            unionid=unionid,
        )

    def new_guest(self) -> Player:
        """A new player in memory only: storage gets it with its first finished match."""
        player = Player(
            id=self.new_id("p_"),
            name=self.guest_name(),
            created_at=self.wall_clock(),
            durable=False,
        )
        self.roster.add(player)
        return player

    def _greet(self, session: Session, player: Player, message: Hello, now: float) -> None:
        """Bind the session to the player and catch it up on its match or queue entry."""
        self.timers.cancel(session.hello_timer)
        session.hello_timer = None
        self.roster.online(player)
        was_away = player.away
        self.timers.cancel(player.away_timer)
        player.away_timer = None
        changed = False
        if message.name is not None and message.name != player.name:
            player.name, changed = message.name, True
        if message.avatar is not None and message.avatar != player.avatar:
            player.avatar, changed = message.avatar, True
        if changed and player.durable:
            self.store.save_player(player.record(self.wall_clock()))
        replaced = player.session is not None
        if player.session is not None:
            # One player, one connection: the newest wins and keeps the seat it had.
            old = player.session
            self._detach(old, player)
            self.kick(old, "replaced", CloseCode.NORMAL)
        player.move(PlayerEvent.HELLO)
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
                rating=player.rating.shown,
                ref=message.id,
            )
        )
        if player.room is not None:
            session.outlet.send(self.rooms.resume_for(player, now))
            if was_away:
                self.rooms.tell_opponent(player, MovementKind.BACK)
            self.rooms.connection_moved(player)
        elif player.lobby is not None and (was_away or replaced):
            session.outlet.send(self.lobbies.catch_up(player, now))
        log.info(
            "hello", player_id=player.id, session=session.id, resumed=was_away, replaced=replaced
        )

    def login(
        self,
        openid: str,
        stored: PlayerRecord | None,
        now: float,
        *,
        name: str | None = None,
        avatar: str | None = None,
        unionid: str | None = None,
    ) -> Player:
        """The player with this openid (made if new); the live one wins over ``stored``."""
        player = self.roster.by_openid(openid)
        if player is None and stored is not None:
            player = self.roster.get(stored.id) or self.roster.add(Player.from_record(stored))
        if player is None:
            player = self.roster.add(
                Player(id=self.new_id("p_"), name=self.guest_name(), created_at=self.wall_clock())
            )
        self.roster.link_openid(player, openid)
        player.durable = True  # a WeChat identity: kept whether it plays or not
        player.unionid = unionid or player.unionid
        if name:
            player.name = name
        if avatar:
            player.avatar = avatar
        self.store.save_player(player.record(self.wall_clock()))
        if player.state is PlayerState.OFFLINE:
            self.roster.offline(player, now)  # remembered for a while, as after a goodbye
        log.info("login", player_id=player.id)
        return player

    def forward(self, session: Session, data: bytes) -> None:
        assert self.forwarder is not None
        self.forwarder.forward(session, data)

    # ------------------------------------------------------------ changing hands (a cluster)

    def export(self, player_id: str, new_owner: str) -> PlayerSnapshot | None:
        """Hand a player over to another process: it leaves this process's roster, and its
        connection, if any, forwards to ``new_owner`` from now on.

        Two moments allow it: a queued player another process paired (it hosts the
        match), and a connected, idle player (going home to the process its connection is
        on once a match hosted here ended, or to the process of its friend's room or its
        last opponent). None otherwise (it left the queue, or was seated meanwhile): the
        other process then keeps looking.
        """
        player = self.roster.get(player_id)
        if player is None:
            return None
        queued = player.lobby is not None
        if not queued and not (player.state is PlayerState.IDLE and player.session is not None):
            return None
        now = self.advance()
        lobby = player.lobby
        away_left = None
        if player.away_timer is not None:
            away_left = max(0.0, player.away_timer.when - now)
            self.timers.cancel(player.away_timer)
            player.away_timer = None
        if lobby is not None:
            player.lobby = None
            lobby.matchmaker.leave(player.id)
        session = player.session
        if session is not None:
            self._detach(session, player)
            session.owner = new_owner
        self.roster.remove(player)
        log.debug("player_handed_over", player_id=player.id, to=new_owner)
        last = player.last_match
        return PlayerSnapshot(
            player.record(self.wall_clock()),
            None if lobby is None else lobby.name,
            None if session is None else session.id,
            away_left,
            last,
            0.0 if last is None else max(0.0, now - last.ended_at),
        )

    def adopt(self, snapshot: PlayerSnapshot, session: Session | None, now: float) -> Player:
        """Take over a player another process handed over: queued here, in the same
        lobby (the caller, the shared queue, then pairs it), or idle; connected through
        ``session`` or away for what is left of its grace."""
        known = self.roster.get(snapshot.record.id)
        if known is not None and known.state is PlayerState.OFFLINE:
            # Remembered here from before it left (or a login's copy): the snapshot is
            # newer, as in ``adopt_seated``.
            self.roster.remove(known)
        player = self.roster.add(Player.from_record(snapshot.record))
        self.roster.online(player)
        player.move(PlayerEvent.HELLO)
        last = snapshot.last_match
        if last is not None:
            player.last_match = attrs.evolve(last, ended_at=now - snapshot.last_match_age)
        if session is not None:
            player.session = session
            session.player = player
            session.owner = None
            self.online += 1
            self.relay.attach(player.id, session.outlet)
        if snapshot.lobby is not None:
            player.move(PlayerEvent.JOIN)
            player.lobby = self.lobbies[snapshot.lobby]
        if session is None:
            if player.move(PlayerEvent.DROP) is PlayerState.OFFLINE:
                self.roster.offline(player, now)  # idle and gone: remembered a while
            else:
                left = snapshot.away_left or 0.0
                grace_over = partial(self.grace_over, player)
                player.away_timer = self.timers.call_at(now + left, grace_over)
        return player

    def adopt_seated(
        self, record: PlayerRecord, session: Session | None, room: Room, away_for: float, now: float
    ) -> Player:
        """Take over a player seated in a match carried on here (a cluster's takeover):
        connected through ``session``, or away for ``away_for`` seconds of grace."""
        player = self.roster.get(record.id)
        if player is not None:  # an offline copy of it here: the match's is newer
            self.roster.remove(player)
        player = self.roster.add(Player.from_record(record))
        self.roster.online(player)
        player.move(PlayerEvent.HELLO)
        player.move(PlayerEvent.JOIN)
        player.move(PlayerEvent.SEAT)
        player.room = room
        room.humans.append(player)
        if session is None:
            player.move(PlayerEvent.DROP)
            player.away_timer = self.timers.call_at(
                now + away_for, partial(self.grace_over, player)
            )
        else:
            player.session = session
            session.player = player
            session.owner = None
            self.online += 1
            self.relay.attach(player.id, session.outlet)
        return player

    # ------------------------------------------------------------ going away

    def disconnect(self, session: Session, now: float, *, keep_seat: bool = True) -> None:
        """The connection is gone: the player keeps its seat or queue entry for the grace.

        Past the grace window (or at once while draining, when nobody can come back, or
        when the server closed the session for misbehaving) it leaves the queue and
        forfeits the match, as after ``leave``.
        """
        if not self.sessions.close(session):
            return
        self.timers.cancel(session.hello_timer)
        session.hello_timer = None
        if session.owner is not None:
            assert self.forwarder is not None
            self.forwarder.closed(session)  # the owner gives the player its grace
            return
        player = session.player
        if player is None:
            return
        self._detach(session, player)
        if player.durable:
            self.store.save_player(player.record(self.wall_clock()))
        grace = session.lobby.reconnect_grace
        if grace is None:
            grace = self.reconnect_grace
        state = player.move(PlayerEvent.DROP)
        if state is PlayerState.OFFLINE:
            self.roster.offline(player, now)
        elif not keep_seat or self.draining or grace <= 0:
            self.give_up(player, now)
        else:
            player.away_timer = self.timers.call_at(now + grace, partial(self.grace_over, player))
            self.rooms.tell_opponent(player, MovementKind.LEFT)
            self.rooms.connection_moved(player)
        log.info("player_disconnected", player_id=player.id, session=session.id)

    def kick(self, session: Session, reason: str, code: int) -> None:
        """Say ``bye`` and close the session; its player gives up what it held."""
        session.outlet.send(Bye(reason=reason))
        session.outlet.close(code, reason)
        log.info("session_closed", session=session.id, reason=reason, code=code)
        self.disconnect(session, self.advance(), keep_seat=False)

    def _detach(self, session: Session, player: Player) -> None:
        session.player = None
        player.session = None
        self.online -= 1
        self.relay.detach(player.id, session.outlet)

    def grace_over(self, player: Player, now: float) -> None:
        player.away_timer = None
        if player.away:
            log.info("reconnect_grace_over", player_id=player.id)
            self.give_up(player, now)

    def give_up(self, player: Player, now: float) -> None:
        """An away player gone for good: out of the queue, out of its match (forfeit)."""
        self.timers.cancel(player.away_timer)
        player.away_timer = None
        self.lobbies.leave(player)
        self.rooms.forfeit(player, now)  # closing the room takes it offline
        if player.state is PlayerState.OFFLINE and player.forget_timer is None:
            self.roster.offline(player, now)

    # ------------------------------------------------------------ shutting down

    def drain(self, now: float) -> None:
        """Nobody can come back to a draining process: away players give up now, and
        everyone not in a match is sent away; the others once their match ends."""
        self.draining = True
        for away in [p for p in self.roster.by_id.values() if p.away]:
            self.give_up(away, now)
        for session in self.sessions:
            player = session.player
            if player is None or player.room is None:
                self.kick(session, "shutdown", CloseCode.GOING_AWAY)

    def room_closed(self, room: Room) -> None:
        if self.draining:
            for human in room.humans:
                if human.session is not None:
                    self.kick(human.session, "shutdown", CloseCode.GOING_AWAY)

    def close_all(self, reason: str) -> None:
        """``bye {reason: "shutdown"}`` and a 1001 close on every session (the shell then
        sees each connection end)."""
        for session in self.sessions:
            session.outlet.send(Bye(reason="shutdown"))
            session.outlet.close(CloseCode.GOING_AWAY, reason)

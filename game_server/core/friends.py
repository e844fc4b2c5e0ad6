"""Playing a chosen person: private rooms with a code, and rematches.

**Rooms.** ``create_room`` opens a room: its creator waits in the *friends' lobby*, whose
queue (``PrivateRooms``) never pairs anyone by itself and never calls a house bot; a
friend who sends ``join {room: code}`` takes the seat. Waiting in a room is being queued
in every other respect (the player state machine's ``QUEUED``: ``leave`` cancels it, a
dropped creator keeps it for the reconnect grace, a resumed one is told its code again),
so nothing else had to learn a new state. A code works once and expires after
``room_ttl``; codes are drawn from ``secrets`` over an alphabet without look-alikes, so
they cannot be guessed from one another, and lookups are metered per connection and per
address, a wrong code costing ``WRONG_CODE_COST`` times a right one.

**Rematches.** Every player remembers its last finished match (``Player.last_match``,
replaced by the next one: nothing per match is kept beyond that, and no timer runs until
somebody asks). Either player sends ``rematch {match_id}`` within ``rematch_seconds`` of
the end; the other is told and accepts with its own ``rematch``; then both are seated
again, in the lobby of the match they finished, as if the queue had paired them. A house
bot accepts after its think time and comes back with the same strategy and name. An offer
is withdrawn, and the player still waiting on it told why (``rematch_declined``), when
either joins the queue or a room, leaves, is gone for good, or the window closes.

**In a cluster** (``FriendsDirectory``) a code is unique across the processes and Redis says
which one holds it. A friend connected elsewhere is looked up there and moved, as a queue
partner is to a match's host, to the room's process with its ``join``. After a match the
two may be held apart (each goes home to the process its connection is on): a player
asking for a rematch is moved to its opponent's process with its ``rematch`` and the match
it finished.

Sans-I/O like the rest of ``core``: time comes in as ``now``, timers from the queue.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import attrs
import structlog

from game_server.core.context import Context
from game_server.core.lobbies import Lobbies, Lobby
from game_server.core.match import MatchRules
from game_server.core.players import LastMatch, PlayerEvent, PlayerState, Roster
from game_server.core.ports import (
    FriendsDirectory,
    Pairing,
    PairingsDone,
    StoreUnavailable,
)
from game_server.core.ratelimit import AddressBuckets, TokenBucket, address_key
from game_server.core.rooms import Room, Rooms
from game_server.core.timers import Timer
from protocol import (
    BotMode,
    CreateRoom,
    DeclinedReason,
    ErrorCode,
    Join,
    MessageId,
    ProtocolError,
    Queued,
    Rematch,
    RematchDeclined,
    RematchOffer,
    RoomClosed,
    RoomClosedReason,
    RoomOpened,
    ServerMessage,
)

if TYPE_CHECKING:
    from game_server.core.players import Player
    from game_server.core.sessions import Session

log = structlog.get_logger("game_server")

FRIENDS_LOBBY = "friends"
# Room codes: no 0/O, 1/I/L (read aloud or copied by hand, they must not be mistaken).
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 6  # 31**6: about 887 million codes
# A wrong code takes this many tokens from the lookup buckets, a right one takes one: an
# honest player who mistypes once is not hurt, a guesser runs dry three times as fast.
WRONG_CODE_COST = 3
# Per connection: 10 lookups at once, then one every 5 s (3 wrong ones, then one every 15 s).
CONNECTION_LOOKUPS = (0.2, 10.0)
# Per client address (a carrier NAT shares one between many phones): 60, then one a second.
ADDRESS_LOOKUPS = (1.0, 60.0)


Refuse = Callable[["Session", ErrorCode, str, MessageId | None], None]


def _still_idle(session: Session, player: Player) -> bool:
    """Whether a look-up's answer still concerns anyone: the player is still on the
    session it asked from, connected and idle (not gone, moved on, queued or seated)."""
    return not session.closed and session.player is player and player.state is PlayerState.IDLE


def new_room_code() -> str:
    """A fresh code from the OS's CSPRNG: codes say nothing about one another."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """What a player typed, as a code: any case, spaces and dashes ignored."""
    return text.strip().replace(" ", "").replace("-", "").upper()


@attrs.define(eq=False)
class Invite:
    code: str
    creator: str
    expires_at: float


class PrivateRooms:
    """The friends' lobby's queue: one waiting creator per code, paired only by ``claim``.

    A ``Matchmaker`` (so the lobby, the player states and ``leave`` work as for any
    queue): ``join`` opens a room for the player, ``leave`` closes it, ``tick`` expires
    rooms (handing each to ``on_expired``), and no pairing is ever made by itself.
    """

    def __init__(
        self,
        ttl: float,
        on_expired: Callable[[Invite, float], None],
        new_code: Callable[[], str] = new_room_code,
        on_withdrawn: Callable[[str], None] = lambda code: None,
    ) -> None:
        """``on_withdrawn(code)``: a room closed before anybody came (its creator left, or
        it expired); not called for a room a friend took."""
        if ttl <= 0:
            raise ValueError("a room's time to live must be positive")
        self.ttl = ttl
        self.on_expired = on_expired
        self.new_code = new_code
        self.on_withdrawn = on_withdrawn
        self.by_code: dict[str, Invite] = {}
        self.by_creator: dict[str, Invite] = {}  # insertion order is expiry order
        # Codes taken by a friend, until they would have expired: a second friend with
        # the same code is told ``room_full``, not ``room_not_found``.
        self.taken: dict[str, float] = {}

    def listen(self, on_pairings: PairingsDone) -> None:
        """Rooms pair only through ``claim``: nothing comes later."""

    def join(
        self, player_id: str, mode: BotMode, now: float, rating: float = 1500.0
    ) -> list[Pairing]:
        """Open a room for ``player_id`` (``mode`` and ``rating`` do not matter here)."""
        if player_id in self.by_creator:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you already have a room open")
        invite = Invite(self._fresh_code(), player_id, now + self.ttl)
        self.by_code[invite.code] = invite
        self.by_creator[player_id] = invite
        return []

    def recode(self, invite: Invite) -> bool:
        """Give an open room another code (its code turned out to be another process's);
        False if the room is no longer open."""
        if self.by_code.get(invite.code) is not invite:
            return False
        del self.by_code[invite.code]
        invite.code = self._fresh_code()
        self.by_code[invite.code] = invite
        return True

    def _fresh_code(self) -> str:
        code = self.new_code()
        while code in self.by_code or code in self.taken:
            code = self.new_code()
        return code

    def claim(self, text: str, player_id: str, now: float) -> Pairing:
        """Seat ``player_id`` with the room's creator, or say precisely why not."""
        self.tick(now)
        code = normalise_code(text)
        invite = self.by_code.get(code)
        if invite is None:
            if code in self.taken:
                raise ProtocolError(ErrorCode.ROOM_FULL, f"room {code} has its two players")
            raise ProtocolError(ErrorCode.ROOM_NOT_FOUND, "no open room has that code")
        if invite.creator == player_id:
            raise ProtocolError(
                ErrorCode.OWN_ROOM, "that is your own room: send the code to a friend"
            )
        self._remove(invite)
        self.taken[code] = invite.expires_at
        return Pairing(invite.creator, player_id)

    def invite_of(self, player_id: str) -> Invite | None:
        return self.by_creator.get(player_id)

    def leave(self, player_id: str) -> bool:
        invite = self.by_creator.get(player_id)
        if invite is None:
            return False
        self._remove(invite)
        self.on_withdrawn(invite.code)
        return True

    def tick(self, now: float) -> list[Pairing]:
        """Expire what is due (every room lives ``ttl``: the oldest are first)."""
        for code in [code for code, until in self.taken.items() if until <= now]:
            del self.taken[code]
        while self.by_creator:
            invite = next(iter(self.by_creator.values()))
            if invite.expires_at > now:
                break
            self._remove(invite)
            self.on_withdrawn(invite.code)
            self.on_expired(invite, now)
        return []

    def _remove(self, invite: Invite) -> None:
        del self.by_code[invite.code]
        del self.by_creator[invite.creator]

    @property
    def next_wakeup(self) -> float | None:
        first = next(iter(self.by_creator.values()), None)
        return None if first is None else first.expires_at

    def __len__(self) -> int:
        return len(self.by_creator)

    def __contains__(self, player_id: object) -> bool:
        return player_id in self.by_creator


@attrs.define(eq=False)
class Offer:
    """A rematch one side asked for (a house bot's side: ``bot_timer`` until it accepts)."""

    last: LastMatch
    asker: str
    other: str | None
    timer: Timer | None = None
    bot_timer: Timer | None = None


@attrs.frozen
class FriendsConfig:
    room_ttl: float = 600.0
    rematch_seconds: float = 15.0
    rate_friend_matches: bool = True
    # A cluster's players may be held by another process: without a ``FriendsDirectory``
    # (which a cluster plugs in) rooms answer ``unavailable``.
    rooms_available: bool = True


class Friends:
    """Rooms and rematches for the service (see the module docstring)."""

    def __init__(
        self,
        context: Context,
        config: FriendsConfig,
        roster: Roster,
        lobbies: Lobbies,
        rooms: Rooms,
        rules: MatchRules,
        *,
        bot_think: tuple[float, float],
        refuse: Refuse,
        new_code: Callable[[], str] = new_room_code,
    ) -> None:
        """``refuse(session, code, message, ref)``: an ``error`` for a join answered later
        (the service's ``Sessions.refuse``, which also counts it)."""
        self.context = context
        self.config = config
        self.timers = context.timers
        self.relay = context.relay
        self.rng = context.rng
        self.roster = roster
        self.lobbies = lobbies
        self.rooms = rooms
        self.bot_think = bot_think
        self.refuse = refuse
        # A cluster's (set by it): where each room's code is; None: all of them are here.
        self.directory: FriendsDirectory | None = None
        self.private = PrivateRooms(config.room_ttl, self._expired, new_code, self._withdrawn)
        friend_rules = attrs.evolve(rules, rated=config.rate_friend_matches)
        self.lobby = lobbies.add(
            Lobby(FRIENDS_LOBBY, friend_rules, self.private, private=True, greeting=self._greeting)
        )
        self.offers: dict[str, Offer] = {}  # by match id
        self.offer_of: dict[str, Offer] = {}  # by player id, both sides
        self.address_lookups = AddressBuckets(*ADDRESS_LOOKUPS)
        self._prune_timer: Timer | None = None
        # For the metrics (``rps_friends``): rooms opened, joined and expired; rematches
        # asked, started and declined.
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "room_opened",
                "room_joined",
                "room_expired",
                "rematch_asked",
                "rematch_started",
                "rematch_declined",
            ),
            0,
        )

    # ------------------------------------------------------------ rooms

    def on_create_room(
        self, session: Session, player: Player, message: CreateRoom, now: float
    ) -> None:
        self._check_available()
        if player.room is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_IN_MATCH,
                f"you are playing match {player.room.match.match_id}; leave it first",
                message.id,
            )
        if player.lobby is not None:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already waiting", message.id)
        self.withdraw(player, DeclinedReason.QUEUED)
        self.lobbies.join(self.lobby, player, BotMode.NEVER, now)
        invite = self.private.invite_of(player.id)
        assert invite is not None
        self.counts["room_opened"] += 1
        log.info("room_opened", player_id=player.id, code=invite.code)
        if self.directory is None:
            session.outlet.send(self._opened(invite, now, message.id))
        else:
            # The code is given out only once every process can find it (a friend may be
            # quicker than a round trip to Redis).
            self._publish(invite, now, answer=message.id)

    def on_join_room(self, session: Session, player: Player, message: Join, now: float) -> None:
        assert message.room is not None
        self._check_available()
        if player.room is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_IN_MATCH,
                f"you are playing match {player.room.match.match_id}; leave it first",
                message.id,
            )
        own = self.private.invite_of(player.id)
        if own is not None and normalise_code(message.room) == own.code:
            raise ProtocolError(
                ErrorCode.OWN_ROOM, "that is your own room: send the code to a friend"
            )
        if player.lobby is not None:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already waiting", message.id)
        self._meter(session, now, cost=1)
        try:
            pairing = self.private.claim(message.room, player.id, now)
        except ProtocolError as exc:
            if exc.code is ErrorCode.ROOM_NOT_FOUND and self.directory is not None:
                self._look_up(self.directory, session, player, message)
                return
            if exc.code is not ErrorCode.OWN_ROOM:
                self._meter(session, now, cost=WRONG_CODE_COST - 1, refuse=False)
            raise
        self.lobbies.arm(self.lobby)
        self.withdraw(player, DeclinedReason.QUEUED)
        creator = self.roster.by_id[pairing.first]
        self.withdraw(creator, DeclinedReason.QUEUED)
        self.counts["room_joined"] += 1
        log.info("room_joined", player_id=player.id, creator=creator.id)
        player.move(PlayerEvent.JOIN)  # seated at once: queued only for the seating's sake
        self.rooms.seat(self.lobby, [pairing], now)

    def _look_up(
        self, directory: FriendsDirectory, session: Session, player: Player, message: Join
    ) -> None:
        """A code not held here: ask which process holds it, and move the friend there
        with its ``join`` (see the module docstring)."""
        assert message.room is not None
        ref = message.id

        def found(node: str | StoreUnavailable | None) -> None:
            now = self.context.advance()
            if not _still_idle(session, player):
                return
            if isinstance(node, StoreUnavailable):
                self.refuse(session, ErrorCode.UNAVAILABLE, "rooms cannot be looked up", ref)
            elif node is None:
                self._meter(session, now, cost=WRONG_CODE_COST - 1, refuse=False)
                self.refuse(session, ErrorCode.ROOM_NOT_FOUND, "no open room has that code", ref)
            else:
                # A rematch offer it is part of here ends, as when it joins a room here.
                self.withdraw(player, DeclinedReason.QUEUED)
                if directory.move(node, player.id, message):
                    log.info("room_friend_moved", player_id=player.id, to=node)
                else:
                    self.refuse(session, ErrorCode.UNAVAILABLE, "try the code again", ref)

        directory.locate(normalise_code(message.room), found)

    def _publish(self, invite: Invite, now: float, *, answer: MessageId | None = None) -> None:
        """Claim the room's code for this process. With ``answer`` (a ``create_room``'s
        id), the creator is told the code once it is claimed; without (a re-publish), only
        if it had to change."""
        if self.directory is None:
            return
        ttl = max(0.0, invite.expires_at - now)
        code = invite.code

        def claimed(held: bool | StoreUnavailable) -> None:
            now = self.context.advance()
            if self.private.by_code.get(code) is not invite:
                return  # closed (or taken) meanwhile
            if held is False:  # another process holds it: take a fresh code, and again
                self.private.recode(invite)
                log.warning("room_code_clash", player_id=invite.creator, code=code)
                self._publish(invite, now, answer=answer)
                if answer is None:  # its creator may have passed the old code on: too bad
                    self.relay.deliver(invite.creator, self._opened(invite, now))
                return
            if isinstance(held, StoreUnavailable):
                # Friends on this process can still use it; elsewhere it is not found.
                log.warning("room_unpublished", code=code, error=str(held))
            if answer is not None:
                self.relay.deliver(invite.creator, self._opened(invite, now, answer))

        self.directory.published(code, ttl, claimed)

    def republish(self) -> None:
        """Say again where every open room is (a cluster's Redis came back, perhaps
        restarted empty)."""
        now = self.context.clock()
        for invite in list(self.private.by_creator.values()):
            self._publish(invite, now)

    def _withdrawn(self, code: str) -> None:
        if self.directory is not None:
            self.directory.withdrawn(code)

    def _check_available(self) -> None:
        if not self.config.rooms_available and self.directory is None:
            raise ProtocolError(
                ErrorCode.UNAVAILABLE,
                "private rooms are not available on this server (a cluster); join the queue",
            )

    def _meter(self, session: Session, now: float, *, cost: int, refuse: bool = True) -> None:
        """Take ``cost`` lookups from the connection's and the address's buckets; with
        ``refuse``, answer ``rate_limited`` if either ran dry."""
        bucket = session.room_lookups
        if bucket is None:
            bucket = session.room_lookups = TokenBucket(*CONNECTION_LOOKUPS)
        key = address_key(session.address)
        allowed = True
        for _ in range(cost):
            allowed = bucket.take(now) and allowed
            allowed = self.address_lookups.take(key, now) and allowed
        self._arm_prune(now)
        if refuse and not allowed:
            self.context.observer.limited("room_lookups")
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, "too many room codes tried; wait a few seconds"
            )

    def _arm_prune(self, now: float) -> None:
        if self._prune_timer is None and len(self.address_lookups):
            when = now + self.address_lookups.refill_seconds
            self._prune_timer = self.timers.call_at(when, self._prune)

    def _prune(self, now: float) -> None:
        self._prune_timer = None
        self.address_lookups.prune(now)
        self._arm_prune(now)

    def _opened(self, invite: Invite, now: float, ref: MessageId | None = None) -> RoomOpened:
        left = max(0, round(invite.expires_at - now))
        return RoomOpened(code=invite.code, expires_in=left, ref=ref)

    def _greeting(self, player: Player, now: float) -> ServerMessage:
        """What a creator who reconnected is told: its room, still open."""
        invite = self.private.invite_of(player.id)
        if invite is None:  # not reached: a creator in this lobby has a room
            return Queued(waiting=len(self.private))
        return self._opened(invite, now)

    def _expired(self, invite: Invite, now: float) -> None:
        player = self.roster.by_id.get(invite.creator)
        self.counts["room_expired"] += 1
        if player is None or player.lobby is not self.lobby:
            return
        player.lobby = None
        if player.move(PlayerEvent.UNQUEUE) is PlayerState.OFFLINE:
            self.timers.cancel(player.away_timer)
            player.away_timer = None
            self.roster.offline(player, now)
        else:
            self.relay.deliver(
                player.id, RoomClosed(code=invite.code, reason=RoomClosedReason.EXPIRED)
            )
        log.info("room_expired", player_id=invite.creator, code=invite.code)

    @property
    def rooms_open(self) -> int:
        return len(self.private)

    # ------------------------------------------------------------ rematches

    def match_over(self, room: Room, now: float) -> None:
        """Remember the match for its humans, for a rematch (rooms of the 2016 demo's
        lobby too: its clients simply never ask)."""
        match = room.match
        for human in room.humans:
            opponent = match.seats[1 - match.seat_of(human.id)]
            bot = room.bot
            human.last_match = LastMatch(
                match.match_id,
                room.lobby,
                now,
                None if opponent.bot else opponent.player_id,
                None if bot is None else bot.strategy.name,
                None if bot is None else bot.name,
            )

    def on_rematch(self, session: Session, player: Player, message: Rematch, now: float) -> None:
        last = player.last_match
        if (
            last is None
            or last.match_id != message.match_id
            or now >= last.ended_at + self.config.rematch_seconds
            or last.lobby not in self.lobbies
        ):
            raise ProtocolError(
                ErrorCode.NO_REMATCH,
                "no rematch: that is not the match you just finished, or its time is up",
                message.id,
            )
        if player.room is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_IN_MATCH,
                f"you are playing match {player.room.match.match_id}",
                message.id,
            )
        if player.lobby is not None:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already waiting", message.id)
        offer = self.offers.get(last.match_id)
        if offer is not None:
            if offer.asker == player.id:
                return  # asked already: still waiting for the other
            self._accepted(offer, now)
            return
        directory = self.directory
        if (
            directory is not None
            and last.opponent is not None
            and last.opponent not in self.roster.by_id
        ):
            self._follow(directory, session, player, message)
            return
        self.counts["rematch_asked"] += 1
        until = last.ended_at + self.config.rematch_seconds
        offer = Offer(last, player.id, last.opponent)
        offer.timer = self.timers.call_at(until, partial(self._timed_out, offer))
        self.offers[last.match_id] = offer
        self.offer_of[player.id] = offer
        if last.opponent is None:
            low, high = self.bot_think
            offer.bot_timer = self.timers.call_at(
                now + self.rng.uniform(low, high), partial(self._accepted, offer)
            )
            return
        other = self.roster.get(last.opponent)
        if other is None:  # held by another process of a cluster that cannot be asked
            self._decline(offer, DeclinedReason.UNAVAILABLE, tell=player.id)
            return
        if other.room is not None or other.lobby is not None:
            self._decline(offer, DeclinedReason.QUEUED)  # it already moved on
            return
        self.offer_of[other.id] = offer
        if other.session is not None:
            self.relay.deliver(other.id, RematchOffer(match_id=last.match_id))

    def _follow(
        self, directory: FriendsDirectory, session: Session, player: Player, message: Rematch
    ) -> None:
        """Its last opponent is held by another process of a cluster (each went home after
        the match): move there with the ``rematch``, which is then asked there."""
        last = player.last_match
        assert last is not None
        assert last.opponent is not None

        def found(node: str | StoreUnavailable | None) -> None:
            now = self.context.advance()
            if not _still_idle(session, player) or player.last_match is not last:
                return  # or it played again meanwhile
            if last.opponent in self.roster.by_id:
                # The opponent came here meanwhile (asking for this rematch too): ask here.
                try:
                    self.on_rematch(session, player, message, now)
                except ProtocolError as exc:
                    self.refuse(session, exc.code, exc.message, message.id)
                return
            if isinstance(node, str) and directory.move(node, player.id, message):
                log.info("rematch_asker_moved", player_id=player.id, to=node)
                return
            # Nobody holds the opponent (it is gone), or it cannot be reached just now.
            reason = DeclinedReason.GONE if node is None else DeclinedReason.UNAVAILABLE
            self.counts["rematch_declined"] += 1
            session.outlet.send(RematchDeclined(match_id=last.match_id, reason=reason))

        directory.where(last.opponent, found)

    def _accepted(self, offer: Offer, now: float) -> None:
        """The second side said yes (or the house bot did): seat both again."""
        self._drop(offer)
        last = offer.last
        asker = self.roster.get(offer.asker)
        other = None if offer.other is None else self.roster.get(offer.other)
        players = [p for p in (asker, other) if p is not None]
        if offer.other is not None and len(players) < 2:
            return
        for p in players:
            last_id = None if p.last_match is None else p.last_match.match_id
            if p.state is not PlayerState.IDLE or last_id != last.match_id:
                # One side is gone or busy: whoever still waits is told.
                for q in players:
                    if q is not p and q.state is PlayerState.IDLE:
                        self.counts["rematch_declined"] += 1
                        self.relay.deliver(
                            q.id,
                            RematchDeclined(match_id=last.match_id, reason=DeclinedReason.GONE),
                        )
                return
        lobby = self.lobbies[last.lobby]
        for p in players:
            p.move(PlayerEvent.JOIN)  # seated at once, as a pairing of the queue is
        self.counts["rematch_started"] += 1
        log.info("rematch", match_id=last.match_id, players=[p.id for p in players])
        if other is None:
            assert asker is not None
            pairing = Pairing(asker.id, None, last.bot_strategy, last.bot_name)
        else:
            assert asker is not None
            pairing = Pairing(asker.id, other.id)
        self.rooms.seat(lobby, [pairing], now)

    def _timed_out(self, offer: Offer, now: float) -> None:
        offer.timer = None
        other = None if offer.other is None else self.roster.get(offer.other)
        gone = other is not None and other.session is None
        self._decline(offer, DeclinedReason.GONE if gone else DeclinedReason.TIMEOUT)

    def withdraw(self, player: Player, reason: DeclinedReason) -> None:
        """``player`` turned to something else (the queue, a room, ``leave``) or is gone
        for good: an offer it is part of ends, and the other side is told why."""
        offer = self.offer_of.get(player.id)
        if offer is not None:
            tell = offer.other if offer.asker == player.id else offer.asker
            self._decline(offer, reason, tell=tell)

    def _decline(self, offer: Offer, reason: DeclinedReason, tell: str | None = None) -> None:
        """End ``offer``, telling ``tell`` (default: the asker), if it is still connected."""
        self._drop(offer)
        self.counts["rematch_declined"] += 1
        target = offer.asker if tell is None else tell
        if target is not None:
            player = self.roster.get(target)
            if player is not None and player.session is not None:
                self.relay.deliver(
                    target, RematchDeclined(match_id=offer.last.match_id, reason=reason)
                )

    def _drop(self, offer: Offer) -> None:
        self.timers.cancel(offer.timer)
        self.timers.cancel(offer.bot_timer)
        offer.timer = offer.bot_timer = None
        self.offers.pop(offer.last.match_id, None)
        for player_id in (offer.asker, offer.other):
            if player_id is not None and self.offer_of.get(player_id) is offer:
                del self.offer_of[player_id]

    @property
    def rematches_pending(self) -> int:
        return len(self.offers)

"""Rooms: the running matches, their seats, their house bots and their records.

A room wraps one ``Match`` (the rules, sans-I/O) with what the service adds around it:
the humans seated, the house bot in the other seat if there is one, the timers that wake
the match and the bot, and the record stored when it ends. Every message the match
produces goes through ``deliver``: to the bot's seat it becomes the bot's plan, to a
human's seat it goes out through the relay.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import attrs
import structlog

from game_server.core.context import Context
from game_server.core.house_bot import BOT_NAMES, HouseBot, PlannedChoice
from game_server.core.match import Match, Seat, Send
from game_server.core.players import PlayerEvent, PlayerState
from game_server.core.ports import Journal, NullJournal, Pairing
from game_server.core.rating import aged, bot_rating
from game_server.core.records import MatchRecord, PlayerResult, RoundRow, SeatRow
from game_server.core.scoring import PlayerStats, points_won
from game_server.core.strategies import MIX, STRATEGY_NAMES, make_strategy
from game_server.core.timers import Timer
from protocol import ErrorCode, Face, MakeChoice, Movement, MovementKind, ProtocolError, Resume

if TYPE_CHECKING:
    from game_server.core.lobbies import Lobby
    from game_server.core.players import Player, Roster
    from game_server.core.sessions import Session

log = structlog.get_logger("game_server")

# Rating points either side of a player within which any house bot is "about its level".
BOT_LEVEL_BAND = 50.0


@attrs.define(eq=False)
class Room:
    match: Match
    humans: list[Player]
    started_at: float  # Unix seconds
    lobby: str
    bot: HouseBot | None = None
    bot_seat: int | None = None
    timer: Timer | None = None
    bot_timer: Timer | None = None
    closed: bool = False
    rounds_reported: int = 0


@attrs.frozen
class BotConfig:
    strategy: str = "mix"
    think: tuple[float, float] = (0.4, 1.6)


class Rooms:
    def __init__(self, context: Context, roster: Roster, bots: BotConfig) -> None:
        self.roster = roster
        self.bots = bots
        self.timers = context.timers
        self.relay = context.relay
        self.store = context.store
        self.observer = context.observer
        self.rng = context.rng
        self.new_id = context.new_id
        self.wall_clock = context.wall_clock
        self.by_id: dict[str, Room] = {}
        self.finished = 0
        self.journal: Journal = NullJournal()
        # Called once a room has closed and its humans are free again (the service then
        # sends them away if it is draining).
        self.on_closed: Callable[[Room, float], None] = lambda room, now: None

    def __len__(self) -> int:
        return len(self.by_id)

    def seats_of(self, match_id: str) -> tuple[Seat, Seat] | None:
        room = self.by_id.get(match_id)
        return None if room is None else room.match.seats

    # ------------------------------------------------------------ seating

    def seat(self, lobby: Lobby, pairings: list[Pairing], now: float) -> None:
        for pairing in pairings:
            first = self.roster.by_id[pairing.first]
            humans = [first]
            if pairing.second is None:
                strategy = pairing.bot_strategy or self._bot_strategy_for(first)
                bot = self._make_bot(lobby, name=pairing.bot_name, strategy=strategy)
                bot_seat = Seat(
                    bot.player_id,
                    bot.name,
                    PlayerStats(),
                    bot=True,
                    rating=bot_rating(bot.strategy.name),
                )
                match = Match(self.new_id("m_"), (self._seat_for(first), bot_seat), lobby.rules)
                room = Room(match, humans, self.wall_clock(), lobby.name, bot, 1)
            else:
                second = self.roster.by_id[pairing.second]
                humans.append(second)
                seats = (self._seat_for(first), self._seat_for(second))
                match = Match(self.new_id("m_"), seats, lobby.rules)
                room = Room(match, humans, self.wall_clock(), lobby.name)
            for human in humans:
                human.lobby = None
                human.room = room
                human.move(PlayerEvent.SEAT)
            match = room.match
            self.by_id[match.match_id] = room
            self.observer.match_started(room.bot is not None)
            # One info line per match, at its end (below): at thousands of matches a second
            # every line costs ~10 µs of the loop.
            log.debug(
                "match_started",
                match_id=match.match_id,
                players=list(match.player_ids),
                bot=room.bot is not None,
            )
            self.deliver(room, match.begin(now), now)
            self.journal.checkpoint(room)
            for human in humans:
                if human.state is PlayerState.AWAY_PLAYING:
                    # Paired while away (queued, then dropped): its opponent should know.
                    self.tell_opponent(human, MovementKind.LEFT)

    def _seat_for(self, player: Player) -> Seat:
        # Its rating as of now: days without a rated match have widened its deviation.
        rating = aged(player.rating, self.wall_clock())
        return Seat(player.id, player.name, player.stats, avatar=player.avatar, rating=rating)

    def _bot_strategy_for(self, player: Player) -> str:
        """A house bot of about the player's level: with ``mix``, one of the strategies
        rated within ``BOT_LEVEL_BAND`` of the player (by chance, for variety), else the
        closest-rated one; a configured strategy is always that one."""
        configured = self.bots.strategy
        if configured != MIX:
            return configured
        rating = player.rating.rating
        near = [
            name
            for name in STRATEGY_NAMES
            if abs(bot_rating(name).rating - rating) <= BOT_LEVEL_BAND
        ]
        if near:
            return self.rng.choice(near)
        return min(STRATEGY_NAMES, key=lambda name: abs(bot_rating(name).rating - rating))

    def _make_bot(
        self,
        lobby: Lobby,
        player_id: str | None = None,
        name: str | None = None,
        strategy: str | None = None,
    ) -> HouseBot:
        seed = self.rng.getrandbits(64)
        return HouseBot(
            player_id=player_id or self.new_id("bot_"),
            name=name or self.rng.choice(BOT_NAMES),
            strategy=make_strategy(strategy or self.bots.strategy, random.Random(seed)),
            think=self.bots.think,
            rng=random.Random(seed + 1),
            changes=lobby.bot_changes,
        )

    def carry_on(
        self,
        lobby: Lobby,
        match: Match,
        started_at: float,
        bot_strategy: str | None,
        now: float,
    ) -> Room:
        """Host a match taken over from a process that died (``Match.carried_on``), with
        the house bot in its seat if it had one, playing a strategy of the same name (what
        it had learnt died with the other process). Its humans are seated next, with
        ``Presence.adopt_seated``."""
        bot = bot_seat = None
        for index, seat in enumerate(match.seats):
            if seat.bot:
                bot_seat = index
                bot = self._make_bot(lobby, seat.player_id, seat.name, bot_strategy)
        room = Room(match, [], started_at, lobby.name, bot, bot_seat)
        room.rounds_reported = len(match.history)
        self.by_id[match.match_id] = room
        if bot is not None and bot_seat is not None:
            # The bot plays the open round as if it had just been told it started.
            start = match.start_for(bot_seat)
            plan = bot.on_message(start, now)
            if plan is not None:
                room.bot_timer = self.timers.call_at(
                    plan.when, partial(self._bot_plays, room, plan)
                )
        self._arm(room)
        return room

    # ------------------------------------------------------------ playing

    def on_choice(self, session: Session, player: Player, message: MakeChoice, now: float) -> None:
        room = self.room_of(player, message.match_id)
        match = room.match
        sends = match.choose(
            match.seat_of(player.id), message.round, message.choice, message.final, now
        )
        self.deliver(room, sends, now)

    def on_face(self, session: Session, player: Player, message: Face, now: float) -> None:
        room = self.room_of(player, None)
        self.deliver(room, room.match.face(room.match.seat_of(player.id), message.face), now)

    def room_of(self, player: Player, match_id: str | None) -> Room:
        room = player.room
        if room is None:
            raise ProtocolError(ErrorCode.NOT_IN_MATCH, "you are not in a match")
        if match_id is not None and match_id != room.match.match_id:
            raise ProtocolError(
                ErrorCode.NOT_IN_MATCH,
                f"you are not in match {match_id[:64]!r}; your match is {room.match.match_id}",
            )
        return room

    def forfeit(self, player: Player, now: float) -> None:
        """The player leaves its match, if it is in one: it loses, the other side wins."""
        room = player.room
        if room is not None:
            self.deliver(room, room.match.forfeit(room.match.seat_of(player.id)), now)

    def resume_for(self, player: Player, now: float) -> Resume:
        """Where its match stands, for a player that (re)connected while seated."""
        room = player.room
        assert room is not None
        match = room.match
        seat = match.seat_of(player.id)
        opponent = self.roster.get(match.seats[1 - seat].player_id)
        away = opponent is not None and opponent.away
        return attrs.evolve(match.resume_for(seat, now), opponent_away=away)

    def connection_moved(self, player: Player) -> None:
        """A seated player's connection came, went or moved: the journal keeps up."""
        if player.room is not None:
            self.journal.checkpoint(player.room)

    def tell_opponent(self, player: Player, kind: MovementKind) -> None:
        """Its opponent's connection comes and goes: ``movement left`` / ``back``."""
        room = player.room
        if room is None:
            return
        match = room.match
        opponent = 1 - match.seat_of(player.id)
        if opponent != room.bot_seat:
            movement = Movement(match_id=match.match_id, round=max(match.round, 1), kind=kind)
            self.relay.deliver(match.seats[opponent].player_id, movement)

    def deliver(self, room: Room, sends: list[Send], now: float) -> None:
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
        resolved = room.rounds_reported < len(history)
        while room.rounds_reported < len(history):
            self.observer.round_resolved(history[room.rounds_reported].seconds)
            room.rounds_reported += 1
        if match.over:
            self._close(room, now)
            return
        if resolved:
            self.journal.checkpoint(room)
        self._arm(room)

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
        self.deliver(room, sends, now)

    def _arm(self, room: Room) -> None:
        when = room.match.next_wakeup
        timer = room.timer
        if when is not None and timer is not None and not timer.cancelled and timer.when <= when:
            # Due no later than needed: it fires, finds nothing due and re-arms. Rounds
            # played faster than their deadline then cost no timer each.
            return
        self.timers.cancel(timer)
        room.timer = None if when is None else self.timers.call_at(when, partial(self._tick, room))

    def _tick(self, room: Room, now: float) -> None:
        if not room.closed:
            self.deliver(room, room.match.tick(now), now)

    # ------------------------------------------------------------ the end

    def abandon(self, room: Room) -> list[Player]:
        """Stop hosting a match another process has taken over (a cluster's): no message,
        no record, nothing settled here. Returns its humans, for the caller to let go."""
        if room.closed:
            return []
        room.closed = True
        self.timers.cancel(room.timer)
        self.timers.cancel(room.bot_timer)
        del self.by_id[room.match.match_id]
        for human in room.humans:
            self.timers.cancel(human.away_timer)
            human.away_timer = None
            human.room = None
        return room.humans

    def _close(self, room: Room, now: float) -> None:
        if room.closed:
            return
        room.closed = True
        self.timers.cancel(room.timer)
        self.timers.cancel(room.bot_timer)
        match = room.match
        rated_at = self.wall_clock()
        for human in room.humans:
            human.durable = True  # its match is stored below, and the player with it
            after = match.ratings_after[match.seat_of(human.id)]
            human.rating = after.stamped(rated_at)
            if human.room is room:
                human.room = None
                if human.move(PlayerEvent.MATCH_OVER) is PlayerState.OFFLINE:
                    # Its match ended while it was away: nothing left to hold for it.
                    self.timers.cancel(human.away_timer)
                    human.away_timer = None
                    self.roster.offline(human, now)
        del self.by_id[match.match_id]
        self.finished += 1
        record = self._record(room)
        self.store.record_match(record)
        self.journal.finished(room, record)
        reason = match.reason.value if match.reason else ""
        self.observer.match_finished(reason, room.bot is not None)
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
        self.on_closed(room, now)

    def _record(self, room: Room) -> MatchRecord:
        match = room.match
        winner = None if match.winner is None else match.seats[match.winner].player_id
        now = self.wall_clock()
        return MatchRecord(
            id=match.match_id,
            seats=(self._seat_row(match, 0), self._seat_row(match, 1)),
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
    def _seat_row(match: Match, side: int) -> SeatRow:
        seat = match.seats[side]
        after = match.ratings_after[side]
        return SeatRow(seat.player_id, seat.name, seat.bot, seat.rating.rating, after.rating)

    @staticmethod
    def _result(match: Match, human: Player) -> PlayerResult:
        if match.winner is None:
            return PlayerResult(human.id, "draw")
        if match.seats[match.winner].player_id == human.id:
            return PlayerResult(human.id, "win", points_won(human.stats))
        return PlayerResult(human.id, "lose")

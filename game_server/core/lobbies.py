"""Lobbies: the queues players wait in, each with the rules of the matches it makes.

A session queues in its endpoint's lobby (the native protocol's, or the 2016 demo's with
its one-round games). The matchmaker decides who plays whom; this module keeps each
queue's timer armed at its ``next_wakeup`` (a house bot due for a lone waiter) and hands
every pairing to ``seat``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import attrs

from game_server.core.context import Context
from game_server.core.house_bot import STEADY
from game_server.core.match import MatchRules
from game_server.core.players import PlayerEvent
from game_server.core.ports import Matchmaker, Pairing
from game_server.core.timers import Timer
from protocol import BotMode, ErrorCode, Join, ProtocolError, Queued, ServerMessage

if TYPE_CHECKING:
    from game_server.core.players import Player
    from game_server.core.sessions import Session

DEFAULT_LOBBY = "native"

Seat = Callable[["Lobby", list[Pairing], float], None]


@attrs.define(eq=False)
class Lobby:
    name: str
    rules: MatchRules
    matchmaker: Matchmaker
    reconnect_grace: float | None = None  # None: the service's
    timer: Timer | None = None
    bot_changes: tuple[int, int] = STEADY  # how often its house bots change their mind
    # Not a matchmaking queue (the friends' rooms): not counted in ``waiting``.
    private: bool = False
    # What a player waiting here is told when it comes back (default: ``queued``).
    greeting: Callable[[Player, float], ServerMessage] | None = None


class Lobbies:
    def __init__(self, context: Context, seat: Seat) -> None:
        self.context = context
        self.timers = context.timers
        self.seat = seat
        self.by_name: dict[str, Lobby] = {}

    def __getitem__(self, name: str) -> Lobby:
        return self.by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def add(self, lobby: Lobby) -> Lobby:
        if lobby.name in self.by_name:
            raise ValueError(f"lobby {lobby.name!r} exists")
        self.by_name[lobby.name] = lobby
        lobby.matchmaker.listen(partial(self._paired, lobby))
        return lobby

    def waiting(self) -> int:
        """Players waiting in every matchmaking queue (not in private rooms)."""
        return sum(len(lobby.matchmaker) for lobby in self.by_name.values() if not lobby.private)

    def catch_up(self, player: Player, now: float) -> ServerMessage:
        """What a waiting player who came back (or replaced its connection) is told."""
        lobby = player.lobby
        assert lobby is not None
        if lobby.greeting is not None:
            return lobby.greeting(player, now)
        return Queued(waiting=len(lobby.matchmaker))

    def is_queued(self, player_id: str) -> bool:
        return any(player_id in lobby.matchmaker for lobby in self.by_name.values())

    def on_join(self, session: Session, player: Player, message: Join, now: float) -> None:
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
        self.join(lobby, player, message.bot, now)

    def join(self, lobby: Lobby, player: Player, mode: BotMode, now: float) -> None:
        if player.lobby is not None:
            raise ProtocolError(ErrorCode.ALREADY_QUEUED, "you are already in the queue")
        pairings = lobby.matchmaker.join(player.id, mode, now, player.rating.rating)
        player.move(PlayerEvent.JOIN)
        player.lobby = lobby
        self.seat(lobby, pairings, now)
        self.arm(lobby)

    def leave(self, player: Player) -> None:
        """Out of its queue, if it is in one."""
        lobby = player.lobby
        if lobby is not None:
            player.lobby = None
            player.move(PlayerEvent.UNQUEUE)
            lobby.matchmaker.leave(player.id)
            self.arm(lobby)

    def arm(self, lobby: Lobby) -> None:
        when = lobby.matchmaker.next_wakeup
        timer = lobby.timer
        if timer is not None and not timer.cancelled and timer.when == when:
            return
        self.timers.cancel(timer)
        lobby.timer = (
            None if when is None else self.timers.call_at(when, partial(self._tick, lobby))
        )

    def _paired(self, lobby: Lobby, pairings: list[Pairing]) -> None:
        """Pairings a shared queue made later, after the joins that led to them."""
        now = self.context.advance()
        self.seat(lobby, pairings, now)
        self.arm(lobby)

    def _tick(self, lobby: Lobby, now: float) -> None:
        self.seat(lobby, lobby.matchmaker.tick(now), now)
        self.arm(lobby)

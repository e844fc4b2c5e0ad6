"""The 2016 demo's Socket.IO dialect as a thin adapter over the game service.

Mini-programs built on the demo connect to ``/applet/websocket/socket.io//?EIO=3&
transport=websocket`` (its page passes a URL ending in "/", its socket class appends
"/?EIO=3...") and speak Engine.IO 3 / Socket.IO by hand. ``SocketIODialect``
greets them the way a Socket.IO 2 server would, turns their events into native messages
for ``GameService.handle`` and the service's messages back into events
(``protocol/legacy.py`` does the translating, without I/O). They play in their own lobby:
one round per game, 3 seconds to choose, a robot after 1 second that changes its mind a
few times before the deadline, as the demo did.
"""

from __future__ import annotations

import math
import secrets
import weakref

import structlog
from aiohttp import web

from game_server.core.match import MatchRules
from game_server.core.matchmaker import InMemoryMatchmaker
from game_server.core.service import GameService
from game_server.core.sessions import Session
from game_server.net.avatars import robot_avatar_url
from game_server.net.connection import Connection
from protocol import CloseCode, Hi, Result, ServerMessage, Start
from protocol.legacy import LegacyPeer, LegacyUser, RobotNumbers, Standing, open_frame

log = structlog.get_logger("game_server")

SOCKETIO_PATH = "/applet/websocket/socket.io/"
# The route: the path without its trailing slash, or anything under it. engine.io 1.x (the
# demo's server) took every request whose raw URL began with the path and a "/", so
# "socket.io//", "socket.io/x/y" and the like reached it too ([\s\S]: any character,
# a newline's escape included).
SOCKETIO_ROUTE = r"/applet/websocket/socket.io{rest:(?:/[\s\S]*)?}"
LEGACY_LOBBY = "legacy"
LEGACY_RULES = MatchRules(best_of=1, round_seconds=3.0, round_pause=0.0)
LEGACY_BOT_AFTER = 1.0
# The demo's robot "changes its choice at random times": after its first, 2 or 3 times.
LEGACY_BOT_CHANGES = (2, 3)

# engine.io's handshake error codes, which Socket.IO clients report as they are.
TRANSPORT_UNKNOWN = 0
SESSION_ID_UNKNOWN = 1
BAD_REQUEST = 3
UNSUPPORTED_PROTOCOL_VERSION = 5
HINT = (
    "this server speaks Engine.IO 3 over WebSocket only: connect to "
    f"{SOCKETIO_PATH}?EIO=3&transport=websocket (socket.io-client: transports: ['websocket'])"
)


class LegacyOutlet:
    """The session's outlet: each native message goes out as the demo's event, if it has one."""

    def __init__(
        self,
        connection: Connection,
        peer: LegacyPeer,
        service: GameService,
        peers: weakref.WeakValueDictionary[str, LegacyPeer],
    ) -> None:
        self.connection = connection
        self.peer = peer
        self.service = service
        self.peers = peers

    def send(self, message: ServerMessage) -> None:
        standings = None
        if isinstance(message, Start | Result):
            # Both seats' live totals: the service guarantees them while it delivers.
            seats = self.service.seats_of(message.match_id)
            if seats is not None:
                standings = [
                    Standing(seat.player_id, seat.stats.total_score, seat.stats.win_streak)
                    for seat in seats
                ]
        frames = self.peer.on_server(message, standings)
        if isinstance(message, Hi):
            self.peers[message.player_id] = self.peer
        if frames:
            self.connection.observer.message_out(message.TYPE)
        for frame in frames:
            self.connection.send_encoded(frame)

    def send_encoded(self, data: bytes) -> None:
        """A frame already in the demo's dialect."""
        self.connection.send_encoded(data)

    def close(self, code: int, reason: str) -> None:
        self.connection.close(code, reason)


class SocketIODialect:
    """Engine.IO 3 / Socket.IO over WebSocket, for clients of the 2016 demo (see app.Dialect).

    Keeps, per app, which legacy connection each native player id belongs to, so two
    legacy players see each other's declared uids (entries vanish with their connections).
    """

    def __init__(self) -> None:
        self._peers: weakref.WeakValueDictionary[str, LegacyPeer] = weakref.WeakValueDictionary()
        self._robots = RobotNumbers()  # robot-1, robot-2... as the demo numbered its robots

    def install(self, service: GameService) -> None:
        if LEGACY_LOBBY not in service.lobbies:
            service.add_lobby(
                LEGACY_LOBBY,
                LEGACY_RULES,
                # The demo paired any two players: a window without limits.
                InMemoryMatchmaker(bot_after=LEGACY_BOT_AFTER, window=math.inf),
                reconnect_grace=0.0,  # no token to come back with: a drop is a goodbye
                bot_changes=LEGACY_BOT_CHANGES,
            )

    def refuse(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """An engine.io-style 400 for what only a full Socket.IO server serves (polling)."""
        query = request.query
        transport = query.get("transport")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if transport not in (None, "websocket") or (transport is None and not upgrade):
            return _handshake_error(TRANSPORT_UNKNOWN, "Transport unknown")
        if query.get("EIO", "3") != "3":
            return _handshake_error(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version")
        if "sid" in query:
            return _handshake_error(SESSION_ID_UNKNOWN, "Session ID unknown")
        if not upgrade:
            return _handshake_error(BAD_REQUEST, "Bad request")
        return None

    def open(self, service: GameService, connection: Connection, request: web.Request) -> Session:
        connection.send_encoded(open_frame(secrets.token_urlsafe(15)))
        connection.send_encoded(b"40")  # connected to the default namespace
        peer = LegacyPeer(
            lookup=self._lookup,
            robot_number=self._robots,
            robot_avatar=robot_avatar_url(request),
        )
        outlet = LegacyOutlet(connection, peer, service, self._peers)
        return service.connect(outlet, LEGACY_LOBBY, connection.address)

    def text(self, service: GameService, session: Session, data: bytes) -> None:
        outlet = session.outlet
        if session.closed or not isinstance(outlet, LegacyOutlet):
            return
        if not service.admit(session):
            return
        peer = outlet.peer
        inbound = peer.receive(data)
        for frame in inbound.replies:
            outlet.connection.send_encoded(frame)
        if inbound.message is not None:
            peer.await_ack(inbound.ack)
            try:
                service.handle(session, inbound.message)
            finally:
                for frame in peer.settle_ack():
                    outlet.connection.send_encoded(frame)
        if inbound.disconnect:
            # An explicit goodbye from a client that has no token to come back with: it
            # leaves its queue entry or game now rather than after the reconnect grace.
            service.disconnect(session, keep_seat=False)
            outlet.close(CloseCode.NORMAL, "client disconnect")

    def _lookup(self, player_id: str) -> LegacyUser | None:
        peer = self._peers.get(player_id)
        return None if peer is None or peer.player_id != player_id else peer.user


def _handshake_error(code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "hint": HINT}, status=400)


__all__ = ["LEGACY_LOBBY", "SOCKETIO_PATH", "SOCKETIO_ROUTE", "SocketIODialect"]

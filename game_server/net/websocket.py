"""The WebSocket handler: one socket from the upgrade to the close, in every dialect."""

from __future__ import annotations

import contextvars
import uuid

import structlog
from aiohttp import WSMsgType, web

from game_server.core.ratelimit import address_key
from game_server.core.service import GameService
from game_server.core.sessions import Session
from game_server.net.appkeys import (
    ADDRESSES,
    CONFIG,
    CONNECTIONS,
    FLUSHER,
    LIFECYCLE,
    METRICS,
    SERVICE,
)
from game_server.net.connection import Connection
from game_server.net.dialect import Dialect
from game_server.net.fastpath import DirectWebSocketResponse
from game_server.ops.logs import CLIENT_ADDRESS, REQUEST_ID

log = structlog.get_logger("game_server")

_SOCKET_DONE = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})
MAX_FRAME_BYTES = 4096


class SocketFrames:
    """What one socket's frames do, whichever path brought them (see ``websocket_handler``)."""

    __slots__ = ("bound_player", "connection", "dialect", "service", "session")

    def __init__(
        self, service: GameService, dialect: Dialect, session: Session, connection: Connection
    ) -> None:
        self.service = service
        self.dialect = dialect
        self.session = session
        self.connection = connection
        self.bound_player: str | None = None

    def text(self, data: bytes) -> None:
        self.connection.heard = True
        try:
            self.dialect.text(self.service, self.session, data)
        except Exception:
            # A bug must cost one message, never the connection or anyone's match.
            log.exception("message_failed")
        player = self.session.player
        if player is not None and player.id != self.bound_player:
            self.bound_player = player.id
            structlog.contextvars.bind_contextvars(player_id=player.id)

    def unsupported(self, what: str) -> None:
        try:
            self.service.receive_unsupported(self.session, what)
        except Exception:
            log.exception("message_failed")

    def disconnect(self) -> None:
        try:
            self.service.disconnect(self.session)
        except Exception:
            log.exception("disconnect_failed")


async def websocket_handler(request: web.Request, *, dialect: Dialect) -> web.StreamResponse:
    app = request.app
    if app[LIFECYCLE].draining:
        raise web.HTTPServiceUnavailable(
            text="shutting down; connect again", headers={"Retry-After": "1"}
        )
    refusal = dialect.refuse(request)
    if refusal is not None:
        return refusal
    config = app[CONFIG]
    origin = request.headers.get("Origin")
    allowed = config.allowed_origins
    if allowed and origin is not None and origin.lower().rstrip("/") not in allowed:
        app[METRICS].limited("origin")
        raise web.HTTPForbidden(text="this origin may not connect here")
    if len(app[CONNECTIONS]) >= config.max_connections:
        app[METRICS].limited("max_connections")
        raise web.HTTPServiceUnavailable(
            text="this server is full; connect again", headers={"Retry-After": "5"}
        )
    address = request.get(CLIENT_ADDRESS) or request.remote
    key = address_key(address)
    addresses = app[ADDRESSES]
    if not addresses.acquire(key):
        app[METRICS].limited("address_connections")
        raise web.HTTPTooManyRequests(
            text="too many connections from your address", headers={"Retry-After": "5"}
        )
    try:
        return await _serve(request, dialect, address)
    finally:
        addresses.release(key)


async def _serve(request: web.Request, dialect: Dialect, address: str | None) -> web.StreamResponse:
    app = request.app
    config = app[CONFIG]
    service = app[SERVICE]
    ws = DirectWebSocketResponse(
        use_direct=config.fast_path,
        # aiohttp refuses payloads of max_msg_size and up; frames up to 4096 bytes pass and
        # anything larger closes the socket with 1009.
        max_msg_size=MAX_FRAME_BYTES + 1,
        compress=False,  # per-message deflate costs ~100 KiB per socket for tiny frames
        # Keep-alive is one sweep over all sockets (game_server/heartbeat.py), not a timer
        # re-armed per frame; pings from clients are answered below.
        autoping=False,
        timeout=config.close_timeout,
        decode_text=False,  # orjson reads the UTF-8 bytes directly
        on_unmasked=lambda: app[METRICS].limited("unmasked_frame"),
    )
    await ws.prepare(request)
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
    request[REQUEST_ID] = request_id
    connection = Connection(
        ws,
        request,
        queue_limit=config.send_queue,
        close_timeout=config.close_timeout,
        observer=app[METRICS],
        flusher=app[FLUSHER],
        address=address,
    )
    app[CONNECTIONS].add(connection)
    session = dialect.open(service, connection)
    structlog.contextvars.bind_contextvars(
        session=session.id,
        request_id=request_id,
        remote=address,
        forwarded_for=request.headers.get("X-Forwarded-For"),
    )
    # Text frames are handled in aiohttp's read callback (net/fastpath.py) or,
    # behind a control frame, by the loop below: both in this one context, so every log
    # line of this socket carries its session, request and player.
    context = contextvars.copy_context()
    inbound = SocketFrames(service, dialect, session, connection)

    def on_text(data: bytes) -> None:
        context.run(inbound.text, data)

    ws.set_sink(on_text)
    log.info("connected")
    try:
        receive = ws.receive
        while True:
            message = await receive()  # not ``async for``: one coroutine less per frame
            kind = message.type
            if kind in _SOCKET_DONE:
                break
            connection.heard = True
            if kind is WSMsgType.TEXT:
                on_text(message.data)
                if connection.behind:
                    await connection.catch_up()
            elif kind is WSMsgType.PING:
                # Control frames count toward the flood guard like messages: a client may
                # ping, not flood (a pong each costs the whole loop's time at 100,000/s).
                if context.run(service.admit, session):
                    await ws.pong(message.data)
            elif kind is WSMsgType.PONG:
                context.run(service.admit, session)
            elif kind is WSMsgType.BINARY:
                context.run(inbound.unsupported, "binary")
            elif kind is WSMsgType.ERROR:
                context.run(log.info, "socket_error", error=str(message.data))
                break
    finally:
        ws.set_sink(None)
        context.run(inbound.disconnect)
        try:
            await connection.finish()
        finally:
            # Also when the handler is cancelled (a lost connection, with aiohttp's
            # handler_cancellation): a socket must never stay counted after it is gone.
            app[CONNECTIONS].discard(connection)
            context.run(
                log.info, "disconnected", close_code=ws.close_code, dropped=connection.dropped
            )
    return ws

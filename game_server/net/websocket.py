"""The WebSocket handler: one socket from the upgrade to the close, in every dialect.

On the fast path (``net/fastpath.py``) the handler only sets a socket up: it detaches
the socket from aiohttp and returns, and ``SocketFrames`` is called from the read
callback for every frame and, once, at the end. Off it, the handler reads every frame
with aiohttp's ``receive()`` until the socket closes, and the same ``SocketFrames`` does
the rest.
"""

from __future__ import annotations

import contextvars
import uuid

import structlog
from aiohttp import WSMsgType, web

from game_server.core.ratelimit import address_key
from game_server.core.sessions import Session
from game_server.net.appkeys import (
    ADDRESSES,
    ALLOCATOR_TRIM,
    CONFIG,
    CONNECTIONS,
    FLUSHER,
    LIFECYCLE,
    METRICS,
    ON_UNMASKED,
    SERVICE,
)
from game_server.net.connection import Connection
from game_server.net.dialect import Dialect
from game_server.net.fastpath import DetachedSocket, DirectWebSocketResponse
from game_server.ops.logs import CLIENT_ADDRESS, REQUEST_ID, access_line
from protocol import CloseCode

log = structlog.get_logger("game_server")

_SOCKET_DONE = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})
MAX_FRAME_BYTES = 4096


class SocketFrames:
    """What one socket's frames do, whichever path brought them (see the module's doc).

    Everything runs in the socket's own context (``context``), so every log line of the
    socket carries its session, request and player, from the read callback too.
    """

    __slots__ = (
        "access",
        "app",
        "bound_player",
        "connection",
        "context",
        "dialect",
        "key",
        "service",
        "session",
    )

    def __init__(
        self,
        app: web.Application,
        dialect: Dialect,
        session: Session,
        connection: Connection,
        context: contextvars.Context,
        key: str,
        access: tuple[str, str | None, str | None, float],
    ) -> None:
        self.app = app
        self.service = app[SERVICE]
        self.dialect = dialect
        self.session = session
        self.connection = connection
        self.context = context
        self.key = key  # the client's address key, released at the end
        # For the access line a detached socket writes when it closes: the path, the
        # X-Forwarded-For and User-Agent headers, when the request came (loop time).
        self.access = access
        self.bound_player: str | None = None

    def text(self, data: bytes) -> None:
        self.context.run(self._text, data)

    def _text(self, data: bytes) -> None:
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

    def control(self, kind: WSMsgType, data: bytes) -> None:
        """A ping, a pong or a binary frame (a detached socket's; the loop below does the
        same with aiohttp's)."""
        self.connection.heard = True
        if kind is WSMsgType.PING:
            # Control frames count toward the flood guard like messages: a client may
            # ping, not flood (a pong each costs the whole loop's time at 100,000/s).
            if self.context.run(self.service.admit, self.session):
                ws = self.connection.ws
                assert isinstance(ws, DetachedSocket)
                ws.pong(data)
        elif kind is WSMsgType.PONG:
            self.context.run(self.service.admit, self.session)
        elif kind is WSMsgType.BINARY:
            self.context.run(self.unsupported, "binary")

    def flush(self) -> None:
        self.connection.flush()

    def failed(self, error: BaseException) -> None:
        self.context.run(log.info, "socket_error", error=str(error))

    def ended(self) -> None:
        """A detached socket is closed or gone: what the handler's ``finally`` does off
        the fast path, and the access line aiohttp would have written."""
        self.context.run(self._ended)

    def _ended(self) -> None:
        connection = self.connection
        try:
            self.disconnect()
            connection.close(CloseCode.GOING_AWAY, "")  # a writer task, if any, stops
        finally:
            # Whatever failed above: a socket must never stay counted after it is gone.
            self.app[CONNECTIONS].discard(connection)
            self.app[ADDRESSES].release(self.key)
            self.app[ALLOCATOR_TRIM].socket_ended()
        ws = connection.ws
        assert isinstance(ws, DetachedSocket)
        log.info("disconnected", close_code=ws.close_code, dropped=connection.dropped)
        path, forwarded_for, user_agent, started = self.access
        loop_time = self.app[SERVICE].clock  # the loop's clock (a test's, under one)
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        access_line(
            "GET",
            path,
            101,
            loop_time() - started,
            remote=connection.address,
            request_id=request_id,
            forwarded_for=forwarded_for,
            user_agent=user_agent,
        )

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
    config = app[CONFIG]
    ws = DirectWebSocketResponse(
        use_direct=config.fast_path,
        # aiohttp refuses payloads of max_msg_size and up; frames up to 4096 bytes pass and
        # anything larger closes the socket with 1009.
        max_msg_size=MAX_FRAME_BYTES + 1,
        compress=False,  # per-message deflate costs ~100 KiB per socket for tiny frames
        # Keep-alive is one sweep over all sockets (net/heartbeat.py), not a timer
        # re-armed per frame; pings from clients are answered by SocketFrames.
        autoping=False,
        timeout=config.close_timeout,
        decode_text=False,  # orjson reads the UTF-8 bytes directly
        on_unmasked=app[ON_UNMASKED],
    )
    try:
        await ws.prepare(request)
    except BaseException:
        addresses.release(key)
        raise
    return await _serve(request, ws, dialect, address, key)


async def _serve(
    request: web.Request,
    ws: DirectWebSocketResponse,
    dialect: Dialect,
    address: str | None,
    key: str,
) -> web.StreamResponse:
    """The socket from its upgrade on; its address key is released when it ends."""
    app = request.app
    config = app[CONFIG]
    started = app[SERVICE].clock()
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
    request[REQUEST_ID] = request_id
    headers = request.headers
    access = (request.path, headers.get("X-Forwarded-For"), headers.get("User-Agent"), started)
    try:
        socket = ws.detach(request) if ws.direct else None
        connection = Connection(
            ws if socket is None else socket,
            request.transport if socket is None else socket.transport,
            queue_limit=config.send_queue,
            close_timeout=config.close_timeout,
            observer=app[METRICS],
            flusher=app[FLUSHER],
            address=address,
        )
        app[CONNECTIONS].add(connection)
        session = dialect.open(app[SERVICE], connection, request)
        structlog.contextvars.bind_contextvars(
            session=session.id,
            request_id=request_id,
            remote=address,
            forwarded_for=access[1],
        )
        context = contextvars.copy_context()
        inbound = SocketFrames(app, dialect, session, connection, context, key, access)
        context.run(log.info, "connected")
    except BaseException:
        app[ADDRESSES].release(key)
        raise
    if socket is not None:
        # From here the socket lives without this task: the read callback calls
        # ``inbound`` for every frame and, once, ``ended``.
        socket.start(inbound)
        return ws
    try:
        await _receive_loop(ws, inbound)
    finally:
        context.run(inbound.disconnect)
        try:
            await connection.finish()
        finally:
            # Also when the handler is cancelled (a lost connection, with aiohttp's
            # handler_cancellation): a socket must never stay counted after it is gone.
            app[CONNECTIONS].discard(connection)
            app[ADDRESSES].release(key)
            context.run(
                log.info, "disconnected", close_code=ws.close_code, dropped=connection.dropped
            )
            _forget_traceback(ws.exception())
            app[ALLOCATOR_TRIM].socket_ended()
    return ws


def _forget_traceback(error: BaseException | None) -> None:
    """aiohttp keeps the error a socket ended with (a write to a lost connection, say);
    its traceback's frames refer back to the response, a cycle that holds the request,
    its headers and aiohttp's protocol object until a full garbage collection, which an
    idle server may not run for hours."""
    for _ in range(8):  # a chain of causes, not a cycle of them
        if error is None:
            return
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


async def _receive_loop(ws: web.WebSocketResponse, inbound: SocketFrames) -> None:
    """Off the fast path: every frame through aiohttp's ``receive()``."""
    connection, context = inbound.connection, inbound.context
    service, session = inbound.service, inbound.session
    receive = ws.receive
    while True:
        message = await receive()  # not ``async for``: one coroutine less per frame
        kind = message.type
        if kind in _SOCKET_DONE:
            break
        connection.heard = True
        if kind is WSMsgType.TEXT:
            inbound.text(message.data)
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

"""The aiohttp shell: routes, the WebSocket handler and the timer that drives the core."""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Protocol

import aiohttp
import attrs
import structlog
from aiohttp import WSMsgType, web

from game_server import __version__
from game_server.core.ports import Outlet
from game_server.core.service import TOKEN_TTL, GameService, ServiceConfig
from game_server.core.sessions import Session
from game_server.core.tokens import TokenSigner
from game_server.net import direct_ws, http_api
from game_server.net.appkeys import HTTP_CLIENT, SERVICE, STORE, WECHAT
from game_server.net.connection import CLOSE_GOING_AWAY, Connection, Flusher
from game_server.net.direct_ws import DirectWebSocketResponse
from game_server.net.heartbeat import Heartbeat
from game_server.net.socketio import SOCKETIO_ROUTE, SocketIODialect
from game_server.net.web_client import add_client_routes
from game_server.ops.logs import REQUEST_ID, log_lines_lost
from game_server.ops.metrics import PrometheusObserver
from game_server.store.sqlite import SqliteStore
from game_server.wechat.client import WeChatClient, WeChatConfig

log = structlog.get_logger("game_server")

WEBSOCKET_PATH = "/applet/websocket"
_SOCKET_DONE = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})
MAX_FRAME_BYTES = 4096
GUEST_SLACK = 3600.0


@attrs.frozen
class ServerConfig:
    service: ServiceConfig = attrs.Factory(ServiceConfig)
    heartbeat: float | None = 30.0  # WebSocket ping interval; None turns it off
    send_queue: int = 256
    close_timeout: float = 2.0
    drain_seconds: float = 30.0  # how long matches may finish after SIGTERM
    db: str = ":memory:"  # SQLite file for players and matches
    token_secret: bytes | None = None  # None: a random one, so tokens die with the process
    token_ttl: float = TOKEN_TTL
    wechat: WeChatConfig | None = None  # None: no POST /applet/login, guests only
    # Text frames handled in aiohttp's read callback (game_server/direct_ws.py); False
    # takes aiohttp's queue and receive(), as on an aiohttp release it was not checked on.
    direct_receive: bool = True


@attrs.define
class Lifecycle:
    """Ready once serving; draining from the first stop signal until exit."""

    ready: bool = False
    draining: bool = False


class SocketFrames:
    """What one socket's frames do, whichever path brought them (see ``websocket_handler``)."""

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


class Ticker:
    """One loop timer, armed at (or before) the service's next wake-up.

    The service announces every wake-up that moves earlier (``watch_wakeups``), whatever
    scheduled it; after each tick the timer is armed again at ``next_wakeup``.
    """

    def __init__(self, service: GameService, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        service.watch_wakeups(self.arm)

    def arm(self, when: float) -> None:
        if self._when is not None and self._when <= when:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = self.loop.call_at(when, self._fire, when)

    def _fire(self, when: float) -> None:
        self._handle = None
        self._when = None
        try:
            # The loop may fire a hair early (clock resolution); the timer is due regardless.
            self.service.tick(max(self.loop.time(), when))
        except Exception:
            log.exception("tick_failed")
        following = self.service.next_wakeup
        if following is not None:
            self.arm(following)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._when = float("-inf")  # announcements after the stop arm nothing


class Dialect(Protocol):
    """What a WebSocket endpoint speaks: the native protocol, or an adapter for another.

    The handler owns the socket, the send queue and the session's lifetime; a dialect
    only turns frames into service calls and server messages into frames.
    """

    def install(self, service: GameService) -> None:
        """Set up what the dialect needs in the service (a lobby) once at start-up."""

    def open(self, service: GameService, connection: Connection) -> Session:
        """A socket was accepted: connect it as a session (and greet it if the dialect does)."""

    def text(self, service: GameService, session: Session, data: bytes) -> None:
        """One text frame from the client."""

    def refuse(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """An HTTP error for a request this endpoint will not upgrade, or None to go on."""


class NativeDialect:
    """Wire protocol v1 (``protocol/README.md``): the connection itself is the outlet."""

    def install(self, service: GameService) -> None:
        pass

    def open(self, service: GameService, connection: Connection) -> Session:
        outlet: Outlet = connection
        return service.connect(outlet)

    def text(self, service: GameService, session: Session, data: bytes) -> None:
        service.receive(session, data)

    def refuse(self, request: web.BaseRequest) -> web.StreamResponse | None:
        return None


__all__ = ["SERVICE", "STORE", "WEBSOCKET_PATH", "ServerConfig", "create_app", "drain"]

TICKER = web.AppKey("ticker", Ticker)
FLUSHER = web.AppKey("flusher", Flusher)
HEARTBEAT = web.AppKey("heartbeat", Heartbeat)
CONNECTIONS: web.AppKey[set[Connection]] = web.AppKey("connections")
CONFIG = web.AppKey("config", ServerConfig)
STARTED = web.AppKey("started", float)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
METRICS = web.AppKey("metrics", PrometheusObserver)


def create_app(
    config: ServerConfig | None = None, *, clock: Callable[[], float] | None = None
) -> web.Application:
    config = config or ServerConfig()
    dialects: dict[str, Dialect] = {
        WEBSOCKET_PATH: NativeDialect(),
        SOCKETIO_ROUTE: SocketIODialect(),  # the 2016 demo's clients; with or without the "/"
    }
    app = web.Application()
    app[CONFIG] = config
    app[CONNECTIONS] = set()
    app[STARTED] = time.monotonic()
    app[LIFECYCLE] = Lifecycle()
    app[METRICS] = PrometheusObserver()

    async def start_service(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        store = app[STORE] = await asyncio.to_thread(
            # Guests who never played are swept once their last token has surely expired
            # (an hour's slack for clocks that differ between processes).
            partial(SqliteStore, config.db, guest_ttl=config.token_ttl + GUEST_SLACK)
        )
        if config.direct_receive and not direct_ws.SUPPORTED:
            # Still correct, only slower: every frame takes aiohttp's queue and receive().
            log.warning(
                "direct_receive_unavailable",
                aiohttp=aiohttp.__version__,
                checked=list(direct_ws.CHECKED_RELEASES),
            )
        if config.token_secret is None:
            signer = TokenSigner.random(config.token_ttl)
            # Even without a database file: tokens die at restart, and no other process
            # (--reuse-port) accepts them.
            log.warning(
                "random_token_secret",
                hint="tokens stop working at restart and on other processes; "
                "set --token-secret (RPS_TOKEN_SECRET)",
            )
        else:
            signer = TokenSigner(config.token_secret, config.token_ttl)
        service = GameService(
            config.service,
            clock or loop.time,
            observer=app[METRICS],
            store=store,
            signer=signer,
        )
        app[SERVICE] = service
        for dialect in dialects.values():
            dialect.install(service)
        app[METRICS].gauges(
            players=lambda: service.online,
            queue=lambda: service.health()["queue"],
            matches=lambda: service.live_matches,
            store_backlog=lambda: store.backlog,
            store_failures=lambda: store.failures,
            store_writes_dropped=lambda: store.writes_dropped,
            log_lines_lost=log_lines_lost,
        )
        app[TICKER] = Ticker(app[SERVICE], loop)
        app[FLUSHER] = Flusher(loop)
        if config.heartbeat is not None:
            connections: set[Connection] = app[CONNECTIONS]
            app[HEARTBEAT] = Heartbeat(connections, config.heartbeat, loop)
            app[HEARTBEAT].start()
        if config.wechat is not None:
            app[HTTP_CLIENT] = aiohttp.ClientSession()
            app[WECHAT] = WeChatClient(config.wechat, app[HTTP_CLIENT])
        app[LIFECYCLE].ready = True

    async def close_sockets(app: web.Application) -> None:
        # Without this, open sockets keep the server's shutdown waiting its full timeout.
        app[LIFECYCLE].ready = False
        connections: list[Connection] = [*app[CONNECTIONS]]
        # Through each session's outlet, so every dialect says goodbye in its own words.
        app[SERVICE].close_all("server shutting down")
        for connection in connections:
            connection.close(CLOSE_GOING_AWAY, "server shutting down")
        await asyncio.gather(*(c.finish() for c in connections), return_exceptions=True)
        app[TICKER].stop()
        if HEARTBEAT in app:
            app[HEARTBEAT].stop()

    async def close_store(app: web.Application) -> None:
        # After the sockets: their last writes (players' last_seen) are committed too.
        await app[STORE].close()
        if HTTP_CLIENT in app:
            await app[HTTP_CLIENT].close()

    app.on_startup.append(start_service)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(close_store)
    http_api.add_routes(app)
    for path, dialect in dialects.items():
        app.router.add_get(path, partial(websocket_handler, dialect=dialect))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_client_routes(app)
    return app


async def drain(app: web.Application) -> None:
    """Stop taking players and let matches in progress end (the caller bounds the wait).

    New WebSocket upgrades get 503 and ``/readyz`` turns 503, so a load balancer moves
    traffic elsewhere while ``/healthz`` still says the process is alive.
    """
    app[LIFECYCLE].draining = True
    service = app[SERVICE]
    drained = asyncio.Event()
    log.info("draining", matches=service.live_matches, players=service.online)
    service.begin_drain(drained.set)
    await drained.wait()


async def healthz(request: web.Request) -> web.Response:
    app = request.app
    body = {
        "status": "draining" if app[LIFECYCLE].draining else "ok",
        "version": __version__,
        "uptime_s": round(time.monotonic() - app[STARTED], 1),
        **app[SERVICE].health(),
        "store_backlog": app[STORE].backlog,
        "store_failures": app[STORE].failures,
        "store_writes_dropped": app[STORE].writes_dropped,
        "log_lines_lost": log_lines_lost(),
    }
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    exporter = request.app[METRICS]
    return web.Response(body=exporter.render(), headers={"Content-Type": exporter.content_type})


async def readyz(request: web.Request) -> web.Response:
    lifecycle = request.app[LIFECYCLE]
    ready = lifecycle.ready and not lifecycle.draining
    status = "ready" if ready else ("draining" if lifecycle.draining else "starting")
    return web.json_response({"status": status}, status=200 if ready else 503)


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
    service = app[SERVICE]
    ws = DirectWebSocketResponse(
        use_direct=config.direct_receive,
        # aiohttp refuses payloads of max_msg_size and up; frames up to 4096 bytes pass and
        # anything larger closes the socket with 1009.
        max_msg_size=MAX_FRAME_BYTES + 1,
        compress=False,  # per-message deflate costs ~100 KiB per socket for tiny frames
        # Keep-alive is one sweep over all sockets (game_server/heartbeat.py), not a timer
        # re-armed per frame; pings from clients are answered below.
        autoping=False,
        timeout=config.close_timeout,
        decode_text=False,  # orjson reads the UTF-8 bytes directly
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
    )
    app[CONNECTIONS].add(connection)
    session = dialect.open(service, connection)
    structlog.contextvars.bind_contextvars(
        session=session.id,
        request_id=request_id,
        remote=request.remote,
        forwarded_for=request.headers.get("X-Forwarded-For"),
    )
    # Text frames are handled in aiohttp's read callback (game_server/direct_ws.py) or,
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
            elif kind is WSMsgType.PING:
                await ws.pong(message.data)
            elif kind is WSMsgType.BINARY:
                context.run(inbound.unsupported, "binary")
            elif kind is WSMsgType.ERROR:
                context.run(log.info, "socket_error", error=str(message.data))
                break
    finally:
        ws.set_sink(None)
        context.run(inbound.disconnect)
        await connection.finish()
        app[CONNECTIONS].discard(connection)
        context.run(log.info, "disconnected", close_code=ws.close_code, dropped=connection.dropped)
    return ws

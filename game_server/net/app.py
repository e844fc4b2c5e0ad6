"""The aiohttp application: routes, start-up and shutdown, health, and the drain.

The store comes from outside (``open_store``): the shell knows storage only as the
``Storage`` port, and ``cli/assembly.py`` decides which one a process runs on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from ipaddress import ip_network
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from game_server import __version__
from game_server.config import ServerConfig
from game_server.core.ports import Storage
from game_server.core.ratelimit import AddressCounts
from game_server.core.service import GameService
from game_server.core.tokens import TokenSigner
from game_server.net import avatars, fastpath, http_api
from game_server.net.addresses import client_address
from game_server.net.appkeys import (
    ADDRESSES,
    ALLOCATOR_TRIM,
    CONFIG,
    CONNECTIONS,
    FLUSHER,
    HEARTBEAT,
    HTTP_CLIENT,
    LIFECYCLE,
    METRICS,
    ON_UNMASKED,
    PLUGIN,
    SERVICE,
    STARTED,
    STORE,
    TICKER,
    TRUSTED_PROXIES,
    WECHAT,
    Lifecycle,
)
from game_server.net.connection import Connection, Flusher
from game_server.net.dialect import Dialect, NativeDialect
from game_server.net.heartbeat import Heartbeat
from game_server.net.plugin import Plugin
from game_server.net.socketio import SOCKETIO_ROUTE, SocketIODialect
from game_server.net.ticker import Ticker
from game_server.net.web_client import add_client_routes
from game_server.net.websocket import websocket_handler
from game_server.ops.logs import CLIENT_ADDRESS, log_lines_lost, log_lines_sampled
from game_server.ops.memory import AllocatorTrim
from game_server.ops.metrics import PrometheusObserver
from game_server.wechat.client import WeChatClient
from protocol import CloseCode

log = structlog.get_logger("game_server")

WEBSOCKET_PATH = "/applet/websocket"

StoreOpener = Callable[[], Awaitable[Storage]]


def runner_options(config: ServerConfig) -> dict[str, Any]:
    """What ``web.AppRunner`` (or a test server) is given for ``config``.

    aiohttp has no deadline for a request head of its own, but it arms its keep-alive
    timer when a connection is made, and at that time closes a connection still waiting
    for a whole request head: so ``keepalive_timeout`` is the head deadline (and how
    long an idle keep-alive connection lives). An upgraded WebSocket turns it off.
    """
    return {"keepalive_timeout": config.request_timeout}


def create_app(
    config: ServerConfig,
    *,
    open_store: StoreOpener,
    plugin: Plugin | None = None,
    clock: Callable[[], float] | None = None,
) -> web.Application:
    """The app for ``config``, on the store ``open_store`` opens at start-up."""
    dialects: dict[str, Dialect] = {
        WEBSOCKET_PATH: NativeDialect(),
        SOCKETIO_ROUTE: SocketIODialect(),  # the 2016 demo's clients: anything under the path
    }
    trusted = tuple(ip_network(cidr) for cidr in config.trusted_proxies)

    @web.middleware
    async def real_address(request: web.Request, handler: Handler) -> web.StreamResponse:
        address = client_address(request.remote, request.headers, trusted)
        if address is not None:
            request[CLIENT_ADDRESS] = address
        return await handler(request)

    app = web.Application(middlewares=[real_address])
    app[CONFIG] = config
    app[TRUSTED_PROXIES] = trusted
    app[ADDRESSES] = AddressCounts(config.max_connections_per_address)
    app[CONNECTIONS] = set()
    app[STARTED] = time.monotonic()
    app[LIFECYCLE] = Lifecycle()
    app[METRICS] = PrometheusObserver()
    on_unmasked: Callable[[], None] = partial(app[METRICS].limited, "unmasked_frame")
    app[ON_UNMASKED] = on_unmasked

    async def start_service(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        store = app[STORE] = await open_store()
        if config.fast_path and not fastpath.SUPPORTED:
            # Still correct, only slower: every frame takes aiohttp's public API.
            log.warning(
                "aiohttp_fast_path_unavailable",
                aiohttp=aiohttp.__version__,
                checked=list(fastpath.CHECKED_RELEASES),
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
        options: dict[str, Any] = {}
        if plugin is not None:
            await plugin.start()
            app[PLUGIN] = plugin
            options = plugin.service_options(config.service, clock or loop.time)
        service = GameService(
            config.service,
            clock or loop.time,
            observer=app[METRICS],
            store=store,
            signer=signer,
            **options,
        )
        app[SERVICE] = service
        if plugin is not None:
            plugin.attach(service, store)
            app[METRICS].extra(plugin.metrics)
        for dialect in dialects.values():
            dialect.install(service)
        app[METRICS].gauges(
            players=lambda: service.online,
            queue=lambda: service.waiting,
            matches=lambda: service.live_matches,
            store_backlog=lambda: store.backlog,
            store_failures=lambda: store.failures,
            store_writes_dropped=lambda: store.writes_dropped,
            log_lines_lost=log_lines_lost,
            remembered=lambda: len(service.roster),
        )
        app[METRICS].labelled(
            "rps_store_swept",
            "Rows the storage sweeps deleted: unreachable guests, and matches and day/week "
            "leaderboard rows older than --keep-matches",
            "kind",
            lambda: store.swept,
        )
        app[METRICS].gauge(
            "rps_rooms_open",
            "Private rooms waiting for a friend",
            lambda: service.friends.rooms_open,
        )
        app[METRICS].labelled(
            "rps_friends",
            "Private rooms opened, joined and expired; rematches asked, started and declined",
            "event",
            lambda: service.friends.counts,
        )
        app[METRICS].labelled(
            "rps_log_lines_sampled_out",
            "Per-connection log lines not written under load (counted here instead), by event",
            "event",
            log_lines_sampled,
        )
        app[TICKER] = Ticker(app[SERVICE], loop)
        app[FLUSHER] = Flusher(loop)
        app[ALLOCATOR_TRIM] = AllocatorTrim(loop)
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
            connection.close(CloseCode.GOING_AWAY, "server shutting down")
        await asyncio.gather(*(c.finish() for c in connections), return_exceptions=True)
        app[TICKER].stop()
        if HEARTBEAT in app:
            app[HEARTBEAT].stop()

    async def close_store(app: web.Application) -> None:
        # After the sockets: their last writes (players' last_seen) are committed too.
        if PLUGIN in app:
            await app[PLUGIN].close()
        await app[STORE].close()
        if HTTP_CLIENT in app:
            await app[HTTP_CLIENT].close()

    app.on_response_prepare.append(_common_headers)
    app.on_startup.append(start_service)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(close_store)
    http_api.add_routes(app)
    avatars.add_routes(app)
    for path, dialect in dialects.items():
        app.router.add_get(path, partial(websocket_handler, dialect=dialect))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_client_routes(app)
    return app


SERVER_HEADER = "rps-server"  # not aiohttp's exact version: nothing for a scanner to match


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response: no exact server version, and no content sniffing."""
    headers = response.headers
    headers["Server"] = SERVER_HEADER
    headers.setdefault("X-Content-Type-Options", "nosniff")


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
    if PLUGIN in app:
        body.update(app[PLUGIN].health())
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    exporter = request.app[METRICS]
    return web.Response(body=exporter.render(), headers={"Content-Type": exporter.content_type})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    lifecycle = app[LIFECYCLE]
    if lifecycle.draining:
        status = "draining"
    elif not lifecycle.ready:
        status = "starting"
    elif PLUGIN in app and not app[PLUGIN].ready:
        status = "degraded"  # a cluster whose Redis is unreachable: no new joins here
    else:
        status = "ready"
    return web.json_response({"status": status}, status=200 if status == "ready" else 503)

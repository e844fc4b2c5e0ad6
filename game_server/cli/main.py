"""``python -m game_server``: read settings, set up logging, serve until told to stop.

Stopping is graceful: the first SIGTERM or SIGINT drains (no new players, queued and idle
players are sent away, matches in progress may finish for ``--drain-seconds``), then
every socket is closed with 1001 and the process exits 0. A second signal skips the rest
of the drain. Under systemd (``NOTIFY_SOCKET``) it reports READY=1 once listening and
STOPPING=1 when the drain starts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Sequence

import structlog
from aiohttp import web

from game_server.cli.assembly import create_app
from game_server.cli.settings import config_from, parse_settings
from game_server.cli.systemd import notify
from game_server.config import ServerConfig
from game_server.net.app import WEBSOCKET_PATH, drain, runner_options
from game_server.net.appkeys import CONNECTIONS, METRICS, SERVICE
from game_server.ops.logs import AccessLogger, configure_logging

log = structlog.get_logger("game_server")


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


async def serve(config: ServerConfig, args: argparse.Namespace) -> None:
    # Signals first: "listening" promises the process can be stopped cleanly from then on.
    loop = asyncio.get_running_loop()
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal(signum: int) -> None:
        # What the signal asks for first, then the log line about it.
        if stop.is_set():
            force.set()
            log.info("second_signal", signal=signal.Signals(signum).name)
        else:
            stop.set()
            log.info("signal", signal=signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    raise_file_limit(config.max_connections + FILE_RESERVE)
    app = create_app(config)
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("aiohttp.access"),
        handle_signals=False,
        **runner_options(config),
    )
    await runner.setup()
    server = runner.server
    connections = app[CONNECTIONS]

    def tcp_connections() -> int:
        # aiohttp's own, and the WebSockets that left it once upgraded (net/fastpath.py).
        held = 0 if server is None else len(server.connections)
        return held + sum(connection.detached for connection in connections)

    app[METRICS].gauge(
        "rps_http_connections",
        "TCP connections the server holds: WebSockets, HTTP requests, and connections still "
        "sending a request head (cut at --request-timeout)",
        tcp_connections,
    )
    site = web.TCPSite(
        runner,
        args.host,
        args.port,
        backlog=1024,
        ssl_context=tls_context(args),
        reuse_port=args.reuse_port or None,
    )
    await site.start()
    scheme = "wss" if args.certfile else "ws"
    for address in runner.addresses:  # every socket bound (an IPv4 and an IPv6 one, say)
        host, port = address[:2]
        log.info("listening", host=host, port=port, path=WEBSOCKET_PATH, scheme=scheme)
    tune_gc()
    notify("READY=1", f"STATUS=serving on port {args.port}")
    try:
        await stop.wait()
        notify("STOPPING=1", "STATUS=draining")
        draining = asyncio.create_task(drain(app))
        forced = asyncio.create_task(force.wait())
        await asyncio.wait(
            {draining, forced},
            timeout=config.drain_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        unfinished = app[SERVICE].live_matches
        draining.cancel()
        forced.cancel()
        log.info("drained" if not unfinished else "drain_cut_short", matches_left=unfinished)
    finally:
        await runner.cleanup()  # closes every socket with bye + 1001
        log.info("stopped")


# Files beyond the WebSockets: the database, logs, listening sockets, HTTP requests and
# connections still sending their request head.
FILE_RESERVE = 1024


def raise_file_limit(needed: int) -> int:
    """Raise the soft limit on open files to the hard limit (a shell or pm2 often starts
    a process at 1,024, far below what a server holds); warn if it stays below
    ``needed``. Returns the soft limit in force."""
    try:
        import resource
    except ImportError:  # not on this platform
        return needed
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite soft limit (it cannot exceed fs.nr_open).
        wanted = max(soft, needed) if soft != resource.RLIM_INFINITY else soft
    else:
        wanted = hard
    if soft != resource.RLIM_INFINITY and wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("file_limit_not_raised", soft=soft, hard=hard, error=str(exc))
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "file_limit_low",
            limit=soft,
            needed=needed,
            hint="past the limit new connections fail, /healthz included: raise the hard "
            "limit (LimitNOFILE= under systemd, ulimit -Hn) or lower --max-connections",
        )
    return int(soft)


# Young-generation collections every 700 allocations cost 8-9 % of a busy server's CPU
# (each walks every object made since the last one: sockets, matches, messages). Every
# 10,000 they cost well under 1 %; reference counting frees almost everything anyway.
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Collect rarely, and never walk what start-up made (modules, routes, the app)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_settings(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        config = config_from(args)
        tls_context(args)  # fail before binding on an unreadable certificate or key
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(config, args))
    finally:
        loop.close()
    return 0

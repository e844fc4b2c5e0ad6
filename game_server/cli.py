"""``python -m game_server``: parse options, set up logging, serve until a signal."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import structlog
from aiohttp import web

from bots.argtypes import seconds_range
from bots.strategies import MIX, STRATEGY_NAMES
from game_server import __version__
from game_server.app import WEBSOCKET_PATH, ServerConfig, create_app
from game_server.logs import configure_logging
from game_server.match import MatchRules
from game_server.service import ServiceConfig

log = structlog.get_logger("game_server")

DEFAULT_PORT = 9595


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def env_port() -> int:
    raw = os.environ.get("PORT")
    if not raw:
        return DEFAULT_PORT
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"PORT must be a number, got {raw!r}") from None


def build_parser() -> argparse.ArgumentParser:
    defaults = ServiceConfig()
    rules = defaults.rules
    parser = argparse.ArgumentParser(
        prog="python -m game_server",
        description="Real-time rock-paper-scissors server (WebSocket at "
        f"{WEBSOCKET_PATH}, health at /healthz).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=env_port(), help="port (0 = any free); env PORT"
    )
    parser.add_argument("--best-of", type=positive_int, default=rules.best_of)
    parser.add_argument(
        "--round-seconds",
        type=positive_float,
        default=rules.round_seconds,
        help="time to choose in each round",
    )
    parser.add_argument(
        "--round-pause",
        type=non_negative_float,
        default=rules.round_pause,
        help="pause between a round's result and the next start",
    )
    parser.add_argument(
        "--bot-after",
        type=non_negative_float,
        default=defaults.bot_after,
        help="seconds a join with bot=auto waits for a human before a bot takes the seat",
    )
    parser.add_argument(
        "--bot-think",
        type=seconds_range,
        default=defaults.bot_think,
        metavar="SECONDS|LOW-HIGH",
        help="house bot think time per round, e.g. 0.4-1.6 or 0",
    )
    parser.add_argument(
        "--bot-strategy",
        choices=[*STRATEGY_NAMES, MIX],
        default=defaults.bot_strategy,
        help="house bot strategy; mix picks one per match",
    )
    parser.add_argument(
        "--rate-limit",
        type=positive_float,
        default=defaults.flood_rate,
        help="messages a second one connection may send (bursts of twice that pass); "
        "beyond it messages are dropped with rate_limited, and sustained floods are closed "
        "with 1008",
    )
    parser.add_argument(
        "--heartbeat",
        type=non_negative_float,
        default=ServerConfig().heartbeat,
        help="WebSocket ping interval in seconds (0 = off)",
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="auto: JSON unless stderr is a terminal",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


def config_from(args: argparse.Namespace) -> ServerConfig:
    rules = MatchRules(
        best_of=args.best_of, round_seconds=args.round_seconds, round_pause=args.round_pause
    )
    service = ServiceConfig(
        rules=rules,
        bot_after=args.bot_after,
        bot_think=args.bot_think,
        bot_strategy=args.bot_strategy,
        flood_rate=args.rate_limit,
        flood_burst=2 * args.rate_limit,
    )
    return ServerConfig(service=service, heartbeat=args.heartbeat or None)


async def serve(config: ServerConfig, host: str, port: int) -> None:
    # Signals first: "listening" promises the process can be stopped cleanly from then on.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = [sock.getsockname() for sock in (site._server.sockets if site._server else [])]  # type: ignore[attr-defined]
    for address in bound:
        log.info("listening", host=address[0], port=address[1], path=WEBSOCKET_PATH)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await runner.cleanup()
        log.info("stopped")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(config, args.host, args.port))
    finally:
        loop.close()
    return 0

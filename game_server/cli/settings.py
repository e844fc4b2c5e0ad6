"""Every server option, from the command line, ``RPS_*`` variables or a TOML file.

Precedence, highest first: command line, environment (``RPS_<OPTION>``, and the plain
``PORT`` that pm2 and PaaS hosts set), the config file (``--config`` or ``RPS_CONFIG``),
built-in defaults. Values from the environment and the file go through the same
converters and checks as command-line ones, so a bad ``RPS_BEST_OF`` fails just like a
bad ``--best-of``.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from game_server import __version__
from game_server.cli.argtypes import seconds_range
from game_server.config import ServerConfig
from game_server.core.match import MatchRules
from game_server.core.service import ServiceConfig
from game_server.core.strategies import MIX, STRATEGY_NAMES
from game_server.core.tokens import SECRET_MIN_BYTES
from game_server.net.addresses import parse_networks
from game_server.net.app import WEBSOCKET_PATH
from game_server.wechat.client import WeChatConfig

ENV_PREFIX = "RPS_"
DEFAULT_PORT = 9595
DEFAULT_DB = "rps.db"
DEFAULT_WECHAT_API = "https://api.weixin.qq.com"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def networks(text: str) -> str:
    """CIDRs, comma-separated, checked and kept as text (the shell parses them)."""
    try:
        parse_networks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def origins(text: str) -> str:
    """Origins, comma-separated, checked and kept as text."""
    for origin in filter(None, (part.strip() for part in text.split(","))):
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise argparse.ArgumentTypeError(
                f"expected origins like https://game.example.com, got {origin!r}"
            )
    return text


def public_url(text: str) -> str:
    """One origin, ``scheme://host[:port]`` (empty: none), kept without a trailing slash."""
    text = text.strip().rstrip("/")
    if text:
        origins(text)
        if "," in text:
            raise argparse.ArgumentTypeError(f"expected one origin, got {text!r}")
    return text


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {text!r}")
    return value


def token_secret(text: str) -> bytes:
    secret = text.encode()
    if len(secret) < SECRET_MIN_BYTES:
        raise argparse.ArgumentTypeError(
            f"must be at least {SECRET_MIN_BYTES} bytes; e.g. python3 -c "
            "'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return secret


def env_name(dest: str) -> str:
    return ENV_PREFIX + dest.upper()


def build_parser() -> argparse.ArgumentParser:
    service = ServiceConfig()
    rules = service.rules
    server = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="python -m game_server",
        description=f"Real-time rock-paper-scissors server: WebSocket at {WEBSOCKET_PATH}, "
        "/healthz, /readyz and /metrics. Every option can also be set as an environment "
        f"variable {ENV_PREFIX}<OPTION> (shown below) or in a TOML file given by --config; "
        "the command line wins over the environment, which wins over the file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def option(flag: str, **kwargs: Any) -> None:
        dest = flag.removeprefix("--").replace("-", "_")
        kwargs["help"] = f"{kwargs.get('help', '')} [env {env_name(dest)}]".strip()
        parser.add_argument(flag, **kwargs)

    parser.add_argument("--version", action="version", version=__version__)
    option("--config", type=Path, default=None, help="TOML file of options (keys as below)")
    option("--host", default="0.0.0.0", help="address to listen on")
    option("--port", type=port_number, default=DEFAULT_PORT, help="port, 0 = any; also PORT")
    option(
        "--reuse-port",
        action="store_true",
        help="SO_REUSEPORT, so several processes can share the port (with --redis they "
        "share one queue and their players; without it each is a server of its own)",
    )
    option("--certfile", type=Path, default=None, help="TLS certificate chain (PEM): serve wss://")
    option("--keyfile", type=Path, default=None, help="TLS private key (PEM)")
    option("--best-of", type=positive_int, default=rules.best_of, help="rounds per match")
    option(
        "--round-seconds",
        type=positive_float,
        default=rules.round_seconds,
        help="time to choose in each round",
    )
    option(
        "--round-pause",
        type=non_negative_float,
        default=rules.round_pause,
        help="pause between a round's result and the next start",
    )
    option(
        "--bot-after",
        type=non_negative_float,
        default=service.bot_after,
        help="seconds a join with bot=auto waits for a human before a bot takes the seat",
    )
    option(
        "--match-window",
        type=non_negative_float,
        default=service.match_window,
        help="rating points either side within which a new player is paired",
    )
    option(
        "--match-widen",
        type=non_negative_float,
        default=service.match_widen,
        help="rating points a second a waiting player's window widens",
    )
    option(
        "--room-ttl",
        type=positive_float,
        default=service.room_ttl,
        help="seconds a private room's code stays valid (create_room)",
    )
    option(
        "--rematch-seconds",
        type=positive_float,
        default=service.rematch_seconds,
        help="after a match, seconds both players have to ask for a rematch",
    )
    option(
        "--rate-friend-matches",
        action=argparse.BooleanOptionalAction,
        default=service.rate_friend_matches,
        help="private rooms' matches move ratings like the queue's",
    )
    option(
        "--bot-think",
        type=seconds_range,
        default=service.bot_think,
        metavar="SECONDS|LOW-HIGH",
        help="house bot think time per round, e.g. 0.4-1.6 or 0",
    )
    option(
        "--bot-strategy",
        choices=[*STRATEGY_NAMES, MIX],
        default=service.bot_strategy,
        help="house bot strategy; mix picks one per match",
    )
    option(
        "--reconnect-grace",
        type=non_negative_float,
        default=service.reconnect_grace,
        help="seconds a dropped player keeps its seat or queue entry, to come back with its "
        "token (0 = forfeit at once)",
    )
    option(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH|URL",
        help="where players and finished matches are kept: a SQLite file (:memory: keeps "
        "nothing), or a PostgreSQL URL (postgresql://user@host:port/dbname) that several "
        "nodes share (docs/storage.md)",
    )
    option(
        "--keep-matches",
        type=positive_float,
        default=None,
        metavar="DAYS",
        help="delete finished matches (with their rounds) older than DAYS, and the day and "
        "week leaderboard points of periods older than that; players' totals, ratings and "
        "the all-time boards stay (default: keep every match)",
    )
    option(
        "--redis",
        default=None,
        metavar="URL",
        help="a Redis URL (redis://host:port/0): this process is one node of a cluster that "
        "shares its queue and players with every node on the same Redis (docs/cluster.md)",
    )
    option(
        "--node-id",
        default=None,
        help="this node's name in the cluster, unique among its nodes (default: host-pid)",
    )
    option(
        "--node-ttl",
        type=positive_float,
        default=server.node_ttl,
        help="seconds a silent node is given before the others count it dead and take its "
        "matches over (it says it lives every quarter of that); shorter takes over sooner, "
        "longer survives longer Redis hiccups",
    )
    option(
        "--token-secret",
        type=token_secret,
        default=None,
        help="HMAC secret for session tokens, shared by every process of one deployment; "
        "unset: a random one, and tokens stop working at restart (prefer the variable)",
    )
    option(
        "--token-ttl",
        type=positive_float,
        default=server.token_ttl,
        help="seconds a session token stays valid (each hi issues a fresh one)",
    )
    option("--wechat-appid", default=None, help="mini-program app id: enables POST /applet/login")
    option(
        "--wechat-secret",
        default=None,
        help="mini-program app secret, with --wechat-appid (prefer the variable)",
    )
    option(
        "--wechat-api-base",
        default=DEFAULT_WECHAT_API,
        help="where code2session is called; tests point it at a local fake",
    )
    option(
        "--rate-limit",
        type=positive_float,
        default=service.flood_rate,
        help="messages a second one connection may send (bursts of twice that pass); beyond "
        "it messages are dropped with rate_limited, sustained floods are closed with 1008",
    )
    option(
        "--request-timeout",
        type=positive_float,
        default=server.request_timeout,
        help="seconds a new TCP connection has to send its whole HTTP request head (and the "
        "body of a login); a half-sent request is cut then (slowloris). Also how long an "
        "idle keep-alive HTTP connection is kept",
    )
    option(
        "--hello-timeout",
        type=non_negative_float,
        default=service.hello_timeout,
        help="seconds a new WebSocket has to say a hello that is accepted; then it gets bye "
        "hello_timeout and close 1008 (0 = no deadline)",
    )
    option(
        "--guest-rate",
        type=non_negative_float,
        default=service.guest_rate,
        help="hellos without a token (each makes a new guest) one client address may send "
        "a second, bursts of ten times that; beyond it they get rate_limited (0 = no limit). "
        "Keep it generous: a carrier NAT puts thousands of phones behind one address",
    )
    option(
        "--max-connections",
        type=positive_int,
        default=server.max_connections,
        help="WebSockets this process holds at most; upgrades beyond get HTTP 503. The "
        "server raises its open-file limit to the hard limit at start-up and warns if that "
        "is still below this plus a reserve",
    )
    option(
        "--max-connections-per-address",
        type=non_negative_int,
        default=server.max_connections_per_address,
        help="WebSockets one client address (an IPv6 /64) may hold at once; upgrades beyond "
        "get HTTP 429 (0 = no cap: a carrier NAT puts thousands of phones behind one "
        "address, so keep any cap high)",
    )
    option(
        "--trusted-proxies",
        type=networks,
        default=",".join(server.trusted_proxies),
        metavar="CIDRS",
        help="proxies (CIDRs, comma-separated, e.g. 127.0.0.1/32,::1/128 for nginx on this "
        "host) whose X-Forwarded-For / X-Real-IP name the client; from anyone else those "
        "headers are ignored. The client's address counts for every per-address limit and "
        "shows in the logs",
    )
    option(
        "--allowed-origins",
        type=origins,
        default="",
        metavar="ORIGINS",
        help="origins (scheme://host[:port], comma-separated) a browser's WebSocket upgrade "
        "may come from, e.g. https://game.example.com; others get HTTP 403. Unset: any. "
        "Clients that send no Origin (mini-programs, apps, bots) are never refused for it",
    )
    option(
        "--public-url",
        type=public_url,
        default="",
        metavar="ORIGIN",
        help="the origin clients reach this server at (scheme://host[:port], e.g. "
        "https://game.example.com), for the picture URLs it hands out (uploaded avatars, "
        "the 2016 demo's robot). Unset: each request's own Host (https behind TLS, or when "
        "a trusted proxy's X-Forwarded-Proto says so)",
    )
    option(
        "--heartbeat",
        type=non_negative_float,
        default=server.heartbeat,
        help="WebSocket ping interval in seconds; a peer that does not answer within half "
        "of it is disconnected (0 = off)",
    )
    option(
        "--drain-seconds",
        type=non_negative_float,
        default=server.drain_seconds,
        help="on SIGTERM/SIGINT, how long matches in progress may run before the sockets "
        "are closed",
    )
    option(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto",
        help="auto: JSON unless stderr is a terminal",
    )
    option("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def _file_options(path: Path, parser: argparse.ArgumentParser) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        parser.error(f"cannot read config file {path}: {exc}")
    known = {action.dest for action in parser._actions}
    options = {}
    for key, value in data.items():
        dest = key.replace("-", "_")
        if dest not in known or dest in ("help", "version", "config"):
            parser.error(f"unknown option {key!r} in config file {path}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        options[dest] = str(value)
    return options


def parse_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Parse with the full precedence; exits with status 2 and a message on bad input."""
    import os

    environ = os.environ if environ is None else environ
    parser = build_parser()
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--config", type=Path)
    known, _ = first.parse_known_args(argv)
    config_path = known.config or (
        Path(environ[env_name("config")]) if environ.get(env_name("config")) else None
    )
    layered: dict[str, str] = {}
    if config_path is not None:
        layered.update(_file_options(config_path, parser))
    if environ.get("PORT"):
        layered["port"] = environ["PORT"]
    for action in parser._actions:
        value = environ.get(env_name(action.dest))
        if value is not None and action.dest not in ("help", "version"):
            layered[action.dest] = value

    flags = {a.dest: a for a in parser._actions}
    defaults: dict[str, Any] = {}
    for dest, text in layered.items():
        action = flags[dest]
        if isinstance(action, argparse._StoreTrueAction | argparse.BooleanOptionalAction):
            lowered = text.strip().lower()
            if lowered not in _TRUE | _FALSE:
                parser.error(f"{env_name(dest)}: expected true or false, got {text!r}")
            defaults[dest] = lowered in _TRUE
        elif action.choices is not None and text not in action.choices:
            parser.error(f"{env_name(dest)}: expected one of {list(action.choices)}, got {text!r}")
        else:
            defaults[dest] = text  # argparse converts string defaults with the option's type
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")
    if bool(args.wechat_appid) != bool(args.wechat_secret):
        parser.error("--wechat-appid and --wechat-secret go together")
    return args


def config_from(args: argparse.Namespace) -> ServerConfig:
    rules = MatchRules(
        best_of=args.best_of, round_seconds=args.round_seconds, round_pause=args.round_pause
    )
    service = ServiceConfig(
        rules=rules,
        bot_after=args.bot_after,
        match_window=args.match_window,
        match_widen=args.match_widen,
        room_ttl=args.room_ttl,
        rematch_seconds=args.rematch_seconds,
        rate_friend_matches=args.rate_friend_matches,
        bot_think=args.bot_think,
        bot_strategy=args.bot_strategy,
        flood_rate=args.rate_limit,
        flood_burst=2 * args.rate_limit,
        reconnect_grace=args.reconnect_grace,
        hello_timeout=args.hello_timeout or None,
        guest_rate=args.guest_rate or None,
        guest_burst=10 * args.guest_rate,
    )
    return ServerConfig(
        service=service,
        heartbeat=args.heartbeat or None,
        drain_seconds=args.drain_seconds,
        db=args.db,
        keep_matches_days=args.keep_matches,
        redis=args.redis,
        node_id=args.node_id,
        node_ttl=args.node_ttl,
        request_timeout=args.request_timeout,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        trusted_proxies=tuple(str(n) for n in parse_networks(args.trusted_proxies)),
        allowed_origins=tuple(
            part.strip().lower().rstrip("/")
            for part in args.allowed_origins.split(",")
            if part.strip()
        ),
        public_url=args.public_url or None,
        token_secret=args.token_secret,
        token_ttl=args.token_ttl,
        wechat=None
        if not args.wechat_appid
        else WeChatConfig(args.wechat_appid, args.wechat_secret, args.wechat_api_base),
    )

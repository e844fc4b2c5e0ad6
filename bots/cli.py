"""``python -m bots``: bot clients that play a running server over WebSockets.

- ``play``: a few clients play a fixed number of matches each and print a summary.
- ``soak``: many clients play for a duration and/or a number of matches, check every
  message against the protocol and the rules, and print latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import statistics
import sys
import time
from collections.abc import Sequence

import aiohttp

from bots.client import DEFAULT_URL, BotClient, BotReport
from bots.soak import OPPONENT_MODES, SoakConfig, SoakSummary, run_soak
from game_server.cli.argtypes import seconds_range
from game_server.core.strategies import MIX, STRATEGY_NAMES, make_strategy
from protocol import BotMode


def _number(kind: type[float] | type[int], minimum: float, text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not minimum <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, 0.0, text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    return _number(float, 0.0, text)


def positive_int(text: str) -> int:
    return int(_number(int, 1, text))


def non_negative_int(text: str) -> int:
    return int(_number(int, 0, text))


def strategy_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    valid = (*STRATEGY_NAMES, MIX)
    bad = [name for name in names if name not in valid]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown strategy {', '.join(bad) or text!r}; choose from {', '.join(valid)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    play = commands.add_parser("play", help="play a number of matches and print a summary")
    play.add_argument("--url", default=DEFAULT_URL)
    play.add_argument("--clients", type=int, default=2, help="bot clients playing at once")
    play.add_argument("--matches", type=int, default=3, help="matches each client plays")
    play.add_argument("--strategy", choices=[*STRATEGY_NAMES, MIX], default=MIX)
    play.add_argument(
        "--opponents",
        choices=[mode.value for mode in BotMode],
        default=BotMode.NEVER.value,
        help="join mode: never = bots meet each other, now = each plays a house bot",
    )
    play.add_argument("--think", type=float, default=0.0, help="max think seconds per round")
    play.add_argument("--seed", type=int, default=None)
    play.add_argument("--timeout", type=float, default=300.0, help="give up after seconds")

    soak = commands.add_parser(
        "soak",
        help="many checking bot clients for a duration and/or a number of matches",
        description="Drive many bot clients against a running server, check every message "
        "against the protocol and the rules, and print a summary with latency percentiles. "
        "Exits 1 on any protocol violation, error message or connection failure beyond the "
        "allowed reconnects. Ctrl-C stops early and prints the summary so far.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    soak.add_argument(
        "--url",
        action="append",
        default=None,
        help=f"a server (default {DEFAULT_URL}); repeat it for the nodes of a cluster: the "
        "clients are spread over them round-robin",
    )
    soak.add_argument("--clients", type=positive_int, default=10, help="bot clients at once")
    soak.add_argument(
        "--duration", type=positive_float, default=None, help="stop after this many seconds"
    )
    soak.add_argument(
        "--matches",
        type=positive_int,
        default=None,
        help="stop after this many matches in all (a bot-vs-bot match counts once)",
    )
    soak.add_argument(
        "--strategy",
        type=strategy_list,
        default=(MIX,),
        metavar="NAME[,NAME...]",
        help=f"{', '.join(STRATEGY_NAMES)} or {MIX}; a comma-separated list is handed out "
        "to the clients in turn",
    )
    soak.add_argument(
        "--opponents",
        choices=OPPONENT_MODES,
        default="never",
        help="never: bots meet each other only; auto: each other, or a house bot when no "
        "bot fits in time (the server's --bot-after), as the page joins; now: each plays "
        "house bots; mix: auto, and about 1 join in 10 asks for a house bot at once; "
        "friends: in pairs, by private room code and rematch (an even --clients; with "
        "several --url, a pair's two clients on two servers)",
    )
    soak.add_argument(
        "--think",
        type=seconds_range,
        default=(0.0, 0.0),
        metavar="SECONDS|LOW-HIGH",
        help="think time before each hand (at most 80%% of the round)",
    )
    soak.add_argument(
        "--ramp", type=non_negative_float, default=0.0, help="connect clients over S seconds"
    )
    soak.add_argument(
        "--max-reconnects",
        type=non_negative_int,
        default=0,
        help="reconnects allowed per client after a dropped or failed connection",
    )
    soak.add_argument(
        "--room-every",
        type=positive_float,
        default=5.0,
        help="with --opponents friends: a pair meets in a new room at most this often, and "
        "plays rematches in between (a connection may try one room code every 5 s once its "
        "first 10 are spent)",
    )
    soak.add_argument(
        "--json", action="store_true", help="print one JSON summary object instead of a table"
    )
    soak.add_argument("--seed", type=int, default=None)
    soak.set_defaults(subparser=soak)
    return parser


# ---------------------------------------------------------------- play


async def play(args: argparse.Namespace) -> list[BotReport]:
    rng = random.Random(args.seed)
    clients = []
    for index in range(args.clients):
        bot_rng = random.Random(rng.getrandbits(64))
        clients.append(
            BotClient(
                args.url,
                strategy=make_strategy(args.strategy, bot_rng),
                name=f"bot-{index + 1}",
                mode=BotMode(args.opponents),
                think=(0.0, args.think),
                rng=bot_rng,
            )
        )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return list(
            await asyncio.wait_for(
                asyncio.gather(*(c.play(args.matches, session=session) for c in clients)),
                timeout=args.timeout,
            )
        )


def summarize(reports: Sequence[BotReport], seconds: float) -> str:
    matches = sum(r.matches for r in reports)
    latencies = sorted(x for r in reports for x in r.choice_latency)
    lines = [
        f"clients {len(reports)}  matches played {matches}  rounds {sum(r.rounds for r in reports)}"
        f"  in {seconds:.2f} s",
        f"wins {sum(r.wins for r in reports)}  losses {sum(r.losses for r in reports)}"
        f"  draws {sum(r.draws for r in reports)}",
        f"errors {sum(r.error_count for r in reports)}"
        f"  violations {sum(r.violation_count for r in reports)}",
    ]
    if latencies:
        lines.append(
            f"choice->result ms: median {statistics.median(latencies) * 1000:.1f}"
            f"  max {latencies[-1] * 1000:.1f}"
        )
    for report in reports:
        for problem in [*report.errors, *report.violations][:5]:
            lines.append(f"  {report.player_id}: {problem}")
    return "\n".join(lines)


def _play_main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        reports = asyncio.run(play(args))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"error: {exc!r}", file=sys.stderr)
        return 1
    print(summarize(reports, time.perf_counter() - started))
    return 1 if any(r.error_count or r.violation_count for r in reports) else 0


# ---------------------------------------------------------------- soak


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _soak_until_signal(config: SoakConfig) -> SoakSummary:
    """Run the soak; SIGINT or SIGTERM sets the stop event, so the summary still comes."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    progress = sys.stderr if sys.stderr.isatty() else None
    try:
        return await run_soak(config, stop=stop, progress=progress)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _soak_main(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.subparser
    if args.duration is None and args.matches is None:
        parser.error("soak needs --duration, --matches or both, so that the run is bounded")
    try:
        urls = args.url or [DEFAULT_URL]
        config = SoakConfig(
            url=urls[0],
            more_urls=tuple(urls[1:]),
            clients=args.clients,
            duration=args.duration,
            matches=args.matches,
            strategies=args.strategy,
            opponents=args.opponents,
            think=args.think,
            ramp=args.ramp,
            max_reconnects=args.max_reconnects,
            seed=args.seed,
            room_every=args.room_every,
        )
    except ValueError as exc:
        parser.error(str(exc))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        summary = runner.run(_soak_until_signal(config))
    print(summary.to_json() if args.json else summary.format_table(), flush=True)
    return summary.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "soak":
        return _soak_main(args)
    return _play_main(args)

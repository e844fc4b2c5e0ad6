"""``python -m bots play``: bot clients that play a running server over WebSockets."""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Sequence

import aiohttp

from bots.client import DEFAULT_URL, BotClient, BotReport
from bots.strategies import MIX, STRATEGY_NAMES, make_strategy
from protocol import BotMode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bots", description=__doc__)
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
    return parser


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
    async with aiohttp.ClientSession() as session:
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
        f"errors {sum(len(r.errors) for r in reports)}"
        f"  violations {sum(len(r.violations) for r in reports)}",
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        reports = asyncio.run(play(args))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"error: {exc!r}", file=sys.stderr)
        return 1
    print(summarize(reports, time.perf_counter() - started))
    return 1 if any(r.errors or r.violations for r in reports) else 0

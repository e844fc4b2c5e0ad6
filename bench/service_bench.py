"""What a match costs the game itself: ``GameService`` driven in-process, no sockets.

The paced scenario of ``bench/bench.py`` measures a whole server process, and on this
machine one figure moves by a quarter between minutes. This driver leaves the network out
and measures what the game does per match on the event loop: decoding the clients'
frames, the rules, the matchmaker, ratings, encoding every message a real connection
would send, metrics, the info log line (to ``/dev/null`` through the server's own log
set-up) and handing the match to storage (a SQLite file, its writer thread included in
the CPU figure). The bots are the load generator's: hello, join with ``bot: "never"``,
answer every ``start`` at once with a random hand, join again after the final result.

    .venv/bin/python bench/service_bench.py                 # 20,000 matches, 500 players
    .venv/bin/python bench/service_bench.py --store none    # without storage
    .venv/bin/python bench/service_bench.py --profile       # and cProfile's top functions

It prints µs of CPU per match for the process (all threads) and for the loop thread;
run it a few times, or in two trees alternately, and compare medians. Under
``valgrind --tool=callgrind`` it counts instructions instead (``--matches 2000``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from game_server.core.match import MatchRules  # noqa: E402
from game_server.core.ports import NullStore, PlayerStore, Storage  # noqa: E402
from game_server.core.service import GameService, ServiceConfig  # noqa: E402
from game_server.core.sessions import Session  # noqa: E402
from game_server.ops.logs import close_logging, configure_logging  # noqa: E402
from game_server.ops.metrics import PrometheusObserver  # noqa: E402
from protocol import Result, ServerMessage, Start, encode  # noqa: E402

HELLO = b'{"type":"hello"}'
JOIN = b'{"type":"join","bot":"never"}'
HANDS = ("rock", "paper", "scissors")


class BotOutlet:
    """A lean bot behind a fake connection: every message is encoded as a real
    ``Connection`` encodes it; what the bot answers is queued for the driver, never sent
    from inside the service's call."""

    __slots__ = ("bytes_out", "matches", "replies", "rng", "session")

    def __init__(self, replies: list[tuple[BotOutlet, bytes]], rng: random.Random) -> None:
        self.session: Session | None = None
        self.replies = replies
        self.rng = rng
        self.bytes_out = 0
        self.matches = 0

    def send(self, message: ServerMessage) -> None:
        self.bytes_out += len(encode(message))
        if type(message) is Start:
            choice = orjson.dumps(
                {
                    "type": "choice",
                    "match_id": message.match_id,
                    "round": message.round,
                    "choice": self.rng.choice(HANDS),
                }
            )
            self.replies.append((self, choice))
        elif type(message) is Result and message.match_over:
            self.matches += 1
            self.replies.append((self, JOIN))

    def send_encoded(self, data: bytes) -> None:
        self.bytes_out += len(data)

    def close(self, code: int, reason: str) -> None:
        raise RuntimeError(f"the service closed a bench bot: {code} {reason}")


def thread_cpu() -> float:
    return time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)


async def drive(args: argparse.Namespace, store: PlayerStore) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    config = ServiceConfig(
        rules=MatchRules(round_pause=0.0),
        bot_think=(0.0, 0.0),
        guest_rate=None,
        flood_rate=1e9,
        flood_burst=1e9,
    )
    service = GameService(
        config, loop.time, observer=PrometheusObserver(), store=store, rng=random.Random(1)
    )
    rng = random.Random(args.seed)
    replies: list[tuple[BotOutlet, bytes]] = []
    bots = [BotOutlet(replies, rng) for _ in range(args.players)]
    for bot in bots:
        bot.session = service.connect(bot, address="127.0.0.1")
        service.receive(bot.session, HELLO)
    await asyncio.sleep(0.1)  # hellos answered (a guest needs no storage, but be sure)
    for bot in bots:
        assert bot.session is not None
        service.receive(bot.session, JOIN)

    def finished() -> int:
        return sum(bot.matches for bot in bots) // 2

    async def play(until: int) -> None:
        turns = 0
        while finished() < until:
            pending, replies[:] = replies[:], []
            for bot, data in pending:
                assert bot.session is not None
                service.receive(bot.session, data)
            service.tick()
            turns += 1
            if not pending or turns % 8 == 0:
                # Let the loop run what it has (storage's hand-over timer among them).
                await asyncio.sleep(0)

    await play(args.warmup)
    profiler = cProfile.Profile() if args.profile else None
    start_matches = finished()
    process_before, loop_before, wall_before = (
        time.process_time(),
        thread_cpu(),
        time.perf_counter(),
    )
    if profiler is not None:
        profiler.enable()
    await play(start_matches + args.matches)
    if profiler is not None:
        profiler.disable()
    committed = getattr(store, "committed", None)
    if committed is not None:
        await committed()  # the writer thread's share is counted too
    played = finished() - start_matches
    result = {
        "matches": played,
        "process_us_per_match": round((time.process_time() - process_before) * 1e6 / played, 1),
        "loop_us_per_match": round((thread_cpu() - loop_before) * 1e6 / played, 1),
        "wall_s": round(time.perf_counter() - wall_before, 2),
    }
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.__stdout__)
        stats.sort_stats(args.profile_sort).print_stats(args.profile_top)
    return result


async def run_once(args: argparse.Namespace) -> dict[str, Any]:
    if args.store == "none":
        return await drive(args, NullStore())
    from game_server.store.sqlite import SqliteStore

    with tempfile.TemporaryDirectory(prefix="rps-service-bench-") as state:
        store: Storage = await asyncio.to_thread(SqliteStore, os.path.join(state, "bench.db"))
        try:
            return await drive(args, store)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=500)
    parser.add_argument("--matches", type=int, default=20_000, help="matches measured")
    parser.add_argument("--warmup", type=int, default=2_000, help="matches played first")
    parser.add_argument("--runs", type=int, default=3, help="runs, each in a fresh service")
    parser.add_argument("--store", choices=["sqlite", "none"], default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile the measured part")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--profile-sort", default="tottime", help="tottime or cumulative")
    args = parser.parse_args()
    # The server's own log set-up at its default level, written where nobody reads.
    sys.stderr.flush()
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    configure_logging("json", "info")
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runs = [runner(run_once(args)) for _ in range(args.runs)]
    close_logging()
    summary = {
        "players": args.players,
        "store": args.store,
        "runs": runs,
        "median_process_us_per_match": statistics.median(r["process_us_per_match"] for r in runs),
        "median_loop_us_per_match": statistics.median(r["loop_us_per_match"] for r in runs),
    }
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()

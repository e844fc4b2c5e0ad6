"""What matchmaking by rating costs with 1,000 and 10,000 players waiting. Prints a table.

    .venv/bin/python bench/matchmaker_bench.py                  # ~10 s
    .venv/bin/python bench/matchmaker_bench.py --waiting 1000 10000 100000 --ops 5000

A queue of ``--waiting`` players who do not fit each other (ratings 250 points apart,
windows 100 wide: the worst case for a queue, everyone waiting), then, timed:

1. join, paired: a player joins beside a waiting one and is paired with it at once (the
   partner joins again afterwards, untimed, so the queue keeps its length);
2. join, waits: a player joins between two waiting ones, fits neither, and waits (then
   leaves, untimed);
3. probe: a waiting player's window reached the next rating (``tick``): it looks for a
   fit in its window and waits on;
4. the same first two on the Redis queue's ``PAIR`` script (``cluster/queue.py``), one
   call at a time from one client (round trips included), when redis-server is installed.

Each figure is the median per operation of ``--repeats`` runs of ``--ops`` operations.
A queue that scanned its waiting players would cost ten times more at 10,000 than at
1,000; the sorted queue costs about the same.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the real redis-server starter lives in tests/support

from game_server.core.matchmaker import WIDEN, WINDOW, InMemoryMatchmaker  # noqa: E402
from protocol import BotMode  # noqa: E402

SPACING = 250.0  # rating points between waiting players: nobody fits a new window
T0 = 1000.0


def full_queue(waiting: int) -> InMemoryMatchmaker:
    queue = InMemoryMatchmaker(bot_after=1e9)
    for n in range(waiting):
        queue.join(f"w{n}", BotMode.NEVER, T0, rating=n * SPACING)
    return queue


def timed(ops: int, step: Callable[[int], None], repeats: int) -> float:
    """Median microseconds per call of ``step(i)`` over ``repeats`` runs of ``ops``."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(ops):
            step(i)
        runs.append((time.perf_counter() - started) / ops * 1e6)
    return statistics.median(runs)


def in_memory(waiting: int, ops: int, repeats: int) -> dict[str, float]:
    queue = full_queue(waiting)
    rng = random.Random(waiting)
    picks = [rng.randrange(waiting) for _ in range(ops)]
    untimed: list[Callable[[], object]] = []

    def join_paired(i: int) -> None:
        n = picks[i]
        pairings = queue.join(f"j{i}", BotMode.NEVER, T0, rating=n * SPACING + 10)
        assert pairings[0].first == f"w{n}", pairings
        untimed.append(lambda: queue.join(f"w{n}", BotMode.NEVER, T0, rating=n * SPACING))

    def join_waits(i: int) -> None:
        n = picks[i]
        assert queue.join(f"j{i}", BotMode.NEVER, T0, rating=n * SPACING + 125) == []
        untimed.append(lambda: queue.leave(f"j{i}"))

    results = {}
    for name, step in (("join, paired", join_paired), ("join, waits", join_waits)):
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            for i in range(ops):
                step(i)
                elapsed = time.perf_counter()
                untimed.pop()()
                started += time.perf_counter() - elapsed  # the undo is not the cost
            runs.append((time.perf_counter() - started) / ops * 1e6)
        results[name] = statistics.median(runs)
    # A probe: a player's window has widened (to 200 points, short of its neighbours).
    probe_at = T0 + 2.0
    tickets = [queue._tickets[f"w{n}"] for n in picks]  # a bench may reach in

    def probe(i: int) -> None:
        ticket = tickets[i]
        partner, beyond = queue._closest(ticket, queue._window_of(ticket, probe_at), probe_at)
        assert partner is None
        assert beyond is not None

    results["probe"] = timed(ops, probe, repeats)
    return results


def on_redis(waiting: int, ops: int, repeats: int) -> dict[str, float] | None:
    if shutil.which("redis-server") is None:
        return None
    import redis

    from game_server.cluster.keys import Keys
    from game_server.cluster.queue import LEAVE, PAIR
    from tests.support.redis import start_redis

    results: dict[str, float] = {}
    servers = start_redis()
    server = next(servers)  # stopped when the generator is closed (below)
    try:
        client = redis.Redis.from_url(server.url)
        keys = Keys(f"bench{waiting}:")
        client.set(keys.node("n0"), "alive")
        lua = client.register_script(PAIR)
        leave = client.register_script(LEAVE)
        queue_keys = [keys.queue("native"), keys.tickets("native"), keys.queue_seq("native")]

        def pair(player: str, rating: float, now: float = T0) -> list[bytes]:
            args = [player, "n0", "never", keys.node_prefix, "", repr(rating), "",
                    repr(WINDOW), repr(WIDEN), "join", repr(now)]  # fmt: skip
            reply: list[bytes] = lua(keys=queue_keys, args=args)
            return reply

        pipe = client.pipeline(transaction=False)
        for n in range(waiting):
            args = [f"w{n}", "n0", "never", keys.node_prefix, "", repr(n * SPACING), "",
                    repr(WINDOW), repr(WIDEN), "restore", repr(T0)]  # fmt: skip
            lua(keys=queue_keys, args=args, client=pipe)
        pipe.execute()
        rng = random.Random(waiting)
        picks = [rng.randrange(waiting) for _ in range(ops)]
        for name, offset, undo in (
            ("join, paired", 10.0, "rejoin"),
            ("join, waits", 125.0, "leave"),
        ):
            runs = []
            for _ in range(repeats):
                spent = 0.0
                for i in range(ops):
                    n = picks[i]
                    started = time.perf_counter()
                    reply = pair(f"j{i}", n * SPACING + offset)
                    spent += time.perf_counter() - started
                    if undo == "rejoin":
                        assert reply[0] == b"paired", reply
                        args = [f"w{n}", "n0", "never", keys.node_prefix, "",
                                repr(n * SPACING), "", repr(WINDOW), repr(WIDEN), "restore",
                                repr(T0)]  # fmt: skip
                        lua(keys=queue_keys, args=args)
                    else:
                        assert reply[0] == b"queued", reply
                        leave(keys=queue_keys[:2], args=[f"j{i}"])
                runs.append(spent / ops * 1e6)
            results[name] = statistics.median(runs)
        assert client.zcard(keys.queue("native")) == waiting
        client.close()
    finally:
        for _ in servers:  # runs the starter's clean-up
            pass
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--ops", type=int, default=2000, help="timed operations per run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"matchmaker cost, median us per operation ({args.ops} ops, {args.repeats} runs)")
    print(f"{'waiting':>9}  {'operation':<14}{'in memory':>11}{'Redis PAIR':>12}")
    for waiting in args.waiting:
        memory = in_memory(waiting, args.ops, args.repeats)
        shared = on_redis(waiting, args.ops, args.repeats)
        for name, cost in memory.items():
            remote = "-" if shared is None or name not in shared else f"{shared[name]:.1f}"
            print(f"{waiting:>9,}  {name:<14}{cost:>11.2f}{remote:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

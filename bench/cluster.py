"""What several processes on Redis cost, against one process on its own. Prints a table.

    .venv/bin/python bench/cluster.py             # every scenario, ~3 minutes
    .venv/bin/python bench/cluster.py --quick     # shorter windows
    .venv/bin/python bench/cluster.py --only alone,1   # Redis + the database's cost alone

Scenarios, each with 500 bots offering 400 matches a second (paced joins, as
``bench/bench.py``'s paced run), spread evenly over the nodes, so that with two nodes
about half the matches cross nodes and with three about two thirds:

1. one process on its own (the in-memory queue, its own SQLite file): as it always ran;
2. one process on Redis and the shared database;
3. two processes on Redis and the shared database;
4. three processes on Redis and the shared database.

The shared database is PostgreSQL when the server can use it (``--db postgresql://``) and
PostgreSQL's programs are here (and ``--sqlite`` is not given); otherwise one SQLite file
(said in the output). Reported
per scenario: matches/s, choice->result p50/p99, and the CPU of every server-side process
together (the nodes, redis-server, PostgreSQL's processes) over the measured window, as
CPU seconds per 1,000 matches and as cores kept busy. The load generators' own CPU is
apart.

Then the takeover: three nodes with checking bots (the soak's clients, think time
0.1-0.5 s); one node is killed with SIGKILL; the run reports how long after the kill the
survivors took its matches over (from their logs), and whether every match that started
ended with a final result on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the real Redis and PostgreSQL starters live in tests/support

from bench import CLOCK_TICKS, LOADGEN, PYTHON, free_port, merge  # noqa: E402
from bots.soak import SoakConfig, run_soak  # noqa: E402
from game_server.cli.command import server_command  # noqa: E402
from tests.support.redis import RedisServer, start_redis  # noqa: E402

SECRET = "the benchmark cluster's token secret"
# The paced scenarios: their key for --only, their name, the processes, whether on Redis.
SCENARIOS = {
    "alone": ("1 process, on its own", 1, False),
    "1": ("1 process, Redis + db", 1, True),
    "2": ("2 processes, Redis + db", 2, True),
    "3": ("3 processes, Redis + db", 3, True),
}
TTL = 3.0  # --node-ttl in the takeover run


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """A process and all its descendants (PostgreSQL forks a backend per connection)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, IndexError, ValueError):
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                parents[int(entry.name)] = int(stat[1])
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in family:
                family.add(child)
                frontier.append(child)
    return sorted(family)


def cpu_of(pids: list[int]) -> float:
    return sum(process_cpu(pid) for pid in pids)


class Database:
    """The shared database of a scenario: PostgreSQL if the server has it, else SQLite."""

    def __init__(self, directory: Path, *, use_postgres: bool = True) -> None:
        self.directory = directory
        self.postgres: Any = None
        self.kind = "sqlite"
        if not use_postgres:
            return
        try:
            importlib.import_module("game_server.store.postgres")
            postgres = importlib.import_module("tests.support.postgres")
        except ImportError:
            return
        try:
            self.postgres = postgres.start_postgres(directory / "pg")
        except Exception as exc:  # PostgreSQL's programs missing, or not startable here
            print(f"no PostgreSQL ({exc}): the nodes share one SQLite file", file=sys.stderr)
            return
        self.kind = "postgresql"
        self._databases = 0

    def url(self) -> str:
        """A fresh database for a scenario."""
        if self.postgres is None:
            path = self.directory / f"db{time.monotonic_ns()}.sqlite"
            return str(path)
        self._databases += 1
        return str(self.postgres.create_database(f"bench{self._databases}"))

    def pids(self) -> list[int]:
        return [] if self.postgres is None else children(self.postgres.process.pid)

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()


class Nodes:
    """``count`` server processes (with Redis when ``redis`` is given) on free ports."""

    def __init__(self, count: int, db: str, redis: RedisServer | None, *extra: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="rps-cluster-bench-"))
        self.ports = [free_port() for _ in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for index, port in enumerate(self.ports):
            cluster = () if redis is None else ("--redis", redis.url, "--node-id", f"n{index}")
            log = self.directory / f"n{index}.log"
            self.logs.append(log)
            command = server_command(
                "--port",
                str(port),
                "--round-pause",
                "0",
                "--bot-think",
                "0",
                "--rate-limit",
                "100000",
                # Every bot is a guest from 127.0.0.1: one address's guest meter (20 a
                # second after a burst of 200) would leave most of them without a hello.
                "--guest-rate",
                "0",
                "--db",
                db,
                "--token-secret",
                SECRET,
                *cluster,
                *extra,
                python=PYTHON,
            )
            self.processes.append(subprocess.Popen(command, cwd=ROOT, stderr=log.open("wb")))
        deadline = time.monotonic() + 30
        for port in self.ports:
            while True:
                try:
                    import socket

                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("a node did not start") from None
                    time.sleep(0.1)

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}/applet/websocket" for port in self.ports]

    def events(self, index: int) -> Iterator[dict[str, Any]]:
        for line in self.logs[index].read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                yield orjson.loads(line)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


async def paced(
    nodes: Nodes, groups: dict[str, list[int]], args: argparse.Namespace
) -> dict[str, Any]:
    """500 bots offering the target rate, spread over the nodes; server-side CPU over the
    window in which every load generator measured, in all and by ``groups`` (the nodes,
    redis-server, the database's processes)."""
    generators = max(2, len(nodes.urls))
    reports_dir = Path(tempfile.mkdtemp(prefix="rps-cluster-bench-"))
    procs = [
        await asyncio.create_subprocess_exec(
            PYTHON,
            LOADGEN,
            "--url",
            nodes.urls[i % len(nodes.urls)],
            "--mode",
            "play",
            "--clients",
            str(args.clients // generators),
            "--duration",
            str(args.window),
            "--warmup",
            str(args.warmup),
            "--seed",
            str(i),
            "--match-rate",
            str(args.rate / generators),
            "--report",
            str(reports_dir / f"{i}.json"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        for i in range(generators)
    ]
    for proc in procs:
        assert proc.stdout is not None
        await proc.stdout.readline()  # {"window": "start"}
    before, started = {g: cpu_of(p) for g, p in groups.items()}, time.monotonic()
    ends = [asyncio.ensure_future(_readline(proc)) for proc in procs]
    await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    after, elapsed = {g: cpu_of(p) for g, p in groups.items()}, time.monotonic() - started
    await asyncio.gather(*ends)
    for proc in procs:
        await proc.communicate()
    reports = [orjson.loads((reports_dir / f"{i}.json").read_bytes()) for i in range(generators)]
    shutil.rmtree(reports_dir)
    result = merge(reports)
    used = sum(after.values()) - sum(before.values())
    per_1000 = 1000 / max(result["matches_per_s"], 1e-9) / elapsed
    result["server_cores"] = round(used / elapsed, 3)
    result["cpu_s_per_1000_matches"] = round(used * per_1000, 3)
    result["cpu_s_per_1000_matches_by"] = {
        group: round((after[group] - before[group]) * per_1000, 3) for group in groups
    }
    return result


async def _readline(proc: asyncio.subprocess.Process) -> bytes:
    assert proc.stdout is not None
    return await proc.stdout.readline()


async def scenario(
    name: str, count: int, use_redis: bool, database: Database, args: argparse.Namespace
) -> dict[str, Any]:
    print(f"{name} ...", file=sys.stderr, flush=True)
    redis_iter = start_redis() if use_redis else None
    redis = next(redis_iter) if redis_iter is not None else None
    # The single process stores to a SQLite file of its own, as deployed; the cluster's
    # nodes share the database.
    db = database.url() if use_redis else str(database.directory / f"alone{count}.sqlite")
    nodes = Nodes(count, db, redis)
    try:
        await asyncio.sleep(1.0)  # every node has announced itself
        groups = {"nodes": [process.pid for process in nodes.processes]}
        if redis is not None:
            groups["redis"] = [redis.process.pid]
            groups["database"] = database.pids()
        result = await paced(nodes, groups, args)
        result["scenario"] = name
        result["database"] = database.kind if use_redis else "sqlite (its own)"
        return result
    finally:
        nodes.stop()
        if redis_iter is not None:
            with contextlib.suppress(StopIteration):
                next(redis_iter)


async def takeover(database: Database, args: argparse.Namespace) -> dict[str, Any]:
    print("takeover: three nodes, one killed mid-soak ...", file=sys.stderr, flush=True)
    redis_iter = start_redis()
    redis = next(redis_iter)
    nodes = Nodes(3, database.url(), redis, "--node-ttl", str(TTL), "--round-seconds", "3")
    try:
        await asyncio.sleep(1.0)
        soak = asyncio.create_task(
            run_soak(
                SoakConfig(
                    url=nodes.urls[0],
                    more_urls=tuple(nodes.urls[1:]),
                    clients=args.takeover_clients,
                    duration=args.takeover_seconds,
                    think=(0.1, 0.5),
                    max_reconnects=100,
                    seed=7,
                )
            )
        )
        await asyncio.sleep(args.takeover_seconds / 3)
        killed_at = time.time()
        nodes.processes[2].send_signal(signal.SIGKILL)
        summary = await soak
        taken = [
            event["timestamp"]
            for index in (0, 1)
            for event in nodes.events(index)
            if event.get("event") == "match_taken_over"
        ]
        from datetime import datetime

        seconds = sorted(
            datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() - killed_at for t in taken
        )
        return {
            "matches": summary.matches,
            "matches_taken_over": len(seconds),
            "takeover_s_first": round(seconds[0], 2) if seconds else None,
            "takeover_s_last": round(seconds[-1], 2) if seconds else None,
            "abandoned": summary.abandoned,
            "violations": summary.violations,
            "errors": summary.errors,
            "resumes": summary.resumes,
            "node_ttl_s": TTL,
        }
    finally:
        nodes.stop()
        with contextlib.suppress(StopIteration):
            next(redis_iter)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    database = Database(
        Path(tempfile.mkdtemp(prefix="rps-cluster-bench-db-")), use_postgres=not args.sqlite
    )
    try:
        rows = [
            await scenario(name, count, use_redis, database, args)
            for key, (name, count, use_redis) in SCENARIOS.items()
            if key in args.only
        ]
        return {
            "method": {
                "clients": args.clients,
                "offered_matches_per_s": args.rate,
                "window_s": args.window,
                "warmup_s": args.warmup,
                "database": database.kind,
            },
            "scenarios": rows,
            "takeover": await takeover(database, args) if "takeover" in args.only else None,
        }
    finally:
        database.stop()


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':<26} {'matches/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'server cores':>12} {'CPU s/1000 matches':>19}  nodes / redis / database"
    ]
    rows = results["scenarios"]
    alone = [row for row in rows if row["scenario"] == SCENARIOS["alone"][0]]
    base = alone[0]["cpu_s_per_1000_matches"] if alone else 0.0
    for row in rows:
        ratio = row["cpu_s_per_1000_matches"] / base if base else float("nan")
        lines.append(
            f"{row['scenario']:<26} {row['matches_per_s']:>9.0f} {row['p50_ms']:>7.2f} "
            f"{row['p99_ms']:>7.2f} {row['server_cores']:>12.2f} "
            f"{row['cpu_s_per_1000_matches']:>12.3f} (x{ratio:.2f})  "
            + " / ".join(f"{v:.3f}" for v in row["cpu_s_per_1000_matches_by"].values())
        )
    t = results["takeover"]
    if t is None:
        lines.append(f"database: {results['method']['database']}")
        return "\n".join(lines)
    lines.append(
        f"takeover (node TTL {t['node_ttl_s']} s): {t['matches_taken_over']} matches taken over"
        f" {t['takeover_s_first']}-{t['takeover_s_last']} s after the kill;"
        f" {t['matches']} matches, {t['abandoned']} abandoned, {t['violations']} violations,"
        f" {t['resumes']} resumes"
    )
    lines.append(f"database: {results['method']['database']}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short windows")
    parser.add_argument(
        "--sqlite",
        action="store_true",
        help="the nodes share one SQLite file instead of PostgreSQL (what Redis alone costs)",
    )
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=float, default=400.0, help="matches/s offered")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--takeover-clients", type=int, default=60)
    parser.add_argument("--takeover-seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "cluster.json")
    parser.add_argument(
        "--only",
        type=lambda text: [part.strip() for part in text.split(",")],
        default=[*SCENARIOS, "takeover"],
        help="the runs to make, comma-separated, of: "
        + ", ".join([*SCENARIOS, "takeover"])
        + " (all by default); x one process needs 'alone'. E.g. --only alone,1 for the"
        " cost of Redis + the database alone, in A/B runs against another tree",
    )
    args = parser.parse_args()
    unknown = set(args.only) - {*SCENARIOS, "takeover"}
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    if args.quick:
        args.window, args.warmup, args.takeover_seconds = 4.0, 2.0, 12.0
    return args


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode())
    print(report(outcome))
    print(f"\nJSON: {arguments.out}")

"""How close is one server process to the limit? Prints a table and writes JSON.

    .venv/bin/python bench/bench.py               # everything, ~7 minutes
    .venv/bin/python bench/bench.py --quick       # shorter windows, smaller capacity run

Each scenario starts the server under test as its own process (``python -m game_server``,
or the bare aiohttp echo server for the ceiling) on 127.0.0.1, then load-generator
processes (``bench/loadgen.py``) that split the clients between them, so the generator
is not the bottleneck where avoidable. Figures are measured over a window after warm-up:

1. throughput: 500 bots playing best-of-3 with think time 0 (closed loop: every client
   answers at once), matches/s, frames/s (client-side count, in + out) and the p99
   choice->result latency;
2. ceiling: the same clients and frame sizes against the echo server, measured in
   pairs with the game server (game then echo, echo then game, ...; ``--pairs``, 5 by
   default), so that drifts in this VM's speed (the echo ceiling alone has read 74k to
   125k frames/s on different runs) hit both sides; the ratio is the median of the pairs'
   ratios. Each side's CPU per frame is reported too (the server's loop thread, its other
   threads, the load generators), over the stretch in which every generator measured:
   with two shared cores, it shows where the frames per second went;
3. capacity: N idle players that said hello, the server's RSS, and the app-level ping
   round trip of 200 of them pinging once a second; then the RSS once they have all
   left, and again once the server has forgotten their guests (``--leave-wait``);
4. scaling: throughput at 100, 500 and 1000 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson

from game_server.cli.command import server_command
from game_server.core.players import GUEST_FORGET_AFTER

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LOADGEN = str(ROOT / "bench" / "loadgen.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGET_FRACTION = 0.8  # of the echo ceiling's frame rate (the target)


def _task_cpu(task: Path) -> float:
    """A thread's CPU seconds: from ``schedstat`` (nanoseconds: a short window at a low
    rate still reads true) where the kernel keeps it, else ``stat``'s clock ticks."""
    try:
        return int((task / "schedstat").read_text().split()[0]) / 1e9
    except (FileNotFoundError, IndexError, ValueError):
        # After the command name in parentheses: state, ..., utime and stime (ticks).
        fields = (task / "stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds so far of a process's main thread (where its event loop runs) and of
    all its other live threads together (the servers' threads live as long as they do)."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seconds = _task_cpu(task)
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        if task.name == str(pid):
            main += seconds
        else:
            other += seconds
    return main, other


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Server:
    """The process under test, listening on a fresh port of 127.0.0.1."""

    extra_args: ClassVar[list[str]] = []  # --server-arg, for experiments

    def __init__(self, kind: str) -> None:
        self.port = free_port()
        # Storage on, as in production, in a directory of its own that goes with the process.
        self.state = Path(tempfile.mkdtemp(prefix="rps-bench-"))
        self.url = f"ws://127.0.0.1:{self.port}/applet/websocket"
        if kind == "game":
            command = server_command(
                "--port",
                str(self.port),
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
                str(self.state / "rps.db"),
                *self.extra_args,
                python=PYTHON,
            )
        else:
            command = [PYTHON, str(ROOT / "bench" / "echo_server.py"), "--port", str(self.port)]
        # Its log at the default level (info), into a file as pm2 writes one.
        self.log = (self.state / "server.log").open("wb")
        self.process = subprocess.Popen(command, cwd=ROOT, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{kind} server did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.state, ignore_errors=True)


async def run_loadgens(
    url: str,
    mode: str,
    clients: int,
    processes: int,
    duration: float,
    warmup: float,
    *,
    pingers: int = 0,
    on_connected: Any = None,
    match_rate: float = 0.0,
    server_pid: int,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Runs the generators to the end; returns their reports and how many cores the
    server's loop thread and its other threads kept busy while every generator measured."""
    share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    reports_dir = Path(tempfile.mkdtemp(prefix="rps-bench-"))
    procs = [
        await asyncio.create_subprocess_exec(
            PYTHON,
            LOADGEN,
            "--url",
            url,
            "--mode",
            mode,
            "--clients",
            str(n),
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
            "--seed",
            str(i),
            "--pingers",
            str(pingers // processes),
            "--match-rate",
            str(match_rate / processes),
            "--report",
            str(reports_dir / f"{i}.json"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        for i, n in enumerate(share)
    ]
    if mode == "idle":
        connected = 0
        for proc in procs:
            assert proc.stdout is not None
            connected += orjson.loads(await proc.stdout.readline())["connected"]
        if on_connected is not None:
            await on_connected(connected)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
    await asyncio.gather(*(window_mark(proc, "start") for proc in procs))
    before, started = thread_cpu(server_pid), time.monotonic()
    ends = [asyncio.ensure_future(window_mark(proc, "end")) for proc in procs]
    await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)  # inside every window
    after, elapsed = thread_cpu(server_pid), time.monotonic() - started
    await asyncio.gather(*ends)
    for proc in procs:
        await proc.communicate()
    reports = [orjson.loads((reports_dir / f"{i}.json").read_bytes()) for i in range(processes)]
    shutil.rmtree(reports_dir)
    server_cores = {
        "server_loop": (after[0] - before[0]) / elapsed,
        "server_other_threads": (after[1] - before[1]) / elapsed,
    }
    return reports, server_cores


async def window_mark(proc: asyncio.subprocess.Process, mark: str) -> None:
    """Wait for a generator's line saying its measured window has reached ``mark``."""
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if orjson.loads(line or b"null") != {"window": mark}:
        raise RuntimeError(f"a load generator said {line!r} instead of its window's {mark}")


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = statistics.mean(r["seconds"] for r in reports)
    latencies = [x for r in reports for x in r["latencies"]]
    errors: dict[str, int] = {}
    for report in reports:
        for code, count in report["errors"].items():
            errors[code] = errors.get(code, 0) + count
    return {
        "clients": sum(r["clients"] for r in reports),
        "seconds": round(seconds, 2),
        # Every match is counted by both of its players.
        "matches_per_s": round(sum(r["matches"] for r in reports) / 2 / seconds, 1),
        "frames_per_s": round(sum(r["sent"] + r["received"] for r in reports) / seconds),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
        "samples": len(latencies),
        "errors": errors,
        "failed": sum(r["failed"] for r in reports),
        "loadgen_cores": sum(r["cpu_seconds"] for r in reports) / seconds,
    }


async def throughput(
    kind: str,
    clients: int,
    args: argparse.Namespace,
    match_rate: float = 0.0,
    *,
    legacy: bool = False,
) -> dict[str, Any]:
    server = Server(kind)
    try:
        mode = "legacy" if legacy else "play" if kind == "game" else "echo"
        # The URL the 2016 demo's page builds (protocol/LEGACY.md).
        url = server.url + "/socket.io//?EIO=3&transport=websocket" if legacy else server.url
        reports, server_cores = await run_loadgens(
            url,
            mode,
            clients,
            args.processes,
            args.window,
            args.warmup,
            match_rate=match_rate,
            server_pid=server.process.pid,
        )
        result = merge(reports)
        result["server_rss_mib"] = round(rss_mib(server.process.pid), 1)
        # Where the CPU went: on two shared cores, every microsecond the load generators
        # or the server's storage threads spend per frame is one its loop can not.
        cores = {**server_cores, "loadgens": result.pop("loadgen_cores")}
        result["cores_busy"] = {name: round(value, 3) for name, value in cores.items()}
        # The server's CPU (all its threads) per 1,000 matches: at a paced rate, what a match
        # costs rather than how fast a saturated loop goes.
        server_cores_busy = server_cores["server_loop"] + server_cores["server_other_threads"]
        result["server_cpu_s_per_1000_matches"] = (
            round(server_cores_busy * 1000 / result["matches_per_s"], 3)
            if result["matches_per_s"]
            else None
        )
        result["cpu_us_per_frame"] = {
            name: round(value * 1e6 / max(1, result["frames_per_s"]), 2)
            for name, value in cores.items()
        }
        return result
    finally:
        server.stop()


async def remembered(port: int) -> int:
    """Players the server still remembers (``rps_players_remembered`` on /metrics)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    body = await reader.read()
    writer.close()
    for line in body.decode().splitlines():
        if line.startswith("rps_players_remembered "):
            return int(float(line.split()[1]))
    raise RuntimeError("no rps_players_remembered on /metrics")


async def capacity(clients: int, args: argparse.Namespace) -> dict[str, Any]:
    server = Server("game")
    measured: dict[str, Any] = {}

    async def connected(count: int) -> None:
        measured["connected"] = count
        await asyncio.sleep(2)
        measured["rss_mib_idle"] = round(rss_mib(server.process.pid), 1)

    try:
        processes = max(args.processes, -(-clients // 6000))  # each stays well under ulimit -n
        reports, _ = await run_loadgens(
            server.url,
            "idle",
            clients,
            processes,
            args.window,
            1.0,
            pingers=200,
            on_connected=connected,
            server_pid=server.process.pid,
        )
        result = merge(reports)
        measured["rss_mib_pinging"] = round(rss_mib(server.process.pid), 1)
        # The generators have exited, so every socket is closed: what stays? Their guests
        # are remembered for GUEST_FORGET_AFTER (a dropped socket may come back), then
        # forgotten; whatever RSS stays after that is the allocator's or a leak.
        left = time.monotonic()
        await asyncio.sleep(3)
        measured["rss_mib_left"] = round(rss_mib(server.process.pid), 1)
        measured["remembered_left"] = await remembered(server.port)
        if args.leave_wait > 3:
            await asyncio.sleep(args.leave_wait - (time.monotonic() - left))
            measured["rss_mib_forgotten"] = round(rss_mib(server.process.pid), 1)
            measured["remembered_forgotten"] = await remembered(server.port)
        return {
            "clients": clients,
            **measured,
            "kib_per_player": round(measured["rss_mib_idle"] * 1024 / max(1, clients), 1),
            "ping_p50_ms": result["p50_ms"],
            "ping_p99_ms": result["p99_ms"],
            "ping_max_ms": result["max_ms"],
            "ping_samples": result["samples"],
            "failed": result["failed"],
        }
    finally:
        server.stop()


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "method": {
            "window_s": args.window,
            "warmup_s": args.warmup,
            "loadgen_processes": args.processes,
        },
    }
    scaling = {}
    if args.only == "capacity":
        results["capacity"] = await capacity(args.idle, args)
        return results
    if args.only == "legacy":
        results["legacy"] = await legacy_run(args)
        return results
    if args.only == "paced":
        results["paced"] = await throughput("game", 500, args, match_rate=args.target_rate)
        return results
    for clients in args.scaling:
        print(f"throughput: {clients} clients ...", file=sys.stderr, flush=True)
        scaling[str(clients)] = await throughput("game", clients, args)
    results["scaling"] = scaling
    print(
        f"paced: 500 clients offering {args.target_rate:g} matches/s ...",
        file=sys.stderr,
        flush=True,
    )
    results["paced"] = await throughput("game", 500, args, match_rate=args.target_rate)
    pairs = []
    for n in range(args.pairs):
        # Game first, then echo first, and so on: a drift in the VM's speed across a pair
        # favours neither side over the run.
        order = ("game", "echo") if n % 2 == 0 else ("echo", "game")
        print(
            f"ceiling: pair {n + 1}: {order[0]} then {order[1]}, 500 clients ...",
            file=sys.stderr,
            flush=True,
        )
        measured = {kind: await throughput(kind, 500, args) for kind in order}
        game, echo = measured["game"], measured["echo"]
        pairs.append(
            {"game": game, "echo": echo, "ratio": game["frames_per_s"] / echo["frames_per_s"]}
        )
    middle = sorted(pairs, key=lambda pair: pair["ratio"])[len(pairs) // 2]
    results["ceiling_pairs"] = pairs
    results["throughput"] = middle["game"]  # the pair with the median ratio
    results["ceiling"] = middle["echo"]
    results["fraction_of_ceiling"] = round(middle["ratio"], 3)
    results["legacy"] = await legacy_run(args)
    print(f"capacity: {args.idle} idle players ...", file=sys.stderr, flush=True)
    results["capacity"] = await capacity(args.idle, args)
    return results


async def legacy_run(args: argparse.Namespace) -> dict[str, Any]:
    """The 2016 demo's game at scale: ``--legacy-clients`` players on its Socket.IO
    dialect, one 3-second round a game, a choice at a random moment, joining again at
    once (about 500 games a second from 3,000 players)."""
    print(
        f"legacy: {args.legacy_clients} demo clients on the Socket.IO dialect ...",
        file=sys.stderr,
        flush=True,
    )
    # A game lasts its 3 s: the window must hold whole games, whatever --window says.
    windowed = argparse.Namespace(
        **{**vars(args), "window": max(args.window, 4.0), "warmup": max(args.warmup, 3.5)}
    )
    return await throughput("game", args.legacy_clients, windowed, legacy=True)


def cpu_split(result: dict[str, Any]) -> str:
    us, busy = result["cpu_us_per_frame"], result["cores_busy"]
    return (
        f"loop {us['server_loop']:.1f} µs + other threads {us['server_other_threads']:.1f} µs, "
        f"its load generators {us['loadgens']:.1f} µs ({sum(busy.values()):.2f} cores busy)"
    )


def report(results: dict[str, Any]) -> str:
    rows = [("clients", "matches/s", "frames/s", "p50 ms", "p99 ms", "max ms", "errors")]
    for clients, r in results["scaling"].items():
        rows.append(
            (
                str(clients),
                f"{r['matches_per_s']:.0f}",
                f"{r['frames_per_s']:,}",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{r['max_ms']:.1f}",
                str(sum(r["errors"].values()) + r["failed"]),
            )
        )
    ceiling = results["ceiling"]
    pairs = " ".join(
        f"{pair['game']['frames_per_s']:,}/{pair['echo']['frames_per_s']:,}={pair['ratio']:.2f}"
        for pair in results["ceiling_pairs"]
    )
    capacity = results["capacity"]
    paced = results["paced"]
    legacy = results["legacy"]
    game, echo = results["throughput"], ceiling
    # The game's CPU per frame, at the frame rate the ceiling target asks for.
    wanted = TARGET_FRACTION * echo["frames_per_s"]
    cores_needed = wanted * sum(game["cpu_us_per_frame"].values()) / 1e6
    loop_needed = wanted * game["cpu_us_per_frame"]["server_loop"] / 1e6
    return "\n".join(
        [
            "throughput (best-of-3, think 0, closed loop)",
            table(rows),
            "",
            f"paced, 500 clients: {paced['matches_per_s']:.0f} matches/s, choice->result p50 "
            f"{paced['p50_ms']} ms, p99 {paced['p99_ms']} ms, max {paced['max_ms']} ms; "
            f"server CPU {paced['server_cpu_s_per_1000_matches']} s per 1,000 matches "
            "(all threads)",
            f"echo ceiling, 500 clients: {ceiling['frames_per_s']:,} frames/s; game server "
            f"{results['throughput']['frames_per_s']:,} frames/s = "
            f"{results['fraction_of_ceiling']:.2f} of the ceiling (median of the alternating "
            f"pairs, game/echo frames/s: {pairs}; game p99 "
            f"{results['throughput']['p99_ms']} ms)",
            f"CPU per frame in that pair: game server {cpu_split(game)}; "
            f"echo server {cpu_split(echo)}",
            f"at {TARGET_FRACTION} of the ceiling ({wanted:,.0f} frames/s) the game's CPU per "
            f"frame would keep {cores_needed:.2f} cores busy (its loop thread alone "
            f"{loop_needed:.2f}) on a machine of {os.cpu_count()}",
            f"legacy, {legacy['clients']:,} demo clients: {legacy['matches_per_s']:.0f} games/s, "
            f"server CPU {legacy['server_cpu_s_per_1000_matches']} s per 1,000 games (all "
            f"threads), {sum(legacy['errors'].values()) + legacy['failed']} errors",
            f"capacity: {capacity['connected']:,} idle players, RSS {capacity['rss_mib_idle']} MiB "
            f"({capacity['kib_per_player']} KiB each); ping p50 {capacity['ping_p50_ms']} ms, "
            f"p99 {capacity['ping_p99_ms']} ms, max {capacity['ping_max_ms']} ms",
            f"after they left: RSS {left_figures(capacity)}",
        ]
    )


def left_figures(capacity: dict[str, Any]) -> str:
    text = (
        f"{capacity['rss_mib_left']} MiB 3 s later ({capacity['remembered_left']:,} players "
        "remembered)"
    )
    if "rss_mib_forgotten" in capacity:
        text += (
            f", {capacity['rss_mib_forgotten']} MiB once their guests were forgotten "
            f"({capacity['remembered_forgotten']:,} remembered)"
        )
    return text


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short windows, 5000 idle")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--idle", type=int, default=15000, help="idle players for capacity")
    parser.add_argument(
        "--only",
        choices=["capacity", "legacy", "paced"],
        help="run one scenario only (prints JSON)",
    )
    parser.add_argument(
        "--legacy-clients", type=int, default=3000, help="demo clients in the legacy run"
    )
    parser.add_argument(
        "--leave-wait",
        type=float,
        default=GUEST_FORGET_AFTER + 5,
        help="seconds after the idle players left to measure RSS again (their guests are "
        f"forgotten after {GUEST_FORGET_AFTER:g} s; 3 or less: only the 3 s figure)",
    )
    parser.add_argument(
        "--target-rate", type=float, default=400.0, help="matches/s offered in the paced run"
    )
    parser.add_argument("--scaling", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument(
        "--pairs", type=int, default=5, help="alternating game/echo runs for the ceiling ratio"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "latest.json")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra game server option (repeat)"
    )
    args = parser.parse_args()
    Server.extra_args = args.server_arg
    if args.quick:
        args.window, args.warmup, args.idle = 4.0, 2.0, min(args.idle, 5000)
        args.pairs = min(args.pairs, 1)
        args.leave_wait = min(args.leave_wait, 3.0)
    return args


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode())
    print(report(outcome) if "scaling" in outcome else orjson.dumps(outcome).decode())
    print(f"\nJSON: {arguments.out}")

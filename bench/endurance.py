"""Endurance: a long bot-vs-bot soak against one server process, watching its memory.

    .venv/bin/python bench/endurance.py                        # 10 minutes, 500 clients
    .venv/bin/python bench/endurance.py --duration 60 --clients 100

Starts the server (``python -m game_server``) on 127.0.0.1, runs ``python -m bots soak``
against it in a separate process, samples the server's RSS every ``--sample`` seconds and
prints the soak's summary with the RSS series, the storage backlog (writes waiting for
the writer thread) and the log lines lost, both from ``/healthz``. The server logs at info
into a file. Passes (exit 0) when the soak reports no violation or error, RSS after
warm-up stays within ``--rss-tolerance`` MiB of its post-warm-up level, the backlog ends
below ``--backlog-limit`` (the writer keeps up) and no log line was lost (the log thread
keeps up). Writes JSON to ``bench-results/endurance.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import PYTHON, ROOT, Server, rss_mib


def health(server: Server) -> tuple[int, int]:
    """Writes waiting for the storage thread and log lines lost, as /healthz reports them
    (-1 each if unreadable)."""
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = orjson.loads(answer.read())
        return int(body["store_backlog"]), int(body["log_lines_lost"])
    except (OSError, ValueError, KeyError):
        return -1, -1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--sample", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS counts")
    parser.add_argument("--rss-tolerance", type=float, default=10.0, help="MiB")
    parser.add_argument(
        "--backlog-limit", type=int, default=5000, help="storage writes waiting at the end"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "endurance.json")
    args = parser.parse_args()

    server = Server("game")
    samples: list[tuple[float, float]] = []
    backlog: list[tuple[float, int]] = []
    lines_lost = -1
    try:
        soak = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "bots",
                "soak",
                "--url",
                server.url,
                "--clients",
                str(args.clients),
                "--duration",
                str(args.duration),
                "--opponents",
                "mix",
                "--json",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        started = time.monotonic()
        while soak.poll() is None:
            at = round(time.monotonic() - started, 1)
            samples.append((at, rss_mib(server.process.pid)))
            waiting, lines_lost = health(server)
            backlog.append((at, waiting))
            with contextlib.suppress(subprocess.TimeoutExpired):
                soak.wait(args.sample)
        assert soak.stdout is not None
        summary: dict[str, Any] = orjson.loads(soak.stdout.read().splitlines()[-1])
        log_bytes = (server.state / "server.log").stat().st_size
    finally:
        server.stop()

    after = [rss for at, rss in samples if at >= min(args.warmup, args.duration / 2)]
    baseline = after[0] if after else float("nan")
    growth = max(after) - baseline if after else float("nan")
    result = {
        "clients": args.clients,
        "duration_s": args.duration,
        "soak": summary,
        "rss_mib": samples,
        "rss_after_warmup_mib": baseline,
        "rss_growth_mib": round(growth, 1),
        "store_backlog": backlog,
        "log_lines_lost": lines_lost,
        "log_bytes": log_bytes,
        "soak_exit": soak.returncode,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(f"soak exit {soak.returncode}: {orjson.dumps(summary).decode()[:600]}")
    print("RSS MiB:", " ".join(f"{rss:.0f}" for _, rss in samples))
    print("store backlog:", " ".join(str(waiting) for _, waiting in backlog))
    print(f"server log: {log_bytes / 2**20:.1f} MiB written, {lines_lost} lines lost")
    print(f"RSS after warm-up {baseline:.1f} MiB, growth {growth:.1f} MiB; JSON: {args.out}")
    last_backlog = backlog[-1][1] if backlog else 0
    healthy = (
        soak.returncode == 0
        and growth <= args.rss_tolerance
        and 0 <= last_backlog < args.backlog_limit
        and lines_lost == 0
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())

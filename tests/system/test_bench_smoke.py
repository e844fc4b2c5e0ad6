"""The benchmark scripts run end to end at toy scale (figures sanity-checked, not judged)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import orjson

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "bench" / "bench.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One of the bench scripts, as a user runs it from the project's root."""
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def burn(seconds: float) -> None:
    end = time.process_time() + seconds  # this process's CPU, whichever thread burns it
    while time.process_time() < end:
        pass


def test_bench_runs_every_scenario_at_toy_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_script(
        "bench/bench.py",
        "--window",
        "1",
        "--warmup",
        "0.5",
        "--scaling",
        "20",
        "--idle",
        "100",
        "--legacy-clients",
        "40",
        "--leave-wait",
        "4",
        "--target-rate",
        "5",
        "--pairs",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "of the ceiling" in result.stdout
    assert "CPU per frame in that pair: game server loop" in result.stdout
    figures = orjson.loads(out.read_text())
    assert figures["scaling"]["20"]["matches_per_s"] > 0
    assert figures["scaling"]["20"]["errors"] == {}
    assert figures["paced"]["matches_per_s"] > 0
    assert figures["paced"]["server_cpu_s_per_1000_matches"] > 0
    assert "s per 1,000 matches (all threads)" in result.stdout
    assert figures["ceiling"]["frames_per_s"] > 0
    assert len(figures["ceiling_pairs"]) == 2
    assert figures["fraction_of_ceiling"] in {
        round(pair["ratio"], 3) for pair in figures["ceiling_pairs"]
    }
    for side in ("throughput", "ceiling"):
        busy, per_frame = figures[side]["cores_busy"], figures[side]["cpu_us_per_frame"]
        assert set(busy) == {"server_loop", "server_other_threads", "loadgens"}
        # Closed loop: the server's event loop and the generators are never idle.
        assert busy["server_loop"] > 0.2
        assert busy["loadgens"] > 0.2
        assert per_frame["server_loop"] > 0
    # The 2016 demo's clients played whole games on its own URL, each game counted once.
    legacy = figures["legacy"]
    assert legacy["errors"] == {}
    assert legacy["failed"] == 0
    assert legacy["matches_per_s"] > 0
    assert legacy["server_cpu_s_per_1000_matches"] > 0
    assert "demo clients:" in result.stdout
    assert figures["capacity"]["connected"] == 100
    assert figures["capacity"]["rss_mib_idle"] > 0
    assert figures["capacity"]["ping_samples"] > 0
    # Gone, but their guests are still remembered (for a quick reconnect), so far.
    assert figures["capacity"]["remembered_left"] == 100
    assert figures["capacity"]["rss_mib_forgotten"] > 0
    assert "after they left: RSS" in result.stdout


def test_thread_cpu_tells_the_main_thread_from_the_others() -> None:
    thread_cpu = load_bench().thread_cpu
    burned, finish = threading.Event(), threading.Event()

    def work() -> None:
        burn(0.3)
        burned.set()
        finish.wait()

    main0, other0 = thread_cpu(os.getpid())
    burn(0.3)
    main1, other1 = thread_cpu(os.getpid())
    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert burned.wait(10)
        main2, other2 = thread_cpu(os.getpid())
    finally:
        finish.set()
        worker.join()
    # Ticks are 10 ms: allow a few either way.
    assert main1 - main0 > 0.25
    assert other1 - other0 < 0.05
    assert other2 - other1 > 0.25
    assert main2 - main1 < 0.05


def test_endurance_runs_and_judges_at_toy_scale(tmp_path: Path) -> None:
    out = tmp_path / "endurance.json"
    result = run_script(
        "bench/endurance.py",
        "--duration",
        "5",
        "--clients",
        "20",
        "--warmup",
        "1",
        "--sample",
        "1",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = orjson.loads(out.read_text())
    assert figures["soak"]["matches"] > 0
    assert figures["log_lines_lost"] == 0
    assert figures["log_bytes"] > 0  # the server logged at info, into its file
    assert len(figures["rss_mib"]) >= 3


def test_store_bench_times_both_engines_at_toy_scale() -> None:
    result = run_script("bench/store_bench.py", "--matches", "20", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("20 matches")
    assert lines[1].split() == ["SQLite", "PostgreSQL"]
    rows = {line[:16].strip(): line[16:].split() for line in lines[2:]}
    assert list(rows) == ["loop", "thread", "end to end", "one at a time", "KB per match"]
    assert all(float(value) > 0 for value in rows["KB per match"])


async def test_attacks_run_against_a_test_server_and_all_hold() -> None:
    """bench/attacks.py, briefly, against a server whose deadlines are short."""
    from tests.support.processes import launch

    server = await launch("--request-timeout", "1", "--hello-timeout", "1")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "bench/attacks.py",
            server.url,
            *("--seconds", "1", "--deadline", "4", "--scale", "0.05", "--warmup", "1"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await asyncio.wait_for(process.communicate(), 150))[0].decode()
    finally:
        await server.stop()
    lines = [
        line for line in output.splitlines() if line and not line.startswith(("baseline", "honest"))
    ]
    assert process.returncode == 0, output
    assert len(lines) == 11, output  # every attack in bench/attacks.py
    assert all(line.split()[1] == "held" for line in lines), output


def test_attacks_refuse_a_server_that_is_not_on_this_machine() -> None:
    result = run_script("bench/attacks.py", "ws://203.0.113.1:9595/applet/websocket")
    assert result.returncode != 0
    assert "loopback only" in result.stderr


def test_service_bench_plays_matches_in_process_with_and_without_storage() -> None:
    for store in ("sqlite", "none"):
        result = run_script(
            "bench/service_bench.py",
            *("--players", "40", "--matches", "300", "--warmup", "50", "--runs", "1"),
            *("--store", store, "--profile", "--profile-top", "5"),
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert "function calls" in result.stdout  # cProfile's table came first
        summary = orjson.loads(lines[-1])
        assert summary["store"] == store
        (run,) = summary["runs"]
        assert run["matches"] >= 300
        # Every match costs the loop something, and the process at least that much.
        assert 0 < run["loop_us_per_match"] <= run["process_us_per_match"] * 1.05


def test_bench_runs_the_paced_scenario_alone() -> None:
    result = run_script(
        "bench/bench.py",
        *("--only", "paced", "--window", "1", "--warmup", "0.5", "--target-rate", "5"),
    )
    assert result.returncode == 0, result.stderr
    paced = orjson.loads(result.stdout.strip().splitlines()[0])["paced"]
    assert paced["matches_per_s"] > 0
    assert paced["server_cpu_s_per_1000_matches"] > 0
    assert set(paced["cores_busy"]) == {"server_loop", "server_other_threads", "loadgens"}

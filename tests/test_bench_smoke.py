"""The benchmark scripts run end to end at toy scale (figures are not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_every_scenario_at_toy_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "bench/bench.py",
            "--window",
            "1",
            "--warmup",
            "0.5",
            "--scaling",
            "20",
            "--idle",
            "100",
            "--target-rate",
            "5",
            "--pairs",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "of the ceiling" in result.stdout
    figures = orjson.loads(out.read_text())
    assert figures["scaling"]["20"]["matches_per_s"] > 0
    assert figures["scaling"]["20"]["errors"] == {}
    assert figures["paced"]["matches_per_s"] > 0
    assert figures["ceiling"]["frames_per_s"] > 0
    assert len(figures["ceiling_pairs"]) == 2
    assert figures["fraction_of_ceiling"] in {
        round(pair["ratio"], 3) for pair in figures["ceiling_pairs"]
    }
    assert figures["capacity"]["connected"] == 100
    assert figures["capacity"]["rss_mib_idle"] > 0
    assert figures["capacity"]["ping_samples"] > 0

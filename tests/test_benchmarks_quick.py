"""The benchmark runner must not rot: CI runs its quick mode (tiny sizes, speed not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_quick_benchmarks_run_and_write_json(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=80,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
    result = json.loads((tmp_path / "latest-quick.json").read_text())
    assert not result["meta"]["errors"]
    benchmarks = {m["benchmark"] for m in result["metrics"]}
    assert benchmarks == {"roundtrip", "throughput", "startup", "timer", "scale", "heartbeat", "cancel", "crash",
                          "durable"}
    for metric in result["metrics"]:
        assert metric["actorflow"]["samples"], metric["metric"]
        assert metric["reference"]["samples"], metric["metric"]
    assert "| benchmark | metric |" in proc.stdout

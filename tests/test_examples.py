"""Every script in examples/ runs to completion, and so does the demo (``python -m actorflow demo``).

Each runs in a fresh interpreter, as a user would run it, so the start of worker processes is
exercised for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# What each example must print (regular expressions); every example must be listed.
EXPECTED = {
    "timeouts.py": [r"Hello, Activity Timeout option!"],
    "retry_policy.py": [r"Hello, Retry Policy options! \(attempt 2\)"],
    "next_retry_delay.py": [r"succeeded on attempt 2 after [3-9]\.\d s"],
    "heartbeat.py": [r"heartbeated and completed", r"heartbeat_details == \[123, 456\]"],
    "heartbeat_timeout.py": [r"hello, world", r"hello, heartbeat timeout"],
    "web_service.py": [r'200 \{"size": 64', r'200 \{"size": 32', r"422 .*NON_RETRYABLE_FAILURE", r"404 "],
    "data_pipeline.py": [r"chunk 5 was retried: attempt 2 resumed at", r"matches a sieve"],
    "durable_service.py": [r"killed the service \(pid \d+\) with SIGKILL",
                           r"invoice-\d\d: (completed before the kill|was running at the kill|was waiting)",
                           r"all 12 jobs done"],
}


def run(args: List[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    done = run(["-W", "error", str(EXAMPLES / name)])
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    for pattern in EXPECTED[name]:
        assert re.search(pattern, done.stdout), f"{name}: no {pattern!r} in:\n{done.stdout}"


def test_demo_plain() -> None:
    """Not a terminal: plain lines, the summary, and every outcome as the rules predict."""
    done = run(["-m", "actorflow", "demo", "--activities", "60", "--workers", "2"])
    assert done.returncode == 0, f"demo failed:\n{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert "Summary" in out and "all 60 outcomes as predicted" in out, out
    for kind in ("worker crash", "start-to-close", "schedule-to-start", "schedule-to-close", "heartbeat",
                 "cancelled", "flaky", "resume"):
        assert re.search(rf"^{kind}\s+\d+", out, re.M), f"no summary row for {kind}:\n{out}"
    assert "worker restarts: 1" in out
    assert "\x1b[" not in out  # no terminal control codes when stdout is not a terminal


def test_demo_live_view() -> None:
    """The rich live view, forced onto a pipe, renders and ends with the summary."""
    done = run(["-m", "actorflow", "demo", "--activities", "60", "--workers", "2", "--view", "live"])
    assert done.returncode == 0, f"demo failed:\n{done.stdout[-3000:]}\n{done.stderr}"
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout)  # rich's terminal control codes
    assert "recent events" in out and "all 60 outcomes as predicted" in out, out[-3000:]


def test_demo_rejects_too_few_activities() -> None:
    done = run(["-m", "actorflow", "demo", "--activities", "5", "--workers", "2"], timeout=60)
    assert done.returncode == 2 and "--activities must be at least" in done.stderr

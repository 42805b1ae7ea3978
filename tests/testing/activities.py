"""Activities for the time-skipping tests; worker processes import them by reference.

Each attempt appends one JSON line to a journal file (its path is the first argument): the
attempt number, its ``info()`` times as offsets from ``scheduled_time`` (virtual seconds), and the
real wall-clock time, so a test can check both clocks.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Dict, List

from actorflow import activity


def note(path: str, **extra: Any) -> Dict[str, Any]:
    info = activity.info()
    record = {
        "attempt": info.attempt,
        "scheduled": (info.current_attempt_scheduled_time - info.scheduled_time).total_seconds(),
        "started": (info.started_time - info.scheduled_time).total_seconds(),
        "scheduled_time": info.scheduled_time.isoformat(),
        "heartbeat_details": list(info.heartbeat_details),
        "wall": time.time(),
        **extra,
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return record


def read(path: str) -> List[Dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@activity.defn
def fail_until(path: str, failures: int) -> int:
    """Raises ValueError on the first ``failures`` attempts, then returns the attempt number."""
    attempt = note(path)["attempt"]
    if attempt <= failures:
        raise ValueError(f"attempt {attempt} fails on purpose")
    return attempt


@activity.defn
def fail_until_after(path: str, failures: int, seconds: float) -> int:
    """``fail_until`` that first runs for ``seconds`` of real time."""
    time.sleep(seconds)
    return fail_until(path, failures)


@activity.defn
def always_fail(path: str) -> None:
    note(path)
    raise ValueError("boom")


@activity.defn
async def heartbeat_then_hang(path: str, details: str) -> None:
    """Heartbeats once, then waits until the runtime cancels it (a heartbeat timeout does)."""
    note(path, event="start")
    activity.heartbeat(details)
    await asyncio.sleep(3600)


@activity.defn
async def hang(path: str) -> None:
    note(path, event="start")
    await asyncio.sleep(3600)


@activity.defn
async def fail_first_then_hang(path: str) -> None:
    """Attempt 1 raises ValueError; later attempts hang until cancelled."""
    if note(path)["attempt"] == 1:
        raise ValueError("first attempt fails")
    await asyncio.sleep(3600)


@activity.defn
def sleep_real(path: str, seconds: float) -> str:
    """Runs ``seconds`` of real time, noting its start and end."""
    note(path, event="start")
    time.sleep(seconds)
    note(path, event="end")
    return "slept"

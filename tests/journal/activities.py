"""Activities of the journal tests, importable as ``tests.journal.activities`` by the test process,
by the owner subprocesses that get SIGKILLed (``tests/journal/owner.py``) and by their workers.

Each one appends a line to a side file per attempt, so a test can tell how often it really ran
(D8: a completion that was committed never runs again).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from actorflow import activity
from actorflow.exceptions import ApplicationError


def _mark(side_file: str, text: str) -> None:
    with open(side_file, "a") as f:
        f.write(text + "\n")


def runs(side_file: str) -> list:
    """The lines the activities appended to ``side_file`` (one per attempt)."""
    if not os.path.exists(side_file):
        return []
    with open(side_file) as f:
        return f.read().split()


@activity.defn
def add(side_file: str, a: int, b: int) -> int:
    _mark(side_file, f"add:{activity.info().activity_id}:{activity.info().attempt}")
    return a + b


@activity.defn
def checkpointed(side_file: str, pages: int, block_after: int) -> Any:
    """Processes ``pages`` pages, heartbeating the last one done; attempt 1 blocks after
    ``block_after`` pages (the owner is killed meanwhile). Returns what it resumed from."""
    info = activity.info()
    _mark(side_file, f"checkpointed:{info.activity_id}:{info.attempt}")
    start = info.heartbeat_details[0] + 1 if info.heartbeat_details else 0
    for page in range(start, pages):
        activity.heartbeat(page)
        if info.attempt == 1 and page == block_after:
            time.sleep(600)
    return {"attempt": info.attempt, "resumed_from": start, "details": list(info.heartbeat_details)}


@activity.defn
def fail_then_succeed(side_file: str, retry_delay: float) -> Any:
    """Attempt 1 heartbeats twice (the second one is throttled, so it travels with the failure,
    R55) and fails with ``next_retry_delay``; later attempts return the details they saw."""
    info = activity.info()
    _mark(side_file, f"fail_then_succeed:{info.activity_id}:{info.attempt}")
    if info.attempt == 1:
        activity.heartbeat("first")
        activity.heartbeat("tail")
        raise ApplicationError("not yet", type="NotYet", next_retry_delay=timedelta(seconds=retry_delay))
    return {"attempt": info.attempt, "details": list(info.heartbeat_details)}


@activity.defn
def block(side_file: str, seconds: float) -> str:
    info = activity.info()
    _mark(side_file, f"block:{info.activity_id}:{info.attempt}")
    if info.attempt == 1:
        time.sleep(seconds)
    return f"done on attempt {info.attempt}"


@activity.defn
def fail(side_file: str) -> None:
    _mark(side_file, f"fail:{activity.info().activity_id}:{activity.info().attempt}")
    raise ApplicationError("always fails", non_retryable=True)


ALL = [add, checkpointed, fail_then_succeed, block, fail]

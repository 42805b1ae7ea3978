"""The crash soak's plan, activities and owning program (``python -m tests.journal.soak ...``).

The plan (seeded) gives every execution a kind; ``expected()`` says how D8 and the retry rules
end it, whatever moments the owner was killed at. Every attempt appends ``start <id> <nonce>`` to
a side log (one O_APPEND write, so the file's order is the order attempts began), and a
completing attempt returns its nonce: the committed result names the run that completed.
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from datetime import timedelta
from typing import Dict, List, Tuple

from actorflow import ActorSystem, RetryPolicy, activity
from actorflow.exceptions import ApplicationError

KINDS = ("ok", "flaky", "non_retryable", "timeout", "heartbeat", "cancel")
FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=1),
                         maximum_attempts=0)
SLOTS_PER_WORKER = 16  # with 2 workers: the plan's work queues up and lasts long enough to be killed


def plan(seed: int, n: int) -> List[Tuple[str, str]]:
    rng = random.Random(seed)
    return [(f"soak-{i:05d}", rng.choice(KINDS)) for i in range(n)]


def _log(side_log: str, activity_id: str) -> str:
    nonce = uuid.uuid4().hex[:12]
    with open(side_log, "a") as f:
        f.write(f"start {activity_id} {nonce}\n")
    return nonce


@activity.defn
def soak_ok(side_log: str) -> str:
    return _log(side_log, activity.info().activity_id)


@activity.defn
def soak_flaky(side_log: str) -> str:
    nonce = _log(side_log, activity.info().activity_id)
    if activity.info().attempt < 3:
        raise ApplicationError("flaky", type="Flaky")
    return nonce


@activity.defn
def soak_non_retryable(side_log: str) -> None:
    _log(side_log, activity.info().activity_id)
    raise ApplicationError("bad input", type="BadInput", non_retryable=True)


@activity.defn
async def soak_timeout(side_log: str) -> None:
    import asyncio

    _log(side_log, activity.info().activity_id)
    await asyncio.sleep(30)  # start_to_close is 0.5 s: every attempt times out


@activity.defn
async def soak_heartbeat(side_log: str) -> str:
    import asyncio

    nonce = _log(side_log, activity.info().activity_id)
    details = activity.info().heartbeat_details
    step = details[0] + 1 if details else 0
    while step < 20:
        activity.heartbeat(step)
        await asyncio.sleep(0.05)
        step += 1
    return nonce


@activity.defn
async def soak_cancel(side_log: str) -> str:
    import asyncio

    nonce = _log(side_log, activity.info().activity_id)
    for _ in range(3000):
        activity.heartbeat()
        await asyncio.sleep(0.01)
    return nonce


ACTIVITIES = {"ok": soak_ok, "flaky": soak_flaky, "non_retryable": soak_non_retryable,
              "timeout": soak_timeout, "heartbeat": soak_heartbeat, "cancel": soak_cancel}


def options(kind: str) -> Dict[str, object]:
    if kind == "timeout":
        return {"start_to_close_timeout": timedelta(milliseconds=500),
                "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)}
    if kind in ("heartbeat", "cancel"):
        return {"start_to_close_timeout": timedelta(minutes=5), "heartbeat_timeout": timedelta(seconds=5),
                "retry_policy": FAST_RETRY}
    return {"start_to_close_timeout": timedelta(minutes=1), "retry_policy": FAST_RETRY}


def expected(kind: str) -> str:
    """What the execution ends as (a summary of its outcome; see ``observed``)."""
    return {"ok": "completed", "flaky": "completed", "heartbeat": "completed",
            "non_retryable": "failed:NON_RETRYABLE_FAILURE", "timeout": "failed:MAXIMUM_ATTEMPTS_REACHED",
            "cancel": "failed:CANCEL_REQUESTED"}[kind]


def observed(handle, timeout: float) -> Tuple[str, object]:
    error = handle.exception(timeout)
    if error is None:
        return "completed", handle.result()
    return f"failed:{error.retry_state.name}", error


def owner(journal: str, side_log: str, seed: int, n: int, start: bool) -> None:
    """Open the journal (resuming what is open), start the plan if asked, ask again for every
    cancel (a request the killed owner made may not have been committed), then wait."""
    with ActorSystem(list(ACTIVITIES.values()), workers=2, max_concurrent_activities=SLOTS_PER_WORKER, journal=journal,
                     stop_grace=timedelta(milliseconds=200)) as system:
        for activity_id, kind in plan(seed, n):
            if start:
                system.start_activity(ACTIVITIES[kind], side_log, activity_id=activity_id, **options(kind))
        print("STARTED", flush=True)
        time.sleep(1.0)
        for activity_id, kind in plan(seed, n):
            if kind == "cancel":
                system.get_activity_handle(activity_id).cancel()
        print("CANCELLED", flush=True)
        time.sleep(600)


if __name__ == "__main__":
    owner(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "start")
    os._exit(0)

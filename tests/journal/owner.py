"""An owning program that tests SIGKILL: ``python -m tests.journal.owner JOURNAL SIDE_FILE``.

It opens a journaled system, starts one execution in each state D8 recovers (completed, running
with heartbeat details, backing off with the R55 tail, queued behind the busy slot), prints
``READY <worker pids>`` once they are all there, and waits to be killed.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from datetime import timedelta

import cloudpickle

from actorflow import ActorSystem, RetryPolicy
from tests.journal import activities as acts

MINUTE = timedelta(minutes=1)


def main(journal: str, side_file: str) -> None:
    with ActorSystem(acts.ALL, workers=1, max_concurrent_activities=1, journal=journal) as system:
        done = system.start_activity(acts.add, args=[side_file, 20, 22], activity_id="done",
                                     start_to_close_timeout=MINUTE)
        assert done.result(30) == 42
        system.start_activity(acts.fail_then_succeed, args=[side_file, 4.0], activity_id="backoff",
                              start_to_close_timeout=MINUTE, heartbeat_timeout=timedelta(seconds=30),
                              retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))
        _wait_for(lambda: "fail_then_succeed:backoff:1" in acts.runs(side_file))
        system.start_activity(acts.checkpointed, args=[side_file, 10, 3], activity_id="running",
                              start_to_close_timeout=timedelta(minutes=10),
                              heartbeat_timeout=timedelta(seconds=1),
                              retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))
        _wait_for(lambda: committed_details(journal, "running") == [3])
        system.start_activity(acts.add, args=[side_file, 1, 2], activity_id="queued",
                              start_to_close_timeout=MINUTE)
        print("READY", *system.worker_pids(), flush=True)
        time.sleep(600)


def committed_details(journal: str, activity_id: str) -> object:
    """The heartbeat details of an open execution as committed, read as any reader would."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT details FROM executions WHERE activity_id = ? AND close_time IS NULL",
                         (activity_id,)).fetchone()
    finally:
        db.close()
    return None if row is None or row[0] is None else list(cloudpickle.loads(row[0]))


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("owner: timed out waiting for its executions")
        time.sleep(0.02)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Activities used by the benchmarks.

They live in an importable module (not in ``run.py``'s ``__main__``) so that cloudpickle ships
them by reference: worker processes are spawned and inherit the parent's ``sys.path``, on which
``run.py`` puts this directory. The plain functions at the bottom are the ProcessPoolExecutor
counterparts.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

from actorflow import activity
from actorflow.exceptions import ApplicationError, CancelledError


@activity.defn
def noop(x=None):
    """The round-trip and throughput probe: returns its argument."""
    return x


@activity.defn
async def noop_async(x=None):
    """Async variant: runs on the worker's event loop instead of a thread."""
    return x


@activity.defn
def fail_then_succeed(due_wall_time: float):
    """Attempt 1 fails and asks to be retried at ``due_wall_time`` (a ``time.time()``); later
    attempts succeed. Lets the scale benchmark park many executions in backoff and then make
    them all due at the same instant."""
    if activity.info().attempt == 1:
        delay = max(0.001, due_wall_time - time.time())
        raise ApplicationError("parked in backoff", type="Parked", next_retry_delay=timedelta(seconds=delay))
    return None


def _heartbeat_cost(n: int) -> tuple:
    """Time ``n`` throttled ``activity.heartbeat()`` calls and ``n`` calls of an empty function.

    Returns ``(seconds per heartbeat, seconds per empty call)`` of thread CPU time. The first heartbeat is sent at
    once (R50.1), so every call timed here is throttled.
    """
    hb = activity.heartbeat
    hb(-1)

    def empty(*details):
        return None

    clock = time.thread_time  # CPU of this thread: a busy machine's preemption does not count
    t0 = clock()
    for i in range(n):
        hb(i)
    t1 = clock()
    for i in range(n):
        empty(i)
    t2 = clock()
    return (t1 - t0) / n, (t2 - t1) / n


@activity.defn
def heartbeat_cost(n: int):
    """``_heartbeat_cost`` on an activity thread."""
    return _heartbeat_cost(n)


@activity.defn
async def heartbeat_cost_async(n: int):
    """``_heartbeat_cost`` on the worker's event loop."""
    return _heartbeat_cost(n)


@activity.defn
def heartbeat_until_cancelled(poll: float = 0.0005):
    """Heartbeat in a loop until the cancellation arrives; return the ``time.time()`` it was seen."""
    try:
        while True:
            activity.heartbeat()
            if activity.is_cancelled():
                return time.time()
            time.sleep(poll)
    except CancelledError:
        return time.time()


@activity.defn
def pid_then_block(pid_file: str):
    """Attempt 1 writes its worker's pid to ``pid_file`` and blocks (to be SIGKILLed); a retry
    returns the ``time.time()`` it started at."""
    if activity.info().attempt == 1:
        tmp = pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
        os.replace(tmp, pid_file)
        time.sleep(600)
        return None
    return time.time()


# -- ProcessPoolExecutor counterparts -------------------------------------------------------


def plain_noop(x=None):
    return x


def plain_pid_then_block(pid_file: str):
    tmp = pid_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, pid_file)
    time.sleep(600)


def plain_sleep_until(wall_time: float) -> float:
    """Block a PPE worker until ``wall_time``; returns when it woke."""
    time.sleep(max(0.0, wall_time - time.time()))
    return time.time()


@activity.defn
def stamp(x=None):
    """Returns ``time.perf_counter()`` (CLOCK_MONOTONIC, comparable across processes on Linux)."""
    return time.perf_counter()


@activity.defn
async def stamp_async(x=None):
    return time.perf_counter()


@activity.defn
def park(x=None):
    """Occupies its worker slot for an hour: the durable benchmark's way to leave executions
    open (queued behind it) in a journal when the system shuts down."""
    time.sleep(3600)
    return x

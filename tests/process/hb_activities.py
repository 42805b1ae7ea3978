"""Activities and helpers for the heartbeat / cancellation process tests (issue 3).

The worker processes import this module by name (``spawn`` passes the parent's ``sys.path``), so
everything here must stay importable without side effects.

Activities report what they saw through a *journal*: a file of JSON lines, one per event, each
stamped with ``time.monotonic()`` (system-wide on Linux, so comparable with the test process).
Every activity exists as an ``async def`` and as a plain ``def`` (``*_sync``), because async
activities see a cancellation as ``asyncio.CancelledError`` at their next await and sync ones as
``actorflow.exceptions.CancelledError`` raised in their thread (R64, D4).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from actorflow import activity
from actorflow.exceptions import CancelledError

STEP = 0.02  # how finely sync activities sleep, so an injected exception surfaces quickly


# -- the journal ------------------------------------------------------------------------------


def note(path: str, event: str, **fields: Any) -> None:
    """Append one event to the journal at ``path`` (runs in a worker process)."""
    line = json.dumps({"event": event, "t": time.monotonic(), "pid": os.getpid(), **fields})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read_notes(path: str, event: Optional[str] = None) -> List[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            notes = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [n for n in notes if event is None or n["event"] == event]


def wait_for_note(path: str, event: str, timeout: float = 10.0) -> Dict[str, Any]:
    """Poll the journal until ``event`` appears; fail the test if it does not in ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = read_notes(path, event)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event!r} note in {path} after {timeout} s: {read_notes(path)}")
        time.sleep(0.02)


def _cancel_fields(exc: BaseException) -> Dict[str, Any]:
    details = activity.cancellation_details()
    return {
        "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "exc_args": [str(a) for a in exc.args],
        "is_cancelled": activity.is_cancelled(),
        "cancel_requested": bool(details and details.cancel_requested),
        "timed_out": bool(details and details.timed_out),
        "attempt": activity.info().attempt,
    }


def _sleep_until_sync(deadline: float) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(STEP, left))


# -- picklable detail values (D7: types survive) ---------------------------------------------


@dataclass(frozen=True)
class Progress:
    done: int
    of: int


# -- heartbeat at given offsets, then return / raise / hang --------------------------------------

Call = Tuple[float, Sequence[Any]]  # (offset from the attempt's start in s, details)


@activity.defn
async def beat_schedule(path: str, calls: Sequence[Call], then: str, end: float) -> str:
    """Call ``heartbeat(*details)`` at each offset; at ``end`` return, raise ValueError or hang."""
    start = time.monotonic()
    note(path, "start", attempt=activity.info().attempt, seen=list(activity.info().heartbeat_details))
    try:
        for offset, details in calls:
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            activity.heartbeat(*details)
            note(path, "beat", details=list(details))
        await asyncio.sleep(max(0.0, start + end - time.monotonic()))
        if then == "raise":
            raise ValueError("attempt failed on purpose")
        if then == "hang":
            await asyncio.sleep(60)
    except asyncio.CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        raise
    return "done"


@activity.defn
def beat_schedule_sync(path: str, calls: Sequence[Call], then: str, end: float) -> str:
    start = time.monotonic()
    note(path, "start", attempt=activity.info().attempt, seen=list(activity.info().heartbeat_details))
    try:
        for offset, details in calls:
            _sleep_until_sync(start + offset)
            activity.heartbeat(*details)
            note(path, "beat", details=list(details))
        _sleep_until_sync(start + end)
        if then == "raise":
            raise ValueError("attempt failed on purpose")
        if then == "hang":
            _sleep_until_sync(time.monotonic() + 60)
    except CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        raise
    return "done"


# -- S9 / D2: heartbeat once, then stop heartbeating ------------------------------------------------


@activity.defn
async def beat_once_then_sleep(path: str, details: str, sleeps: Sequence[float], swallow: bool) -> str:
    """``heartbeat(details)`` then sleep ``sleeps[attempt - 1]`` (the last entry for later attempts).

    On cancellation note it, then re-raise, or with ``swallow`` sleep on and return anyway.
    """
    start = time.monotonic()
    attempt = activity.info().attempt
    sleep = sleeps[min(attempt, len(sleeps)) - 1]
    note(path, "start", attempt=attempt)
    activity.heartbeat(details)
    try:
        await asyncio.sleep(sleep)
    except asyncio.CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        if not swallow:
            raise
        await asyncio.sleep(max(0.0, start + sleep - time.monotonic()))
    note(path, "returning", attempt=attempt)
    return f"attempt {attempt} returned"


@activity.defn
def beat_once_then_sleep_sync(path: str, details: str, sleeps: Sequence[float], swallow: bool) -> str:
    start = time.monotonic()
    attempt = activity.info().attempt
    sleep = sleeps[min(attempt, len(sleeps)) - 1]
    note(path, "start", attempt=attempt)
    activity.heartbeat(details)
    try:
        _sleep_until_sync(start + sleep)
    except CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        if not swallow:
            raise
        _sleep_until_sync(start + sleep)
    note(path, "returning", attempt=attempt)
    return f"attempt {attempt} returned"


# -- S10: resume from the previous attempt's heartbeat details -----------------------------------


@activity.defn
async def resume_count(path: str) -> str:
    details = activity.info().heartbeat_details
    note(path, "start", attempt=activity.info().attempt, seen=list(details))
    n = details[0] if details else 0
    n += 9
    activity.heartbeat(n)
    if n < 30:
        raise ValueError(f"only at {n}")
    return f"final count: {n}"


@activity.defn
def resume_count_sync(path: str) -> str:
    details = activity.info().heartbeat_details
    note(path, "start", attempt=activity.info().attempt, seen=list(details))
    n = details[0] if details else 0
    n += 9
    activity.heartbeat(n)
    if n < 30:
        raise ValueError(f"only at {n}")
    return f"final count: {n}"


# -- S19-S23: heartbeat every ``every`` s; ``on_cancel`` says what to do with a cancellation ------


@activity.defn
async def beat_loop(path: str, every: float, duration: float, on_cancel: str) -> str:
    """on_cancel: "reraise" | "swallow" (return "cleaned up") | "fail" (raise ValueError)."""
    start = time.monotonic()
    note(path, "start", attempt=activity.info().attempt)
    k = 0
    try:
        while time.monotonic() - start < duration:
            k += 1
            await asyncio.sleep(max(0.0, start + k * every - time.monotonic()))
            activity.heartbeat(k)
            note(path, "beat", k=k, is_cancelled=activity.is_cancelled())
    except asyncio.CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        if on_cancel == "swallow":
            return "cleaned up"
        if on_cancel == "fail":
            raise ValueError("failed while cancelling")
        raise
    note(path, "finished", is_cancelled=activity.is_cancelled())
    return "finished"


@activity.defn
def beat_loop_sync(path: str, every: float, duration: float, on_cancel: str) -> str:
    start = time.monotonic()
    note(path, "start", attempt=activity.info().attempt)
    k = 0
    try:
        while time.monotonic() - start < duration:
            k += 1
            _sleep_until_sync(start + k * every)
            activity.heartbeat(k)
            note(path, "beat", k=k, is_cancelled=activity.is_cancelled())
    except CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        if on_cancel == "swallow":
            return "cleaned up"
        if on_cancel == "fail":
            raise ValueError("failed while cancelling")
        raise
    note(path, "finished", is_cancelled=activity.is_cancelled())
    return "finished"


# -- S24: attempt 1 fails at once, later attempts note that they ran ----------------------------


@activity.defn
async def fail_first_attempt(path: str) -> str:
    attempt = activity.info().attempt
    note(path, "start", attempt=attempt)
    if attempt == 1:
        raise ValueError("attempt 1 fails")
    return f"attempt {attempt} succeeded"


@activity.defn
def fail_first_attempt_sync(path: str) -> str:
    attempt = activity.info().attempt
    note(path, "start", attempt=attempt)
    if attempt == 1:
        raise ValueError("attempt 1 fails")
    return f"attempt {attempt} succeeded"


# -- S25: sleep without heartbeating, return 42 --------------------------------------------------


@activity.defn
async def sleep_then_42(path: str, sleep: float) -> int:
    note(path, "start", attempt=activity.info().attempt)
    try:
        await asyncio.sleep(sleep)
    except asyncio.CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        raise
    note(path, "finished", is_cancelled=activity.is_cancelled())
    return 42


@activity.defn
def sleep_then_42_sync(path: str, sleep: float) -> int:
    note(path, "start", attempt=activity.info().attempt)
    try:
        _sleep_until_sync(time.monotonic() + sleep)
    except CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        raise
    note(path, "finished", is_cancelled=activity.is_cancelled())
    return 42


# -- wait_for_cancelled / wait_for_cancelled_sync ------------------------------------------------


@activity.defn
async def await_cancellation(path: str, every: float) -> str:
    """A helper task heartbeats (so the cancel can be delivered); the activity waits for it."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    note(path, "start", attempt=activity.info().attempt)
    beater = asyncio.ensure_future(beat())
    waiter = asyncio.ensure_future(activity.wait_for_cancelled())
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError as exc:
        # the activity's own task was cancelled; wait_for_cancelled() must have returned too
        await asyncio.wait_for(asyncio.shield(waiter), 2)
        note(path, "cancelled", waiter_done=waiter.done(), **_cancel_fields(exc))
        return "noticed the cancellation"
    finally:
        beater.cancel()
    return "not cancelled"


@activity.defn
def await_cancellation_sync(path: str, every: float) -> str:
    note(path, "start", attempt=activity.info().attempt)
    t = time.monotonic()
    early = activity.wait_for_cancelled_sync(timeout=0.2)
    note(path, "timed wait", result=early, waited=time.monotonic() - t)
    try:
        while not activity.wait_for_cancelled_sync(every):
            activity.heartbeat()
        # The wait saw the cancellation first; the CancelledError injected into this thread (D4)
        # is on its way and surfaces within a few bytecodes.
        _sleep_until_sync(time.monotonic() + 2)
        note(path, "not raised")
    except CancelledError as exc:
        note(path, "raised", **_cancel_fields(exc))
    t = time.monotonic()
    late = activity.wait_for_cancelled_sync(timeout=5)
    note(path, "cancelled", result=late, waited=time.monotonic() - t, is_cancelled=activity.is_cancelled())
    return "noticed the cancellation"


# -- heartbeat bursts with assorted picklable details --------------------------------------------


def _burst(n: int) -> Dict[str, Any]:
    slowest = 0.0
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        activity.heartbeat(Progress(i + 1, n), {"i": i}, b"\x00", None)
        slowest = max(slowest, time.perf_counter() - t)
    return {"total": time.perf_counter() - start, "slowest": slowest}


@activity.defn
async def beat_burst(path: str, n: int) -> list:
    """Attempt 1 heartbeats ``n`` times and fails; attempt 2 returns the details it was given."""
    if activity.info().attempt == 1:
        note(path, "burst", **_burst(n))
        raise ValueError("attempt 1 fails after its heartbeats")
    return list(activity.info().heartbeat_details)


@activity.defn
def beat_burst_sync(path: str, n: int) -> list:
    if activity.info().attempt == 1:
        note(path, "burst", **_burst(n))
        raise ValueError("attempt 1 fails after its heartbeats")
    return list(activity.info().heartbeat_details)


# -- R48: details that cannot be pickled --------------------------------------------------------


@activity.defn
async def beat_unpicklable(path: str) -> str:
    import threading

    activity.heartbeat(threading.Lock())
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        raise
    return "not reached"


@activity.defn
def beat_unpicklable_sync(path: str) -> str:
    import threading

    activity.heartbeat(threading.Lock())
    try:
        _sleep_until_sync(time.monotonic() + 10)
    except CancelledError as exc:
        note(path, "cancelled", **_cancel_fields(exc))
        raise
    return "not reached"


# -- R57: attempt 1 heartbeats and fails, attempt 2 hangs without heartbeating ------------------


@activity.defn
async def beat_fail_then_hang(path: str) -> str:
    note(path, "start", attempt=activity.info().attempt, seen=list(activity.info().heartbeat_details))
    if activity.info().attempt == 1:
        activity.heartbeat("from attempt 1")
        raise ValueError("attempt 1 fails")
    await asyncio.sleep(10)
    return "not reached"


# -- D2: a sync activity stuck in one blocking call ---------------------------------------------


@activity.defn
def block_sync(path: str, seconds: float) -> str:
    note(path, "start", attempt=activity.info().attempt)
    time.sleep(seconds)  # one C call: an injected exception cannot surface before it returns
    note(path, "woke")
    return "woke up"


@activity.defn
def quick_sync(x: int) -> int:
    return x + 1


# -- details that only one side can unpickle ----------------------------------------------------


def _decode_where(fail_in: str) -> str:
    import sys

    in_worker = "actorflow._boot" in sys.modules  # workers are started by actorflow._launch
    if (fail_in == "worker") == in_worker:
        raise ValueError(f"this value cannot be unpickled in the {fail_in}")
    return f"decoded in the {'worker' if in_worker else 'parent'}"


class OneSided:
    """Pickles anywhere; unpickling fails in the worker processes or in the parent (``fail_in``)."""

    def __init__(self, fail_in: str) -> None:
        self.fail_in = fail_in

    def __reduce__(self) -> Any:
        return (_decode_where, (self.fail_in,))


@activity.defn
async def beat_one_sided(path: str, fail_in: str) -> list:
    """Attempt 1 heartbeats a ``OneSided`` value and fails; attempt 2 returns what it was given."""
    attempt = activity.info().attempt
    note(path, "start", attempt=attempt)
    if attempt == 1:
        activity.heartbeat(OneSided(fail_in))
        raise ValueError("attempt 1 fails after heartbeating")
    return list(activity.info().heartbeat_details)


# -- the test side -----------------------------------------------------------------------------


class HeartbeatSpy:
    """Records every heartbeat that reaches a supervisor (R53: only those count), in the parent.

    ``install(monkeypatch)`` wraps ``SupervisorActor._report_event``; entries are
    ``(monotonic time, activity_id, attempt, details)``.
    """

    def __init__(self) -> None:
        self.received: List[Tuple[float, str, int, Tuple[Any, ...]]] = []

    def install(self, monkeypatch: Any, delay: float = 0.0) -> "HeartbeatSpy":
        from actorflow._messages import HEARTBEAT
        from actorflow.supervisor import SupervisorActor

        original = SupervisorActor._report_event
        received = self.received

        def spy(actor: Any, record: Any, report: tuple) -> Any:
            event = original(actor, record, report)
            if report[0] == HEARTBEAT:
                received.append((time.monotonic(), record.machine.config.activity_id, event.attempt,
                                 tuple(event.details)))
                if delay:
                    time.sleep(delay)  # a slow parent: heartbeat() must not wait for it
            return event

        monkeypatch.setattr(SupervisorActor, "_report_event", spy)
        return self

    def of(self, activity_id: str) -> List[Tuple[float, int, Tuple[Any, ...]]]:
        return [(t, attempt, d) for t, aid, attempt, d in list(self.received) if aid == activity_id]


def about(value: float, expected: float, tol: float, what: str) -> None:
    """Assert ``value`` is within ``tol`` of ``expected`` (scaled timings on a shared machine)."""
    assert expected - tol <= value <= expected + tol, (
        f"{what}: {value:.3f} s, expected {expected:.3f} s +- {tol} s"
    )

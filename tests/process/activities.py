"""Activities for the process-level tests. They run in spawned worker processes.

This module is importable as ``tests.process.activities`` (tests/ and tests/process/ are
packages, and the repository root is on ``sys.path`` of the pytest process, which spawned workers
inherit), so cloudpickle sends these functions by reference and the workers import this module.
Keep it free of import-time side effects.

Activities that need to tell the test what happened inside an attempt take a journal path
(``tests.conftest.Journal``) and append JSON records with ``note``/``note_attempt``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from datetime import timedelta
from typing import Any, Optional

from actorflow import activity
from actorflow.exceptions import ApplicationError, CancelledError


def note(journal: str, event: str, **fields: Any) -> None:
    """Append one record: the event, this process's pid and its wall-clock time, and ``fields``."""
    record = {"event": event, "pid": os.getpid(), "wall": time.time(), **fields}
    line = json.dumps(record, default=str) + "\n"
    with open(journal, "a") as f:  # one small O_APPEND write per record
        f.write(line)


def note_attempt(journal: str, event: str = "start", **fields: Any) -> None:
    """Record the running attempt's info() times as POSIX timestamps (R72)."""
    i = activity.info()
    note(
        journal,
        event,
        attempt=i.attempt,
        activity_id=i.activity_id,
        scheduled=i.scheduled_time.timestamp(),
        attempt_scheduled=i.current_attempt_scheduled_time.timestamp(),
        started=i.started_time.timestamp(),
        heartbeat_details=list(i.heartbeat_details),
        start_to_close=_seconds(i.start_to_close_timeout),
        schedule_to_close=_seconds(i.schedule_to_close_timeout),
        **fields,
    )


def _seconds(value: Optional[timedelta]) -> Optional[float]:
    return None if value is None else value.total_seconds()


# -- plain results ---------------------------------------------------------------------------


@activity.defn
def add(a: int, b: int) -> int:
    return a + b


@activity.defn
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@activity.defn(name="custom-name")
def renamed(x: Any) -> Any:
    return ("renamed", x)


@activity.defn
def echo(x: Any) -> Any:
    return x


@activity.defn
def pid() -> int:
    return os.getpid()


@activity.defn
def info_snapshot() -> activity.Info:
    return activity.info()


@activity.defn
async def async_info_snapshot() -> activity.Info:
    return activity.info()


@activity.defn
async def sleep_then_return(seconds: float, value: Any) -> Any:
    await asyncio.sleep(seconds)
    return value


@activity.defn
def blocking_sleep(journal: str, seconds: float, value: Any = None) -> Any:
    """One uninterruptible C-level sleep: an injected cancellation surfaces only after it."""
    note_attempt(journal)
    time.sleep(seconds)
    note(journal, "end")
    return value


# -- failures --------------------------------------------------------------------------------


@activity.defn
def always_fail(journal: str, message: str = "boom") -> None:
    """Raises ValueError(message); ``{attempt}`` in the message becomes the attempt number."""
    note_attempt(journal)
    text = message.format(attempt=activity.info().attempt)
    note(journal, "fail")  # as close to the raise as possible: the attempt's end (R3)
    raise ValueError(text)


@activity.defn
def fail_until(journal: str, succeed_on: int) -> str:
    note_attempt(journal)
    n = activity.info().attempt
    if n < succeed_on:
        raise ValueError(f"attempt {n} fails")
    return f"succeeded on attempt {n}"


class MyErr(ValueError):
    """A subclass: its type is "MyErr", which does not match "ValueError" (R30)."""


@activity.defn
def raise_kind(journal: str, kind: str) -> None:
    note_attempt(journal)
    if kind == "ValueError":
        raise ValueError("plain value error")
    if kind == "MyErr":
        raise MyErr("subclass of ValueError")
    if kind == "typed":
        raise ApplicationError("x", type="Cannot retry me")
    raise AssertionError(f"unknown kind {kind!r}")


@activity.defn
def retry_then_non_retryable(journal: str) -> None:
    """S15: attempt 1 raises a retryable ApplicationError, attempt 2 a non-retryable one."""
    note_attempt(journal)
    if activity.info().attempt == 1:
        raise ApplicationError("Retry me")
    raise ApplicationError("Do not retry me", "detail1", 123, non_retryable=True)


@activity.defn
def always_later(journal: str, delay: float) -> None:
    """S17/S18: every attempt asks for next_retry_delay = ``delay`` seconds (R33)."""
    note_attempt(journal)
    n = activity.info().attempt
    note(journal, "fail")
    raise ApplicationError(f"later (attempt {n})", next_retry_delay=timedelta(seconds=delay))


@activity.defn
def chained() -> None:
    """S33: an explicit cause chain."""
    raise RuntimeError("outer") from KeyError("k")


# -- hanging ---------------------------------------------------------------------------------


@activity.defn
async def hang_async(journal: str) -> None:
    """Never returns; records the cancellation that D2 delivers when a deadline passes."""
    note_attempt(journal)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        note(journal, "cancelled", attempt=activity.info().attempt,
             reason=str(activity.cancellation_details()))
        raise


@activity.defn
def hang_sync(journal: str) -> None:
    """A sync activity that never returns; D4 injects CancelledError into its thread."""
    note_attempt(journal)
    try:
        while True:
            time.sleep(0.005)
    except CancelledError:
        note(journal, "cancelled", attempt=activity.info().attempt,
             reason=str(activity.cancellation_details()))
        raise


# -- payloads that cannot travel -------------------------------------------------------------


class LockHoldingError(Exception):
    """Cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class TwoArgError(Exception):
    """Pickles, but cannot be unpickled: ``args`` has one item, ``__init__`` wants two."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"code {code}: {reason}")
        self.code = code


@activity.defn
def raise_unpicklable() -> None:
    raise LockHoldingError("holds a lock")


@activity.defn
def raise_ununpicklable() -> None:
    raise TwoArgError(7, "bad signature")


@activity.defn
def return_unpicklable(journal: str) -> Any:
    note_attempt(journal)
    return threading.Lock()


REGISTERED = [
    add,
    async_add,
    renamed,
    echo,
    pid,
    info_snapshot,
    async_info_snapshot,
    sleep_then_return,
    blocking_sleep,
    always_fail,
    fail_until,
    raise_kind,
    retry_then_non_retryable,
    always_later,
    chained,
    hang_async,
    hang_sync,
    raise_unpicklable,
    raise_ununpicklable,
    return_unpicklable,
]


def _refuse_to_unpickle() -> None:
    raise RuntimeError("cannot be rebuilt in the worker")


class PicklesButFailsToLoad:
    """Pickles fine in the caller; unpickling it (in the worker) raises RuntimeError (R44)."""

    def __reduce__(self) -> tuple:
        return (_refuse_to_unpickle, ())

"""Activities for the soak test (tests/process/test_soak.py). They run in spawned worker processes.

Importable as ``tests.process.soak_activities`` (see tests/process/activities.py for why), so the
workers import this module by name. Keep it free of import-time side effects.

Every execution of the soak test runs one of two activities, ``soak`` (async, on the worker's
event loop) or ``soak_sync`` (a plain ``def``, on a worker thread), with a *plan*: a tuple of
actions, one per attempt (the last action repeats for later attempts). An action is a tuple
whose first item names it:

``("ok", delay)``
    sleep ``delay`` seconds, return ``("ok", attempt)``.
``("fail", delay)``
    sleep ``delay`` seconds, raise ``ValueError`` (retryable, type ``"ValueError"``).
``("nonretry", delay)``
    sleep ``delay`` seconds, raise ``ApplicationError(type="Fatal", non_retryable=True)`` (R32).
``("hang",)``
    never return (until D2's cancellation stops it): a start-to-close or schedule-to-close
    timeout ends the attempt.
``("hb_stop", n)``
    heartbeat ``n`` times 20 ms apart, then hang without heartbeating: a heartbeat timeout.
``("loop", duration, heartbeat, on_cancel)``
    run ``duration`` seconds (heartbeating every 20 ms if ``heartbeat``), then return
    ``("finished", attempt)``. If a cancellation reaches it (only through a heartbeat, R62):
    ``on_cancel`` is ``"propagate"`` (let it out), ``"swallow"`` (return ``("cleaned up",
    attempt)``) or ``"fail"`` (raise ``ValueError`` instead).
``("crash",)``
    SIGKILL the worker process it runs in (D1).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any, Tuple

from actorflow import activity
from actorflow.exceptions import ApplicationError, CancelledError

HEARTBEAT_EVERY = 0.02
SYNC_STEP = 0.01  # sync activities sleep in steps this short so an injected cancellation surfaces
HANG = 60.0


def action_for(plan: Tuple[tuple, ...], attempt: int) -> tuple:
    """The action of ``attempt`` (1-based); the plan's last action repeats."""
    return plan[min(attempt, len(plan)) - 1]


def _fatal() -> ApplicationError:
    return ApplicationError("fatal failure", type="Fatal", non_retryable=True)


@activity.defn
async def soak(plan: Tuple[tuple, ...]) -> Any:
    attempt = activity.info().attempt
    action = action_for(plan, attempt)
    what = action[0]
    if what == "ok":
        await asyncio.sleep(action[1])
        return ("ok", attempt)
    if what == "fail":
        await asyncio.sleep(action[1])
        raise ValueError(f"boom on attempt {attempt}")
    if what == "nonretry":
        await asyncio.sleep(action[1])
        raise _fatal()
    if what == "hang":
        await asyncio.sleep(HANG)
        return ("hang ended", attempt)
    if what == "hb_stop":
        for i in range(action[1]):
            activity.heartbeat(i)
            await asyncio.sleep(HEARTBEAT_EVERY)
        await asyncio.sleep(HANG)
        return ("hang ended", attempt)
    if what == "loop":
        _, duration, heartbeat, on_cancel = action
        end = time.monotonic() + duration
        try:
            i = 0
            while time.monotonic() < end:
                if heartbeat:
                    activity.heartbeat(i)
                    i += 1
                await asyncio.sleep(min(HEARTBEAT_EVERY, max(0.0, end - time.monotonic())))
        except asyncio.CancelledError:
            if on_cancel == "swallow":
                return ("cleaned up", attempt)
            if on_cancel == "fail":
                raise ValueError("failed while being cancelled")
            raise
        return ("finished", attempt)
    if what == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(HANG)
    raise AssertionError(f"unknown soak action {action!r}")


@activity.defn
def soak_sync(plan: Tuple[tuple, ...]) -> Any:
    attempt = activity.info().attempt
    action = action_for(plan, attempt)
    what = action[0]
    if what == "ok":
        time.sleep(action[1])
        return ("ok", attempt)
    if what == "fail":
        time.sleep(action[1])
        raise ValueError(f"boom on attempt {attempt}")
    if what == "nonretry":
        time.sleep(action[1])
        raise _fatal()
    if what in ("hang", "hb_stop"):
        for i in range(action[1] if what == "hb_stop" else 0):
            activity.heartbeat(i)
            time.sleep(HEARTBEAT_EVERY)
        end = time.monotonic() + HANG
        while time.monotonic() < end:
            time.sleep(SYNC_STEP)
        return ("hang ended", attempt)
    if what == "loop":
        _, duration, heartbeat, on_cancel = action
        end = time.monotonic() + duration
        try:
            i = 0
            while time.monotonic() < end:
                if heartbeat:
                    activity.heartbeat(i)
                    i += 1
                time.sleep(min(SYNC_STEP, max(0.0, end - time.monotonic())))
        except CancelledError:
            if on_cancel == "swallow":
                return ("cleaned up", attempt)
            if on_cancel == "fail":
                raise ValueError("failed while being cancelled")
            raise
        return ("finished", attempt)
    if what == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(HANG)
    raise AssertionError(f"unknown soak action {action!r}")

"""``ActivityEnvironment``: activity code in the test's own process, as Temporal's does (API.md
Testing, R64, D4). No actor system, no worker process, no actor thread."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, List

import pytest

from actorflow import activity
from actorflow.activity import ActivityCancellationDetails
from actorflow.exceptions import CancelledError
from actorflow.testing import ActivityEnvironment


@activity.defn
def add(a: int, b: int) -> int:
    return a + b


@activity.defn
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@activity.defn
def report_info() -> activity.Info:
    return activity.info()


@activity.defn
def count_with_heartbeats(n: int) -> int:
    for i in range(n):
        activity.heartbeat(i, f"step {i}")
    return n


@activity.defn
def heartbeat_forever() -> None:
    i = 0
    while True:
        activity.heartbeat(i)
        i += 1
        time.sleep(0.001)


@activity.defn
def catch_cancel_while_heartbeating() -> Any:
    try:
        while True:
            activity.heartbeat()
            time.sleep(0.001)
    except CancelledError:
        return ("caught", activity.is_cancelled(), activity.wait_for_cancelled_sync(0),
                activity.cancellation_details())


def test_sync_function_returns_its_result_in_the_calling_thread() -> None:
    env = ActivityEnvironment()
    threads_before = threading.active_count()
    assert env.run(add, 2, 3) == 5
    assert env.run(lambda: threading.get_ident()) == threading.get_ident()  # Temporal: same thread
    assert threading.active_count() == threads_before  # no system, no thread


def test_async_function_returns_an_awaitable() -> None:
    env = ActivityEnvironment()
    awaitable = env.run(async_add, 4, 5)
    assert asyncio.iscoroutine(awaitable)
    assert asyncio.run(awaitable) == 9


def test_default_info_is_temporals_with_attempt_1() -> None:
    env = ActivityEnvironment()
    info = env.run(report_info)
    epoch = datetime.fromtimestamp(0, tz=timezone.utc)
    assert info == env.info == ActivityEnvironment.default_info()
    fields = (info.activity_id, info.activity_type, info.attempt, info.task_queue)
    assert fields == ("test", "unknown", 1, "test")
    assert info.scheduled_time == info.started_time == info.current_attempt_scheduled_time == epoch
    assert list(info.heartbeat_details) == [] and info.heartbeat_timeout is None
    assert info.start_to_close_timeout == info.schedule_to_close_timeout == timedelta(seconds=1)


def test_info_is_settable() -> None:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=3, heartbeat_details=[27], activity_type="counter")
    info = env.run(report_info)
    assert (info.attempt, list(info.heartbeat_details), info.activity_type) == (3, [27], "counter")
    assert ActivityEnvironment.default_info().attempt == 1  # a fresh copy each time


def test_on_heartbeat_gets_every_heartbeats_details() -> None:
    env = ActivityEnvironment()
    beats: List[tuple] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    assert env.run(count_with_heartbeats, 3) == 3
    assert beats == [(0, "step 0"), (1, "step 1"), (2, "step 2")]  # unthrottled, in order


def test_context_exists_only_inside_run() -> None:
    env = ActivityEnvironment()
    env.run(add, 1, 1)
    assert not activity.in_activity()
    with pytest.raises(RuntimeError, match="Not in activity context"):
        activity.info()
    with pytest.raises(RuntimeError, match="Not in activity context"):
        activity.heartbeat()


def test_a_plain_function_runs_in_an_activity_context_too() -> None:
    env = ActivityEnvironment()
    assert env.run(lambda x: (activity.info().attempt, x), "arg") == (1, "arg")


def test_logger_adds_the_activity_fields(caplog: pytest.LogCaptureFixture) -> None:
    env = ActivityEnvironment()
    with caplog.at_level(logging.INFO, logger="actorflow.activity"):
        env.run(lambda: activity.logger.info("hello"))
    (record,) = caplog.records
    assert record.activity_id == "test" and record.attempt == 1 and "hello" in record.getMessage()


# -- cancellation: sync ---------------------------------------------------------------------


def test_sync_cancel_from_on_heartbeat_raises_cancelled_error_in_the_activity() -> None:
    env = ActivityEnvironment()
    beats: List[tuple] = []

    def on_heartbeat(*details: Any) -> None:
        beats.append(details)
        if len(beats) == 3:
            env.cancel()

    env.on_heartbeat = on_heartbeat
    with pytest.raises(CancelledError):
        env.run(heartbeat_forever)
    assert len(beats) in (3, 4)  # delivered at once, at the latest on the next heartbeat


def test_sync_cancel_from_another_thread_reaches_a_busy_activity() -> None:
    env = ActivityEnvironment()
    timer = threading.Timer(0.05, env.cancel)
    timer.start()
    try:
        result = env.run(catch_cancel_while_heartbeating)
    finally:
        timer.join()
    assert result == ("caught", True, True, ActivityCancellationDetails(cancel_requested=True))


def test_sync_wait_for_cancelled_sync_returns_when_cancelled() -> None:
    env = ActivityEnvironment()
    seen: List[Any] = []

    @activity.defn
    def waits() -> None:
        try:
            seen.append(activity.wait_for_cancelled_sync(10))
        finally:
            seen.append(activity.is_cancelled())

    timer = threading.Timer(0.05, env.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(CancelledError):
            env.run(waits)  # D4: the CancelledError is raised in the activity's thread as well
    finally:
        timer.join()
    assert time.monotonic() - started < 5
    assert seen[-1] is True


def test_cancel_details_can_be_given() -> None:
    env = ActivityEnvironment()
    details = ActivityCancellationDetails(worker_shutdown=True)
    env.on_heartbeat = lambda *_: env.cancel(details)
    assert env.run(catch_cancel_while_heartbeating)[3] == details


def test_cancelled_before_run_starts_cancelled_without_raising() -> None:
    """As in Temporal: a sync activity starts with is_cancelled() True; nothing is raised."""
    env = ActivityEnvironment()
    env.cancel()
    env.cancel()  # only the first call counts
    assert env.run(lambda: (activity.is_cancelled(), activity.wait_for_cancelled_sync(0))) == (True, True)


def test_a_finished_sync_activity_is_not_cancelled_later() -> None:
    env = ActivityEnvironment()
    assert env.run(add, 1, 2) == 3
    env.cancel()
    time.sleep(0.01)  # nothing is injected into this (the test's) thread
    assert env.run(add, 2, 2) == 4


# -- cancellation: async --------------------------------------------------------------------


def test_async_cancel_raises_asyncio_cancelled_error_at_the_next_await() -> None:
    env = ActivityEnvironment()

    @activity.defn
    async def sleeper() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.ensure_future(env.run(sleeper))
        await asyncio.sleep(0.01)
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 5))


def test_async_activity_can_catch_the_cancellation_and_return() -> None:
    env = ActivityEnvironment()

    @activity.defn
    async def waits() -> Any:
        try:
            await activity.wait_for_cancelled()
            return "woke without a task cancel"
        except asyncio.CancelledError:
            return ("cleaned up", activity.is_cancelled(), activity.cancellation_details().cancel_requested)

    async def main() -> Any:
        task = asyncio.ensure_future(env.run(waits))
        await asyncio.sleep(0.01)
        env.cancel()
        return await task

    assert asyncio.run(asyncio.wait_for(main(), 5)) == ("cleaned up", True, True)


def test_async_cancel_from_on_heartbeat_and_from_another_thread() -> None:
    for from_thread in (False, True):
        env = ActivityEnvironment()
        if not from_thread:
            env.on_heartbeat = lambda *_: env.cancel()

        @activity.defn
        async def beats() -> str:
            try:
                while True:
                    activity.heartbeat("tick")
                    await asyncio.sleep(0.001)
            except asyncio.CancelledError:
                assert activity.is_cancelled()
                raise

        timer = threading.Timer(0.05, env.cancel)

        async def main() -> None:
            if from_thread:
                timer.start()
            with pytest.raises(asyncio.CancelledError):
                await env.run(beats)

        asyncio.run(asyncio.wait_for(main(), 5))
        if from_thread:
            timer.join()


def test_async_cancelled_before_run_is_cancelled_at_once() -> None:
    env = ActivityEnvironment()
    env.cancel()

    @activity.defn
    async def never() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await env.run(never)

    asyncio.run(asyncio.wait_for(main(), 5))


def test_wait_for_cancelled_is_async_only() -> None:
    env = ActivityEnvironment()

    async def nope() -> None:
        await activity.wait_for_cancelled()

    with pytest.raises(RuntimeError, match="not in async activity"):
        env.run(lambda: asyncio.run(nope()))

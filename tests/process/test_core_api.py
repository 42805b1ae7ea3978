"""The public API of the runtime core against real spawned worker processes (API.md).

Covers: sync and async activities; ``with`` / ``async with`` / ``start()``+``shutdown()``; use
from plain threads; the handle (``result``, ``await``, ``done``, ``exception``, ids); the
``actorflow.workflow`` facade; every way an activity function can reach a worker (registered,
by name, module function, closure, lambda, ``__main__`` of a script); ``activity.info()``
(R72, R73, R11/S32).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

import actorflow
from actorflow import ActivityHandle, ActorSystem, RetryPolicy, activity, workflow
from actorflow.exceptions import ActivityError, ApplicationError, RetryState
from tests.conftest import long_lived_system
from tests.process import activities as acts

pytestmark = pytest.mark.slow

STC = dict(start_to_close_timeout=timedelta(seconds=10))
REPO_ROOT = Path(__file__).resolve().parents[2]


@activity.defn
def module_level_square(x: int) -> int:
    """Not registered with any system: shipped by reference (workers import this module)."""
    return x * x


@activity.defn
async def module_level_async_neg(x: int) -> int:
    await asyncio.sleep(0.001)
    return -x


# -- running activities ----------------------------------------------------------------------


def test_with_block_runs_and_shuts_down() -> None:
    with ActorSystem(activities=[acts.add], workers=1) as system:
        assert system.running
        assert system.start_activity(acts.add, args=[1, 1], **STC).result(timeout=10) == 2
    assert not system.running
    with pytest.raises(RuntimeError, match="shut down; start a new ActorSystem"):
        system.start_activity(acts.add, args=[1, 1], **STC)


def test_async_with_and_await_handle() -> None:
    async def main() -> tuple:
        async with ActorSystem(activities=[acts.async_add], workers=1) as system:
            direct = await system.execute_activity(acts.async_add, args=[1, 2], **STC)
            handle = system.start_activity(acts.async_add, args=[3, 4], **STC)
            assert isinstance(handle, ActivityHandle)
            awaited = await handle
            # several handles awaited together on one loop
            many = await asyncio.gather(
                *(system.start_activity(acts.add, args=[i, i], **STC) for i in range(5)))
            return direct, awaited, handle.done(), many, system

    direct, awaited, done, many, system = asyncio.run(main())
    assert (direct, awaited, done) == (3, 7, True)
    assert many == [0, 2, 4, 6, 8]
    assert not system.running


def test_start_and_shutdown_methods() -> None:
    system = ActorSystem(activities=[acts.add], workers=1)
    with pytest.raises(RuntimeError, match="start"):
        system.start_activity(acts.add, args=[1, 2], **STC)  # not started yet: says how to fix
    assert system.start() is system
    try:
        assert system.start_activity(acts.add, args=[1, 2], **STC).result(timeout=10) == 3
        with pytest.raises(RuntimeError, match="already running"):
            system.start()
    finally:
        system.shutdown()
    system.shutdown()  # idempotent
    assert not system.running


def test_use_from_plain_threads(system: ActorSystem) -> None:
    results: dict = {}
    errors: list = []

    def worker(i: int) -> None:
        try:
            handles = [system.start_activity(acts.add, args=[i, k], **STC) for k in range(5)]
            results[i] = ([h.result(timeout=20) for h in handles], [h.activity_id for h in handles])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(results) == list(range(8))
    for i, (values, _) in results.items():
        assert values == [i + k for k in range(5)]
    ids = [aid for _, aids in results.values() for aid in aids]
    assert len(set(ids)) == 40  # activity_id is unique within the system (API.md)
    assert sorted(int(a) for a in ids) == list(range(1, 41))


def test_slots_per_worker_and_the_queue(make_system, journal) -> None:
    """API.md: at most max_concurrent_activities attempts per worker; the rest wait in the
    system's queue and start as slots free up (R7: their started_time is when they got one)."""
    system = make_system(activities=acts.REGISTERED, workers=2, max_concurrent_activities=2)
    handles = [system.start_activity(acts.blocking_sleep, args=[str(journal), 0.6, i], **STC)
               for i in range(6)]
    journal.wait_for("start", 4)
    stats = system.statistics()
    assert (stats.running_attempts, stats.queued_attempts, stats.workers) == (4, 2, 2)
    assert [h.result(timeout=20) for h in handles] == list(range(6))
    starts, ends = journal.records("start"), journal.records("end")
    assert len(starts) == 6 and len(ends) == 6
    events = sorted([(r["wall"], 1, r["pid"]) for r in starts] + [(r["wall"], -1, r["pid"]) for r in ends])
    running: dict = {}
    for _, delta, pid in events:  # ends sort before starts at the same instant
        running[pid] = running.get(pid, 0) + delta
        assert running[pid] <= 2, "a worker ran more attempts than max_concurrent_activities"
    assert set(running) == set(system.worker_pids())  # both workers were used
    first = sorted(r["started"] for r in starts)
    assert first[4] - first[0] >= 0.6 - 0.01  # the two queued ones waited for a slot


# -- the handle ------------------------------------------------------------------------------


def test_default_activity_ids_count_from_one_and_custom_ids_are_kept(system: ActorSystem) -> None:
    handles = [system.start_activity(acts.info_snapshot, **STC) for _ in range(3)]
    assert [h.activity_id for h in handles] == ["1", "2", "3"]  # R72: "1" for the first
    assert [h.result(timeout=10).activity_id for h in handles] == ["1", "2", "3"]
    custom = system.start_activity(acts.info_snapshot, activity_id="order-42", **STC)
    assert custom.activity_id == "order-42"
    assert custom.result(timeout=10).activity_id == "order-42"
    assert system.start_activity(acts.info_snapshot, **STC).activity_id not in ("1", "2", "3", "order-42")


# -- the workflow facade ---------------------------------------------------------------------


def test_workflow_facade_uses_the_entered_system() -> None:
    with ActorSystem(activities=[acts.add, acts.pid], workers=1) as system:
        assert workflow.start_activity(acts.add, args=[2, 2], **STC).result(timeout=10) == 4

        async def main() -> int:
            return await workflow.execute_activity(acts.pid, **STC)

        assert asyncio.run(main()) in system.worker_pids()  # asyncio.run copies the context


def test_workflow_facade_picks_the_entered_one_of_two_systems() -> None:
    other = ActorSystem(activities=[acts.pid], workers=1).start()
    try:
        with ActorSystem(activities=[acts.pid], workers=1) as entered:
            pid = workflow.start_activity(acts.pid, **STC).result(timeout=10)
            assert pid in entered.worker_pids()
            assert pid not in other.worker_pids()
            # a new thread starts with an empty context: two running, none entered there
            errors: list = []

            def elsewhere() -> None:
                try:
                    workflow.start_activity(acts.pid, **STC)
                except RuntimeError as exc:
                    errors.append(exc)

            thread = threading.Thread(target=elsewhere)
            thread.start()
            thread.join(10)
            assert len(errors) == 1
            assert "2 ActorSystems are running" in str(errors[0])
            assert "system.execute_activity" in str(errors[0])  # says what to do
        # only one running and none entered here: that one is used
        assert workflow.start_activity(acts.pid, **STC).result(timeout=10) in other.worker_pids()
    finally:
        other.shutdown()


def test_workflow_facade_without_a_running_system_says_how_to_fix() -> None:
    with pytest.raises(RuntimeError) as info:
        workflow.start_activity(acts.add, args=[1, 2], **STC)
    message = str(info.value)
    assert "no ActorSystem is running" in message
    assert "with ActorSystem(" in message  # the fix

    async def main() -> None:
        await workflow.execute_activity(acts.add, args=[1, 2], **STC)

    with pytest.raises(RuntimeError, match="no ActorSystem is running"):
        asyncio.run(main())


# -- how functions reach the workers ---------------------------------------------------------


def test_function_defined_in_main_of_a_script(tmp_path: Path) -> None:
    script = tmp_path / "script_with_activity.py"
    script.write_text(textwrap.dedent(
        """
        import asyncio, json, sys
        from datetime import timedelta
        from actorflow import ActorSystem, activity

        @activity.defn
        def greet(name):
            return f"hello {name} from {activity.info().activity_type}"

        @activity.defn
        async def shout(name):
            return name.upper()

        def make_closure(suffix):
            @activity.defn(name="suffixed")
            def suffixed(x):
                return x + suffix
            return suffixed

        if __name__ == "__main__":
            stc = timedelta(seconds=10)
            with ActorSystem(activities=[shout], workers=1) as system:
                out = [
                    system.start_activity(greet, "world", start_to_close_timeout=stc).result(10),
                    system.start_activity("shout", "quiet", start_to_close_timeout=stc).result(10),
                    system.start_activity(make_closure("!"), "hi", start_to_close_timeout=stc).result(10),
                ]
            print(json.dumps(out))
        """
    ))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["hello world from greet", "QUIET", "hi!"]


# -- activity.info() -------------------------------------------------------------------------


def test_info_task_queue_of_the_system(make_system) -> None:
    system = make_system(activities=[acts.info_snapshot], workers=1, task_queue="orders")
    info = system.start_activity(acts.info_snapshot, task_queue="orders", **STC).result(timeout=10)
    assert info.task_queue == "orders"


def test_activity_functions_outside_an_activity_raise() -> None:
    """R47, R71: outside an attempt, in the caller's process."""
    for call in (activity.info, activity.heartbeat, activity.is_cancelled):
        with pytest.raises(RuntimeError, match="Not in activity context"):
            call()
    assert actorflow.activity.in_activity() is False


# -- tests that only need a running system share one -----------------------------------------


@pytest.fixture(scope="class")
def shared_system() -> Iterator[ActorSystem]:
    """One system for the class below; gone before the workflow-facade tests, which count the
    running systems."""
    with long_lived_system() as system:
        yield system


class TestOnASharedSystem:
    """Results, handles, how functions reach the workers, and info(), on one 2-worker system."""

    def test_sync_and_async_activities_return_their_results(self, shared_system: ActorSystem) -> None:
        assert shared_system.start_activity(acts.add, args=[2, 3], **STC).result(timeout=10) == 5
        assert shared_system.start_activity(acts.async_add, args=[4, 5], **STC).result(timeout=10) == 9
        # one positional argument (R88), and values of any picklable type come back intact
        payload = {"a": [1, 2.5, None], "b": (b"bytes", frozenset({3}))}
        assert shared_system.start_activity(acts.echo, payload, **STC).result(timeout=10) == payload
        assert shared_system.start_activity(acts.pid, **STC).result(timeout=10) in shared_system.worker_pids()

    def test_handle_result_done_exception_on_success(self, shared_system: ActorSystem) -> None:
        """R87: start_activity returns the handle at once, before the activity has finished."""
        handle = shared_system.start_activity(acts.sleep_then_return, args=[0.6, "v"], **STC)
        assert not handle.done()
        with pytest.raises(TimeoutError):  # the builtin, as concurrent.futures.Future.result raises
            handle.result(timeout=0.01)
        with pytest.raises(TimeoutError):
            handle.exception(timeout=0.01)
        assert handle.result(timeout=10) == "v"
        assert handle.done()
        assert handle.exception() is None
        assert handle.result() == "v"  # repeatable
        assert handle.activity_type == "sleep_then_return"
        assert "done" in repr(handle)

    def test_handle_exception_and_result_on_failure(self, shared_system: ActorSystem, journal) -> None:
        handle = shared_system.start_activity(
            acts.always_fail, args=[str(journal), "nope"], activity_id="failing",
            retry_policy=RetryPolicy(maximum_attempts=1), **STC,
        )
        error = handle.exception(timeout=10)
        assert isinstance(error, ActivityError)
        assert handle.done()
        with pytest.raises(ActivityError) as info:
            handle.result()
        assert info.value is error
        assert error.activity_id == "failing"
        assert error.activity_type == "always_fail"
        assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
        assert isinstance(error.cause, ApplicationError) and error.cause is error.__cause__  # R35
        assert (error.cause.type, error.cause.message) == ("ValueError", "nope")

        async def awaited() -> BaseException:
            try:
                await handle
            except ActivityError as exc:
                return exc
            raise AssertionError("await did not raise")

        assert asyncio.run(awaited()) is error

    def test_start_by_registered_name(self, shared_system: ActorSystem) -> None:
        """R89, R92: an activity is started by its registered name as well as by function."""
        assert shared_system.start_activity("custom-name", 7, **STC).result(timeout=10) == ("renamed", 7)
        assert shared_system.start_activity("add", args=[20, 22], **STC).result(timeout=10) == 42
        handle = shared_system.start_activity("async_info_snapshot", **STC)
        assert handle.result(timeout=10).activity_type == "async_info_snapshot"

    def test_unregistered_module_level_functions(self, shared_system: ActorSystem) -> None:
        assert shared_system.start_activity(module_level_square, 9, **STC).result(timeout=10) == 81
        assert shared_system.start_activity(module_level_async_neg, 9, **STC).result(timeout=10) == -9

    def test_closures_and_lambdas_defined_in_the_test(self, shared_system: ActorSystem) -> None:
        offset = 100

        @activity.defn
        def closure_add(x: int) -> int:
            return x + offset

        @activity.defn(name="async-closure")
        async def async_closure(x: int) -> str:
            await asyncio.sleep(0)
            return f"{activity.info().activity_type}:{x + offset}"

        def make_lambda(factor: int):
            return activity.defn(name="scaled")(lambda x: x * factor)

        bare_lambda = activity.defn(lambda: "from a lambda")

        assert shared_system.start_activity(closure_add, 1, **STC).result(timeout=10) == 101
        assert shared_system.start_activity(async_closure, 2, **STC).result(timeout=10) == "async-closure:102"
        assert shared_system.start_activity(make_lambda(3), 5, **STC).result(timeout=10) == 15
        # a second closure of the same code with other captured values: not a stale cache hit
        assert shared_system.start_activity(make_lambda(4), 5, **STC).result(timeout=10) == 20
        assert shared_system.start_activity(bare_lambda, **STC).result(timeout=10) == "from a lambda"

    def test_info_fields_with_only_start_to_close(self, shared_system: ActorSystem) -> None:
        """R72, R73: stc=4s only; times are aware UTC from the system's clock."""
        before = time.time()
        info = shared_system.start_activity(
            acts.info_snapshot, activity_id="info-1", start_to_close_timeout=timedelta(seconds=4)
        ).result(timeout=10)
        after = time.time()
        assert isinstance(info, activity.Info)
        assert (info.activity_id, info.activity_type, info.attempt) == ("info-1", "info_snapshot", 1)
        assert list(info.heartbeat_details) == []  # R54: nothing from earlier attempts
        assert info.heartbeat_timeout is None
        assert info.schedule_to_close_timeout is None
        assert info.start_to_close_timeout == timedelta(seconds=4)
        assert info.task_queue == "default"
        for t in (info.scheduled_time, info.current_attempt_scheduled_time, info.started_time):
            assert t.tzinfo is not None and t.utcoffset() == timedelta(0)
            assert t.tzinfo == timezone.utc
            assert before - 0.5 <= t.timestamp() <= after + 0.5
        assert info.current_attempt_scheduled_time == info.scheduled_time  # attempt 1: T0
        assert info.scheduled_time <= info.started_time
        assert info.retry_policy == RetryPolicy(  # R21: defaults filled in
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=100),
            maximum_attempts=0,
            non_retryable_error_types=(),
        )
        assert info.is_local is False

    def test_info_normalised_timeouts_and_given_policy(self, shared_system: ActorSystem) -> None:
        """S32 / R11: stc=60s, s2c=10s, heartbeat=120s show as 10s, 10s, 10s."""
        info = shared_system.start_activity(
            acts.async_info_snapshot,
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=timedelta(seconds=10),
            heartbeat_timeout=timedelta(seconds=120),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3,
                                     non_retryable_error_types=["KeyError"]),
        ).result(timeout=10)
        assert info.start_to_close_timeout == timedelta(seconds=10)
        assert info.schedule_to_close_timeout == timedelta(seconds=10)
        assert info.heartbeat_timeout == timedelta(seconds=10)
        assert info.retry_policy.initial_interval == timedelta(seconds=2)
        assert info.retry_policy.maximum_interval == timedelta(seconds=200)  # 100 x initial (R20)
        assert info.retry_policy.maximum_attempts == 3
        assert list(info.retry_policy.non_retryable_error_types) == ["KeyError"]
        assert info.attempt == 1 and list(info.heartbeat_details) == []

    def test_info_only_schedule_to_close(self, shared_system: ActorSystem) -> None:
        """R11.1 / R12: with only S2C given, start_to_close = S2C."""
        info = shared_system.start_activity(
            acts.info_snapshot, schedule_to_close_timeout=timedelta(seconds=7)
        ).result(timeout=10)
        assert info.start_to_close_timeout == timedelta(seconds=7)
        assert info.schedule_to_close_timeout == timedelta(seconds=7)
        assert info.heartbeat_timeout is None

"""Cancellation end to end against real worker processes (issue 3; SEMANTICS.md R59-R70, D2-D4).

Scenarios S19-S25 run scaled down in time, each for an async and a sync activity at once (both
kinds share one system and one timeline). Async activities see ``asyncio.CancelledError("Activity
cancelled")`` at their next await; sync ones ``actorflow.exceptions.CancelledError`` raised in their
thread (R64, D4). What the activity saw comes from its journal (see ``hb_activities``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from actorflow import ActivityCancellationType, ActorSystem, RetryPolicy
from actorflow.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from tests.process import hb_activities as acts
from tests.process.hb_activities import about, read_notes, wait_for_note

TRY_CANCEL = ActivityCancellationType.TRY_CANCEL
WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
ABANDON = ActivityCancellationType.ABANDON

KINDS = {"async": "", "sync": "_sync"}
EXC_OF_KIND = {
    "async": ("asyncio.exceptions.CancelledError", ["Activity cancelled"]),
    "sync": ("actorflow.exceptions.CancelledError", ["Cancelled"]),
}


def fn(name: str, kind: str):
    return getattr(acts, name + KINDS[kind])


@pytest.fixture
def journals(tmp_path):
    """``journals(name)`` -> the path of that execution's journal file."""
    return lambda name: str(tmp_path / f"journal-{name}.jsonl")


def assert_cancelled_error(error: BaseException, details: tuple = ()) -> None:
    """R60, R61, R40: ActivityError(CANCEL_REQUESTED, "Activity cancelled") <- CancelledError."""
    assert isinstance(error, ActivityError), repr(error)
    assert str(error) == "Activity cancelled"
    assert error.retry_state is RetryState.CANCEL_REQUESTED
    assert isinstance(error.cause, CancelledError) and error.cause is error.__cause__, repr(error.cause)
    assert error.cause.message == "Cancelled"
    assert tuple(error.cause.details) == details


def start_s19(system: ActorSystem, journals, kind: str, on_cancel: str, cancellation_type, **options):
    """S19's set-up: stc=60s, heartbeat_timeout=2s (throttle 1.6 s), a heartbeat every 0.3 s."""
    options.setdefault("retry_policy", RetryPolicy(initial_interval=timedelta(seconds=0.1)))
    return system.start_activity(
        fn("beat_loop", kind), args=[journals(kind), 0.3, 10.0, on_cancel],
        start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=timedelta(seconds=2),
        cancellation_type=cancellation_type, **options)


def assert_delivered_on_next_heartbeat(journals, kind: str, t_cancel: float) -> dict:
    """R62, R64: the cancel reaches the attempt with the reply to its next heartbeat send: the sends
    are at t~0.3 and ~1.9, the request at t~1, so the activity sees it at t~1.9."""
    cancelled = wait_for_note(journals(kind), "cancelled", timeout=5)
    start = read_notes(journals(kind), "start")[0]["t"]
    about(cancelled["t"] - start, 1.9, 0.4, f"{kind}: cancellation delivered")
    assert cancelled["t"] > t_cancel + 0.4, f"{kind}: delivered before the next heartbeat send"
    exc_type, exc_args = EXC_OF_KIND[kind]
    assert (cancelled["exc_type"], cancelled["exc_args"]) == (exc_type, exc_args), cancelled
    assert cancelled["is_cancelled"] and cancelled["cancel_requested"], cancelled
    return cancelled


# -- S19-S23: the three cancellation types on a heartbeating activity ------------------------------


@pytest.mark.slow
def test_s19_try_cancel_resolves_at_once_and_reaches_the_activity_on_its_next_heartbeat(journals) -> None:
    """S19 (R60, R62, R64, R93): handle.cancel() at t=1 -> the caller's error at t~1; the activity gets
    the cancellation at t~1.9 (its next heartbeat send), and is_cancelled() is True."""
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handles = {kind: start_s19(system, journals, kind, "reraise", TRY_CANCEL) for kind in KINDS}
        time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
        t_cancel = time.monotonic()
        assert all(h.cancel() for h in handles.values())
        for kind, handle in handles.items():
            error = handle.exception(timeout=5)
            assert time.monotonic() - t_cancel < 0.5, f"{kind}: TRY_CANCEL must not wait for the activity"
            assert_cancelled_error(error)
            assert handle.cancel() is False, "R59: a resolved handle ignores further requests"
        for kind in KINDS:
            assert_delivered_on_next_heartbeat(journals, kind, t_cancel)


@pytest.mark.slow
def test_s20_s21_s22_wait_cancellation_completed_outcomes(journals) -> None:
    """S20-S22 (R63, R68), as S19 but WAIT_CANCELLATION_COMPLETED, all on one timeline:
    - S20: the activity catches the cancellation and returns "cleaned up": the caller waits until
      t~1.9 and receives "cleaned up", no error;
    - S21: it re-raises: at t~1.9 ActivityError(CANCEL_REQUESTED) caused by CancelledError;
    - S22: it raises ValueError instead, although its policy allows more attempts: no retry; at
      t~1.9 ActivityError(CANCEL_REQUESTED) caused by ApplicationError(type="ValueError").
    R68 holds for TRY_CANCEL too (its caller is already resolved, so only the absence of an
    attempt 2 shows it)."""
    policy = RetryPolicy(initial_interval=timedelta(seconds=0.1), maximum_attempts=5)
    modes = {"S20": "swallow", "S21": "reraise", "S22": "fail"}
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        waits = {
            (kind, sid): start_s19(system, lambda k, sid=sid: journals(f"{k}-{sid}"), kind, mode, WAIT,
                                   retry_policy=policy)
            for kind in KINDS for sid, mode in modes.items()
        }
        tries = {kind: start_s19(system, lambda k: journals(f"{k}-try"), kind, "fail", TRY_CANCEL,
                                 retry_policy=policy) for kind in KINDS}
        time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
        t_cancel = time.monotonic()
        for handle in [*waits.values(), *tries.values()]:
            handle.cancel()
        time.sleep(0.4)
        assert not any(h.done() for h in waits.values()), "WAIT_CANCELLATION_COMPLETED callers must wait"
        for (kind, sid), handle in waits.items():
            if sid == "S20":
                assert handle.result(timeout=5) == "cleaned up", kind
            error = handle.exception(timeout=5)
            about(time.monotonic() - t0, 1.9, 0.5, f"{kind}, {sid}: outcome")
            if sid == "S21":
                assert_cancelled_error(error)
            elif sid == "S22":
                assert isinstance(error, ActivityError), repr(error)
                assert error.retry_state is RetryState.CANCEL_REQUESTED
                assert isinstance(error.cause, ApplicationError), repr(error.cause)
                assert error.cause.type == "ValueError"
            assert_delivered_on_next_heartbeat(lambda k, sid=sid: journals(f"{k}-{sid}"), kind, t_cancel)
        for kind, handle in tries.items():
            assert_cancelled_error(handle.exception(timeout=1))
            wait_for_note(journals(f"{kind}-try"), "cancelled", timeout=5)
        time.sleep(0.4)  # a retry (RP initial interval 0.1 s) would have started by now
    for name in [f"{kind}-{sid}" for kind in KINDS for sid in [*modes, "try"]]:
        assert [n["attempt"] for n in read_notes(journals(name), "start")] == [1], name


@pytest.mark.slow
def test_s23_abandon_resolves_at_once_and_the_activity_never_learns(journals) -> None:
    """S23 (R60): ABANDON; at t~1 the caller gets ActivityError(CANCEL_REQUESTED) caused by
    CancelledError; no request reaches the activity, which keeps running with is_cancelled() False
    until it finishes (here at t~1.8); its result is ignored."""
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handles = {
            kind: system.start_activity(
                fn("beat_loop", kind), args=[journals(kind), 0.3, 1.8, "reraise"],
                start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=timedelta(seconds=2),
                cancellation_type=ABANDON)
            for kind in KINDS
        }
        time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
        t_cancel = time.monotonic()
        for handle in handles.values():
            handle.cancel()
        for kind, handle in handles.items():
            assert_cancelled_error(handle.exception(timeout=5))
            assert time.monotonic() - t_cancel < 0.5, kind
        for kind in KINDS:
            finished = wait_for_note(journals(kind), "finished", timeout=5)
            assert finished["is_cancelled"] is False, kind
            assert not read_notes(journals(kind), "cancelled"), kind
            beats = read_notes(journals(kind), "beat")
            assert len(beats) >= 5 and not any(b["is_cancelled"] for b in beats), beats


# -- S24, R61: cancel while nothing runs -------------------------------------------------------------


@pytest.mark.slow
def test_s24_cancel_during_backoff_is_immediate(journals) -> None:
    """S24 (R61, R69), scaled: stc=5s, RP(initial_interval=2s); attempt 1 fails at t~0, attempt 2
    is due at t~2; cancel() at t=0.7. TRY_CANCEL and WAIT_CANCELLATION_COMPLETED: the error at
    t~0.7, attempt 2 never runs (WAIT's CancelledError carries "ACTIVITY_ID_NOT_STARTED").
    ABANDON: the same error at t~0.7, but attempt 2 still runs at t~2 (its outcome is ignored)."""
    types = {"try": TRY_CANCEL, "wait": WAIT, "abandon": ABANDON}
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handles = {
            (kind, name): system.start_activity(
                fn("fail_first_attempt", kind), journals(f"{kind}-{name}"),
                start_to_close_timeout=timedelta(seconds=5), cancellation_type=ctype,
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2)))
            for kind in KINDS for name, ctype in types.items()
        }
        time.sleep(max(0.0, t0 + 0.7 - time.monotonic()))
        t_cancel = time.monotonic()
        for handle in handles.values():
            handle.cancel()
        for (kind, name), handle in handles.items():
            error = handle.exception(timeout=5)
            assert time.monotonic() - t_cancel < 0.5, (kind, name)
            assert_cancelled_error(error, ("ACTIVITY_ID_NOT_STARTED",) if name == "wait" else ())
        deadline = time.monotonic() + 5  # ABANDON's attempts 2 are due at t~2
        while time.monotonic() < deadline and any(
                len(read_notes(journals(f"{kind}-abandon"), "start")) < 2 for kind in KINDS):
            time.sleep(0.05)
        time.sleep(0.2)  # the other attempts 2 would have started by now too
    for kind in KINDS:
        starts = {name: [n["attempt"] for n in read_notes(journals(f"{kind}-{name}"), "start")]
                  for name in types}
        assert starts == {"try": [1], "wait": [1], "abandon": [1, 2]}, f"{kind}: {starts}"
        abandon = read_notes(journals(f"{kind}-abandon"), "start")
        about(abandon[1]["t"] - abandon[0]["t"], 2.0, 0.4, f"{kind}: ABANDON's attempt 2")


@pytest.mark.slow
def test_r61_cancel_while_queued_is_immediate_and_the_attempt_never_runs(journals) -> None:
    """R61: one worker with one slot is busy; two executions wait in the queue. cancel() resolves
    them at once (WAIT_CANCELLATION_COMPLETED with "ACTIVITY_ID_NOT_STARTED"); they never run."""
    with ActorSystem(workers=1, max_concurrent_activities=1) as system:
        blocker = system.start_activity(acts.sleep_then_42, args=[journals("blocker"), 1.0],
                                        start_to_close_timeout=timedelta(seconds=10))
        wait_for_note(journals("blocker"), "start", timeout=5)
        queued = {
            name: system.start_activity(acts.sleep_then_42, args=[journals(name), 0.1],
                                        start_to_close_timeout=timedelta(seconds=10), cancellation_type=ctype)
            for name, ctype in (("try", TRY_CANCEL), ("wait", WAIT))
        }
        time.sleep(0.2)
        t_cancel = time.monotonic()
        for handle in queued.values():
            handle.cancel()
        assert_cancelled_error(queued["try"].exception(timeout=5))
        assert_cancelled_error(queued["wait"].exception(timeout=5), ("ACTIVITY_ID_NOT_STARTED",))
        assert time.monotonic() - t_cancel < 0.5
        assert blocker.result(timeout=10) == 42
        follow_up = system.start_activity(acts.quick_sync, 1, start_to_close_timeout=timedelta(seconds=10))
        assert follow_up.result(timeout=10) == 2, "the freed slot went to new work, not to cancelled attempts"
    assert read_notes(journals("try")) == [] and read_notes(journals("wait")) == []


# -- S25, R62: an activity that never heartbeats is never told ------------------------------------------


@pytest.mark.slow
def test_s25_cancel_of_a_non_heartbeating_activity(journals) -> None:
    """S25 (R62), scaled: stc=30s, the activity sleeps 2 s and returns 42 without heartbeating;
    cancel() at t=0.5. WAIT_CANCELLATION_COMPLETED: never told, the caller receives 42 at t~2.
    TRY_CANCEL: ActivityError(CANCEL_REQUESTED) at t~0.5; the activity still returns 42 (ignored)."""
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handles = {
            (kind, name): system.start_activity(
                fn("sleep_then_42", kind), args=[journals(f"{kind}-{name}"), 2.0],
                start_to_close_timeout=timedelta(seconds=30), cancellation_type=ctype)
            for kind in KINDS for name, ctype in (("wait", WAIT), ("try", TRY_CANCEL))
        }
        time.sleep(max(0.0, t0 + 0.5 - time.monotonic()))
        for handle in handles.values():
            handle.cancel()
        for kind in KINDS:
            assert_cancelled_error(handles[kind, "try"].exception(timeout=1))
            about(time.monotonic() - t0, 0.5, 0.4, f"{kind}: TRY_CANCEL's error")
        for kind in KINDS:
            assert handles[kind, "wait"].result(timeout=10) == 42, kind
            about(time.monotonic() - t0, 2.0, 0.5, f"{kind}: WAIT_CANCELLATION_COMPLETED's result")
        for kind in KINDS:
            for name in ("wait", "try"):
                finished = wait_for_note(journals(f"{kind}-{name}"), "finished", timeout=5)
                assert finished["is_cancelled"] is False, (kind, name)
                assert not read_notes(journals(f"{kind}-{name}"), "cancelled"), (kind, name)


# -- R59: cancelling the asyncio task that awaits a handle -------------------------------------------


@pytest.mark.slow
def test_r59_cancelling_the_awaiting_task_requests_cancellation(journals) -> None:
    """R59, API.md: cancelling the task that awaits a handle requests cancellation of the activity.
    TRY_CANCEL: the handle is resolved with ActivityError(CANCEL_REQUESTED) at once and the activity
    is cancelled on its next heartbeat. WAIT_CANCELLATION_COMPLETED: the task is cancelled at once;
    the handle resolves with the activity's own outcome once it has handled the cancellation.
    (No heartbeat_timeout, throttle 0.8 s by default_heartbeat_throttle_interval: no heartbeat
    deadline can interfere on a loaded machine.)"""

    async def main(system: ActorSystem) -> dict:
        handles = {
            (kind, name): system.start_activity(
                fn("beat_loop", kind), args=[journals(f"{kind}-{name}"), 0.2, 10.0, "swallow"],
                start_to_close_timeout=timedelta(seconds=30), cancellation_type=ctype)
            for kind in KINDS for name, ctype in (("try", TRY_CANCEL), ("wait", WAIT))
        }

        async def await_handle(handle):
            return await handle

        tasks = {key: asyncio.ensure_future(await_handle(h)) for key, h in handles.items()}
        await asyncio.sleep(0.5)
        for task in tasks.values():
            task.cancel()
        for key, task in tasks.items():
            with pytest.raises(asyncio.CancelledError):
                await task
        return handles

    with ActorSystem(workers=1, default_heartbeat_throttle_interval=timedelta(seconds=0.8)) as system:
        t0 = time.monotonic()
        handles = asyncio.run(main(system))
        for kind in KINDS:
            assert_cancelled_error(handles[kind, "try"].exception(timeout=0.5))
            assert handles[kind, "wait"].result(timeout=5) == "cleaned up", kind
            # beats at 0.2 (sent), held back until 1.0 (throttle 0.8 s): delivered at t~1.0
            for name in ("try", "wait"):
                cancelled = wait_for_note(journals(f"{kind}-{name}"), "cancelled", timeout=5)
                assert cancelled["cancel_requested"], (kind, name)
                about(cancelled["t"] - t0, 1.0, 0.4, f"{kind}, {name}: delivered")


@pytest.mark.slow
def test_r52_cancellation_reaches_an_activity_without_heartbeat_timeout(journals) -> None:
    """R52: with no heartbeat_timeout, heartbeats are still sent, throttled at
    default_heartbeat_throttle_interval (here 0.6 s), and still carry the cancellation. Beats every
    0.2 s: sends at t~0.2, 0.8, 1.4; cancel() at t=0.9 reaches the activity at t~1.4."""
    with ActorSystem(workers=1, default_heartbeat_throttle_interval=timedelta(seconds=0.6)) as system:
        t0 = time.monotonic()
        handles = {
            kind: system.start_activity(
                fn("beat_loop", kind), args=[journals(kind), 0.2, 10.0, "swallow"],
                start_to_close_timeout=timedelta(seconds=30), cancellation_type=WAIT)
            for kind in KINDS
        }
        time.sleep(max(0.0, t0 + 0.9 - time.monotonic()))
        for handle in handles.values():
            handle.cancel()
        for kind, handle in handles.items():
            assert handle.result(timeout=5) == "cleaned up", kind
            cancelled = wait_for_note(journals(kind), "cancelled", timeout=1)
            start = read_notes(journals(kind), "start")[0]["t"]
            about(cancelled["t"] - start, 1.4, 0.3, f"{kind}: delivered")
            assert cancelled["cancel_requested"] and cancelled["exc_type"] == EXC_OF_KIND[kind][0], cancelled


# -- R64: wait_for_cancelled / wait_for_cancelled_sync -------------------------------------------------


@pytest.mark.slow
def test_r64_wait_for_cancelled_and_wait_for_cancelled_sync(journals) -> None:
    """R64, R65, D4: `await activity.wait_for_cancelled()` returns once the cancellation is
    delivered; `wait_for_cancelled_sync(timeout)` returns False after `timeout` when not cancelled,
    and True at once when cancelled; the sync activity also gets CancelledError in its thread.
    Heartbeats every 0.1 s, throttled at 0.8 s (default_heartbeat_throttle_interval, no
    heartbeat_timeout); cancel() at t=0.5 is delivered at t~0.8."""
    with ActorSystem(workers=1, default_heartbeat_throttle_interval=timedelta(seconds=0.8)) as system:
        t0 = time.monotonic()
        handles = {
            kind: system.start_activity(
                fn("await_cancellation", kind), args=[journals(kind), 0.1],
                start_to_close_timeout=timedelta(seconds=30), cancellation_type=WAIT)
            for kind in KINDS
        }
        time.sleep(max(0.0, t0 + 0.5 - time.monotonic()))
        for handle in handles.values():
            handle.cancel()
        for kind, handle in handles.items():
            assert handle.result(timeout=5) == "noticed the cancellation", kind
    notes = read_notes(journals("async"), "cancelled")[0]
    assert notes["waiter_done"] and notes["is_cancelled"] and notes["cancel_requested"], notes
    timed = read_notes(journals("sync"), "timed wait")[0]
    assert timed["result"] is False and 0.15 <= timed["waited"] < 0.6, timed
    raised = read_notes(journals("sync"), "raised")
    assert raised, f"D4: no CancelledError raised in the thread: {read_notes(journals('sync'))}"
    assert raised[0]["exc_type"] == "actorflow.exceptions.CancelledError", raised
    late = read_notes(journals("sync"), "cancelled")[0]
    assert late["result"] is True and late["waited"] < 0.1 and late["is_cancelled"], late


# -- D2: timeouts stop the running attempt at once ---------------------------------------------------------


@pytest.mark.slow
def test_d2_start_to_close_and_schedule_to_close_cancel_the_running_attempt_at_once(journals) -> None:
    """D2: when start-to-close passes, or schedule-to-close ends the execution while an attempt
    runs, the worker is told to cancel the attempt at once, without any heartbeat (R65: timed_out);
    the caller gets the timeout."""
    cases = {"stc": {"start_to_close_timeout": timedelta(seconds=1)},
             "s2c": {"schedule_to_close_timeout": timedelta(seconds=1)}}
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handles = {
            (kind, name): system.start_activity(
                fn("sleep_then_42", kind), args=[journals(f"{kind}-{name}"), 10.0],
                retry_policy=RetryPolicy(maximum_attempts=1), **timeouts)
            for kind in KINDS for name, timeouts in cases.items()
        }
        for (kind, name), handle in handles.items():
            error = handle.exception(timeout=5)
            about(time.monotonic() - t0, 1.0, 0.4, f"{kind}, {name}: caller's error")
            assert isinstance(error, ActivityError) and isinstance(error.cause, TimeoutError), repr(error)
            expected = TimeoutType.START_TO_CLOSE if name == "stc" else TimeoutType.SCHEDULE_TO_CLOSE
            assert error.cause.type is expected
        for kind in KINDS:
            for name in cases:
                cancelled = wait_for_note(journals(f"{kind}-{name}"), "cancelled", timeout=5)
                about(cancelled["t"] - t0, 1.0, 0.4, f"{kind}, {name}: attempt cancelled")
                assert cancelled["timed_out"] and cancelled["is_cancelled"], cancelled
                assert cancelled["exc_type"] == EXC_OF_KIND[kind][0], cancelled


@pytest.mark.slow
def test_d2_attempt_that_ignores_its_cancellation_is_killed_after_stop_grace(journals) -> None:
    """D2: a sync activity stuck in one blocking call cannot see the injected CancelledError; its
    worker is killed stop_grace after the timeout and replaced; the system goes on working."""
    with ActorSystem(workers=1, stop_grace=timedelta(seconds=0.5)) as system:
        pids = system.worker_pids()
        t0 = time.monotonic()
        handle = system.start_activity(acts.block_sync, args=[journals("block"), 30.0],
                                       start_to_close_timeout=timedelta(seconds=0.5),
                                       retry_policy=RetryPolicy(maximum_attempts=1))
        error = handle.exception(timeout=5)
        assert isinstance(error.cause, TimeoutError) and error.cause.type is TimeoutType.START_TO_CLOSE
        deadline = time.monotonic() + 5
        while system.worker_pids() == pids and time.monotonic() < deadline:
            time.sleep(0.02)
        about(time.monotonic() - t0, 1.0, 0.5, "worker killed")
        assert system.worker_pids() != pids
        assert system.start_activity(acts.quick_sync, 41, start_to_close_timeout=timedelta(seconds=10)
                                     ).result(timeout=20) == 42
    assert not read_notes(journals("block"), "woke")

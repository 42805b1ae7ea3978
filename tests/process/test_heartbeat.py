"""Heartbeats end to end against real worker processes (issue 3; SEMANTICS.md R45-R58, R9, R10).

Scenarios S9-S13 run scaled down in time, each for an async and a sync activity at once (both
kinds share one system and one timeline). What reaches the runtime is observed in the parent with
``HeartbeatSpy``; what the activity saw comes from its journal (see ``hb_activities``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from actorflow import ActorSystem, RetryPolicy, activity
from actorflow.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from tests.process import hb_activities as acts
from tests.process.hb_activities import HeartbeatSpy, Progress, about, read_notes, wait_for_note

KINDS = {"async": "", "sync": "_sync"}


def fn(name: str, kind: str):
    return getattr(acts, name + KINDS[kind])


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> HeartbeatSpy:
    return HeartbeatSpy().install(monkeypatch)


@pytest.fixture
def journals(tmp_path):
    """One journal file per kind: ``journals(kind)`` -> its path."""
    return lambda kind: str(tmp_path / f"journal-{kind}.jsonl")


def beats(spy: HeartbeatSpy, activity_id: str) -> list:
    return [d for _, _, d in spy.of(activity_id)]


# -- R45, R47: the API ------------------------------------------------------------------------


def test_activity_functions_outside_an_activity_raise_runtime_error() -> None:
    """R47, R71, API.md: only inside an activity; the message says so."""
    for call in (lambda: activity.heartbeat("x"), activity.info, activity.is_cancelled,
                 lambda: activity.wait_for_cancelled_sync(0), activity.cancellation_details):
        with pytest.raises(RuntimeError, match="Not in activity context"):
            call()
    with pytest.raises(RuntimeError, match="Not in activity context"):
        asyncio.run(activity.wait_for_cancelled())
    assert activity.in_activity() is False


@pytest.mark.slow
def test_heartbeat_returns_at_once_and_any_picklable_details_reach_the_next_attempt(
    monkeypatch: pytest.MonkeyPatch, journals
) -> None:
    """R45, R46, R54, R55, D7: heartbeat() never waits for the parent, however slow the parent is
    in handling heartbeats; details are any picklable values, their types survive, the latest win.
    """
    slow = HeartbeatSpy().install(monkeypatch, delay=0.3)  # the parent takes 0.3 s per heartbeat
    n = 500
    with ActorSystem(workers=1) as system:
        handles = {
            kind: system.start_activity(fn("beat_burst", kind), args=[journals(kind), n],
                                        start_to_close_timeout=timedelta(seconds=20),
                                        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=0.1),
                                                                 maximum_attempts=2))
            for kind in KINDS
        }
        for kind, handle in handles.items():
            seen = handle.result(timeout=20)
            # attempt 1's latest call, held back by the throttle, travelled with its failure (R55)
            assert seen == [Progress(n, n), {"i": n - 1}, b"\x00", None], kind
            assert isinstance(seen[0], Progress), "D7: heartbeat details keep their Python types"
            burst = read_notes(journals(kind), "burst")[0]
            assert burst["total"] < 1.0, f"{kind}: {n} heartbeat() calls took {burst['total']:.3f} s"
            assert burst["slowest"] < 0.2, f"{kind}: one heartbeat() call took {burst['slowest']:.3f} s"
    # throttled (default interval 30 s): only the first call of the burst was sent as a heartbeat
    assert [len(beats(slow, h.activity_id)) for h in handles.values()] == [1, 1]


# -- S9: heartbeat timeout carries the details; D2 stops the attempt ----------------------------


@pytest.mark.slow
def test_s9_heartbeat_timeout_carries_details_and_stops_the_attempt(journals) -> None:
    """S9 (R9, R18, D2): heartbeat_timeout=1s, RP(maximum_attempts=1), stc=3min; the activity
    heartbeats "some details!" then sleeps 3 s. At t~1 the caller gets
    ActivityError(MAXIMUM_ATTEMPTS_REACHED) caused by TimeoutError(HEARTBEAT, "activity Heartbeat
    timeout", last_heartbeat_details=["some details!"]); the worker cancels the attempt at once (D2).
    """
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handles = {
            kind: system.start_activity(
                fn("beat_once_then_sleep", kind), args=[journals(kind), "some details!", [3.0], False],
                start_to_close_timeout=timedelta(minutes=3), heartbeat_timeout=timedelta(seconds=1),
                retry_policy=RetryPolicy(maximum_attempts=1))
            for kind in KINDS
        }
        for kind, handle in handles.items():
            error = handle.exception(timeout=10)
            about(time.monotonic() - t0, 1.0, 0.5, f"{kind}: caller's error")
            assert isinstance(error, ActivityError), repr(error)
            assert str(error) == "Activity task timed out"
            assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
            cause = error.cause
            assert isinstance(cause, TimeoutError) and cause is error.__cause__
            assert cause.type is TimeoutType.HEARTBEAT
            assert cause.message == "activity Heartbeat timeout"
            assert list(cause.last_heartbeat_details) == ["some details!"]
        for kind in KINDS:
            cancelled = wait_for_note(journals(kind), "cancelled", timeout=5)
            start = read_notes(journals(kind), "start")[0]
            # D2: told at the deadline itself, not at the sleep's end (t~3) nor at stop_grace (t~6)
            about(cancelled["t"] - start["t"], 1.0, 0.5, f"{kind}: attempt cancelled")
            assert cancelled["is_cancelled"] and cancelled["timed_out"], cancelled
            assert not cancelled["cancel_requested"], cancelled


@pytest.mark.slow
def test_d2_late_result_of_a_timed_out_attempt_is_discarded(journals) -> None:
    """D2, R4, R81: attempt 1 misses its heartbeat deadline (0.5 s), swallows the cancellation and
    returns at t~1.0 anyway; attempt 2 (t~1.3) returns at t~1.4. Only attempt 2's result counts."""
    with ActorSystem(workers=1) as system:
        handles = {
            kind: system.start_activity(
                fn("beat_once_then_sleep", kind), args=[journals(kind), "x", [1.0, 0.1], True],
                start_to_close_timeout=timedelta(seconds=10), heartbeat_timeout=timedelta(seconds=0.5),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=0.8), maximum_attempts=2))
            for kind in KINDS
        }
        for kind, handle in handles.items():
            assert handle.result(timeout=10) == "attempt 2 returned", kind
            returns = {n["attempt"]: n for n in read_notes(journals(kind), "returning")}
            assert set(returns) == {1, 2}, f"{kind}: attempt 1 did return late: {returns}"
            assert returns[1]["t"] < returns[2]["t"], f"{kind}: attempt 1's result came first"
            cancelled = read_notes(journals(kind), "cancelled")
            assert [c["attempt"] for c in cancelled] == [1] and cancelled[0]["timed_out"], cancelled


@pytest.mark.slow
def test_r57_heartbeat_timeout_reports_details_of_an_earlier_attempt(journals) -> None:
    """R54, R57, R18: attempt 1 heartbeats and fails; attempt 2 sees the details, never heartbeats
    and times out on heartbeat; the TimeoutError carries attempt 1's details."""
    path = journals("async")
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handle = system.start_activity(
            acts.beat_fail_then_hang, path, start_to_close_timeout=timedelta(seconds=10),
            heartbeat_timeout=timedelta(seconds=0.5),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=0.2), maximum_attempts=2))
        error = handle.exception(timeout=10)
        about(time.monotonic() - t0, 0.7, 0.4, "attempt 2's heartbeat timeout")
    assert isinstance(error, ActivityError) and error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    assert isinstance(error.cause, TimeoutError) and error.cause.type is TimeoutType.HEARTBEAT
    assert list(error.cause.last_heartbeat_details) == ["from attempt 1"]
    assert [n["seen"] for n in read_notes(path, "start")] == [[], ["from attempt 1"]]


# -- S10: resuming from heartbeat details ------------------------------------------------------


@pytest.mark.slow
def test_s10_resuming_from_heartbeat_details(journals) -> None:
    """S10 (R54): RP(maximum_attempts=4), intervals scaled to 0.2 s, 0.4 s, 0.8 s. Attempts see
    [], [9], [18], [27]; attempt 4 returns "final count: 36" (at t~1.4)."""
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handles = {
            kind: system.start_activity(
                fn("resume_count", kind), journals(kind), start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=0.2), maximum_attempts=4))
            for kind in KINDS
        }
        for kind, handle in handles.items():
            assert handle.result(timeout=10) == "final count: 36", kind
            # Backoffs are honoured (lower bound); the upper bound allows a cold worker's first
            # import under a loaded machine.
            elapsed = time.monotonic() - t0
            assert 1.4 - 0.05 <= elapsed <= 1.4 + 1.5, f"{kind}: success at {elapsed:.3f} s"
            starts = read_notes(journals(kind), "start")
            assert [(n["attempt"], n["seen"]) for n in starts] == [(1, []), (2, [9]), (3, [18]), (4, [27])]


# -- S11, S12, R49-R53: throttling ---------------------------------------------------------------


@pytest.mark.slow
def test_s11_throttling_sends_first_call_then_latest_each_interval(spy: HeartbeatSpy, journals) -> None:
    """S11 (R49-R51), scaled by 0.2: heartbeat_timeout=2s (throttle 1.6 s); heartbeat(k) at
    t=0, 0.6, ... 3.6 with k=0, 3, ... 18 (S11's own seconds). The runtime receives 0 at t~0, 6 at
    t~1.6, 15 at t~3.2; no heartbeat timeout (gaps of 1.6 s < 2 s); 18 is never sent (success)."""
    calls = [(0.6 * i, [3 * i]) for i in range(7)]
    with ActorSystem(workers=1) as system:
        handles = {
            kind: system.start_activity(
                fn("beat_schedule", kind), args=[journals(kind), calls, "return", 3.6],
                start_to_close_timeout=timedelta(seconds=20), heartbeat_timeout=timedelta(seconds=2),
                retry_policy=RetryPolicy(maximum_attempts=1))
            for kind in KINDS
        }
        for kind, handle in handles.items():
            assert handle.result(timeout=20) == "done", kind
    for kind, handle in handles.items():
        received = spy.of(handle.activity_id)
        assert [d for _, _, d in received] == [(0,), (6,), (15,)], f"{kind}: {received}"
        start = read_notes(journals(kind), "start")[0]["t"]
        for (t, _, d), expected in zip(received, (0.0, 1.6, 3.2)):
            about(t - start, expected, 0.35, f"{kind}: heartbeat {d} received")


@pytest.mark.slow
def test_s12_spaced_out_heartbeats_are_sent_at_once_and_no_timeout_without_heartbeat_timeout(
    spy: HeartbeatSpy, journals
) -> None:
    """S12 (R50.3, R10, R49), scaled: no heartbeat_timeout, default_heartbeat_throttle_interval=0.5s
    (an ActorSystem option). Calls at t=0 and t=1.2 are each sent at once (nothing was pending at
    t~0.5, so the state was dropped); a call at 1.3 is held back until t~1.7 (the default interval
    applies). No heartbeat timer runs (R10): nothing times out while the activity is silent."""
    calls = [(0.0, ["a"]), (1.2, ["b"]), (1.3, ["c"])]
    with ActorSystem(workers=1, default_heartbeat_throttle_interval=timedelta(seconds=0.5)) as system:
        handles = {
            kind: system.start_activity(
                fn("beat_schedule", kind), args=[journals(kind), calls, "return", 2.0],
                start_to_close_timeout=timedelta(seconds=20), retry_policy=RetryPolicy(maximum_attempts=1))
            for kind in KINDS
        }
        for kind, handle in handles.items():
            assert handle.result(timeout=20) == "done", kind
    for kind, handle in handles.items():
        received = spy.of(handle.activity_id)
        assert [d for _, _, d in received] == [("a",), ("b",), ("c",)], f"{kind}: {received}"
        start = read_notes(journals(kind), "start")[0]["t"]
        for (t, _, d), expected in zip(received, (0.0, 1.2, 1.7)):
            about(t - start, expected, 0.25, f"{kind}: heartbeat {d} received")


@pytest.mark.slow
def test_r49_max_heartbeat_throttle_interval_caps_both_intervals(spy: HeartbeatSpy, journals) -> None:
    """R49: interval = min(0.8 x heartbeat_timeout or the default interval, the max interval).
    With default 2 s and max 0.4 s, both an activity without heartbeat_timeout and one with 5 s
    (0.8 x 5 = 4 s) are throttled at 0.4 s: calls at 0, 0.1, 0.2 -> sends at 0 and ~0.4."""
    calls = [(0.0, [0]), (0.1, [1]), (0.2, [2])]
    with ActorSystem(workers=1, default_heartbeat_throttle_interval=timedelta(seconds=2),
                     max_heartbeat_throttle_interval=timedelta(seconds=0.4)) as system:
        handles = {
            (kind, hb): system.start_activity(
                fn("beat_schedule", kind), args=[journals(f"{kind}-{hb}"), calls, "return", 1.0],
                start_to_close_timeout=timedelta(seconds=20),
                heartbeat_timeout=timedelta(seconds=hb) if hb else None)
            for kind in KINDS for hb in (0, 5)
        }
        for key, handle in handles.items():
            assert handle.result(timeout=20) == "done", key
    for (kind, hb), handle in handles.items():
        received = spy.of(handle.activity_id)
        assert [d for _, _, d in received] == [(0,), (2,)], f"{kind}, heartbeat_timeout={hb}: {received}"
        start = read_notes(journals(f"{kind}-{hb}"), "start")[0]["t"]
        about(received[1][0] - start, 0.4, 0.2, f"{kind}, heartbeat_timeout={hb}: second send")


@pytest.mark.slow
def test_r53_only_heartbeats_that_reach_the_runtime_rearm_the_timer(spy: HeartbeatSpy, journals) -> None:
    """R9, R53: heartbeat_timeout=1s (throttle 0.8 s); calls at t=0 and t=0.3, then silence. The
    0.3 call is held back and sent at t~0.8; the timer is re-armed then, so the heartbeat timeout
    fires at t~1.8 (not 1.0, and not 1.3 as if the held-back call had counted), with its details."""
    calls = [(0.0, ["first"]), (0.3, ["second"])]
    with ActorSystem(workers=1) as system:
        handles = {
            kind: system.start_activity(
                fn("beat_schedule", kind), args=[journals(kind), calls, "hang", 0.3],
                start_to_close_timeout=timedelta(seconds=20), heartbeat_timeout=timedelta(seconds=1),
                retry_policy=RetryPolicy(maximum_attempts=1))
            for kind in KINDS
        }
        errors = {kind: handle.exception(timeout=20) for kind, handle in handles.items()}
        ended = time.monotonic()
    for kind, error in errors.items():
        assert isinstance(error, ActivityError) and isinstance(error.cause, TimeoutError), repr(error)
        assert error.cause.type is TimeoutType.HEARTBEAT
        assert list(error.cause.last_heartbeat_details) == ["second"]
        start = read_notes(journals(kind), "start")[0]["t"]
        received = spy.of(handles[kind].activity_id)
        assert [d for _, _, d in received] == [("first",), ("second",)], f"{kind}: {received}"
        about(received[1][0] - start, 0.8, 0.25, f"{kind}: held-back heartbeat sent")
        cancelled = wait_for_note(journals(kind), "cancelled", timeout=5)  # D2
        about(cancelled["t"] - start, 1.8, 0.3, f"{kind}: heartbeat timeout")
    assert ended - start >= 1.55


# -- S13, R46, R55: what a failing attempt leaves for the next one --------------------------------


@pytest.mark.slow
def test_s13_failure_carries_latest_details_and_empty_heartbeat_clears_them(journals) -> None:
    """S13 (R46, R55): heartbeat_timeout=1s (throttle 0.8 s), RP(maximum_attempts=2).
    - heartbeat("a") at 0, heartbeat() at 0.5 (held back), raise at 0.6 -> attempt 2 sees [];
    - heartbeat("a") at 0, raise at once -> attempt 2 sees ["a"];
    - heartbeat("a") at 0, heartbeat("b") at 0.3 (held back), raise at 0.4 -> attempt 2 sees ["b"].
    """
    variants = {
        "cleared": ([(0.0, ["a"]), (0.5, [])], 0.6, []),
        "sent": ([(0.0, ["a"])], 0.0, ["a"]),
        "held back": ([(0.0, ["a"]), (0.3, ["b"])], 0.4, ["b"]),
    }
    with ActorSystem(workers=1) as system:
        handles = {
            (kind, name): system.start_activity(
                fn("beat_schedule", kind), args=[journals(f"{kind}-{name}"), calls, "raise", end],
                start_to_close_timeout=timedelta(seconds=10), heartbeat_timeout=timedelta(seconds=1),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=0.3), maximum_attempts=2))
            for kind in KINDS for name, (calls, end, _) in variants.items()
        }
        for (kind, name), handle in handles.items():
            error = handle.exception(timeout=10)
            assert isinstance(error, ActivityError), repr(error)
            assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
            assert isinstance(error.cause, ApplicationError) and error.cause.type == "ValueError"
            seen = [n["seen"] for n in read_notes(journals(f"{kind}-{name}"), "start")]
            assert seen == [[], variants[name][2]], f"{kind}, {name}: attempts saw {seen}"


# -- R48: details that cannot be pickled ------------------------------------------------------------


@pytest.mark.slow
def test_r48_unpicklable_details_fail_the_attempt_with_the_encoding_error(journals) -> None:
    """R48, API.md: the attempt is cancelled and fails with ApplicationError(type=<the pickling
    error's class>), retryable under the policy (here maximum_attempts=1)."""
    with ActorSystem(workers=1) as system:
        t0 = time.monotonic()
        handles = {
            kind: system.start_activity(fn("beat_unpicklable", kind), journals(kind),
                                        start_to_close_timeout=timedelta(seconds=20),
                                        retry_policy=RetryPolicy(maximum_attempts=1))
            for kind in KINDS
        }
        for kind, handle in handles.items():
            error = handle.exception(timeout=10)
            assert time.monotonic() - t0 < 2.0, f"{kind}: the attempt was not stopped at once"
            assert isinstance(error, ActivityError), repr(error)
            assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED, "retryable (R48)"
            cause = error.cause
            assert isinstance(cause, ApplicationError) and cause.type == "TypeError", repr(cause)
            assert "heartbeat details" in cause.message and not cause.non_retryable


@pytest.mark.slow
def test_r44_details_that_one_side_cannot_unpickle(journals) -> None:
    """Details the calling process cannot unpickle do not break the runtime: the heartbeat counts,
    the next attempt (a worker, which can) gets them. Details the worker cannot unpickle for the
    next attempt fail it with "Failed decoding heartbeat details", not retryable (R44)."""
    with ActorSystem(workers=1, supervisors=1) as system:
        policy = RetryPolicy(initial_interval=timedelta(seconds=0.1), maximum_attempts=3)
        handles = {
            fail_in: system.start_activity(acts.beat_one_sided, args=[journals(fail_in), fail_in],
                                           start_to_close_timeout=timedelta(seconds=10), retry_policy=policy)
            for fail_in in ("parent", "worker")
        }
        assert handles["parent"].result(timeout=10) == ["decoded in the worker"]
        error = handles["worker"].exception(timeout=10)
        assert isinstance(error, ActivityError), repr(error)
        assert error.retry_state is RetryState.NON_RETRYABLE_FAILURE, error
        cause = error.cause
        assert isinstance(cause, ApplicationError) and cause.non_retryable, repr(cause)
        assert cause.message.startswith("Failed decoding heartbeat details"), cause.message
        assert [n["attempt"] for n in read_notes(journals("worker"), "start")] == [1], "attempt 2 never ran"
        # the system is still whole: a third execution on the same supervisor completes
        assert system.start_activity(acts.quick_sync, 1, start_to_close_timeout=timedelta(seconds=10)
                                     ).result(timeout=10) == 2

"""Per-execution history (``handle.history()``) and ``ActorSystem.statistics()``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from actorflow import ActorSystem, RetryPolicy, activity
from actorflow.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError

pytestmark = pytest.mark.slow

STC = timedelta(seconds=20)


@activity.defn
def always_boom() -> None:
    raise ValueError("boom")


@activity.defn
def later() -> None:
    raise ApplicationError("later", next_retry_delay=timedelta(seconds=0.15))


@activity.defn
async def hang() -> None:
    import asyncio

    activity.heartbeat("started")
    await asyncio.sleep(60)


@activity.defn
def double(x: int) -> int:
    return 2 * x


def test_S1_history_shows_five_attempts_and_four_intervals_with_their_reasons():
    """S1 scaled by 0.1: RP(0.1s, 2.0, 0.2s, 5) -> intervals 0.1, 0.2, 0.2, 0.2 (R27, R29.4)."""
    policy = RetryPolicy(initial_interval=timedelta(seconds=0.1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=0.2), maximum_attempts=5)
    with ActorSystem(workers=1) as system:
        handle = system.start_activity(always_boom, start_to_close_timeout=STC, retry_policy=policy)
        with pytest.raises(ActivityError):
            handle.result(timeout=20)
        events = handle.history()
    kinds = [e.kind for e in events]
    assert kinds[0] == "scheduled" and kinds[-1] == "closed"
    assert kinds.count("attempt_started") == 5
    starts = [e for e in events if e.kind == "attempt_started"]
    assert [e.attempt for e in starts] == [1, 2, 3, 4, 5]
    assert all(isinstance(e.detail["worker_pid"], int) for e in starts)
    failures = [e for e in events if e.kind == "attempt_failed"]
    assert [e.attempt for e in failures] == [1, 2, 3, 4, 5]
    assert [f.detail["next_delay"] for f in failures[:4]] == pytest.approx([0.1, 0.2, 0.2, 0.2])
    assert all(isinstance(f.detail["failure"], ApplicationError) for f in failures)
    assert "R27" in failures[0].detail["reason"] and "capped" not in failures[0].detail["reason"]
    assert all("capped by maximum_interval" in f.detail["reason"] for f in failures[2:4])
    assert failures[4].detail["next_delay"] is None
    assert "maximum_attempts=5" in failures[4].detail["reason"]
    closed = events[-1]
    assert closed.detail["outcome"] == "failed"
    assert closed.detail["retry_state"] is RetryState.MAXIMUM_ATTEMPTS_REACHED
    # each retry starts one interval after the failure before it, on the system clock
    for failure, start in zip(failures[:4], starts[1:]):
        gap = (start.time - failure.time).total_seconds()
        assert failure.detail["next_delay"] - 0.01 <= gap <= failure.detail["next_delay"] + 0.5
    times = [e.time for e in events]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)


def test_R33_history_names_next_retry_delay_as_the_reason():
    with ActorSystem(workers=1) as system:
        handle = system.start_activity(later, start_to_close_timeout=STC,
                                       retry_policy=RetryPolicy(maximum_attempts=2))
        with pytest.raises(ActivityError):
            handle.result(timeout=20)
        failures = [e for e in handle.history() if e.kind == "attempt_failed"]
    assert failures[0].detail["next_delay"] == pytest.approx(0.15)
    assert "next_retry_delay" in failures[0].detail["reason"]


def test_history_records_heartbeats_cancel_and_timeout():
    with ActorSystem(workers=1) as system:
        handle = system.start_activity(hang, start_to_close_timeout=timedelta(seconds=0.5),
                                       retry_policy=RetryPolicy(maximum_attempts=1))
        with pytest.raises(ActivityError) as info:
            handle.result(timeout=20)
        assert isinstance(info.value.cause, TimeoutError)
        kinds = [e.kind for e in handle.history()]
        assert kinds == ["scheduled", "attempt_started", "heartbeat", "attempt_failed", "closed"]
        assert handle.history()[2].detail["details"] == ("started",)

        cancelled = system.start_activity(hang, start_to_close_timeout=STC)
        with pytest.raises(ActivityError):
            cancelled.cancel()
            cancelled.result(timeout=20)
        assert "cancel_requested" in [e.kind for e in cancelled.history()]


def test_statistics_count_outcomes_by_kind():
    with ActorSystem(workers=1) as system:
        assert system.start_activity(double, 2, start_to_close_timeout=STC).result(timeout=20) == 4
        failed = system.start_activity(always_boom, start_to_close_timeout=STC,
                                       retry_policy=RetryPolicy(maximum_attempts=1))
        timed_out = system.start_activity(hang, start_to_close_timeout=timedelta(seconds=0.3),
                                          retry_policy=RetryPolicy(maximum_attempts=1))
        for handle in (failed, timed_out):
            with pytest.raises(ActivityError):
                handle.result(timeout=20)
        stats = system.statistics()
    assert (stats.completed, stats.failed) == (1, 1)
    assert stats.timed_out == {"START_TO_CLOSE": 1}
    assert (stats.pending, stats.running, stats.retrying) == (0, 0, 0)
    assert stats.workers == stats.workers_ready == 1

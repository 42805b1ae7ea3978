"""A ``VirtualClock`` driving a real ``ActorSystem`` (real spawned workers): SEMANTICS.md scenarios
whose timings are minutes of virtual time run in well under 3 s of real time, with the exact
virtual timings (R28/S2, S3, S6, S9, R9, R17, R29.6). While an attempt runs, virtual time runs at
the real rate, so drift of a few milliseconds per attempt is allowed; nothing may come *early*.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, List

import pytest

from actorflow import ActivityHandle, ActorSystem, RetryPolicy
from actorflow.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError, TimeoutType
from actorflow.testing import VirtualClock
from tests.testing import activities as acts

pytestmark = pytest.mark.slow

REAL_BUDGET = 3.0  # seconds of real time a skipped scenario may take (the bar)
DRIFT = 0.3  # seconds of virtual time an attempt may add by running (real rate); generous, 2 shared cores


@pytest.fixture
def path(tmp_path: Path) -> str:
    journal = tmp_path / "journal.jsonl"
    journal.touch()
    return str(journal)


def offsets(handle: ActivityHandle, kind: str) -> List[float]:
    """Virtual seconds from the execution's scheduling to each history event of ``kind``."""
    events = handle.history()
    if not events:
        return []
    t0 = events[0].time
    return [(e.time - t0).total_seconds() for e in events if e.kind == kind]


def assert_times(actual: List[float], expected: List[float], attempts_before: int = 0) -> None:
    """Each time is at or after its expected value, late by at most DRIFT per attempt that ran
    before it (the ``attempts_before`` ones, then one more per listed event)."""
    assert len(actual) == len(expected), (actual, expected)
    for n, (a, e) in enumerate(zip(actual, expected), start=attempts_before + 1):
        late = DRIFT * n
        assert e - 0.002 <= a <= e + late, f"{a:.3f}s, expected {e}s + {late:g}s at most (all: {actual})"


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_S2_R28_default_backoff_of_eight_failures_in_virtual_time(
    actorflow_time_skipping_system: ActorSystem, actorflow_clock: VirtualClock, path: str
) -> None:
    """Default policy, eight failures: attempts begin at t = 0, 1, 3, 7, 15, 31, 63, 127 (R28), and
    the ninth, which succeeds, at 227 (the eighth interval is capped at 100 s)."""
    started = time.monotonic()
    handle = actorflow_time_skipping_system.start_activity(
        acts.fail_until, args=[path, 8], start_to_close_timeout=timedelta(seconds=10))
    assert handle.result(timeout=30) == 9
    elapsed = time.monotonic() - started

    journal = acts.read(path)
    assert [r["attempt"] for r in journal] == list(range(1, 10))
    # info().current_attempt_scheduled_time relative to info().scheduled_time
    assert_times([r["scheduled"] for r in journal], [0, 1, 3, 7, 15, 31, 63, 127, 227])
    for r in journal:  # each attempt started at once: skipping never delays a start
        assert 0 <= r["started"] - r["scheduled"] < DRIFT
    assert elapsed < REAL_BUDGET, f"took {elapsed:.2f} s of real time"
    assert actorflow_clock.skipped >= timedelta(seconds=226)


def test_heartbeat_timeouts_with_backoffs_of_minutes(
    actorflow_time_skipping_system: ActorSystem, actorflow_clock: VirtualClock, path: str
) -> None:
    """R9, R17, R18, R57 with minutes between attempts: heartbeat_timeout=0.25s, RP(60s, 2.0, None, 3).

    Each attempt heartbeats once, then hangs; it times out 0.25 s after its start (real time: it
    is running), and the next attempt starts 60 s, then 120 s later (skipped). Attempts at t = 0,
    60.25, 180.5; the execution ends at 180.75 with MAXIMUM_ATTEMPTS_REACHED caused by a HEARTBEAT
    TimeoutError carrying the last details, whose cause is attempt 2's heartbeat timeout.
    """
    started = time.monotonic()
    handle = actorflow_time_skipping_system.start_activity(
        acts.heartbeat_then_hang, args=[path, "progress"],
        start_to_close_timeout=timedelta(minutes=10),
        heartbeat_timeout=timedelta(seconds=0.25),
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=60), maximum_attempts=3),
    )
    with pytest.raises(ActivityError) as caught:
        handle.result(timeout=30)
    elapsed = time.monotonic() - started

    error = caught.value
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    timeout = error.cause
    assert isinstance(timeout, TimeoutError) and timeout.type is TimeoutType.HEARTBEAT
    assert list(timeout.last_heartbeat_details) == ["progress"]
    previous = timeout.__cause__  # R17: attempt 2's timeout
    assert isinstance(previous, TimeoutError) and previous.type is TimeoutType.HEARTBEAT

    assert_times([r["scheduled"] for r in acts.read(path)], [0, 60.25, 180.5])
    assert_times(offsets(handle, "closed"), [180.75], attempts_before=2)
    assert elapsed < REAL_BUDGET, f"took {elapsed:.2f} s of real time"


def test_S9_scaled_to_minutes_with_advance(
    actorflow_time_skipping_system: ActorSystem, actorflow_clock: VirtualClock, path: str
) -> None:
    """S9 with heartbeat_timeout=60s: the activity heartbeats "some details!" and then blocks, so
    the system is busy and nothing skips; advancing the clock by 60 s times it out at t≈60."""
    handle = actorflow_time_skipping_system.start_activity(
        acts.heartbeat_then_hang, args=[path, "some details!"],
        start_to_close_timeout=timedelta(minutes=3),
        heartbeat_timeout=timedelta(seconds=60),
        retry_policy=RetryPolicy(maximum_attempts=1),
    )
    wait_until(lambda: offsets(handle, "heartbeat"))  # the runtime has recorded the heartbeat
    time.sleep(0.1)
    assert not handle.done()  # running: no automatic skip past the heartbeat deadline
    actorflow_clock.advance(timedelta(seconds=60))
    with pytest.raises(ActivityError) as caught:
        handle.result(timeout=10)
    error = caught.value
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    assert isinstance(error.cause, TimeoutError) and error.cause.type is TimeoutType.HEARTBEAT
    assert list(error.cause.last_heartbeat_details) == ["some details!"]
    assert_times(offsets(handle, "closed"), [60.0])


def test_S3_schedule_to_close_of_minutes_stops_retries_early(
    actorflow_time_skipping_system: ActorSystem, path: str
) -> None:
    """S3 scaled by 60: s2c=10min, RP(initial_interval=60s), always ValueError. Attempts at t = 0,
    60, 180, 420; the next would start at 900 > 600, so at t≈420 (not 600) ActivityError(TIMEOUT)
    caused by attempt 4's ApplicationError (R29 step 6)."""
    started = time.monotonic()
    handle = actorflow_time_skipping_system.start_activity(
        acts.always_fail, path,
        schedule_to_close_timeout=timedelta(minutes=10),
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=60)),
    )
    with pytest.raises(ActivityError) as caught:
        handle.result(timeout=30)
    elapsed = time.monotonic() - started

    assert caught.value.retry_state is RetryState.TIMEOUT
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ValueError"
    assert_times([r["scheduled"] for r in acts.read(path)], [0, 60, 180, 420])
    assert_times(offsets(handle, "closed"), [420], attempts_before=3)
    assert elapsed < REAL_BUDGET, f"took {elapsed:.2f} s of real time"


def test_S6_schedule_to_close_fires_mid_attempt_after_a_long_backoff(
    actorflow_time_skipping_system: ActorSystem, path: str
) -> None:
    """S2C timer firing (R6, R16, R17): s2c=10min, RP(initial_interval=598.8s). Attempt 1 fails at
    once; attempt 2 starts at t≈598.8 (skipped) and hangs; at exactly t=600 the caller gets
    TimeoutError(SCHEDULE_TO_CLOSE) whose cause is attempt 1's failure."""
    started = time.monotonic()
    handle = actorflow_time_skipping_system.start_activity(
        acts.fail_first_then_hang, path,
        schedule_to_close_timeout=timedelta(minutes=10),
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=598.8)),
    )
    with pytest.raises(ActivityError) as caught:
        handle.result(timeout=30)
    elapsed = time.monotonic() - started

    error = caught.value
    assert error.retry_state is RetryState.TIMEOUT
    assert isinstance(error.cause, TimeoutError) and error.cause.type is TimeoutType.SCHEDULE_TO_CLOSE
    assert isinstance(error.cause.__cause__, ApplicationError) and error.cause.__cause__.type == "ValueError"
    assert_times([r["scheduled"] for r in acts.read(path)], [0, 598.8])
    closed = offsets(handle, "closed")
    assert closed == [pytest.approx(600.0, abs=0.002)]  # fed at the deadline itself
    assert elapsed < REAL_BUDGET, f"took {elapsed:.2f} s of real time"


def test_S4_start_to_close_timeouts_with_backoffs_of_minutes(
    actorflow_time_skipping_system: ActorSystem, path: str
) -> None:
    """S4 with minute backoffs: stc=0.25s, RP(60s, 2.0, None, 3), the activity hangs. Attempts run
    0-0.25, 60.25-60.5, 180.5-180.75 (R7, R27); MAXIMUM_ATTEMPTS_REACHED caused by a
    START_TO_CLOSE TimeoutError whose cause is attempt 2's (R17)."""
    started = time.monotonic()
    handle = actorflow_time_skipping_system.start_activity(
        acts.hang, path,
        start_to_close_timeout=timedelta(seconds=0.25),
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=60), maximum_attempts=3),
    )
    with pytest.raises(ActivityError) as caught:
        handle.result(timeout=30)
    elapsed = time.monotonic() - started

    error = caught.value
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    assert isinstance(error.cause, TimeoutError) and error.cause.type is TimeoutType.START_TO_CLOSE
    assert isinstance(error.cause.__cause__, TimeoutError)
    assert_times([r["scheduled"] for r in acts.read(path)], [0, 60.25, 180.5])
    assert_times(offsets(handle, "closed"), [180.75], attempts_before=2)
    assert elapsed < REAL_BUDGET, f"took {elapsed:.2f} s of real time"


def test_a_running_attempt_keeps_real_time_and_blocks_skipping(
    actorflow_time_skipping_system: ActorSystem, path: str, tmp_path: Path
) -> None:
    """While an attempt runs, virtual time runs at the real rate: another execution's 60 s backoff
    is not skipped until the running one has finished, and a hung attempt's start-to-close
    timeout takes its real time."""
    other = str(tmp_path / "other.jsonl")
    system = actorflow_time_skipping_system
    runner = system.start_activity(acts.sleep_real, args=[path, 0.8],
                                   start_to_close_timeout=timedelta(seconds=30))
    wait_until(lambda: acts.read(path))  # it runs
    failing = system.start_activity(
        acts.fail_until, args=[other, 1], start_to_close_timeout=timedelta(seconds=10),
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=60)),
    )
    assert runner.result(timeout=30) == "slept"
    assert failing.result(timeout=30) == 2
    end_of_runner = acts.read(path)[-1]["wall"]
    first, second = acts.read(other)
    assert second["wall"] >= end_of_runner  # the backoff was not skipped while the runner ran
    assert second["scheduled"] >= 60  # and it was never shortened
    # the runner's own run took its real 0.8 s of virtual time, not a skipped minute
    run = offsets(runner, "closed")[0] - offsets(runner, "attempt_started")[0]
    assert 0.75 <= run < 0.8 + 1.0

    started = time.monotonic()
    hung = system.start_activity(acts.hang, path, start_to_close_timeout=timedelta(seconds=0.5),
                                 retry_policy=RetryPolicy(maximum_attempts=1))
    with pytest.raises(ActivityError) as caught:
        hung.result(timeout=30)
    assert caught.value.cause.type is TimeoutType.START_TO_CLOSE
    assert time.monotonic() - started >= 0.45  # real time: nothing was skipped while it ran


def test_auto_skip_disabled_then_advance_by_hand(
    actorflow_time_skipping_system: ActorSystem, actorflow_clock: VirtualClock, path: str
) -> None:
    """Without automatic skipping a 60 s backoff waits; ``advance(60s)`` wakes the timer at once."""
    with actorflow_clock.auto_skip_disabled():
        handle = actorflow_time_skipping_system.start_activity(
            acts.fail_until, args=[path, 1], start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=60)),
        )
        wait_until(lambda: offsets(handle, "attempt_failed"))
        time.sleep(0.3)
        assert len(acts.read(path)) == 1 and not handle.done()
        actorflow_clock.advance(timedelta(seconds=60))
        assert handle.result(timeout=10) == 2
    assert_times([r["scheduled"] for r in acts.read(path)], [0, 60])


def test_info_times_come_from_the_virtual_clock(
    actorflow_system_factory: Callable[..., ActorSystem], path: str
) -> None:
    """info() datetimes are the clock's: start + virtual seconds, skips included."""
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    clock = VirtualClock(start=start)
    system = actorflow_system_factory(clock=clock)
    handle = system.start_activity(acts.fail_until, args=[path, 1],
                                   start_to_close_timeout=timedelta(seconds=10),
                                   retry_policy=RetryPolicy(initial_interval=timedelta(hours=1)))
    assert handle.result(timeout=30) == 2
    first, second = acts.read(path)
    scheduled = datetime.fromisoformat(first["scheduled_time"])
    assert start <= scheduled < start + timedelta(seconds=30)  # worker spawn happened before
    assert 3600 <= second["scheduled"] < 3600 + 2 * DRIFT
    assert clock.now() >= 3600 and clock.skips >= 1
    with pytest.raises(RuntimeError, match="own VirtualClock"):
        actorflow_system_factory(clock=clock)  # one clock drives one running system
    assert system.running


def test_advance_from_another_thread_while_idle_and_busy(
    actorflow_time_skipping_system: ActorSystem, actorflow_clock: VirtualClock, path: str
) -> None:
    """advance() is thread-safe and composes with automatic skipping: time only moves forward."""
    readings: List[float] = []
    stop = threading.Event()

    def poke() -> None:
        while not stop.is_set():
            actorflow_clock.advance(timedelta(milliseconds=1))
            readings.append(actorflow_clock.now())
            time.sleep(0.002)

    poker = threading.Thread(target=poke)
    poker.start()
    try:
        handle = actorflow_time_skipping_system.start_activity(
            acts.fail_until, args=[path, 3], start_to_close_timeout=timedelta(seconds=10))
        assert handle.result(timeout=30) == 4
    finally:
        stop.set()
        poker.join()
    assert readings == sorted(readings)
    scheduled = [r["scheduled"] for r in acts.read(path)]
    assert scheduled == sorted(scheduled) and scheduled[-1] >= 7  # 1 + 2 + 4, never shorter


def test_many_executions_in_lockstep_never_skip_past_a_pending_deadline(
    actorflow_time_skipping_system: ActorSystem, tmp_path: Path
) -> None:
    """30 executions each run 5 ms and fail 4 times (default policy, stc=10s), so reports keep
    arriving while the clock decides skips. A skip while an attempt runs would time it out (start-
    to-close timeouts are made non-retryable, so that would fail the execution); a skip past a
    pending backoff deadline would start that attempt late (or early, for a shortened backoff)."""
    paths = [str(tmp_path / f"j{i}.jsonl") for i in range(30)]
    started = time.monotonic()
    handles = [actorflow_time_skipping_system.start_activity(
        acts.fail_until_after, args=[p, 4, 0.005], start_to_close_timeout=timedelta(seconds=10),
        retry_policy=RetryPolicy(non_retryable_error_types=["TemporalTimeout:StartToClose"]),
    ) for p in paths]
    assert [h.result(timeout=60) for h in handles] == [5] * 30
    for p in paths:
        journal = acts.read(p)
        scheduled = [r["scheduled"] for r in journal]
        intervals = [b - a for a, b in zip(scheduled, scheduled[1:])]
        assert all(i >= e for i, e in zip(intervals, [1, 2, 4, 8])), scheduled
        assert all(r["started"] - r["scheduled"] < DRIFT for r in journal), journal
        assert scheduled[-1] < 15 + 5 * DRIFT * 3, scheduled  # and skipping did happen
    assert time.monotonic() - started < 10 * REAL_BUDGET

"""SEMANTICS.md scenarios, scaled down to real time, against real spawned worker processes.

Each test names its scenario (S1, S3, ...) and scales its durations: ``k`` is the factor (0.1
turns SEMANTICS' 1 s into 0.1 s). Activities report every attempt's ``activity.info()`` times
through a journal file (see ``tests.conftest.Journal``), so starts are measured on the system's
own clock. Tolerances are generous because other test suites share this 2-core machine: a
deadline never fires early (lower bounds are tight), lateness is bounded loosely. S1 checks the
issue's 50 ms bound, plus what a probe measures the machine itself adding (see its docstring).
Where a scenario's point is "this happens before that deadline" (S3, S5, S18), the scale leaves
at least 0.25 s between the two.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Iterator, List

import pytest

from actorflow import ActorSystem, RetryPolicy
from actorflow.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType, RetryState
from tests.conftest import SchedulingNoise
from tests.process import activities as acts

pytestmark = pytest.mark.slow

EPS = 0.005  # float/clock-mapping slack for "never early" checks
S1_HOPS = 4  # thread wake-ups per retry: pool reader, supervisor, timer, supervisor
LATE = 0.5  # how late a caller may learn an outcome on a busy machine (seen: 0.1-0.2 s at load 14)


@pytest.fixture
def system(make_system) -> ActorSystem:
    """One warmed-up worker with 4 slots.

    One worker is enough for every scenario here (sequential attempts all land on the first free
    worker anyway) and starts in half the time of two. SEMANTICS' times assume instant pick-up,
    but the first attempt on a fresh worker imports the activity's module and (for a sync
    activity) starts the worker's thread pool: 4-50 ms on a quiet machine, over 200 ms when other
    suites load it, enough to let a 0.2 s start-to-close expire before the code runs. So one sync
    and one async activity from the same module run first.
    """
    system = make_system(activities=acts.REGISTERED, workers=1, max_concurrent_activities=4)
    warm_up(system)
    return system


@pytest.fixture(autouse=True)
def noise() -> Iterator[SchedulingNoise]:
    """Every scenario runs under a ``SchedulingNoise`` probe (see S1): the worst thread wake-up
    delay the machine caused during the test widens the upper bounds on lateness (``late``,
    ``assert_starts``); on a quiet machine it is a fraction of a millisecond."""
    with SchedulingNoise() as probe:
        yield probe


def late(noise: SchedulingNoise, retries: int = 0) -> float:
    """How late a caller may learn an outcome: a fixed margin, plus what the machine may add to
    each of the attempts' thread hops."""
    return LATE + (retries + 1) * S1_HOPS * noise.worst


def warm_up(system: ActorSystem) -> None:
    stc = timedelta(seconds=30)
    assert system.start_activity(acts.add, args=[1, 2], start_to_close_timeout=stc).result(timeout=30) == 3
    handle = system.start_activity(acts.async_add, args=[1, 2], start_to_close_timeout=stc)
    assert handle.result(timeout=30) == 3


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def outcome(handle, timeout: float = 15.0):
    """Wait for the handle; return (its error or None, ``time.monotonic()`` when it arrived)."""
    error = handle.exception(timeout=timeout)
    return error, time.monotonic()


def offsets(starts: List[dict]) -> List[float]:
    """Each attempt's started time relative to T0 (info().scheduled_time), on the system's clock."""
    t0 = starts[0]["scheduled"]
    assert all(r["scheduled"] == t0 for r in starts)  # R1/R72: one T0 for every attempt
    return [r["started"] - t0 for r in starts]


def assert_starts(starts: List[dict], nominal: List[float], noise: SchedulingNoise) -> None:
    """Attempt n starts no earlier than its nominal time, and not much later. Lateness adds up over
    retries (each adds a report hop, a timer wake-up and a dispatch), so the bound grows with n,
    by a fixed 50 ms and by what the machine was seen to add per thread hop."""
    measured = offsets(starts)
    per_retry = 0.05 + S1_HOPS * noise.worst
    for n, (m, nom) in enumerate(zip(measured, nominal), start=1):
        bound = nom + 0.1 + (n - 1) * per_retry
        assert nom - EPS <= m <= bound, (
            f"attempt {n} at t={m:.3f}, not ~{nom}: {measured}; worst wake-up {noise.worst * 1000:.1f} ms")


def s1_breakdown(starts: List[dict], fails: List[dict], intervals: List[float], nominal: List[float]) -> str:
    """Where each attempt's lateness comes from, in ms: `detect` = previous attempt's raise (child
    wall clock) to this attempt's scheduled time, minus the interval (report + decision); `take` =
    scheduled to started (backoff timer lateness + slot); `code` = started to the activity's first
    line in the child; `run` = first line to the raise."""
    lines = ["S1 attempt  offset(ms)  late(ms)  detect  take  code  run"]
    t0 = starts[0]["scheduled"]
    for n, (r, f) in enumerate(zip(starts, fails)):
        detect = (r["attempt_scheduled"] - fails[n - 1]["wall"] - intervals[n - 1]) * 1000 if n else 0.0
        offset = r["started"] - t0
        lines.append(
            f"   {n + 1}      {offset * 1000:8.1f}  {(offset - nominal[n]) * 1000:8.1f}"
            f"  {detect:6.1f}  {(r['started'] - r['attempt_scheduled']) * 1000:4.1f}"
            f"  {(r['wall'] - r['started']) * 1000:4.1f}  {(f['wall'] - r['wall']) * 1000:4.1f}"
        )
    return "\n".join(lines)


def assert_timeout(error: BaseException, retry_state: RetryState, timeout_type: TimeoutType) -> TimeoutError:
    assert isinstance(error, ActivityError), error
    assert error.retry_state is retry_state, error
    assert str(error) == "Activity task timed out"
    cause = error.cause
    assert isinstance(cause, TimeoutError) and cause is error.__cause__, cause
    assert cause.type is timeout_type, cause
    return cause


# -- S1 --------------------------------------------------------------------------------------


def test_s1_capped_exponential_backoff_attempts_start_on_schedule(
        system: ActorSystem, journal, noise) -> None:
    """S1 (R27, R29.4) at k=0.1: RP(0.1s, 2.0, 0.2s, 5); starts at t~0, .1, .3, .5, .7 within
    50 ms (the issue's requirement), plus what the machine itself adds.

    SEMANTICS' t~ values assume instant pick-up and instant failures; by R2 attempt n+1 is
    scheduled at the instant attempt n ended plus the interval, so each retry is checked against
    that anchor (the previous attempt's raise, on the child's wall clock), and the whole schedule
    against t~ from T0, where every retry's own latency adds up.

    Measured (see the printed breakdown): on a quiet machine each retry adds 1-3 ms and attempt 5
    starts 7-15 ms late. When other suites saturate this 2-core machine, single thread wake-ups
    in the runtime (timer, supervisor, pool reader, the worker) are delayed by 10-170 ms, which no
    runtime can avoid. So a ``SchedulingNoise`` probe (the autouse ``noise`` fixture) measures,
    during the test, the worst wake-up
    delay any thread of this process saw, and each retry may add that much per thread hop (4 per
    retry) on top of the 50 ms; on a quiet machine that is a fraction of a millisecond per hop.

    The worker is warmed up (see the ``system`` fixture), so a cold worker's first-attempt cost
    does not shift the schedule.
    """
    policy = RetryPolicy(initial_interval=s(0.1), backoff_coefficient=2.0, maximum_interval=s(0.2),
                         maximum_attempts=5)
    t_call = time.monotonic()
    handle = system.start_activity(acts.always_fail, args=[str(journal), "boom"],
                                   start_to_close_timeout=s(10), retry_policy=policy)
    error, t_end = outcome(handle)

    assert isinstance(error, ActivityError)
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    assert str(error) == "Activity task failed"
    cause = error.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.message, cause.non_retryable) == ("ValueError", "boom", False)

    starts, fails = journal.records("start"), journal.records("fail")
    assert [r["attempt"] for r in starts] == [1, 2, 3, 4, 5]
    nominal = [0.0, 0.1, 0.3, 0.5, 0.7]
    intervals = [0.1, 0.2, 0.2, 0.2]
    measured = offsets(starts)
    machine = S1_HOPS * noise.worst  # what the machine may add to one retry
    report = s1_breakdown(starts, fails, intervals, nominal) + (
        f"\nscheduling noise: worst {noise.worst * 1000:.1f} ms, median {noise.median * 1000:.2f} ms"
        f" over {len(noise.samples)} wake-ups; allowance per retry 50 + {machine * 1000:.1f} ms")
    print(report)
    for n in range(1, 5):
        # R2/R3/R27: attempt n+1 is scheduled `interval` after attempt n ended (its raise), and
        # starts when a worker takes it: within 50 ms of that schedule
        due = fails[n - 1]["wall"] + intervals[n - 1]
        assert due - 0.01 <= starts[n]["attempt_scheduled"] <= starts[n]["started"], (
            f"attempt {n + 1}\n{report}")
        assert starts[n]["started"] - due <= 0.050 + machine, f"attempt {n + 1} started late\n{report}"
    for n, (m, nom) in enumerate(zip(measured, nominal), start=1):
        bound = nom + 0.050 + (n - 1) * machine
        assert nom - EPS <= m <= bound, f"attempt {n} at t={m:.4f}, not within 50 ms of {nom}\n{report}"
    assert 0.7 - EPS <= t_end - t_call <= 0.7 + late(noise, 4)


# -- S3 --------------------------------------------------------------------------------------


def test_s3_schedule_to_close_stops_retries_early(system: ActorSystem, journal, noise) -> None:
    """S3 (R29.6, R42) at k=0.2: s2c=2s, default policy (initial 0.2 s): attempts at 0, .2, .6, 1.4;
    the next would be at 3.0 > 2.0, so the caller gets TIMEOUT at t~1.4, not at 2.0. The error is
    the workflow-activity surface's ActivityError (R94: not standalone's ActivityFailureError)."""
    t_call = time.monotonic()
    handle = system.start_activity(acts.always_fail, args=[str(journal), "fail {attempt}"],
                                   schedule_to_close_timeout=s(2.0),
                                   retry_policy=RetryPolicy(initial_interval=s(0.2)))
    error, t_end = outcome(handle)
    assert isinstance(error, ActivityError)
    assert error.retry_state is RetryState.TIMEOUT
    assert str(error) == "Activity task failed"
    assert isinstance(error.cause, ApplicationError)
    assert (error.cause.type, error.cause.message) == ("ValueError", "fail 4")  # attempt 4's own
    starts = journal.records("start")
    assert [r["attempt"] for r in starts] == [1, 2, 3, 4]
    assert_starts(starts, [0.0, 0.2, 0.6, 1.4], noise)
    elapsed = t_end - t_call
    assert 1.4 - EPS <= elapsed < 2.0  # well before the S2C deadline


# -- S4 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hang", [acts.hang_async, acts.hang_sync], ids=["async", "sync"])
def test_s4_start_to_close_with_maximum_attempts(system: ActorSystem, journal, hang, noise) -> None:
    """S4 (R7, R17) at k=0.2: stc=0.4s, RP(0.2s, 2.0, None, 3), the activity hangs. Attempts run
    0-.4, .6-1.0, 1.4-1.8; at t~1.8 MAXIMUM_ATTEMPTS_REACHED caused by START_TO_CLOSE. D2/D4: each
    timed-out attempt is cancelled at its deadline (a sync one by an exception in its thread).
    R66: each attempt re-raises that cancellation, yet it is never reported as a cancellation; the
    timeout stands (only a requested or shutdown cancellation counts as one)."""
    policy = RetryPolicy(initial_interval=s(0.2), backoff_coefficient=2.0, maximum_attempts=3)
    t_call = time.monotonic()
    handle = system.start_activity(hang, str(journal), start_to_close_timeout=s(0.4), retry_policy=policy)
    error, t_end = outcome(handle)
    cause = assert_timeout(error, RetryState.MAXIMUM_ATTEMPTS_REACHED, TimeoutType.START_TO_CLOSE)
    assert cause.message == "activity StartToClose timeout"
    assert list(cause.last_heartbeat_details) == []
    previous = cause.cause  # R17: attempt 2's timeout, not the ending attempt's own
    assert isinstance(previous, TimeoutError) and previous.type is TimeoutType.START_TO_CLOSE

    starts = journal.records("start")
    assert [r["attempt"] for r in starts] == [1, 2, 3]
    assert_starts(starts, [0.0, 0.6, 1.4], noise)
    assert 1.8 - EPS <= t_end - t_call <= 1.8 + late(noise, 2)
    cancelled = journal.wait_for("cancelled", 3)
    assert sorted(r["attempt"] for r in cancelled) == [1, 2, 3]
    for start, r in zip(starts, sorted(cancelled, key=lambda r: r["attempt"])):
        assert "timed_out=True" in r["reason"]  # R80's details for a stopped attempt
        deadline = start["started"] + 0.4
        assert deadline - 0.05 <= r["wall"] <= deadline + late(noise)  # stopped at its deadline (D2)


# -- S5 --------------------------------------------------------------------------------------


def test_s5_attempt_timeout_with_no_room_left(system: ActorSystem, journal, noise) -> None:
    """S5 (R15) at k=0.25, s2c widened to 1.6 s (anything between 1.25 and 1.75 keeps the scenario;
    this leaves 0.35 s for attempt 2 to start in): stc=0.5s, initial 0.25 s, hangs. Attempt 1:
    0-.5; attempt 2: .75-1.25; the next would start at 1.75 > 1.6, so at t~1.25 (not 1.6):
    TIMEOUT caused by SCHEDULE_TO_CLOSE "Not enough time...", whose cause is attempt 1's
    START_TO_CLOSE."""
    t_call = time.monotonic()
    handle = system.start_activity(acts.hang_async, str(journal), start_to_close_timeout=s(0.5),
                                   schedule_to_close_timeout=s(1.6),
                                   retry_policy=RetryPolicy(initial_interval=s(0.25)))
    error, t_end = outcome(handle)
    cause = assert_timeout(error, RetryState.TIMEOUT, TimeoutType.SCHEDULE_TO_CLOSE)
    assert cause.message == ("Not enough time to schedule next retry before activity ScheduleToClose "
                             "timeout, giving up retrying")
    assert isinstance(cause.cause, TimeoutError) and cause.cause.type is TimeoutType.START_TO_CLOSE
    starts = journal.records("start")
    assert [r["attempt"] for r in starts] == [1, 2]
    assert_starts(starts, [0.0, 0.75], noise)
    # decided when attempt 2 timed out (R15), not when the S2C timer fired at 1.6
    attempt_2_timed_out = offsets(starts)[1] + 0.5
    assert attempt_2_timed_out < 1.6
    assert attempt_2_timed_out - EPS <= t_end - t_call <= attempt_2_timed_out + late(noise)


# -- S6 --------------------------------------------------------------------------------------


def test_s6_schedule_to_close_fires_mid_attempt(system: ActorSystem, journal, noise) -> None:
    """S6 (R6, R16, D2) at k=0.2, s2c widened to 1.1 s (anything between .8 and 1.4 keeps the
    scenario; this leaves 0.3 s on both sides): stc=0.6s, initial 0.2 s, hangs. Attempt 1: 0-.6;
    attempt 2 starts at .8; at t~1.1 TIMEOUT caused by SCHEDULE_TO_CLOSE (cause: attempt 1's
    START_TO_CLOSE). D2 (differs from R77): attempt 2 is cancelled at once, not at .8+.6+5."""
    t_call = time.monotonic()
    handle = system.start_activity(acts.hang_async, str(journal), start_to_close_timeout=s(0.6),
                                   schedule_to_close_timeout=s(1.1),
                                   retry_policy=RetryPolicy(initial_interval=s(0.2)))
    error, t_end = outcome(handle)
    cause = assert_timeout(error, RetryState.TIMEOUT, TimeoutType.SCHEDULE_TO_CLOSE)
    assert "ScheduleToClose" in cause.message
    assert isinstance(cause.cause, TimeoutError) and cause.cause.type is TimeoutType.START_TO_CLOSE
    assert 1.1 - EPS <= t_end - t_call <= 1.1 + late(noise)
    starts = journal.records("start")
    assert [r["attempt"] for r in starts] == [1, 2]
    assert_starts(starts, [0.0, 0.8], noise)
    cancelled = {r["attempt"]: r for r in journal.wait_for("cancelled", 2)}
    t0 = starts[0]["scheduled"]
    assert 1.1 - 0.05 <= cancelled[2]["wall"] - t0 <= 1.1 + late(noise)


# -- S7 --------------------------------------------------------------------------------------


def test_s7_only_schedule_to_close_given(system: ActorSystem, journal, noise) -> None:
    """S7 (R11, R12, R14) at k=0.03: s2c=0.3s only, hangs. info() shows stc=0.3s; the S2C timer
    precedes the stc timer, so at t~0.3: TIMEOUT caused by SCHEDULE_TO_CLOSE; no retry."""
    t_call = time.monotonic()
    handle = system.start_activity(acts.hang_async, str(journal), schedule_to_close_timeout=s(0.3))
    error, t_end = outcome(handle)
    cause = assert_timeout(error, RetryState.TIMEOUT, TimeoutType.SCHEDULE_TO_CLOSE)
    assert cause.cause is None  # R17: no retry happened
    assert 0.3 - EPS <= t_end - t_call <= 0.3 + late(noise)
    journal.wait_for("cancelled")
    system.shutdown()  # every attempt has ended: the journal is final
    starts = journal.records("start")
    assert [r["attempt"] for r in starts] == [1]
    assert (starts[0]["start_to_close"], starts[0]["schedule_to_close"]) == (0.3, 0.3)


# -- S8 --------------------------------------------------------------------------------------


def test_s8_schedule_to_start_without_worker_capacity(make_system, journal, noise) -> None:
    """S8 (R8) at k=0.1: one worker with one slot, busy. s2s=0.2s, s2c=1.0s: at t~0.2 TIMEOUT
    caused by SCHEDULE_TO_START "activity ScheduleToStart timeout"; no retry though time remains."""
    system = make_system(activities=acts.REGISTERED, workers=1, max_concurrent_activities=1)
    blocker = system.start_activity(acts.blocking_sleep, args=[str(journal), 0.8, "blocker"],
                                    start_to_close_timeout=s(10))
    journal.wait_for("start")  # the only slot is taken
    t_call = time.monotonic()
    handle = system.start_activity(acts.blocking_sleep, args=[str(journal), 0.0, "target"],
                                   schedule_to_start_timeout=s(0.2), schedule_to_close_timeout=s(1.0))
    error, t_end = outcome(handle)
    cause = assert_timeout(error, RetryState.TIMEOUT, TimeoutType.SCHEDULE_TO_START)
    assert cause.message == "activity ScheduleToStart timeout"
    assert 0.2 - EPS <= t_end - t_call <= 0.2 + late(noise)
    assert blocker.result(timeout=10) == "blocker"
    system.shutdown()
    assert [r["attempt"] for r in journal.records("start")] == [1]  # only the blocker ever ran


def test_s8_variant_schedule_to_start_counts_from_the_retry(make_system, journal) -> None:
    """S8 variant at k=0.1: stc=0.1s, s2s=0.2s, initial 0.1 s; attempt 1 times out at .1 but keeps
    the only slot (a C-level sleep delays its cancellation until t~1); attempt 2 is scheduled at .2
    and its S2S clock starts then, so the timeout fires at t~0.4 (not .2)."""
    system = make_system(activities=acts.REGISTERED, workers=1, max_concurrent_activities=1)
    t_call = time.monotonic()
    handle = system.start_activity(acts.blocking_sleep, args=[str(journal), 1.0],
                                   start_to_close_timeout=s(0.1), schedule_to_start_timeout=s(0.2),
                                   retry_policy=RetryPolicy(initial_interval=s(0.1)))
    error, t_end = outcome(handle)
    cause = assert_timeout(error, RetryState.TIMEOUT, TimeoutType.SCHEDULE_TO_START)
    assert isinstance(cause.cause, TimeoutError) and cause.cause.type is TimeoutType.START_TO_CLOSE  # R17
    assert 0.4 - EPS <= t_end - t_call < 1.0  # before the slot frees up
    system.shutdown()
    assert [r["attempt"] for r in journal.records("start")] == [1]


# -- S14, S15, S16 ---------------------------------------------------------------------------


def test_s14_non_retryable_by_type(system: ActorSystem, journal, tmp_path, noise) -> None:
    """S14 (R30): exact type match only; a subclass's type is its own name."""
    from tests.conftest import Journal

    journals = {k: Journal(tmp_path / f"{k}.jsonl") for k in ("ValueError", "MyErr", "typed")}
    policies = {
        "ValueError": RetryPolicy(non_retryable_error_types=["ValueError"]),
        "MyErr": RetryPolicy(initial_interval=s(0.05), maximum_attempts=2,
                             non_retryable_error_types=["ValueError"]),
        "typed": RetryPolicy(non_retryable_error_types=["Cannot retry me"]),
    }
    t_call = time.monotonic()
    handles = {k: system.start_activity(acts.raise_kind, args=[str(journals[k]), k],
                                        start_to_close_timeout=s(5), retry_policy=policies[k])
               for k in journals}
    errors = {k: h.exception(timeout=10) for k, h in handles.items()}
    assert time.monotonic() - t_call <= 0.05 + 0.3 + late(noise, 1)

    e = errors["ValueError"]
    assert e.retry_state is RetryState.NON_RETRYABLE_FAILURE
    assert isinstance(e.cause, ApplicationError) and e.cause.type == "ValueError"
    assert len(journals["ValueError"].records("start")) == 1

    e = errors["MyErr"]
    assert e.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED  # retried: no match on "ValueError"
    assert e.cause.type == "MyErr"
    assert len(journals["MyErr"].records("start")) == 2

    e = errors["typed"]
    assert e.retry_state is RetryState.NON_RETRYABLE_FAILURE
    assert e.cause.type == "Cannot retry me" and str(e.cause) == "Cannot retry me: x"
    assert len(journals["typed"].records("start")) == 1


def test_s15_non_retryable_flag(system: ActorSystem, journal, noise) -> None:
    """S15 (R32) at k=0.1: RP(maximum_attempts=100, initial 0.1 s); attempt 2 raises a
    non-retryable ApplicationError with details; at t~0.1 NON_RETRYABLE_FAILURE."""
    t_call = time.monotonic()
    handle = system.start_activity(acts.retry_then_non_retryable, str(journal), start_to_close_timeout=s(5),
                                   retry_policy=RetryPolicy(initial_interval=s(0.1), maximum_attempts=100))
    error, t_end = outcome(handle)
    assert error.retry_state is RetryState.NON_RETRYABLE_FAILURE
    cause = error.cause
    assert isinstance(cause, ApplicationError)
    assert str(cause) == "Do not retry me"
    assert tuple(cause.details) == ("detail1", 123)
    assert cause.non_retryable is True and cause.type is None
    assert [r["attempt"] for r in journal.records("start")] == [1, 2]
    assert 0.1 - EPS <= t_end - t_call <= 0.1 + late(noise, 1)


@pytest.mark.parametrize("coefficient", [2.0, 0.5], ids=["default", "coefficient-0.5-accepted"])
def test_s16_maximum_attempts_one(system: ActorSystem, journal, coefficient) -> None:
    """S16 (R23, R24, R29): one attempt, MAXIMUM_ATTEMPTS_REACHED; validation skipped with 1."""
    handle = system.start_activity(acts.always_fail, args=[str(journal)], start_to_close_timeout=s(5),
                                   retry_policy=RetryPolicy(maximum_attempts=1,
                                                            backoff_coefficient=coefficient))
    error = handle.exception(timeout=10)
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    assert error.cause.type == "ValueError"
    system.shutdown()
    assert len(journal.records("start")) == 1


# -- S17, S18 --------------------------------------------------------------------------------


def test_s17_next_retry_delay_beats_maximum_interval(system: ActorSystem, journal, noise) -> None:
    """S17 (R33) at k=0.03: RP(0.05s, 2.0, 0.1s, 3), every attempt asks for next_retry_delay=0.3s:
    attempts at 0, .3, .6 (not capped to 0.1 s); MAXIMUM_ATTEMPTS_REACHED, cause shows 0.3 s."""
    policy = RetryPolicy(initial_interval=s(0.05), backoff_coefficient=2.0, maximum_interval=s(0.1),
                         maximum_attempts=3)
    handle = system.start_activity(acts.always_later, args=[str(journal), 0.3], start_to_close_timeout=s(5),
                                   retry_policy=policy)
    error, _ = outcome(handle)
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    assert isinstance(error.cause, ApplicationError)
    assert error.cause.next_retry_delay == s(0.3)
    assert error.cause.message == "later (attempt 3)"
    starts, fails = journal.records("start"), journal.records("fail")
    assert [r["attempt"] for r in starts] == [1, 2, 3]
    assert_starts(starts, [0.0, 0.3, 0.6], noise)
    for n in (1, 2):
        gap = starts[n]["attempt_scheduled"] - fails[n - 1]["wall"]
        assert 0.3 - 0.01 <= gap <= 0.3 + 0.05 + S1_HOPS * noise.worst


def test_s18_next_retry_delay_versus_schedule_to_close(system: ActorSystem, journal) -> None:
    """S18 (R33, R29.6) at k=0.05, s2c widened to 0.9 s (any value between the delay and twice it
    keeps the scenario; this leaves 0.4 s for attempt 2 to fail in): next_retry_delay=0.5s,
    attempts at 0, .5; the next would be at 1.0 > .9, so at t~0.5: TIMEOUT caused by attempt 2's
    ApplicationError."""
    t_call = time.monotonic()
    handle = system.start_activity(acts.always_later, args=[str(journal), 0.5],
                                   schedule_to_close_timeout=s(0.9))
    error, t_end = outcome(handle)
    assert error.retry_state is RetryState.TIMEOUT
    assert isinstance(error.cause, ApplicationError)
    assert error.cause.message == "later (attempt 2)"
    assert [r["attempt"] for r in journal.records("start")] == [1, 2]
    assert 0.5 - EPS <= t_end - t_call < 0.9  # decided when attempt 2 failed, before S2C


# -- S26 -------------------------------------------------------------------------------------


def test_s26_timeout_declared_non_retryable(system: ActorSystem, journal, noise) -> None:
    """S26 (R30) at k=0.15: stc=0.3s, "TemporalTimeout:StartToClose" listed, hangs: one attempt;
    at t~0.3 NON_RETRYABLE_FAILURE caused by START_TO_CLOSE."""
    t_call = time.monotonic()
    handle = system.start_activity(
        acts.hang_async, str(journal), start_to_close_timeout=s(0.3),
        retry_policy=RetryPolicy(initial_interval=s(0.05),
                                 non_retryable_error_types=["TemporalTimeout:StartToClose"]),
    )
    error, t_end = outcome(handle)
    assert_timeout(error, RetryState.NON_RETRYABLE_FAILURE, TimeoutType.START_TO_CLOSE)
    assert 0.3 - EPS <= t_end - t_call <= 0.3 + late(noise)
    journal.wait_for("cancelled")  # D2
    system.shutdown()
    assert len(journal.records("start")) == 1


# -- S30, S31 --------------------------------------------------------------------------------


def test_s30_unknown_activity_name_fails_at_the_call(system: ActorSystem) -> None:
    """S30 (R90 differs, D5): ValueError at the call, listing the known names; nothing scheduled."""
    first = system.start_activity(acts.add, args=[1, 2], start_to_close_timeout=s(5))
    assert first.result(timeout=10) == 3
    before = int(first.activity_id)
    with pytest.raises(ValueError) as info:
        system.start_activity("nope", start_to_close_timeout=s(5),
                              retry_policy=RetryPolicy(maximum_attempts=2))
    message = str(info.value)
    assert "'nope'" in message and "not registered" in message
    assert "add" in message and "custom-name" in message and "hang_async" in message
    stats = system.statistics()
    assert (stats.pending, stats.running, stats.retrying) == (0, 0, 0)
    assert (stats.queued_attempts, stats.running_attempts) == (0, 0)
    # no id was used up either: default ids count the executions actually scheduled (R72)
    after = system.start_activity(acts.add, args=[1, 2], start_to_close_timeout=s(5))
    assert int(after.activity_id) == before + 1


def test_s31_validation_at_the_call(system: ActorSystem) -> None:
    """S31 (R13, R24): Temporal's messages, raised synchronously before anything is scheduled."""
    message = "^Activity must have start_to_close_timeout or schedule_to_close_timeout$"
    with pytest.raises(ValueError, match=message):
        system.start_activity(acts.add, args=[1, 2])
    cases = [
        (RetryPolicy(backoff_coefficient=0.5), "Backoff coefficient cannot be less than 1"),
        (RetryPolicy(maximum_interval=s(0.5)), "Maximum interval cannot be less than initial interval"),
        (RetryPolicy(maximum_attempts=-1), "Maximum attempts cannot be negative"),
    ]
    for policy, message in cases:
        with pytest.raises(ValueError, match=f"^{message}$"):
            system.start_activity(acts.add, args=[1, 2], start_to_close_timeout=s(5), retry_policy=policy)
    stats = system.statistics()
    assert (stats.pending, stats.running, stats.queued_attempts) == (0, 0, 0)


# -- S33 -------------------------------------------------------------------------------------


def test_s33_exception_chains(system: ActorSystem) -> None:
    """S33 (R31): `raise RuntimeError("outer") from KeyError("k")` arrives as a chain of
    ApplicationErrors with the bare class names as types, and the remote tracebacks as text."""
    handle = system.start_activity(acts.chained, start_to_close_timeout=s(5),
                                   retry_policy=RetryPolicy(maximum_attempts=1))
    error = handle.exception(timeout=10)
    outer = error.cause
    assert isinstance(outer, ApplicationError)
    assert (outer.type, outer.message) == ("RuntimeError", "outer")
    inner = outer.cause
    assert isinstance(inner, ApplicationError) and inner is outer.__cause__
    assert (inner.type, inner.message) == ("KeyError", "'k'")
    assert inner.cause is None
    assert "RuntimeError: outer" in outer.stack_trace and "def chained" not in outer.message
    assert "in chained" in outer.stack_trace  # the remote frame is in the text
    assert "KeyError: 'k'" in inner.stack_trace

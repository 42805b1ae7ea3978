"""Pure retry arithmetic (``actorflow._retry``): SEMANTICS R27-R33, STYLE.md 2.7.

Tables only; no clock, no machine. Times are float seconds, as the machine uses them.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import accumulate

import pytest

from actorflow._retry import EffectivePolicy, RetryDecision, backoff_interval, decide, is_non_retryable
from actorflow.exceptions import ApplicationError, CancelledError, RetryState, TimeoutError, TimeoutType
from actorflow.history import retry_reason

DEFAULT = EffectivePolicy()


def timeout(kind: TimeoutType) -> TimeoutError:
    return TimeoutError(f"activity {kind.name} timeout", type=kind)


def app(message: str = "boom", **kw) -> ApplicationError:
    return ApplicationError(message, **kw)


# ----------------------------------------------------------------------------- R27 / R28 backoff


def test_R20_R21_effective_policy_defaults():
    """R20/R21: 1 s, 2.0, 100 s (100 x initial), unlimited attempts, no types."""
    assert (
        DEFAULT.initial_interval,
        DEFAULT.backoff_coefficient,
        DEFAULT.maximum_interval,
        DEFAULT.maximum_attempts,
        DEFAULT.non_retryable_error_types,
    ) == (1.0, 2.0, 100.0, 0, ())


R28_INTERVALS = [1, 2, 4, 8, 16, 32, 64, 100, 100, 100, 100]


@pytest.mark.parametrize("attempt, expected", list(enumerate(R28_INTERVALS, start=1)))
def test_R28_default_schedule_intervals(attempt, expected):
    """R28: with the default policy the n-th interval is 2^(n-1) s, the 8th (128 s) capped at 100 s."""
    assert backoff_interval(DEFAULT, attempt) == expected


def test_R28_default_schedule_start_times():
    """R28: instant failures start attempts at t = 0, 1, 3, 7, 15, 31, 63, 127, 227, 327, ..."""
    starts = [0.0, *accumulate(backoff_interval(DEFAULT, n) for n in range(1, 10))]
    assert starts == [0, 1, 3, 7, 15, 31, 63, 127, 227, 327]


@pytest.mark.parametrize(
    "initial, coefficient, maximum, attempt, expected",
    [
        (1.0, 2.0, 2.0, 1, 1.0),  # S1: 1, 2, 2, 2
        (1.0, 2.0, 2.0, 2, 2.0),
        (1.0, 2.0, 2.0, 3, 2.0),
        (1.0, 2.0, 2.0, 4, 2.0),
        (1.0, 1.0, 100.0, 1, 1.0),  # R24: coefficient 1.0 is a constant interval
        (1.0, 1.0, 100.0, 50, 1.0),
        (0.5, 3.0, 50.0, 3, 4.5),  # 0.5 * 3^2
        (0.5, 3.0, 4.0, 3, 4.0),  # capped
        (2.0, 1.5, 200.0, 4, 6.75),  # 2 * 1.5^3
        (10.0, 2.0, 10.0, 2, 10.0),  # maximum_interval == initial_interval is allowed
    ],
)
def test_R27_backoff_formula(initial, coefficient, maximum, attempt, expected):
    """R27: interval = min(initial * coefficient^(n-1), maximum_interval)."""
    policy = EffectivePolicy(initial, coefficient, maximum)
    assert backoff_interval(policy, attempt) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [1_100, 10_000, 10**6])
def test_R27_overflow_saturates_to_maximum_interval(attempt):
    """R27: an overflowing power saturates and is then capped by maximum_interval."""
    assert backoff_interval(DEFAULT, attempt) == 100.0
    assert backoff_interval(EffectivePolicy(1.0, 2, 7.0), attempt) == 7.0  # an int coefficient too
    # the history's explanation of the same delay must not overflow either (a long retry run)
    reason = retry_reason(DEFAULT, attempt, ValueError("boom"), 100.0)
    assert reason.endswith("= 100s (capped by maximum_interval)")


def test_R26_no_jitter():
    """R26: intervals are deterministic."""
    assert {backoff_interval(DEFAULT, 5) for _ in range(20)} == {16.0}


# ----------------------------------------------------------------------------- R29 decision order


def _decide(failure, *, policy=DEFAULT, attempt=1, now=0.0, s2c_deadline=None, cancel=False) -> RetryDecision:
    return decide(policy, attempt, failure, now, s2c_deadline, cancel)


@pytest.mark.parametrize(
    "failure",
    [
        app(),
        app(non_retryable=True),
        timeout(TimeoutType.START_TO_CLOSE),
        timeout(TimeoutType.SCHEDULE_TO_CLOSE),
        CancelledError(),
    ],
    ids=["retryable", "non-retryable", "stc-timeout", "s2c-timeout", "cancelled"],
)
def test_R29_step1_cancel_requested_wins_over_everything(failure):
    """R29 step 1: a cancel request stops retrying before any other check; CANCEL_REQUESTED."""
    decision = _decide(failure, cancel=True, policy=EffectivePolicy(maximum_attempts=1), s2c_deadline=0.5)
    assert decision == RetryDecision(RetryState.CANCEL_REQUESTED)
    assert not decision.retry


@pytest.mark.parametrize("kind", [TimeoutType.SCHEDULE_TO_START, TimeoutType.SCHEDULE_TO_CLOSE])
def test_R29_step2_schedule_timeouts_stop_with_TIMEOUT(kind):
    """R29 step 2 (server >= 1.31): S2S/S2C timeouts stop with TIMEOUT, before R30 and max attempts."""
    listed = EffectivePolicy(
        maximum_attempts=1,
        non_retryable_error_types=("TemporalTimeout:ScheduleToStart", "TemporalTimeout:ScheduleToClose"),
    )
    assert _decide(timeout(kind)) == RetryDecision(RetryState.TIMEOUT)
    assert _decide(timeout(kind), policy=listed) == RetryDecision(RetryState.TIMEOUT)


def test_R29_step3_non_retryable_before_maximum_attempts():
    """R29 step 3 precedes step 4: a non-retryable failure on the last attempt is NON_RETRYABLE_FAILURE."""
    policy = EffectivePolicy(maximum_attempts=3)
    decision = _decide(app(non_retryable=True), policy=policy, attempt=3)
    assert decision.retry_state is RetryState.NON_RETRYABLE_FAILURE


@pytest.mark.parametrize(
    "maximum_attempts, attempt, expected",
    [
        (1, 1, RetryState.MAXIMUM_ATTEMPTS_REACHED),  # R23: 1 = run once
        (3, 2, RetryState.IN_PROGRESS),
        (3, 3, RetryState.MAXIMUM_ATTEMPTS_REACHED),
        (3, 4, RetryState.MAXIMUM_ATTEMPTS_REACHED),
        (0, 1_000, RetryState.IN_PROGRESS),  # R23: 0 = unlimited
    ],
)
def test_R29_step4_maximum_attempts(maximum_attempts, attempt, expected):
    """R29 step 4 / R23: maximum_attempts counts every attempt including the first."""
    policy = EffectivePolicy(maximum_attempts=maximum_attempts)
    assert _decide(app(), policy=policy, attempt=attempt).retry_state is expected


def test_R29_step4_before_step6():
    """R29: maximum attempts is checked before the S2C room check."""
    policy = EffectivePolicy(maximum_attempts=2)
    decision = _decide(app(), policy=policy, attempt=2, now=9.0, s2c_deadline=9.5)
    assert decision == RetryDecision(RetryState.MAXIMUM_ATTEMPTS_REACHED)


@pytest.mark.parametrize("attempt, expected", [(1, 1.0), (2, 2.0), (4, 8.0), (9, 100.0)])
def test_R29_step5_7_retry_with_backoff(attempt, expected):
    """R29 steps 5 and 7: the interval is R27's; the decision is IN_PROGRESS (retry)."""
    decision = _decide(app(), attempt=attempt, now=50.0)
    assert decision == RetryDecision(RetryState.IN_PROGRESS, expected)
    assert decision.retry and not decision.no_room


@pytest.mark.parametrize(
    "now, deadline, expected",
    [
        (7.0, 10.0, RetryState.TIMEOUT),  # S3: attempt 4 ends at 7, next interval 8 -> 15 > 10
        (2.0, 3.0, RetryState.IN_PROGRESS),  # exactly equal is still allowed (2 + 1 == 3)
        (2.0, 2.999, RetryState.TIMEOUT),
        (2.0, None, RetryState.IN_PROGRESS),  # unbounded S2C
    ],
)
def test_R29_step6_no_room_before_schedule_to_close(now, deadline, expected):
    """R29 step 6: stop with TIMEOUT when now + interval is strictly after T0 + S2C."""
    attempt = 4 if now == 7.0 else 1
    decision = _decide(app(), attempt=attempt, now=now, s2c_deadline=deadline)
    assert decision.retry_state is expected
    assert decision.no_room is (expected is RetryState.TIMEOUT)


# ----------------------------------------------------------------------------- R30 non-retryable


@pytest.mark.parametrize(
    "failure, types, non_retryable",
    [
        (app(type="ValueError"), ("ValueError",), True),
        (app(type="ValueError"), ("valueerror",), False),  # case-sensitive
        (app(type="ValueError"), ("Value",), False),  # no substring match
        (app(type="ValueErrorX"), ("ValueError",), False),
        (app("ValueError", type=None), ("ValueError",), False),  # no match on the message
        (app(type="MyErr"), ("ValueError",), False),  # a subclass MyErr(ValueError) has type "MyErr"
        (app(type="Cannot retry me"), ("Cannot retry me",), True),  # S14
        (app(type=None), (), False),
        (app(type="X", non_retryable=True), (), True),  # R32
        (app(type="X"), ("A", "X", "B"), True),
        (CancelledError(), (), True),  # R30/R67
        (timeout(TimeoutType.START_TO_CLOSE), (), False),
        (timeout(TimeoutType.START_TO_CLOSE), ("TemporalTimeout:StartToClose",), True),
        (timeout(TimeoutType.START_TO_CLOSE), ("TemporalTimeout:Heartbeat",), False),
        (timeout(TimeoutType.START_TO_CLOSE), ("START_TO_CLOSE", "StartToClose"), False),
        (timeout(TimeoutType.HEARTBEAT), (), False),
        (timeout(TimeoutType.HEARTBEAT), ("TemporalTimeout:Heartbeat",), True),
        (timeout(TimeoutType.HEARTBEAT), ("TemporalTimeout:StartToClose",), False),
        (timeout(TimeoutType.SCHEDULE_TO_START), (), True),  # never retried (R29 step 2)
        (timeout(TimeoutType.SCHEDULE_TO_CLOSE), (), True),
    ],
)
def test_R30_non_retryable_matching(failure, types, non_retryable):
    """R30: exact, case-sensitive type match; flag; CancelledError; TemporalTimeout:<Kind> names."""
    assert is_non_retryable(EffectivePolicy(non_retryable_error_types=types), failure) is non_retryable


@pytest.mark.parametrize(
    "failure, types",
    [
        (app(type="ValueError"), ("ValueError",)),
        (app(type="X", non_retryable=True), ()),
        (CancelledError(), ()),
        (timeout(TimeoutType.START_TO_CLOSE), ("TemporalTimeout:StartToClose",)),
        (timeout(TimeoutType.HEARTBEAT), ("TemporalTimeout:Heartbeat",)),
    ],
)
def test_R29_step3_non_retryable_decision(failure, types):
    """R29 step 3 / R42: a non-retryable failure stops at once with NON_RETRYABLE_FAILURE."""
    policy = EffectivePolicy(non_retryable_error_types=types)
    assert _decide(failure, policy=policy) == RetryDecision(RetryState.NON_RETRYABLE_FAILURE)


@pytest.mark.parametrize("failure", [ValueError("plain"), KeyError("k"), RuntimeError()])
def test_R30_other_failures_are_retryable(failure):
    """R30: every other failure is retryable (the machine normally only sees converted ones)."""
    assert not is_non_retryable(EffectivePolicy(non_retryable_error_types=("ValueError",)), failure)
    assert _decide(failure).retry


# ----------------------------------------------------------------------------- R33 next_retry_delay


def delayed(seconds: float, **kw) -> ApplicationError:
    return app("later", next_retry_delay=timedelta(seconds=seconds), **kw)


@pytest.mark.parametrize(
    "failure, policy, attempt, now, deadline, expected",
    [
        # not capped by maximum_interval (S17)
        (
            delayed(10),
            EffectivePolicy(1.0, 2.0, 2.0, 3),
            1,
            0.0,
            None,
            RetryDecision(RetryState.IN_PROGRESS, 10.0),
        ),
        # replaces R27 also when shorter than the backoff
        (delayed(0.25), DEFAULT, 6, 0.0, None, RetryDecision(RetryState.IN_PROGRESS, 0.25)),
        # subject to maximum_attempts (step 4 runs first)
        (
            delayed(10),
            EffectivePolicy(1.0, 2.0, 2.0, 3),
            3,
            20.0,
            None,
            RetryDecision(RetryState.MAXIMUM_ATTEMPTS_REACHED),
        ),
        # subject to S2C (S18: failure at 10, 10 + 10 = 20 > 15)
        (delayed(10), DEFAULT, 2, 10.0, 15.0, RetryDecision(RetryState.TIMEOUT, no_room=True)),
        # equal to the S2C deadline is still allowed
        (delayed(5), DEFAULT, 2, 10.0, 15.0, RetryDecision(RetryState.IN_PROGRESS, 5.0)),
        # no effect when the error is non-retryable
        (
            delayed(10, non_retryable=True),
            DEFAULT,
            1,
            0.0,
            None,
            RetryDecision(RetryState.NON_RETRYABLE_FAILURE),
        ),
        (
            delayed(10, type="ValueError"),
            EffectivePolicy(non_retryable_error_types=("ValueError",)),
            1,
            0.0,
            None,
            RetryDecision(RetryState.NON_RETRYABLE_FAILURE),
        ),
        # a zero delay means "not set": R27 applies (attempt 3 -> 4 s)
        (delayed(0), DEFAULT, 3, 0.0, None, RetryDecision(RetryState.IN_PROGRESS, 4.0)),
    ],
    ids=["not-capped", "shorter", "max-attempts", "s2c", "s2c-equal", "flag", "listed", "zero"],
)
def test_R33_next_retry_delay(failure, policy, attempt, now, deadline, expected):
    """R33: next_retry_delay replaces R27 for one retry, uncapped, but obeys steps 3, 4 and 6."""
    assert _decide(failure, policy=policy, attempt=attempt, now=now, s2c_deadline=deadline) == expected


def test_R33_only_that_retry_later_failures_use_R27():
    """R33: a later failure without next_retry_delay uses R27 with the then-current attempt number."""
    policy = EffectivePolicy(1.0, 2.0, 100.0)
    assert _decide(delayed(30), policy=policy, attempt=1).interval == 30.0
    assert _decide(app(), policy=policy, attempt=2).interval == 2.0


def test_R33_zero_delay_is_unset():
    """R33: the Python SDK treats a zero delay as "not set"."""
    assert delayed(0).next_retry_delay is None


@pytest.mark.parametrize("seconds", [-1, -0.001])
def test_R33_D5_negative_delay_rejected_by_constructor(seconds):
    """R33/D5: a negative next_retry_delay makes the ApplicationError constructor raise ValueError."""
    with pytest.raises(ValueError, match="next_retry_delay"):
        delayed(seconds)


def test_R33_timeouts_cannot_carry_a_delay():
    """R33: only ApplicationError can carry next_retry_delay; a timeout always uses R27."""
    decision = _decide(timeout(TimeoutType.START_TO_CLOSE), attempt=3)
    assert decision == RetryDecision(RetryState.IN_PROGRESS, 4.0)


def test_R34_benign_category_does_not_change_retrying():
    """R34: ApplicationErrorCategory.BENIGN only affects logging, never the retry decision."""
    from actorflow.exceptions import ApplicationErrorCategory

    policy = EffectivePolicy(maximum_attempts=3)
    plain = ApplicationError("x", type="E")
    benign = ApplicationError("x", type="E", category=ApplicationErrorCategory.BENIGN)
    assert benign.category is ApplicationErrorCategory.BENIGN
    for attempt in (1, 2, 3):
        assert decide(policy, attempt, benign, 0.0, None, False) == decide(policy, attempt, plain, 0.0, None, False)

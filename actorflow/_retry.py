"""Pure retry arithmetic with Temporal's semantics (SEMANTICS R27-R33, STYLE.md 2.7).

No clock, no threads, no I/O: given a policy, the attempt that just ended, its failure and the
time, decide whether and when the next attempt runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .exceptions import (
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

__all__ = ["EffectivePolicy", "RetryDecision", "backoff_interval", "decide", "uncapped_backoff"]

_TIMEOUT_LIST_NAMES = {
    TimeoutType.START_TO_CLOSE: "TemporalTimeout:StartToClose",
    TimeoutType.HEARTBEAT: "TemporalTimeout:Heartbeat",
    TimeoutType.SCHEDULE_TO_START: "TemporalTimeout:ScheduleToStart",
    TimeoutType.SCHEDULE_TO_CLOSE: "TemporalTimeout:ScheduleToClose",
}


@dataclass(frozen=True)
class EffectivePolicy:
    """A ``RetryPolicy`` with defaults filled in and durations in float seconds (R20-R22)."""

    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float = 100.0
    maximum_attempts: int = 0
    non_retryable_error_types: Tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryDecision:
    """Retry after ``interval`` seconds, or stop with ``retry_state``."""

    retry_state: RetryState
    interval: Optional[float] = None
    no_room: bool = False  # stopped by R29 step 6 (the next start is past schedule-to-close)

    @property
    def retry(self) -> bool:
        return self.retry_state is RetryState.IN_PROGRESS


def uncapped_backoff(policy: EffectivePolicy, attempt: int) -> float:
    """R27 before the cap: ``initial * coefficient^(attempt-1)``, saturating on overflow."""
    try:
        return policy.initial_interval * policy.backoff_coefficient ** (attempt - 1)
    except OverflowError:
        return float("inf")


def backoff_interval(policy: EffectivePolicy, attempt: int) -> float:
    """R27: ``min(initial * coefficient^(attempt-1), maximum_interval)``, saturating on overflow."""
    return min(uncapped_backoff(policy, attempt), policy.maximum_interval)


def is_non_retryable(policy: EffectivePolicy, failure: BaseException) -> bool:
    """R30: the failure stops retrying by itself."""
    if isinstance(failure, ApplicationError):
        return failure.non_retryable or (
            failure.type is not None and failure.type in policy.non_retryable_error_types
        )
    if isinstance(failure, CancelledError):
        return True
    if isinstance(failure, TimeoutError):
        if failure.type in (TimeoutType.SCHEDULE_TO_START, TimeoutType.SCHEDULE_TO_CLOSE):
            return True
        return _TIMEOUT_LIST_NAMES.get(failure.type) in policy.non_retryable_error_types
    return False


def decide(
    policy: EffectivePolicy,
    attempt: int,
    failure: BaseException,
    now: float,
    schedule_to_close_deadline: Optional[float],
    cancel_requested: bool,
) -> RetryDecision:
    """R29: the decision order when attempt ``attempt`` ends in ``failure`` at ``now``."""
    if cancel_requested:
        return RetryDecision(RetryState.CANCEL_REQUESTED)
    if isinstance(failure, TimeoutError) and failure.type in (
        TimeoutType.SCHEDULE_TO_START,
        TimeoutType.SCHEDULE_TO_CLOSE,
    ):
        return RetryDecision(RetryState.TIMEOUT)
    if is_non_retryable(policy, failure):
        return RetryDecision(RetryState.NON_RETRYABLE_FAILURE)
    if policy.maximum_attempts > 0 and attempt >= policy.maximum_attempts:
        return RetryDecision(RetryState.MAXIMUM_ATTEMPTS_REACHED)
    delay = failure.next_retry_delay if isinstance(failure, ApplicationError) else None
    if delay is not None:
        interval = delay.total_seconds()  # R33: not capped by maximum_interval
    else:
        interval = backoff_interval(policy, attempt)
    if schedule_to_close_deadline is not None and now + interval > schedule_to_close_deadline:
        return RetryDecision(RetryState.TIMEOUT, no_room=True)  # R29 step 6, equal is allowed
    return RetryDecision(RetryState.IN_PROGRESS, interval)

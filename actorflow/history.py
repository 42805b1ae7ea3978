"""Per-execution history: every attempt, failure and retry decision, with its reason.

Temporal's history collapses retries into one event; here each attempt's start, failure and the
reason for the next delay (the R27 formula, a ``next_retry_delay``, or the rule that stopped
retrying) stay visible through ``ActivityHandle.history()``.

The supervisor appends raw tuples ``(clock_time, kind, attempt, detail)`` on its thread (cheap on
the hot path); ``ActivityHandle.history()`` turns them into ``HistoryEvent``s with datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, List, Mapping, Tuple

from ._retry import EffectivePolicy, uncapped_backoff
from .exceptions import ApplicationError, RetryState, TimeoutError

__all__ = ["HistoryEvent", "retry_reason", "stop_reason", "to_events"]

RawEvent = Tuple[float, str, int, Mapping[str, Any]]

_MAX_EVENTS = 2000  # heartbeats are folded, so this only bounds pathological executions


@dataclass(frozen=True)
class HistoryEvent:
    """One event of an execution.

    ``kind`` is one of ``scheduled``, ``attempt_started`` (detail ``worker_pid``), ``heartbeat``
    (``details``, ``count`` of heartbeats folded into this entry), ``attempt_failed`` (``failure``,
    ``next_delay`` in seconds or None, ``reason``), ``cancel_requested`` (``cancellation_type``),
    and the last one, ``closed`` (``outcome``, ``retry_state``, ``reason``, ``error``).
    """

    time: datetime
    kind: str
    attempt: int
    detail: Mapping[str, Any]


def append(history: List[RawEvent], event: RawEvent) -> None:
    """Append, folding consecutive heartbeats of one attempt into a single entry."""
    if event[1] == "heartbeat" and history:
        last = history[-1]
        if last[1] == "heartbeat" and last[2] == event[2]:
            history[-1] = (event[0], "heartbeat", event[2],
                           {"details": event[3]["details"], "count": last[3]["count"] + 1})
            return
    if len(history) < _MAX_EVENTS:
        history.append(event)


def retry_reason(policy: EffectivePolicy, attempt: int, failure: BaseException, interval: float) -> str:
    """Why the next attempt waits ``interval`` seconds (R27, R33)."""
    if isinstance(failure, ApplicationError) and failure.next_retry_delay is not None:
        return f"next_retry_delay={interval:g}s set by the failure (R33; not capped by maximum_interval)"
    capped = " (capped by maximum_interval)" if uncapped_backoff(policy, attempt) > policy.maximum_interval else ""
    return (
        f"backoff R27: min({policy.initial_interval:g}s x {policy.backoff_coefficient:g}^{attempt - 1}, "
        f"{policy.maximum_interval:g}s) = {interval:g}s{capped}"
    )


def stop_reason(retry_state: RetryState | None, outcome: str, attempt: int, policy: EffectivePolicy,
                cause: BaseException | None) -> str:
    """Which rule ended the execution."""
    if outcome == "completed":
        return f"attempt {attempt} completed"
    if retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED:
        return f"attempt {attempt} was the last of maximum_attempts={policy.maximum_attempts} (R29 step 4)"
    if retry_state is RetryState.NON_RETRYABLE_FAILURE:
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            return "the failure has non_retryable=True (R32)"
        if isinstance(cause, ApplicationError) and cause.type in policy.non_retryable_error_types:
            return f"type {cause.type!r} is in non_retryable_error_types (R30)"
        return "the failure is not retryable (R30)"
    if retry_state is RetryState.TIMEOUT:
        if isinstance(cause, TimeoutError) and cause.type is not None and cause.type.name == "SCHEDULE_TO_START":
            return "schedule-to-start timeout: never retried (R8)"
        return "no time left before the schedule-to-close deadline (R6, R15, R29 step 6)"
    if retry_state is RetryState.CANCEL_REQUESTED:
        return "cancellation was requested or the system shut down: no retry (R29 step 1, R68, D6)"
    if retry_state is RetryState.INTERNAL_SERVER_ERROR:
        return "a runtime fault ended the execution"
    return outcome


def to_events(history: List[RawEvent], to_datetime: Callable[[float], datetime]) -> List[HistoryEvent]:
    return [HistoryEvent(to_datetime(t), kind, attempt, dict(detail)) for t, kind, attempt, detail in list(history)]

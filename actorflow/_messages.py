"""Messages between the parent and a worker process, and between the parent's actors.

Pipe messages are plain tuples tagged with a small int: they are pickled on the hot path, and a
tuple of builtins pickles several times faster than a dataclass. Each pipe write carries a list
of messages, so queued messages travel in one batch. Payloads inside them (function, arguments,
result, heartbeat details) are already cloudpickled ``bytes``.

Parent -> worker::

    (RUN, exec_id, attempt, fn_name, fn_bytes | None, args_bytes, info_fields, throttle_seconds)
        info_fields = (activity_id, activity_type, attempt, scheduled_ts, attempt_scheduled_ts,
                       started_ts, details_bytes | None, (heartbeat_s, s2c_s, stc_s), task_queue,
                       (initial_s, coefficient, maximum_s, maximum_attempts, error_types))
        times are POSIX timestamps and durations seconds (None = unset): builtins pickle fast.
    (CANCEL, exec_id, attempt, reason)        reason: "requested" | "timeout" | "shutdown"
    (EXIT,)

Worker -> parent::

    (READY, pid)
    (HEARTBEAT, exec_id, attempt, details_bytes)
    (COMPLETED, exec_id, attempt, result_bytes)
    (FAILED, exec_id, attempt, FailureData, details_bytes | None)   None: no pending details

Actor messages (parent only) are frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, List, Sequence, Tuple

__all__ = [
    "RUN",
    "CANCEL",
    "EXIT",
    "READY",
    "HEARTBEAT",
    "COMPLETED",
    "FAILED",
    "NewExecution",
    "RecoverExecutions",
    "SuspendAll",
    "DetachAll",
    "CancelExecution",
    "WorkerReports",
    "TimersFired",
    "BeginShutdown",
    "ForceCloseAll",
    "PoolBroken",
]

RUN, CANCEL, EXIT = 1, 2, 3
READY, HEARTBEAT, COMPLETED, FAILED = 11, 12, 13, 14


@dataclass(frozen=True)
class NewExecution:
    """Caller -> supervisor: host and schedule this execution."""

    record: Any  # supervisor.ExecutionRecord


@dataclass(frozen=True)
class CancelExecution:
    """Caller -> supervisor: the handle asked to cancel."""

    exec_id: int


@dataclass(frozen=True)
class WorkerReports:
    """Pool reader -> supervisor: worker messages, and attempts that got a slot.

    ``dispatches`` holds ``(exec_id, attempt, worker, started_at)`` of queued attempts the pool
    has reserved a slot for (``worker`` is the pool's in-process handle); the supervisor sends
    them.
    """

    reports: Sequence[Tuple[Any, ...]]
    dispatches: Sequence[Tuple[int, int, Any, float]] = ()


@dataclass(frozen=True)
class TimersFired:
    """Timer -> supervisor: these ``(key, deadline)`` fired, in order."""

    fired: List[Tuple[Hashable, float]]


@dataclass(frozen=True)
class BeginShutdown:
    """System -> supervisor: end queued/backed-off executions; no retries from now on (D6)."""


@dataclass(frozen=True)
class ForceCloseAll:
    """System -> supervisor: close everything still open (D6, last step)."""


@dataclass(frozen=True)
class PoolBroken:
    """Pool -> supervisor: workers cannot be kept alive; fail every open execution (D1)."""

    reason: str


@dataclass(frozen=True)
class RecoverExecutions:
    """System -> supervisor: executions rebuilt from a journal; resume each (D8)."""

    records: Sequence[Any]


@dataclass(frozen=True)
class SuspendAll:
    """System -> supervisor: a journaled system shuts down; hold due attempts, keep the rest
    open (D8)."""


@dataclass(frozen=True)
class DetachAll:
    """System -> supervisor: a journaled system's last shutdown step; answer every caller and
    leave open executions in the journal (D8)."""

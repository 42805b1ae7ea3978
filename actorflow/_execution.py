"""The execution state machine: every retry, timeout, heartbeat and cancel decision (sans-IO).

Theory of operation
-------------------
One ``ExecutionStateMachine`` owns one activity execution. It is fed events together with the
current clock reading (``handle(event, now)``) and answers with a list of commands for its host
actor to carry out. It never sleeps, reads a clock, sends, logs or touches a thread, so each rule
of SEMANTICS.md can be tested in microseconds (STYLE.md 2.1).

States::

    QUEUED  --AttemptStarted-->  RUNNING  --AttemptFailed / attempt timeout, retry-->  BACKOFF
      ^                             |                                                      |
      +------------------------- TimerFired(BACKOFF) <-------------------------------------+
    any non-terminal state --(completion, final failure, timeout, cancel, shutdown)--> CLOSED

* QUEUED: attempt ``n`` waits for a worker slot; the SCHEDULE_TO_START timer runs (R8).
* RUNNING: attempt ``n`` runs on a worker; START_TO_CLOSE and HEARTBEAT timers run (R7, R9).
* BACKOFF: attempt ``n`` failed; the BACKOFF timer fires when attempt ``n+1`` is due (R27).
* CLOSED: terminal. Late events are absorbed quietly (R5).

The SCHEDULE_TO_CLOSE timer runs from ``Schedule`` to the end, across all states (R6).

Timer keys carry the attempt number, so a timer that fires for an attempt that is no longer
current is stale and ignored (STYLE.md 2.3); reports from a stale attempt are rejected (R4).

``caller_resolved`` is separate from CLOSED: TRY_CANCEL and ABANDON answer the caller at once
while the execution goes on (R60); its later outcome is then not delivered to anybody.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple, Union

from ._retry import EffectivePolicy, decide
from .exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

__all__ = [
    "State",
    "TimerKind",
    "ExecutionConfig",
    "ExecutionStateMachine",
    "ExecutionStateError",
    # events
    "Schedule",
    "AttemptStarted",
    "HeartbeatReceived",
    "AttemptCompleted",
    "AttemptFailed",
    "TimerFired",
    "CancelRequested",
    "ShutdownRequested",
    "ForceClose",
    # commands
    "DispatchAttempt",
    "WithdrawAttempt",
    "StopAttempt",
    "DeliverCancel",
    "StartTimer",
    "CancelTimer",
    "ResolveCaller",
    "RejectCaller",
    "AttemptRetrying",
    "WORKER_SHUTDOWN_MESSAGE",
]

WORKER_SHUTDOWN_MESSAGE = "Worker is shutting down and this activity did not complete in time"
NO_ROOM_MESSAGE = (
    "Not enough time to schedule next retry before activity ScheduleToClose timeout, "
    "giving up retrying"
)

TRY_CANCEL, WAIT_CANCELLATION_COMPLETED, ABANDON = 0, 1, 2  # R41 values


class State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    BACKOFF = "backoff"
    CLOSED = "closed"


class TimerKind(enum.IntEnum):
    """Timer kinds; the values give R14's processing order for deadlines at the same instant."""

    START_TO_CLOSE = 1
    SCHEDULE_TO_START = 2
    SCHEDULE_TO_CLOSE = 3
    HEARTBEAT = 4
    BACKOFF = 5


_TIMEOUT_OF_KIND = {
    TimerKind.START_TO_CLOSE: (TimeoutType.START_TO_CLOSE, "activity StartToClose timeout"),
    TimerKind.HEARTBEAT: (TimeoutType.HEARTBEAT, "activity Heartbeat timeout"),
}


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """The normalised options of one execution (R11), durations in float seconds."""

    activity_id: str
    activity_type: str
    start_to_close: float
    schedule_to_close: Optional[float] = None
    schedule_to_start: Optional[float] = None
    heartbeat: Optional[float] = None
    policy: EffectivePolicy = field(default_factory=EffectivePolicy)
    cancellation_type: int = TRY_CANCEL
    run_id: str = ""  # this run of ``activity_id`` (D9: an id may be reused once closed)


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Schedule:
    """The execution is scheduled (T0 = now)."""


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    attempt: int


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    attempt: int
    details: Tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class AttemptCompleted:
    attempt: int
    result: Any


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """The attempt raised; ``details`` are its latest heartbeat details, None if none pending."""

    attempt: int
    failure: BaseException
    details: Optional[Tuple[Any, ...]] = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    kind: TimerKind
    attempt: int


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """The caller asked to cancel (handle.cancel() or its awaiting task was cancelled)."""


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """The system is shutting down: nothing new starts; running attempts get no retry (D6)."""


@dataclass(frozen=True, slots=True)
class ForceClose:
    """Shutdown's last step: close whatever is still open (D6)."""


Event = Union[
    Schedule,
    AttemptStarted,
    HeartbeatReceived,
    AttemptCompleted,
    AttemptFailed,
    TimerFired,
    CancelRequested,
    ShutdownRequested,
    ForceClose,
]

# ----------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class DispatchAttempt:
    """Queue attempt ``attempt`` for a worker slot; it was scheduled at ``scheduled_time``."""

    attempt: int
    scheduled_time: float


@dataclass(frozen=True, slots=True)
class WithdrawAttempt:
    """Take a queued attempt out of the queue (it never starts)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class StopAttempt:
    """Cancel a running attempt at once and kill it if it outlives stop_grace (D2)."""

    attempt: int
    reason: str  # "timeout" | "closed"


@dataclass(frozen=True, slots=True)
class DeliverCancel:
    """Deliver the caller's cancel request to the running attempt (R62: on a heartbeat)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class StartTimer:
    kind: TimerKind
    attempt: int
    deadline: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    kind: TimerKind
    attempt: int


@dataclass(frozen=True, slots=True)
class ResolveCaller:
    result: Any


@dataclass(frozen=True, slots=True)
class RejectCaller:
    error: ActivityError


@dataclass(frozen=True, slots=True)
class AttemptRetrying:
    """Informative: attempt ``attempt`` failed with ``failure``; the next runs at ``next_time``."""

    attempt: int
    failure: BaseException
    interval: float
    next_time: float


Command = Union[
    DispatchAttempt,
    WithdrawAttempt,
    StopAttempt,
    DeliverCancel,
    StartTimer,
    CancelTimer,
    ResolveCaller,
    RejectCaller,
    AttemptRetrying,
]


class ExecutionStateError(RuntimeError):
    """An event that cannot happen in the current state (an actorflow bug)."""


# ----------------------------------------------------------------------------- the machine


class ExecutionStateMachine:
    """Decides everything about one execution. See the module docstring."""

    __slots__ = (
        "config", "state", "attempt", "scheduled_time", "attempt_scheduled_time", "started_time",
        "heartbeat_details", "cancel_requested", "cancel_delivered", "caller_resolved",
        "shutting_down", "retry_state", "outcome", "final_failure", "_last_retry_failure",
        "_timers", "_out",
    )

    def __init__(self, config: ExecutionConfig) -> None:
        self.config = config
        self.state: Optional[State] = None  # None until Schedule
        self.attempt = 0
        self.scheduled_time = 0.0  # T0
        self.attempt_scheduled_time = 0.0
        self.started_time: Optional[float] = None
        self.heartbeat_details: Tuple[Any, ...] = ()  # R54: latest received, per execution
        self.cancel_requested = False
        self.cancel_delivered = False
        self.caller_resolved = False
        self.shutting_down = False
        self.retry_state: Optional[RetryState] = None
        self.outcome: Optional[str] = None  # "completed" | "failed" | "timed_out" | "cancelled"
        self._last_retry_failure: Optional[BaseException] = None  # R17
        # What closed the execution unless it completed; kept for its history even when the
        # caller was resolved earlier (TRY_CANCEL, ABANDON) and so gets no RejectCaller now.
        self.final_failure: Optional[BaseException] = None
        self._timers: dict = {}  # kind -> (attempt, deadline) of the timers this machine has started
        self._out: List[Command] = _NO_COMMANDS  # collects a handler's commands, see handle()

    # -- public -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def schedule_to_close_deadline(self) -> Optional[float]:
        s2c = self.config.schedule_to_close
        return None if s2c is None else self.scheduled_time + s2c

    def handle(self, event: Event, now: float) -> List[Command]:
        """Apply ``event`` at clock reading ``now``; return the commands to carry out."""
        if self.state is State.CLOSED:
            return self._absorb_late(event)
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"ExecutionStateMachine cannot handle {event!r}")
        if self.state is None and not isinstance(event, Schedule):
            raise ExecutionStateError(f"{event!r} before Schedule")
        out = self._out = []
        try:
            handler(self, event, now)
        finally:
            self._out = _NO_COMMANDS  # not kept alive between events (memory, GC)
        return out

    # -- event handlers ---------------------------------------------------------------------

    def _on_schedule(self, event: Schedule, now: float) -> None:
        if self.state is not None:
            raise ExecutionStateError(f"Schedule received twice (state {self.state})")
        self.scheduled_time = now
        if self.config.schedule_to_close is not None:
            self._start_timer(TimerKind.SCHEDULE_TO_CLOSE, 0, now + self.config.schedule_to_close)
        self._queue_attempt(1, now)

    def _on_started(self, event: AttemptStarted, now: float) -> None:
        if self.state is not State.QUEUED or event.attempt != self.attempt:
            self._out.append(StopAttempt(event.attempt, "closed"))  # a stray start (R4)
            return
        self.state = State.RUNNING
        self.started_time = now
        self.cancel_delivered = False
        self._cancel_timer(TimerKind.SCHEDULE_TO_START)
        self._start_timer(TimerKind.START_TO_CLOSE, self.attempt, now + self.config.start_to_close)
        if self.config.heartbeat:
            self._start_timer(TimerKind.HEARTBEAT, self.attempt, now + self.config.heartbeat)

    def _on_heartbeat(self, event: HeartbeatReceived, now: float) -> None:
        if not self._is_running(event.attempt):
            return  # R4: a heartbeat from an attempt that already ended changes nothing
        self.heartbeat_details = tuple(event.details)
        if self.config.heartbeat:
            self._start_timer(TimerKind.HEARTBEAT, self.attempt, now + self.config.heartbeat)  # R9
        if self.cancel_requested and not self.cancel_delivered:
            self.cancel_delivered = True
            self._out.append(DeliverCancel(self.attempt))  # R62

    def _on_completed(self, event: AttemptCompleted, now: float) -> None:
        if not self._is_running(event.attempt):
            return  # R4
        self._close("completed", None)
        if not self.caller_resolved:
            self.caller_resolved = True
            self._out.append(ResolveCaller(event.result))

    def _on_failed(self, event: AttemptFailed, now: float) -> None:
        if not self._is_running(event.attempt):
            return  # R4
        if event.details is not None:
            self.heartbeat_details = tuple(event.details)  # R55
        self._attempt_ended(event.failure, now, stop_reason=None)

    def _on_timer(self, event: TimerFired, now: float) -> None:
        kind = event.kind
        current = self._timers.get(kind)
        if current is None or current[0] != event.attempt:
            return  # stale timer (STYLE.md 2.3)
        if now < current[1]:
            return  # an earlier deadline of a timer re-armed since (R9: a heartbeat raced the firing)
        del self._timers[kind]
        if kind is TimerKind.SCHEDULE_TO_CLOSE:
            self._schedule_to_close_fired()
        elif kind is TimerKind.SCHEDULE_TO_START:
            if self.state is State.QUEUED and event.attempt == self.attempt:
                error = self._timeout_error(TimeoutType.SCHEDULE_TO_START, "activity ScheduleToStart timeout")
                self._finish_with_failure(error, RetryState.TIMEOUT)  # R8: never retried
        elif kind is TimerKind.BACKOFF:
            if self.state is State.BACKOFF and event.attempt == self.attempt + 1:
                self._queue_attempt(event.attempt, now)
        elif self._is_running(event.attempt):
            timeout_type, message = _TIMEOUT_OF_KIND[kind]
            self._attempt_ended(self._timeout_error(timeout_type, message), now, stop_reason="timeout")

    def _on_cancel(self, event: CancelRequested, now: float) -> None:
        if self.caller_resolved or self.cancel_requested:
            return  # R59: only the first request counts
        cancel_type = self.config.cancellation_type
        if cancel_type in (TRY_CANCEL, ABANDON):
            self.caller_resolved = True
            self._out.append(RejectCaller(self._cancelled_error(CancelledError("Cancelled"))))
        if cancel_type == ABANDON:
            return  # R60: nothing is recorded; the execution goes on unobserved
        self.cancel_requested = True
        if self.state in (State.QUEUED, State.BACKOFF):
            details = ("ACTIVITY_ID_NOT_STARTED",) if cancel_type == WAIT_CANCELLATION_COMPLETED else ()
            self._finish_cancelled(CancelledError("Cancelled", *details))  # R61, R69

    def _on_shutdown(self, event: ShutdownRequested, now: float) -> None:
        self.shutting_down = True
        if self.state in (State.QUEUED, State.BACKOFF):
            self._finish_cancelled(CancelledError("Cancelled"))  # D6: nothing was running

    def _on_force_close(self, event: ForceClose, now: float) -> None:
        self.shutting_down = True
        if self.state is State.RUNNING:
            failure = ApplicationError(WORKER_SHUTDOWN_MESSAGE, type="WorkerShutdown")
            self._finish_with_failure(failure, RetryState.CANCEL_REQUESTED)
        else:
            self._finish_cancelled(CancelledError("Cancelled"))

    # -- decisions --------------------------------------------------------------------------

    def _attempt_ended(self, failure: BaseException, now: float, stop_reason: Optional[str]) -> None:
        """R29: an attempt failed or timed out at ``now``; retry it or close the execution."""
        if stop_reason is not None:
            self._out.append(StopAttempt(self.attempt, stop_reason))  # D2
        self._cancel_timer(TimerKind.START_TO_CLOSE)
        self._cancel_timer(TimerKind.HEARTBEAT)
        decision = decide(
            self.config.policy,
            self.attempt,
            failure,
            now,
            self.schedule_to_close_deadline,
            self.cancel_requested or self.shutting_down,
        )
        if decision.retry:
            self._last_retry_failure = failure
            next_time = now + decision.interval
            self.state = State.BACKOFF
            self._out.append(AttemptRetrying(self.attempt, failure, decision.interval, next_time))
            self._start_timer(TimerKind.BACKOFF, self.attempt + 1, next_time)
            return
        if decision.no_room and isinstance(failure, TimeoutError):
            # R15: the caller sees a schedule-to-close timeout caused by the previous failure.
            failure = self._timeout_error(TimeoutType.SCHEDULE_TO_CLOSE, NO_ROOM_MESSAGE)
        self._finish_with_failure(failure, decision.retry_state, attempt_over=True)

    def _schedule_to_close_fired(self) -> None:
        """R6, R16: the whole execution ran out of time, whatever the attempt is doing."""
        error = self._timeout_error(TimeoutType.SCHEDULE_TO_CLOSE, NO_ROOM_MESSAGE)
        state = RetryState.CANCEL_REQUESTED if self.cancel_requested else RetryState.TIMEOUT
        self._finish_with_failure(error, state)

    def _finish_with_failure(
        self, failure: BaseException, retry_state: RetryState, attempt_over: bool = False
    ) -> None:
        """Close as failed/timed out; ``attempt_over``: the current attempt needs no stopping."""
        if self.cancel_requested or self.shutting_down:
            retry_state = RetryState.CANCEL_REQUESTED  # R37, R63, D6
        if isinstance(failure, CancelledError) and retry_state is RetryState.CANCEL_REQUESTED:
            self._finish_cancelled(failure, attempt_over=attempt_over)
            return
        if isinstance(failure, TimeoutError):
            message, outcome = "Activity task timed out", "timed_out"
        else:
            message, outcome = "Activity task failed", "failed"
        self.retry_state = retry_state
        self.final_failure = failure
        self._close(outcome, None if attempt_over else "closed")
        self._reject(message, retry_state, failure)

    def _finish_cancelled(self, cause: CancelledError, attempt_over: bool = False) -> None:
        self.retry_state = RetryState.CANCEL_REQUESTED
        self.final_failure = cause
        self._close("cancelled", None if attempt_over else "closed")
        self._reject("Activity cancelled", RetryState.CANCEL_REQUESTED, cause)

    # -- helpers ----------------------------------------------------------------------------

    def _queue_attempt(self, attempt: int, now: float) -> None:
        self.attempt = attempt
        self.state = State.QUEUED
        self.attempt_scheduled_time = now
        self.started_time = None
        self._out.append(DispatchAttempt(attempt, now))
        if self.config.schedule_to_start is not None:
            self._start_timer(TimerKind.SCHEDULE_TO_START, attempt, now + self.config.schedule_to_start)

    def _close(self, outcome: str, stop_reason: Optional[str]) -> None:
        """Enter CLOSED: cancel every timer, and take the current attempt out of the system."""
        if self.state is State.QUEUED:
            self._out.append(WithdrawAttempt(self.attempt))
        elif self.state is State.RUNNING and stop_reason is not None:
            self._out.append(StopAttempt(self.attempt, stop_reason))
        for kind, (attempt, _) in list(self._timers.items()):
            self._out.append(CancelTimer(kind, attempt))
        self._timers.clear()
        self.state = State.CLOSED
        self.outcome = outcome

    def _reject(self, message: str, retry_state: RetryState, cause: BaseException) -> None:
        if self.caller_resolved:
            return
        self.caller_resolved = True
        error = ActivityError(
            message,
            activity_type=self.config.activity_type,
            activity_id=self.config.activity_id,
            retry_state=retry_state,
        )
        error.__cause__ = cause
        self._out.append(RejectCaller(error))

    def _cancelled_error(self, cause: CancelledError) -> ActivityError:
        error = ActivityError(
            "Activity cancelled",
            activity_type=self.config.activity_type,
            activity_id=self.config.activity_id,
            retry_state=RetryState.CANCEL_REQUESTED,
        )
        error.__cause__ = cause
        return error

    def _timeout_error(self, timeout_type: TimeoutType, message: str) -> TimeoutError:
        """A timeout failure with R17's cause and R18's details."""
        error = TimeoutError(message, type=timeout_type, last_heartbeat_details=self.heartbeat_details)
        error.__cause__ = self._last_retry_failure
        return error

    def _is_running(self, attempt: int) -> bool:
        return self.state is State.RUNNING and attempt == self.attempt

    def _start_timer(self, kind: TimerKind, attempt: int, deadline: float) -> None:
        self._timers[kind] = (attempt, deadline)
        self._out.append(StartTimer(kind, attempt, deadline))

    def _cancel_timer(self, kind: TimerKind) -> None:
        entry = self._timers.pop(kind, None)
        if entry is not None:
            self._out.append(CancelTimer(kind, entry[0]))

    def _absorb_late(self, event: Event) -> List[Command]:
        """R5: a closed execution ignores everything, but a stray start must still be stopped."""
        if isinstance(event, AttemptStarted):
            return [StopAttempt(event.attempt, "closed")]
        return []


# Between events: a handler appending outside handle() would fail loudly on a tuple.
_NO_COMMANDS: Any = ()


_HANDLERS = {
    Schedule: ExecutionStateMachine._on_schedule,
    AttemptStarted: ExecutionStateMachine._on_started,
    HeartbeatReceived: ExecutionStateMachine._on_heartbeat,
    AttemptCompleted: ExecutionStateMachine._on_completed,
    AttemptFailed: ExecutionStateMachine._on_failed,
    TimerFired: ExecutionStateMachine._on_timer,
    CancelRequested: ExecutionStateMachine._on_cancel,
    ShutdownRequested: ExecutionStateMachine._on_shutdown,
    ForceClose: ExecutionStateMachine._on_force_close,
}

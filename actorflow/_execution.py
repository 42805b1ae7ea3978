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

Part 2 (API.md D8-D10) adds, without new states:

* ``start_delay`` (D9): the execution starts in BACKOFF with attempt 0, its BACKOFF timer set for
  attempt 1; retries are not delayed, schedule-to-start counts from when attempt 1 is due.
* ``paused`` (D10): a due attempt is *held* (QUEUED, not handed to the workers, no
  schedule-to-start timer) until unpause; a running attempt goes on (PAUSE_REQUESTED) and its
  retry waits; schedule-to-close keeps running.
* ``TerminateRequested`` (D10): closes at once as ``terminated``; a running attempt is killed.
* durable systems (D8): ``Suspend`` at shutdown holds every due attempt and treats an attempt that
  the shutdown itself interrupted (WorkerShutdown, WorkerCrashed) as still running, which is what
  the journal keeps; ``Detach`` answers the caller (IN_PROGRESS, SystemShutdown) without closing.
  ``restore()`` + ``Resume`` rebuild a machine from its journaled snapshot: pending timers are
  re-armed at their recorded deadlines (a schedule-to-close deadline that passed fires at once, a
  backoff that ended dispatches at once), and an attempt that was running fails with
  ``SystemRestarted`` (retryable, R29 decides), unless it waits for async completion (D13).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

from ._retry import EffectivePolicy, decide
from .exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TerminatedError,
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
    "PauseRequested",
    "UnpauseRequested",
    "TerminateRequested",
    "AsyncCompletionPending",
    "Suspend",
    "Detach",
    "Resume",
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
    "SYSTEM_RESTARTED_MESSAGE",
    "SYSTEM_SHUTDOWN_MESSAGE",
    "SNAPSHOT_FIELDS",
    "TIME_FIELDS",
    "STATUS_OF_OUTCOME",
    "suspended_by_shutdown",
]

WORKER_SHUTDOWN_MESSAGE = "Worker is shutting down and this activity did not complete in time"
SYSTEM_RESTARTED_MESSAGE = (
    "the system that ran this attempt stopped (shutdown, crash or kill) before the attempt ended; "
    "retried under the retry policy"
)
SYSTEM_SHUTDOWN_MESSAGE = (
    "the system shut down; the execution stays open in the journal and resumes when a system "
    "opens the journal again (get_activity_handle(activity_id) there)"
)
# Failures that a durable system's own shutdown causes: the attempt counts as still running.
_SHUTDOWN_FAILURE_TYPES = frozenset({"WorkerShutdown", "WorkerCrashed"})
NO_ROOM_MESSAGE = (
    "Not enough time to schedule next retry before activity ScheduleToClose timeout, "
    "giving up retrying"
)

TRY_CANCEL, WAIT_CANCELLATION_COMPLETED, ABANDON = 0, 1, 2  # R41 values

STATUS_OF_OUTCOME = {
    None: "Running", "completed": "Completed", "failed": "Failed", "cancelled": "Canceled",
    "terminated": "Terminated", "timed_out": "TimedOut",
}
"""The visibility spelling of an execution's status for each machine ``outcome`` (D9, D10)."""


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
    start_delay: Optional[float] = None  # D9: attempt 1 becomes due this long after Schedule
    priority: int = 3  # D9: Priority.priority_key (1 runs first)
    durable: bool = False  # D8: a journaled system; its shutdown suspends instead of closing


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

    reason: Optional[str] = None  # D10: shown as describe().canceled_reason


@dataclass(frozen=True, slots=True)
class PauseRequested:
    """D10: dispatch no new attempt until unpaused."""

    reason: Optional[str] = None


@dataclass(frozen=True, slots=True)
class UnpauseRequested:
    """D10: dispatch again; a held attempt goes out at once."""


@dataclass(frozen=True, slots=True)
class TerminateRequested:
    """D10: close now as terminated; a running attempt is killed without grace."""

    reason: Optional[str] = None


@dataclass(frozen=True, slots=True)
class AsyncCompletionPending:
    """D13: the attempt's code returned by ``raise_complete_async()``: the attempt stays running
    (its timeouts too) until completed through an async handle; no worker runs it any more."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Suspend:
    """D8: a durable system begins shutting down: hold due attempts, keep the rest going."""


@dataclass(frozen=True, slots=True)
class Detach:
    """D8: a durable system's last shutdown step: answer the caller, leave the execution open."""


@dataclass(frozen=True, slots=True)
class Resume:
    """D8: a machine rebuilt by ``restore()`` starts again at ``now`` in a new system."""


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
    PauseRequested,
    UnpauseRequested,
    TerminateRequested,
    AsyncCompletionPending,
    Suspend,
    Detach,
    Resume,
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
    reason: str  # "timeout" | "closed" | "terminate" (kill at once, no grace)


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


def suspended_by_shutdown(activity_type: str, activity_id: str) -> ActivityError:
    """D8: what a caller of a journaled system's open execution gets when the system shuts down."""
    error = ActivityError("Activity execution suspended by system shutdown", activity_type=activity_type,
                          activity_id=activity_id, retry_state=RetryState.IN_PROGRESS)
    error.__cause__ = ApplicationError(SYSTEM_SHUTDOWN_MESSAGE, type="SystemShutdown")
    return error


class ExecutionStateError(RuntimeError):
    """An event that cannot happen in the current state (an actorflow bug)."""


# ----------------------------------------------------------------------------- the machine


# What a journal keeps of a machine, in this order (``snapshot()`` / ``restore()``). Times are
# clock readings; ``TIME_FIELDS`` names those a journal converts to wall-clock time and back.
SNAPSHOT_FIELDS = (
    "state", "attempt", "scheduled_time", "attempt_scheduled_time", "started_time",
    "cancel_requested", "cancel_delivered", "retry_state", "outcome", "final_failure",
    "_last_retry_failure", "last_started_time", "last_complete_time", "last_heartbeat_time",
    "heartbeat_count", "retry_interval", "next_time", "last_failure", "canceled_reason",
    "paused", "pause_reason", "held", "async_pending", "close_time", "_timers",
)
TIME_FIELDS = frozenset({
    "scheduled_time", "attempt_scheduled_time", "started_time", "last_started_time",
    "last_complete_time", "last_heartbeat_time", "next_time", "close_time",
})  # and each deadline in ``_timers``


class ExecutionStateMachine:
    """Decides everything about one execution. See the module docstring."""

    __slots__ = (
        "config", "state", "attempt", "scheduled_time", "attempt_scheduled_time", "started_time",
        "heartbeat_details", "cancel_requested", "cancel_delivered", "caller_resolved",
        "shutting_down", "retry_state", "outcome", "final_failure", "_last_retry_failure",
        "last_started_time", "last_complete_time", "last_heartbeat_time", "heartbeat_count",
        "retry_interval", "next_time", "last_failure", "canceled_reason", "paused", "pause_reason",
        "held", "suspended", "async_pending", "close_time", "final_error", "result", "_timers", "_out",
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
        # "completed" | "failed" | "timed_out" | "cancelled" | "terminated"
        self.outcome: Optional[str] = None
        self._last_retry_failure: Optional[BaseException] = None  # R17
        # What closed the execution unless it completed; kept for its history even when the
        # caller was resolved earlier (TRY_CANCEL, ABANDON) and so gets no RejectCaller now.
        self.final_failure: Optional[BaseException] = None
        # D10 bookkeeping (describe): when things last happened, and why.
        self.last_started_time: Optional[float] = None
        self.last_complete_time: Optional[float] = None
        self.last_heartbeat_time: Optional[float] = None
        self.heartbeat_count = 0
        self.retry_interval: Optional[float] = None
        self.next_time: Optional[float] = None  # when the next attempt is due (BACKOFF)
        self.last_failure: Optional[BaseException] = None
        self.canceled_reason: Optional[str] = None
        self.paused = False
        self.pause_reason: Optional[str] = None
        self.held = False  # QUEUED, due, but not handed to the workers (paused or suspended)
        self.suspended = False
        self.async_pending = False  # D13: RUNNING, waiting for an async completion
        self.close_time: Optional[float] = None
        # Once closed: the ActivityError it ended with (also when the caller had been answered
        # before, by TRY_CANCEL or ABANDON), or the pickled result.
        self.final_error: Optional[ActivityError] = None
        self.result: Any = None
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

    def snapshot(self) -> tuple:
        """The fields a journal records, in ``SNAPSHOT_FIELDS`` order (timers as a tuple of
        ``(kind, attempt, deadline)``). Heartbeat details are not included: the host keeps their
        pickled bytes and passes the decoded values to ``restore``."""
        values = [getattr(self, name) for name in SNAPSHOT_FIELDS[:-1]]
        values.append(tuple((int(kind), attempt, deadline)
                            for kind, (attempt, deadline) in self._timers.items()))
        return tuple(values)

    @classmethod
    def restore(cls, config: ExecutionConfig, snapshot: Sequence[Any],
                heartbeat_details: Tuple[Any, ...] = ()) -> "ExecutionStateMachine":
        """Rebuild an open execution's machine from ``snapshot()`` (times already on the new
        clock's scale); feed it ``Resume`` to start it again (D8)."""
        machine = cls.__new__(cls)  # every field is set below: recovery rebuilds 100,000s of these
        machine.config = config
        machine.caller_resolved = machine.shutting_down = machine.suspended = False
        machine.final_error = machine.result = None
        machine._out = _NO_COMMANDS
        for name, value in zip(SNAPSHOT_FIELDS[:-1], snapshot):
            setattr(machine, name, value)
        machine._timers = {TimerKind(kind): (attempt, deadline) for kind, attempt, deadline in snapshot[-1]}
        machine.heartbeat_details = tuple(heartbeat_details)
        machine.held = machine.paused  # a hold of the previous system's shutdown ends here
        return machine

    # -- event handlers ---------------------------------------------------------------------

    def _on_schedule(self, event: Schedule, now: float) -> None:
        if self.state is not None:
            raise ExecutionStateError(f"Schedule received twice (state {self.state})")
        self.scheduled_time = now
        if self.config.schedule_to_close is not None:
            self._start_timer(TimerKind.SCHEDULE_TO_CLOSE, 0, now + self.config.schedule_to_close)
        if self.config.start_delay:
            self.state = State.BACKOFF  # D9: attempt 1 waits out the delay like a backoff
            self.next_time = now + self.config.start_delay
            self._start_timer(TimerKind.BACKOFF, 1, self.next_time)
            return
        self._queue_attempt(1, now)

    def _on_started(self, event: AttemptStarted, now: float) -> None:
        if self.state is not State.QUEUED or event.attempt != self.attempt or self.held:
            self._out.append(StopAttempt(event.attempt, "closed"))  # a stray start (R4)
            return
        self.state = State.RUNNING
        self.started_time = self.last_started_time = now
        self.cancel_delivered = False
        self._cancel_timer(TimerKind.SCHEDULE_TO_START)
        self._start_timer(TimerKind.START_TO_CLOSE, self.attempt, now + self.config.start_to_close)
        if self.config.heartbeat:
            self._start_timer(TimerKind.HEARTBEAT, self.attempt, now + self.config.heartbeat)

    def _on_heartbeat(self, event: HeartbeatReceived, now: float) -> None:
        if not self._is_running(event.attempt):
            return  # R4: a heartbeat from an attempt that already ended changes nothing
        self.heartbeat_details = tuple(event.details)
        self.last_heartbeat_time = now
        self.heartbeat_count += 1
        if self.config.heartbeat:
            self._start_timer(TimerKind.HEARTBEAT, self.attempt, now + self.config.heartbeat)  # R9
        if self.cancel_requested and not self.cancel_delivered:
            self.cancel_delivered = True
            self._out.append(DeliverCancel(self.attempt))  # R62

    def _on_completed(self, event: AttemptCompleted, now: float) -> None:
        if not self._is_running(event.attempt):
            return  # R4
        self.last_complete_time = now
        self.result = event.result
        self._close("completed", None, now)
        if not self.caller_resolved:
            self.caller_resolved = True
            self._out.append(ResolveCaller(event.result))

    def _on_failed(self, event: AttemptFailed, now: float) -> None:
        if not self._is_running(event.attempt):
            return  # R4
        if self.suspended and getattr(event.failure, "type", None) in _SHUTDOWN_FAILURE_TYPES:
            return  # D8: interrupted by the shutdown; the journal keeps it running
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
            self._schedule_to_close_fired(now)
        elif kind is TimerKind.SCHEDULE_TO_START:
            if self.state is State.QUEUED and event.attempt == self.attempt:
                error = self._timeout_error(TimeoutType.SCHEDULE_TO_START, "activity ScheduleToStart timeout")
                self._finish_with_failure(error, RetryState.TIMEOUT, now)  # R8: never retried
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
        self.canceled_reason = event.reason
        if self.state in (State.QUEUED, State.BACKOFF):
            details = ("ACTIVITY_ID_NOT_STARTED",) if cancel_type == WAIT_CANCELLATION_COMPLETED else ()
            self._finish_cancelled(CancelledError("Cancelled", *details), now)  # R61, R69

    def _on_pause(self, event: PauseRequested, now: float) -> None:
        if self.paused:
            return
        self.paused = True
        self.pause_reason = event.reason
        if self.state is State.QUEUED and not self.held:
            self._hold()

    def _on_unpause(self, event: UnpauseRequested, now: float) -> None:
        if not self.paused:
            return
        self.paused = False
        self.pause_reason = None
        if self.state is State.QUEUED and self.held and not self.suspended:
            self._release_hold(now)  # D10: an attempt that is due goes out at once

    def _on_terminate(self, event: TerminateRequested, now: float) -> None:
        error = TerminatedError(event.reason or "Activity terminated")
        self.retry_state = RetryState.NON_RETRYABLE_FAILURE
        self.final_failure = error
        self._close("terminated", "terminate", now)
        self._reject("Activity terminated", RetryState.NON_RETRYABLE_FAILURE, error)

    def _on_async_pending(self, event: AsyncCompletionPending, now: float) -> None:
        if self._is_running(event.attempt):
            self.async_pending = True

    def _on_shutdown(self, event: ShutdownRequested, now: float) -> None:
        self.shutting_down = True
        if self.state in (State.QUEUED, State.BACKOFF):
            self._finish_cancelled(CancelledError("Cancelled"), now)  # D6: nothing was running

    def _on_force_close(self, event: ForceClose, now: float) -> None:
        self.shutting_down = True
        if self.state is State.RUNNING:
            failure = ApplicationError(WORKER_SHUTDOWN_MESSAGE, type="WorkerShutdown")
            self._finish_with_failure(failure, RetryState.CANCEL_REQUESTED, now)
        else:
            self._finish_cancelled(CancelledError("Cancelled"), now)

    def _on_suspend(self, event: Suspend, now: float) -> None:
        self.suspended = True
        if self.state is State.QUEUED and not self.held:
            self._hold()

    def _on_detach(self, event: Detach, now: float) -> None:
        if self.caller_resolved:
            return
        self.caller_resolved = True
        self._out.append(RejectCaller(suspended_by_shutdown(self.config.activity_type, self.config.activity_id)))

    def _on_resume(self, event: Resume, now: float) -> None:
        """D8: re-arm what was pending when the previous system stopped."""
        self.suspended = False
        self.shutting_down = False
        timers, self._timers = self._timers, {}
        s2c = timers.get(TimerKind.SCHEDULE_TO_CLOSE)
        if s2c is not None:
            if s2c[1] <= now:
                self._schedule_to_close_fired(now)  # it passed while no system ran
                return
            self._start_timer(TimerKind.SCHEDULE_TO_CLOSE, 0, s2c[1])
        if self.state is State.QUEUED:
            if not self.held:
                self._dispatch(now)  # schedule-to-start counts from here: no worker could take it
        elif self.state is State.BACKOFF:
            due = timers.get(TimerKind.BACKOFF, (self.attempt + 1, now))[1]
            if due <= now:
                self._queue_attempt(self.attempt + 1, now)  # the backoff ended meanwhile
            else:
                self._start_timer(TimerKind.BACKOFF, self.attempt + 1, due)
        elif self.state is State.RUNNING:
            if self.async_pending:  # D13: the attempt waits on; its own deadlines still hold
                for kind in (TimerKind.START_TO_CLOSE, TimerKind.HEARTBEAT):
                    if kind in timers:
                        self._start_timer(kind, *timers[kind])
                return
            failure = ApplicationError(SYSTEM_RESTARTED_MESSAGE, type="SystemRestarted")
            self._attempt_ended(failure, now, stop_reason=None)

    # -- decisions --------------------------------------------------------------------------

    def _attempt_ended(self, failure: BaseException, now: float, stop_reason: Optional[str]) -> None:
        """R29: an attempt failed or timed out at ``now``; retry it or close the execution."""
        if stop_reason is not None:
            self._out.append(StopAttempt(self.attempt, stop_reason))  # D2
        self._cancel_timer(TimerKind.START_TO_CLOSE)
        self._cancel_timer(TimerKind.HEARTBEAT)
        self.last_complete_time = now
        self.last_failure = failure
        self.async_pending = False
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
            self.retry_interval = decision.interval
            self.next_time = next_time
            self._out.append(AttemptRetrying(self.attempt, failure, decision.interval, next_time))
            self._start_timer(TimerKind.BACKOFF, self.attempt + 1, next_time)
            return
        if decision.no_room and isinstance(failure, TimeoutError):
            # R15: the caller sees a schedule-to-close timeout caused by the previous failure.
            failure = self._timeout_error(TimeoutType.SCHEDULE_TO_CLOSE, NO_ROOM_MESSAGE)
        self._finish_with_failure(failure, decision.retry_state, now, attempt_over=True)

    def _schedule_to_close_fired(self, now: float) -> None:
        """R6, R16: the whole execution ran out of time, whatever the attempt is doing."""
        error = self._timeout_error(TimeoutType.SCHEDULE_TO_CLOSE, NO_ROOM_MESSAGE)
        state = RetryState.CANCEL_REQUESTED if self.cancel_requested else RetryState.TIMEOUT
        self._finish_with_failure(error, state, now)

    def _finish_with_failure(
        self, failure: BaseException, retry_state: RetryState, now: float, attempt_over: bool = False
    ) -> None:
        """Close as failed/timed out; ``attempt_over``: the current attempt needs no stopping."""
        if self.cancel_requested or self.shutting_down:
            retry_state = RetryState.CANCEL_REQUESTED  # R37, R63, D6
        if isinstance(failure, CancelledError) and retry_state is RetryState.CANCEL_REQUESTED:
            self._finish_cancelled(failure, now, attempt_over=attempt_over)
            return
        if isinstance(failure, TimeoutError):
            message, outcome = "Activity task timed out", "timed_out"
        else:
            message, outcome = "Activity task failed", "failed"
        self.retry_state = retry_state
        self.final_failure = failure
        self._close(outcome, None if attempt_over else "closed", now)
        self._reject(message, retry_state, failure)

    def _finish_cancelled(self, cause: CancelledError, now: float, attempt_over: bool = False) -> None:
        self.retry_state = RetryState.CANCEL_REQUESTED
        self.final_failure = cause
        self._close("cancelled", None if attempt_over else "closed", now)
        self._reject("Activity cancelled", RetryState.CANCEL_REQUESTED, cause)

    # -- helpers ----------------------------------------------------------------------------

    def _queue_attempt(self, attempt: int, now: float) -> None:
        self.attempt = attempt
        self.state = State.QUEUED
        self.attempt_scheduled_time = now
        self.started_time = None
        self.next_time = None
        if self.paused or self.suspended:
            self.held = True  # D10, D8: due, but nothing is dispatched until unpause / resume
            return
        self._dispatch(now)

    def _dispatch(self, now: float) -> None:
        """Hand the due attempt to the workers; schedule-to-start runs from ``now`` (R8)."""
        self.held = False
        self._out.append(DispatchAttempt(self.attempt, self.attempt_scheduled_time))
        if self.config.schedule_to_start is not None:
            self._start_timer(TimerKind.SCHEDULE_TO_START, self.attempt, now + self.config.schedule_to_start)

    def _hold(self) -> None:
        """Take the queued attempt back from the workers' queue; it stays due (QUEUED)."""
        self.held = True
        self._out.append(WithdrawAttempt(self.attempt))
        self._cancel_timer(TimerKind.SCHEDULE_TO_START)

    def _release_hold(self, now: float) -> None:
        self._dispatch(now)

    def _close(self, outcome: str, stop_reason: Optional[str], now: float) -> None:
        """Enter CLOSED: cancel every timer, and take the current attempt out of the system."""
        if self.state is State.QUEUED and not self.held:
            self._out.append(WithdrawAttempt(self.attempt))
        elif self.state is State.RUNNING and stop_reason is not None and not self.async_pending:
            self._out.append(StopAttempt(self.attempt, stop_reason))
        for kind, (attempt, _) in list(self._timers.items()):
            self._out.append(CancelTimer(kind, attempt))
        self._timers.clear()
        self.state = State.CLOSED
        self.outcome = outcome
        self.close_time = now
        self.held = False
        self.async_pending = False
        self.next_time = None

    def _reject(self, message: str, retry_state: RetryState, cause: BaseException) -> None:
        """The execution closed with ``cause``: keep its error, and answer the caller with it."""
        error = ActivityError(
            message,
            activity_type=self.config.activity_type,
            activity_id=self.config.activity_id,
            retry_state=retry_state,
        )
        error.__cause__ = cause
        self.final_error = error
        if self.caller_resolved:
            return
        self.caller_resolved = True
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
    PauseRequested: ExecutionStateMachine._on_pause,
    UnpauseRequested: ExecutionStateMachine._on_unpause,
    TerminateRequested: ExecutionStateMachine._on_terminate,
    AsyncCompletionPending: ExecutionStateMachine._on_async_pending,
    Suspend: ExecutionStateMachine._on_suspend,
    Detach: ExecutionStateMachine._on_detach,
    Resume: ExecutionStateMachine._on_resume,
}

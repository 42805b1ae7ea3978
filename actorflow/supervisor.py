"""Supervisor actors: each hosts many executions and carries out their machines' commands.

A fixed number of ``SupervisorActor``s (pykka actors, one thread each) share the executions by
``exec_id % shards``; there is never an actor per execution (STYLE.md pitfall 1). Every decision is
the ``ExecutionStateMachine``'s; a handler here unpacks a message, feeds the machine an event with
the clock's ``now`` and executes the commands it returns (STYLE.md 2.4). Timer commands produced
while handling one message are sent to the timer actor as one batch.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import pykka

from . import _serde, history as _history
from ._execution import (
    STATUS_OF_OUTCOME,
    AttemptCompleted,
    AttemptFailed,
    AttemptRetrying,
    AttemptStarted,
    CancelRequested,
    CancelTimer,
    DeliverCancel,
    Detach,
    DispatchAttempt,
    ExecutionStateMachine,
    ForceClose,
    HeartbeatReceived,
    RejectCaller,
    ResolveCaller,
    Resume,
    Schedule,
    ShutdownRequested,
    StartTimer,
    State,
    StopAttempt,
    Suspend,
    TimerFired,
    TimerKind,
    WithdrawAttempt,
)
from ._messages import (
    CANCEL,
    COMPLETED,
    FAILED,
    HEARTBEAT,
    RUN,
    BeginShutdown,
    CancelExecution,
    DetachAll,
    ForceCloseAll,
    NewExecution,
    PoolBroken,
    RecoverExecutions,
    SuspendAll,
    TimersFired,
    WorkerReports,
)
from ._outcome import Outcome
from .clock import Clock, timestamp_function
from .exceptions import ActivityError, ApplicationError, InternalError, RetryState

__all__ = ["SupervisorActor", "ExecutionRecord", "KILL"]

log = logging.getLogger(__name__)

KILL = 0  # timer kind of the stop_grace kill deadline (D2); not a machine timer
_MAX_HELD = 64  # handled messages after which batched writes are flushed even in a burst
_FLUSH = "flush"  # asks the actor's thread to write what an inline handling left in the outbox


@dataclass(slots=True)
class ExecutionRecord:
    """Everything the supervisor keeps for one execution besides its machine."""

    exec_id: int
    shard: int
    machine: ExecutionStateMachine
    future: Outcome
    fn_name: str
    fn_bytes: Optional[bytes]
    args_bytes: bytes
    task_queue: str
    throttle: float
    details_bytes: Optional[bytes] = None
    history: List[Any] = field(default_factory=list)  # raw events, see history.py
    # (initial_interval s, backoff_coefficient, maximum_interval s, maximum_attempts, types)
    policy_fields: Tuple[Any, ...] = ()
    worker_pid: Optional[int] = None  # of the last attempt sent
    start_time: float = 0.0  # clock reading of the start call (D8: the journal's StartTime)
    # D8: entries of ``history`` an earlier system wrote (not in this list, see Journal.history_prefix),
    # and how many of this list's entries the journal has been given.
    history_base: int = 0
    history_written: int = 0
    explicit_id: bool = True  # False: the system generated the activity_id (see MemoryJournal)

    @property
    def activity_type(self) -> str:
        return self.machine.config.activity_type

    @property
    def run_id(self) -> str:
        return self.machine.config.run_id

    @property
    def status(self) -> str:
        """The visibility spelling of the execution's status (D9's reuse policies)."""
        return STATUS_OF_OUTCOME[self.machine.outcome]


class SupervisorActor(pykka.ThreadingActor):
    """Hosts executions. Every method here runs on this supervisor's actor thread."""

    use_daemon_thread = True

    def __init__(self, pool: Any, timer: pykka.ActorRef, clock: Clock, stop_grace: float,
                 instances: Optional[List["SupervisorActor"]] = None,
                 fire_timers: Optional[Callable[[], None]] = None, journal: Any = None) -> None:
        super().__init__()
        # The system's Journal (journal/base.py): the index of open ids for every system; a
        # durable one also gets each machine's changes, and callers wait for its commits (D8).
        self._journal = journal
        self._durable = journal is not None and journal.durable
        # The inbox's deque: its length says whether more messages wait (for batching writes).
        self._inbox_items = self.actor_inbox.queue
        self._processing = threading.Lock()  # held while a message is handled, on any thread
        if instances is not None:
            instances.append(self)
        self._pool = pool
        # TimerActor.fire_due_inline: called after every message, so deadlines fire on time even
        # while the timer's own thread waits for the GIL behind busy threads.
        self._fire_timers = fire_timers if fire_timers is not None else _nothing
        # Coalesced timer operations go straight into the timer actor's inbox (timer.py).
        self._put_timer_ops = timer.actor_inbox.put_ops
        self._clock = clock
        self._timestamp = timestamp_function(clock)
        self._stop_grace = stop_grace
        self._records: Dict[int, ExecutionRecord] = {}
        self._timer_ops: Dict[Any, Optional[Tuple[float, int]]] = {}
        self._closed: Dict[str, int] = {}  # "completed", "failed", "cancelled", "timed_out:<TYPE>"
        self._outbox: Dict[Any, list] = {}  # worker -> messages not yet written to its pipe
        self._kill_pending: set = set()  # (exec_id, attempt) stopped, with a stop_grace kill timer
        self._held = 0  # messages handled since the last flush
        self._settlements: List[Tuple[Outcome, Any, Optional[BaseException]]] = []
        self._handlers = {
            NewExecution: self._on_new,
            CancelExecution: self._on_cancel,
            WorkerReports: self._on_reports,
            TimersFired: self._on_timers,
            BeginShutdown: self._on_begin_shutdown,
            ForceCloseAll: self._on_force_close,
            RecoverExecutions: self._on_recover,
            SuspendAll: self._on_suspend_all,
            DetachAll: self._on_detach_all,
            PoolBroken: self._on_pool_broken,
        }

    # -- messages ---------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        try:
            return self._receive(message)
        finally:
            self._fire_timers()

    def _receive(self, message: Any) -> Any:
        with self._processing:
            try:
                if message == "statistics":
                    return self._statistics()
                if message is _FLUSH:
                    return None
                handler = self._handlers.get(type(message))
                if handler is None:
                    raise TypeError(f"SupervisorActor cannot handle {message!r}")
                handler(message)
                return None
            finally:
                # Every message, whatever it is, ends with this check: writes must never be held
                # while the inbox is empty (nothing would come to flush them).
                self._held += 1
                if self._held >= _MAX_HELD or not self._inbox_items:
                    self._flush()
                self._settle_callers()
                # Done with a message that came through the inbox: pykka takes it off the queue
                # before this handler runs, so only this count tells handle_inline it is pending.
                self.actor_inbox.task_done()

    def handle_inline(self, message: Any, *, may_write: bool) -> bool:
        """Handle ``message`` on the calling thread, right now, if this actor is idle.

        Used by the pool's reader thread (worker reports) and by callers (new executions) to
        save a thread hop on the path of every execution (STYLE.md 5). It is the same actor
        logic, serialised with the actor's own thread by ``_processing``, and only taken when no
        told message is queued or still being handed to ``on_receive``, so messages keep their
        order. With ``may_write`` False (the reader,
        which must never block on a worker's pipe) pipe writes are left to the actor's thread.
        Returns False, having done nothing, when the actor is busy: then ``tell`` it instead.
        """
        if not self._processing.acquire(blocking=False):
            return False
        try:
            return self._handle_inline(message, may_write)
        finally:
            self._processing.release()
            self._fire_timers()

    def _handle_inline(self, message: Any, may_write: bool) -> bool:
        """``_processing`` held."""
        if self.actor_inbox.unfinished_tasks:  # told messages are queued or in flight: keep order
            return False
        self._handlers[type(message)](message)
        if may_write:
            self._flush()
        else:
            self._flush_timers()
            if self._outbox:
                self.actor_ref.tell(_FLUSH)
        self._settle_callers()
        return True

    def _settle_callers(self) -> None:
        """Wake callers last, once this thread has no more work for the message, so the woken
        thread does not have to fight it for the GIL."""
        if self._settlements:
            settlements, self._settlements = self._settlements, []
            if self._durable:  # D8: a caller sees an outcome only once it is committed
                self._journal.after_durable([_Settlement(*item) for item in settlements])
                return
            for future, result, error in settlements:
                _settle(future, result=result, error=error)

    def _flush(self) -> None:
        """Write the batched pipe messages and timer operations.

        While messages keep arriving they are held (up to _MAX_HELD handled messages), so a
        burst costs one pipe write per worker and one timer message, and an attempt that starts
        and ends within one burst never reaches the timer at all (its add and cancel coalesce).
        """
        self._held = 0
        if self._outbox:
            outbox, self._outbox = self._outbox, {}
            for worker, messages in outbox.items():
                self._pool.send(worker, messages)  # a dead worker's attempts fail as WorkerCrashed
        self._flush_timers()

    def _on_new(self, message: NewExecution) -> None:
        record = message.record
        self._records[record.exec_id] = record
        self._feed(record, Schedule(), self._clock.now())

    def _on_cancel(self, message: CancelExecution) -> None:
        record = self._records.get(message.exec_id)
        if record is not None:
            self._feed(record, CancelRequested(), self._clock.now())

    def _on_reports(self, message: WorkerReports) -> None:
        for exec_id, attempt, worker, started_at in message.dispatches:
            self._send_reserved(exec_id, attempt, worker, started_at)
        now = self._clock.now()
        for report in message.reports:
            if self._kill_pending and report[0] != HEARTBEAT:
                self._forget_kill(report[1], report[2])  # a stopped attempt ended by itself
            record = self._records.get(report[1])
            if record is not None:
                self._feed(record, self._report_event(record, report), now)

    def _forget_kill(self, exec_id: int, attempt: int) -> None:
        if (exec_id, attempt) in self._kill_pending:
            self._kill_pending.discard((exec_id, attempt))
            self._timer_ops[(exec_id, KILL, attempt)] = None

    def _on_timers(self, message: TimersFired) -> None:
        for (exec_id, kind, attempt), deadline in message.fired:
            if kind == KILL:
                self._kill_pending.discard((exec_id, attempt))
                self._pool.kill_if_running((exec_id, attempt))
                continue
            record = self._records.get(exec_id)
            if record is not None:
                # Fed at the deadline itself, so decisions do not drift with firing lateness.
                self._feed(record, TimerFired(TimerKind(kind), attempt), deadline)

    def _on_begin_shutdown(self, message: BeginShutdown) -> None:
        now = self._clock.now()
        for record in list(self._records.values()):
            self._feed(record, ShutdownRequested(), now)

    def _on_force_close(self, message: ForceCloseAll) -> None:
        now = self._clock.now()
        for record in list(self._records.values()):
            self._feed(record, ForceClose(), now)

    def _on_recover(self, message: RecoverExecutions) -> None:
        """D8: resume executions read back from the journal. One that Resume leaves where it
        was (still queued for a slot, still backing off) is not written back: its journal row
        already says so, and a later recovery re-derives the same from it."""
        now = self._clock.now()
        for record in message.records:
            self._records[record.exec_id] = record
            machine = record.machine
            before = (machine.state, machine.attempt, machine.cancel_requested, machine.paused)
            self._feed(record, Resume(), now, journal=False)
            if machine.closed:
                continue  # _feed recorded its close
            if (machine.state, machine.attempt, machine.cancel_requested, machine.paused) != before \
                    or len(record.history) > record.history_written:
                self._journal.record_update(record)

    def _on_suspend_all(self, message: SuspendAll) -> None:
        # Not written back: a suspension's hold ends with the system (restore() drops it).
        now = self._clock.now()
        for record in list(self._records.values()):
            self._feed(record, Suspend(), now, journal=False)

    def _on_detach_all(self, message: DetachAll) -> None:
        # Not written back: answering this process's callers changes nothing the journal keeps.
        now = self._clock.now()
        for record in list(self._records.values()):
            self._feed(record, Detach(), now, journal=False)

    def _on_pool_broken(self, message: PoolBroken) -> None:
        for record in list(self._records.values()):
            failure = ApplicationError(message.reason, type="WorkerPoolBroken", non_retryable=True)
            self._abort(record, failure, RetryState.INTERNAL_SERVER_ERROR)

    # -- feeding the machine ----------------------------------------------------------------

    def _feed(self, record: ExecutionRecord, event: Any, now: float, journal: bool = True) -> None:
        """Hand ``event`` to the record's machine and carry out the commands, in order.

        Events that the commands themselves produce (an attempt that got a slot at once) are fed
        after the current command list is done, so command order is never interleaved.
        """
        machine = record.machine
        pending: Optional[Deque[Tuple[Any, float]]] = None
        try:
            while True:
                before = (machine.state, machine.attempt, machine.cancel_requested)
                commands = machine.handle(event, now)
                for command in commands:
                    follow_up = self._execute(record, command, now)
                    if follow_up is not None:
                        if pending is None:
                            pending = deque()
                        pending.append(follow_up)
                self._record_history(record, event, now, before, commands)
                if not pending:
                    break
                event, now = pending.popleft()
        except Exception as exc:  # noqa: BLE001 - STYLE.md 2.11: one execution fails, not the actor
            log.error("internal error in execution %s", record.exec_id, exc_info=True)
            self._abort(record, InternalError(f"actorflow bug, please report it: {exc!r}"),
                        RetryState.INTERNAL_SERVER_ERROR)
            return
        if machine.closed:
            self._records.pop(record.exec_id, None)
            if self._journal is not None:
                self._journal.record_closed(record)
        elif self._durable and journal:
            self._journal.record_update(record)

    def _execute(self, record: ExecutionRecord, command: Any, now: float) -> Optional[Tuple[Any, float]]:
        kind = type(command)
        if kind is StartTimer:
            self._timer_ops[(record.exec_id, int(command.kind), command.attempt)] = (
                command.deadline, int(command.kind))
        elif kind is CancelTimer:
            self._timer_ops[(record.exec_id, int(command.kind), command.attempt)] = None
        elif kind is DispatchAttempt:
            return self._dispatch(record, command.attempt)
        elif kind is ResolveCaller:
            self._settlements.append((record.future, command.result, None))
        elif kind is RejectCaller:
            self._settlements.append((record.future, None, command.error))
        elif kind is StopAttempt:
            reason = "shutdown" if record.machine.shutting_down else "timeout"
            if self._cancel_on_worker(record.exec_id, command.attempt, reason):
                self._kill_pending.add((record.exec_id, command.attempt))
                self._timer_ops[(record.exec_id, KILL, command.attempt)] = (now + self._stop_grace, KILL)
        elif kind is DeliverCancel:
            self._cancel_on_worker(record.exec_id, command.attempt, "requested")
        elif kind is WithdrawAttempt:
            self._pool.withdraw((record.exec_id, command.attempt))
        elif kind is AttemptRetrying:
            reason = _history.retry_reason(record.machine.config.policy, command.attempt, command.failure,
                                           command.interval)
            _history.append(record.history, (now, "attempt_failed", command.attempt, {
                "failure": command.failure, "next_delay": command.interval, "reason": reason}))
            log.info("activity %s attempt %d failed (%s); retrying in %.3g s",
                     record.machine.config.activity_id, command.attempt, command.failure, command.interval)
        else:
            raise TypeError(f"SupervisorActor cannot execute {command!r}")
        return None

    def _record_history(self, record: ExecutionRecord, event: Any, now: float, before: tuple,
                        commands: List[Any]) -> None:
        """Append what ``event`` did to the execution's history (history.py).

        A timer event is fed at its deadline; if it is handled after later events were recorded,
        it takes their time, so the history's times never run backwards.
        """
        if record.history and record.history[-1][0] > now:
            now = record.history[-1][0]
        machine = record.machine
        state_before, attempt_before, cancel_before = before
        kind = type(event)
        if kind is Schedule:
            _history.append(record.history, (now, "scheduled", 1, {
                "activity_id": machine.config.activity_id, "activity_type": machine.config.activity_type}))
        elif kind is AttemptStarted and machine.state is State.RUNNING and state_before is State.QUEUED:
            _history.append(record.history, (now, "attempt_started", machine.attempt, {"worker_pid": record.worker_pid}))
        elif kind is HeartbeatReceived and state_before is State.RUNNING and event.attempt == attempt_before:
            _history.append(record.history, (now, "heartbeat", event.attempt, {"details": event.details, "count": 1}))
        elif kind is CancelRequested and not cancel_before and state_before is not State.CLOSED:
            _history.append(record.history, (now, "cancel_requested", machine.attempt, {
                "cancellation_type": machine.config.cancellation_type}))
        if state_before is State.CLOSED or not machine.closed:
            return
        error = next((c.error for c in commands if type(c) is RejectCaller), None)
        # The caller's cause, or (caller resolved earlier by TRY_CANCEL/ABANDON) what closed it.
        cause = error.__cause__ if error is not None else machine.final_failure
        reason = _history.stop_reason(machine.retry_state, machine.outcome, machine.attempt,
                                      machine.config.policy, cause)
        if state_before is State.RUNNING and machine.outcome != "completed" and cause is not None:
            _history.append(record.history, (now, "attempt_failed", attempt_before, {
                "failure": cause, "next_delay": None, "reason": f"not retried: {reason}"}))
        _history.append(record.history, (now, "closed", machine.attempt, {
            "outcome": machine.outcome, "retry_state": machine.retry_state, "reason": reason, "error": error,
        }))
        self._count_closed(machine.outcome, cause)
        if machine.outcome != "completed":
            log.warning("activity %s (%s) ended: %s; %s", machine.config.activity_id,
                        machine.config.activity_type, machine.outcome, reason)

    def _count_closed(self, outcome: Optional[str], cause: Any) -> None:
        key = outcome or "unknown"
        if outcome == "timed_out":
            timeout_type = getattr(cause, "type", None)
            key = f"timed_out:{timeout_type.name if timeout_type is not None else 'UNKNOWN'}"
        self._closed[key] = self._closed.get(key, 0) + 1

    def _cancel_on_worker(self, exec_id: int, attempt: int, reason: str) -> bool:
        """Queue a CANCEL behind any RUN still held for the same worker, so order is kept.
        False if no worker runs the attempt (any more)."""
        worker = self._pool.worker_of((exec_id, attempt))
        if worker is None:
            return False
        self._outbox.setdefault(worker, []).append((CANCEL, exec_id, attempt, reason))
        return True

    def _dispatch(self, record: ExecutionRecord, attempt: int) -> Optional[Tuple[Any, float]]:
        reservation = self._pool.submit((record.exec_id, attempt), record.shard)
        if reservation is None:
            return None  # queued: a WorkerReports dispatch will bring it back
        worker, started_at = reservation
        self._write_run(record, attempt, worker, started_at)
        return AttemptStarted(attempt), started_at

    def _write_run(self, record: ExecutionRecord, attempt: int, worker: Any, started_at: float) -> None:
        record.worker_pid = worker.pid
        message = self._run_message(record, attempt, started_at)
        self._outbox.setdefault(worker, []).append(message)

    def _send_reserved(self, exec_id: int, attempt: int, worker: Any, started_at: float) -> None:
        """A queued attempt got a slot on ``worker``: send it, unless it is no longer wanted."""
        key = (exec_id, attempt)
        record = self._records.get(exec_id)
        machine = record.machine if record is not None else None
        if machine is None or machine.state is not State.QUEUED or machine.attempt != attempt:
            self._pool.release(key)
            return
        if self._pool.claim(worker, key):
            self._write_run(record, attempt, worker, started_at)
            self._feed(record, AttemptStarted(attempt), started_at)
        else:  # the worker died before we got here: try again (another slot or the queue)
            follow_up = self._dispatch(record, attempt)
            if follow_up is not None:
                self._feed(record, *follow_up)

    def _run_message(self, record: ExecutionRecord, attempt: int, started_at: float) -> tuple:
        machine = record.machine
        config = machine.config
        timestamp = self._timestamp
        # Only builtin scalars: datetimes, timedeltas and dataclasses cost ten times as much to
        # pickle; the worker rebuilds them (_messages.py, RUN).
        info_fields = (
            config.activity_id,
            config.activity_type,
            attempt,
            timestamp(machine.scheduled_time),
            timestamp(machine.attempt_scheduled_time),
            timestamp(started_at),
            record.details_bytes,
            (config.heartbeat, config.schedule_to_close, config.start_to_close),  # seconds
            record.task_queue,
            record.policy_fields,
        )
        return (RUN, record.exec_id, attempt, record.fn_name, record.fn_bytes, record.args_bytes,
                info_fields, record.throttle)

    def _report_event(self, record: ExecutionRecord, report: tuple) -> Any:
        tag, _, attempt = report[0], report[1], report[2]
        if tag == COMPLETED:
            return AttemptCompleted(attempt, report[3])
        if tag == HEARTBEAT:
            return HeartbeatReceived(attempt, self._details(record, attempt, report[3]))
        if tag == FAILED:
            details = None if report[4] is None else self._details(record, attempt, report[4])
            return AttemptFailed(attempt, _serde.failure_from_data(report[3]), details)
        raise TypeError(f"unknown worker report {report!r}")

    def _details(self, record: ExecutionRecord, attempt: int, data: bytes) -> Tuple[Any, ...]:
        """Decode heartbeat details (``_serde.decode_details``: never fails the actor); keep the
        bytes for the next attempt's info() (R54)."""
        details = _serde.decode_details(data)
        if record.machine.state is State.RUNNING and record.machine.attempt == attempt:
            record.details_bytes = data if details else None
        return details

    def _abort(self, record: ExecutionRecord, failure: BaseException, state: RetryState) -> None:
        error = ActivityError("Activity task failed", activity_type=record.machine.config.activity_type,
                              activity_id=record.machine.config.activity_id, retry_state=state)
        error.__cause__ = failure
        _settle(record.future, error=error)
        self._records.pop(record.exec_id, None)
        if self._journal is not None:  # left open in a durable journal: the next system retries it
            self._journal.release_claim(record.machine.config.activity_id, record)

    def _flush_timers(self) -> None:
        if not self._timer_ops:
            return
        ops, self._timer_ops = self._timer_ops, {}
        self._put_timer_ops(ops)

    def _statistics(self) -> Dict[str, int]:
        counts = {"pending": 0, "running": 0, "retrying": 0, **self._closed}
        for record in self._records.values():
            state = record.machine.state
            if state is State.QUEUED:
                counts["pending"] += 1
            elif state is State.RUNNING:
                counts["running"] += 1
            elif state is State.BACKOFF:
                counts["retrying"] += 1
        return counts


def _nothing() -> None:
    pass


class _Settlement:
    """A caller's outcome to set once the journal has committed it (D8)."""

    __slots__ = ("future", "result", "error")

    def __init__(self, future: Outcome, result: Any, error: Optional[BaseException]) -> None:
        self.future, self.result, self.error = future, result, error

    def __call__(self) -> None:
        self.future.set(self.result, self.error)


def _settle(future: Outcome, *, result: Any = None, error: Optional[BaseException] = None) -> None:
    """Resolve a caller's outcome exactly once (R5)."""
    future.set(result, error)

"""Part 2 decisions of the pure ``ExecutionStateMachine``: start delay (D9), pause, unpause and
terminate (D10), a durable system's suspend / detach and the recovery of a journaled snapshot (D8),
and the bookkeeping that ``describe()`` reports (D10). h11 style: feed events, assert commands.
"""

from __future__ import annotations

import pickle
from typing import Any, List, Optional

import pytest

from actorflow._execution import (
    SNAPSHOT_FIELDS,
    SYSTEM_RESTARTED_MESSAGE,
    WAIT_CANCELLATION_COMPLETED,
    AsyncCompletionPending,
    AttemptCompleted,
    AttemptFailed,
    AttemptRetrying,
    AttemptStarted,
    CancelRequested,
    CancelTimer,
    Detach,
    DispatchAttempt,
    ExecutionConfig,
    ExecutionStateMachine,
    HeartbeatReceived,
    PauseRequested,
    RejectCaller,
    ResolveCaller,
    Resume,
    Schedule,
    StartTimer,
    State,
    StopAttempt,
    Suspend,
    TerminateRequested,
    TimerFired,
    TimerKind,
    UnpauseRequested,
    WithdrawAttempt,
)
from actorflow._retry import EffectivePolicy
from actorflow.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TerminatedError,
    TimeoutError,
    TimeoutType,
)


def cfg(**kw: Any) -> ExecutionConfig:
    kw.setdefault("start_to_close", 10.0)
    return ExecutionConfig(activity_id="a", activity_type="t", **kw)


def of(commands: List[Any], cls: type) -> List[Any]:
    return [c for c in commands if isinstance(c, cls)]


def timers(commands: List[Any]) -> dict:
    return {(c.kind, c.attempt): c.deadline for c in of(commands, StartTimer)}


def started(machine: ExecutionStateMachine, at: float = 0.0) -> ExecutionStateMachine:
    machine.handle(Schedule(), 0.0)
    machine.handle(AttemptStarted(1), at)
    return machine


def boom(kind: str = "ValueError") -> ApplicationError:
    return ApplicationError("boom", type=kind)


def rejection(commands: List[Any]) -> ActivityError:
    (reject,) = of(commands, RejectCaller)
    return reject.error


# ------------------------------------------------------------------------------- start delay


def test_D9_start_delay_holds_attempt_1_like_a_backoff_and_s2s_counts_from_when_it_is_due():
    m = ExecutionStateMachine(cfg(start_delay=5.0, schedule_to_close=20.0, schedule_to_start=2.0))
    commands = m.handle(Schedule(), 0.0)
    assert not of(commands, DispatchAttempt)
    assert timers(commands) == {(TimerKind.SCHEDULE_TO_CLOSE, 0): 20.0, (TimerKind.BACKOFF, 1): 5.0}
    assert (m.state, m.attempt, m.next_time) == (State.BACKOFF, 0, 5.0)
    commands = m.handle(TimerFired(TimerKind.BACKOFF, 1), 5.0)
    assert of(commands, DispatchAttempt) == [DispatchAttempt(1, 5.0)]
    assert timers(commands) == {(TimerKind.SCHEDULE_TO_START, 1): 7.0}  # from the due time, D9
    assert m.attempt_scheduled_time == 5.0 and m.scheduled_time == 0.0


def test_D9_start_delay_does_not_delay_retries():
    m = ExecutionStateMachine(cfg(start_delay=5.0, policy=EffectivePolicy(initial_interval=1.0)))
    m.handle(Schedule(), 0.0)
    m.handle(TimerFired(TimerKind.BACKOFF, 1), 5.0)
    m.handle(AttemptStarted(1), 5.0)
    commands = m.handle(AttemptFailed(1, boom()), 6.0)
    assert timers(commands) == {(TimerKind.BACKOFF, 2): 7.0}  # R27's 1 s, no extra delay


def test_R61_cancel_during_the_start_delay_resolves_at_once():
    m = ExecutionStateMachine(cfg(start_delay=5.0, cancellation_type=WAIT_CANCELLATION_COMPLETED))
    m.handle(Schedule(), 0.0)
    commands = m.handle(CancelRequested("no longer needed"), 1.0)
    error = rejection(commands)
    assert error.retry_state is RetryState.CANCEL_REQUESTED and isinstance(error.cause, CancelledError)
    assert (m.outcome, m.canceled_reason, m.close_time) == ("cancelled", "no longer needed", 1.0)
    assert of(commands, CancelTimer) == [CancelTimer(TimerKind.BACKOFF, 1)]


# ------------------------------------------------------------------------------- pause / unpause


def test_D10_pause_while_queued_withdraws_the_attempt_and_unpause_dispatches_it_at_once():
    m = ExecutionStateMachine(cfg(schedule_to_start=3.0))
    m.handle(Schedule(), 0.0)
    commands = m.handle(PauseRequested("downstream down"), 1.0)
    assert of(commands, WithdrawAttempt) == [WithdrawAttempt(1)]
    assert of(commands, CancelTimer) == [CancelTimer(TimerKind.SCHEDULE_TO_START, 1)]
    assert (m.state, m.held, m.paused, m.pause_reason) == (State.QUEUED, True, True, "downstream down")
    assert m.handle(PauseRequested(), 2.0) == []  # a second pause changes nothing
    commands = m.handle(UnpauseRequested(), 50.0)
    assert of(commands, DispatchAttempt) == [DispatchAttempt(1, 0.0)]
    assert timers(commands) == {(TimerKind.SCHEDULE_TO_START, 1): 53.0}  # paused time is not waiting
    assert not m.held and not m.paused


def test_D10_a_start_that_races_a_pause_is_stopped():
    m = ExecutionStateMachine(cfg())
    m.handle(Schedule(), 0.0)
    m.handle(PauseRequested(), 1.0)
    commands = m.handle(AttemptStarted(1), 1.0)  # the pool had handed it out just before
    assert commands == [StopAttempt(1, "closed")] and m.state is State.QUEUED


def test_D10_pause_during_backoff_holds_the_retry_until_unpause():
    m = started(ExecutionStateMachine(cfg(policy=EffectivePolicy(initial_interval=2.0))))
    m.handle(AttemptFailed(1, boom()), 1.0)
    m.handle(PauseRequested(), 1.5)
    commands = m.handle(TimerFired(TimerKind.BACKOFF, 2), 3.0)
    assert not of(commands, DispatchAttempt)
    assert (m.state, m.attempt, m.held) == (State.QUEUED, 2, True)
    commands = m.handle(UnpauseRequested(), 9.0)
    assert of(commands, DispatchAttempt) == [DispatchAttempt(2, 3.0)]


def test_D10_pause_while_running_lets_the_attempt_complete():
    m = started(ExecutionStateMachine(cfg()))
    assert m.handle(PauseRequested(), 1.0) == []
    commands = m.handle(AttemptCompleted(1, b"ok"), 2.0)
    assert of(commands, ResolveCaller) == [ResolveCaller(b"ok")] and m.outcome == "completed"


def test_D10_schedule_to_close_keeps_running_while_paused():
    m = ExecutionStateMachine(cfg(schedule_to_close=5.0))
    m.handle(Schedule(), 0.0)
    m.handle(PauseRequested(), 1.0)
    error = rejection(m.handle(TimerFired(TimerKind.SCHEDULE_TO_CLOSE, 0), 5.0))
    assert isinstance(error.cause, TimeoutError) and error.cause.type is TimeoutType.SCHEDULE_TO_CLOSE
    assert m.outcome == "timed_out"


def test_R61_cancel_of_a_paused_execution_is_immediate():
    m = ExecutionStateMachine(cfg())
    m.handle(Schedule(), 0.0)
    m.handle(PauseRequested(), 1.0)
    error = rejection(m.handle(CancelRequested(), 2.0))
    assert error.retry_state is RetryState.CANCEL_REQUESTED and m.outcome == "cancelled"


# ------------------------------------------------------------------------------- terminate


def test_D10_terminate_a_running_attempt_kills_it_and_rejects_with_TerminatedError():
    m = started(ExecutionStateMachine(cfg(heartbeat=2.0)))
    commands = m.handle(TerminateRequested("operator"), 3.0)
    assert StopAttempt(1, "terminate") in commands
    assert {(c.kind, c.attempt) for c in of(commands, CancelTimer)} == {
        (TimerKind.START_TO_CLOSE, 1), (TimerKind.HEARTBEAT, 1)}
    error = rejection(commands)
    assert isinstance(error.cause, TerminatedError) and error.cause.message == "operator"
    assert error.retry_state is RetryState.NON_RETRYABLE_FAILURE
    assert (m.outcome, m.close_time) == ("terminated", 3.0)
    assert m.handle(TerminateRequested(), 4.0) == []  # closed: no effect
    assert m.handle(AttemptCompleted(1, b"late"), 5.0) == []  # R5


def test_D10_terminate_queued_withdraws_and_after_try_cancel_only_closes():
    m = ExecutionStateMachine(cfg())
    m.handle(Schedule(), 0.0)
    commands = m.handle(TerminateRequested(), 1.0)
    assert WithdrawAttempt(1) in commands and rejection(commands).cause.message == "Activity terminated"
    m2 = started(ExecutionStateMachine(cfg()))
    assert of(m2.handle(CancelRequested(), 1.0), RejectCaller)  # TRY_CANCEL answers at once
    commands = m2.handle(TerminateRequested(), 2.0)
    assert not of(commands, RejectCaller) and m2.outcome == "terminated"


def test_D8_the_machine_keeps_its_outcome_for_the_journal_result_and_closing_error():
    done = started(ExecutionStateMachine(cfg()))
    done.handle(AttemptCompleted(1, b"pickled"), 1.0)
    assert (done.result, done.final_error) == (b"pickled", None)
    m2 = started(ExecutionStateMachine(cfg()))
    rejection(m2.handle(CancelRequested(), 1.0))  # TRY_CANCEL answers the caller at once ...
    assert m2.final_error is None and m2.outcome is None  # ... while the execution stays open
    m2.handle(TerminateRequested("operator"), 2.0)  # the caller hears nothing more ...
    assert isinstance(m2.final_error.cause, TerminatedError)  # ... but the record keeps the end
    assert m2.final_error.cause.message == "operator"


# ------------------------------------------------------------------------------- durable shutdown


def test_D8_suspend_holds_due_attempts_and_keeps_interrupted_ones_running():
    m = ExecutionStateMachine(cfg(durable=True))
    m.handle(Schedule(), 0.0)
    assert m.handle(Suspend(), 1.0) == [WithdrawAttempt(1)] and m.held
    r = started(ExecutionStateMachine(cfg(durable=True)))
    r.handle(Suspend(), 1.0)
    shutdown = ApplicationError("Worker is shutting down", type="WorkerShutdown")
    assert r.handle(AttemptFailed(1, shutdown), 1.5) == []  # interrupted, not failed
    assert r.handle(AttemptFailed(1, ApplicationError("gone", type="WorkerCrashed")), 1.6) == []
    assert (r.state, r.attempt) == (State.RUNNING, 1)
    error = rejection(r.handle(Detach(), 2.0))
    assert error.retry_state is RetryState.IN_PROGRESS
    assert isinstance(error.cause, ApplicationError) and error.cause.type == "SystemShutdown"
    assert r.state is State.RUNNING and not r.closed  # still open, for the next system
    assert r.handle(Detach(), 3.0) == []


def test_D8_suspended_genuine_failures_and_completions_count():
    m = started(ExecutionStateMachine(cfg(durable=True)))
    m.handle(Suspend(), 1.0)
    commands = m.handle(AttemptFailed(1, boom()), 1.5)
    assert of(commands, AttemptRetrying) and m.state is State.BACKOFF  # decided as usual
    assert not of(m.handle(TimerFired(TimerKind.BACKOFF, 2), 2.5), DispatchAttempt)
    assert m.held and m.state is State.QUEUED
    c = started(ExecutionStateMachine(cfg(durable=True)))
    c.handle(Suspend(), 1.0)
    assert of(c.handle(AttemptCompleted(1, b"r"), 1.2), ResolveCaller)


# ------------------------------------------------------------------------------- recovery


def roundtrip(machine: ExecutionStateMachine, shift: float = 0.0, details: tuple = ()) -> ExecutionStateMachine:
    """What a journal does: snapshot, pickle, unpickle, move times to the new clock, restore."""
    values = list(pickle.loads(pickle.dumps(machine.snapshot())))
    for i, name in enumerate(SNAPSHOT_FIELDS[:-1]):
        if name.endswith("_time") and values[i] is not None:
            values[i] += shift
    values[-1] = tuple((k, a, d + shift) for k, a, d in values[-1])
    return ExecutionStateMachine.restore(machine.config, values, details)


def test_D8_restore_queued_dispatches_again():
    m = ExecutionStateMachine(cfg(schedule_to_start=5.0))
    m.handle(Schedule(), 0.0)
    r = roundtrip(m)
    commands = r.handle(Resume(), 100.0)
    assert of(commands, DispatchAttempt) == [DispatchAttempt(1, 0.0)]
    assert timers(commands) == {(TimerKind.SCHEDULE_TO_START, 1): 105.0}


def test_D8_restore_backoff_rearms_the_recorded_deadline_or_dispatches_if_it_passed():
    m = started(ExecutionStateMachine(cfg(policy=EffectivePolicy(initial_interval=60.0))))
    m.handle(AttemptFailed(1, boom()), 1.0)  # attempt 2 due at 61
    future = roundtrip(m).handle(Resume(), 30.0)
    assert timers(future) == {(TimerKind.BACKOFF, 2): 61.0} and not of(future, DispatchAttempt)
    late = roundtrip(m).handle(Resume(), 500.0)
    assert of(late, DispatchAttempt) == [DispatchAttempt(2, 500.0)]


def test_D8_restore_running_fails_the_attempt_as_SystemRestarted_and_retries_with_details():
    m = started(ExecutionStateMachine(cfg(policy=EffectivePolicy(initial_interval=1.0))))
    m.handle(HeartbeatReceived(1, ("page", 7)), 0.5)
    r = roundtrip(m, details=("page", 7))
    commands = r.handle(Resume(), 10.0)
    (retrying,) = of(commands, AttemptRetrying)
    assert isinstance(retrying.failure, ApplicationError) and retrying.failure.type == "SystemRestarted"
    assert retrying.failure.message == SYSTEM_RESTARTED_MESSAGE and not retrying.failure.non_retryable
    assert timers(commands) == {(TimerKind.BACKOFF, 2): 11.0}
    assert r.heartbeat_details == ("page", 7)  # R54: the retry sees them
    assert (r.heartbeat_count, r.last_heartbeat_time) == (1, 0.5)


def test_D8_restore_running_last_attempt_ends_with_maximum_attempts():
    m = started(ExecutionStateMachine(cfg(policy=EffectivePolicy(maximum_attempts=1))))
    error = rejection(roundtrip(m).handle(Resume(), 5.0))
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    assert error.cause.type == "SystemRestarted"


def test_D8_restore_after_the_schedule_to_close_deadline_times_out_at_once():
    m = started(ExecutionStateMachine(cfg(schedule_to_close=30.0)))
    error = rejection(roundtrip(m).handle(Resume(), 31.0))
    assert isinstance(error.cause, TimeoutError) and error.cause.type is TimeoutType.SCHEDULE_TO_CLOSE
    assert error.retry_state is RetryState.TIMEOUT
    kept = roundtrip(m).handle(Resume(), 20.0)
    assert timers(kept)[(TimerKind.SCHEDULE_TO_CLOSE, 0)] == 30.0  # wall clock: keeps counting


def test_D8_restore_keeps_a_pause_and_a_cancel_request():
    p = ExecutionStateMachine(cfg())
    p.handle(Schedule(), 0.0)
    p.handle(PauseRequested("hold"), 1.0)
    r = roundtrip(p)
    assert not of(r.handle(Resume(), 5.0), DispatchAttempt) and r.held and r.paused
    assert of(r.handle(UnpauseRequested(), 6.0), DispatchAttempt)
    c = started(ExecutionStateMachine(cfg(cancellation_type=WAIT_CANCELLATION_COMPLETED)))
    c.handle(CancelRequested("stop"), 1.0)
    restored = roundtrip(c)
    error = rejection(restored.handle(Resume(), 5.0))
    assert error.retry_state is RetryState.CANCEL_REQUESTED and restored.canceled_reason == "stop"


def test_D8_D13_restore_an_attempt_waiting_for_async_completion_keeps_its_deadlines():
    m = started(ExecutionStateMachine(cfg(start_to_close=100.0, heartbeat=20.0)))
    m.handle(AsyncCompletionPending(1), 0.1)
    r = roundtrip(m, shift=1000.0)
    commands = r.handle(Resume(), 1005.0)
    assert timers(commands) == {(TimerKind.START_TO_CLOSE, 1): 1100.0, (TimerKind.HEARTBEAT, 1): 1020.0}
    assert of(r.handle(AttemptCompleted(1, b"done"), 1006.0), ResolveCaller)


def test_D8_restore_a_suspended_hold_dispatches_but_a_pause_does_not():
    m = ExecutionStateMachine(cfg(durable=True))
    m.handle(Schedule(), 0.0)
    m.handle(Suspend(), 1.0)
    assert of(roundtrip(m).handle(Resume(), 2.0), DispatchAttempt)


# ------------------------------------------------------------------------------- bookkeeping


def test_D10_describe_bookkeeping_follows_attempts_heartbeats_and_retries():
    m = started(ExecutionStateMachine(cfg(policy=EffectivePolicy(initial_interval=4.0))), at=0.2)
    m.handle(HeartbeatReceived(1, ("a",)), 0.5)
    m.handle(HeartbeatReceived(1, ("b",)), 0.7)
    failure = boom("IOError")
    m.handle(AttemptFailed(1, failure), 1.0)
    assert (m.last_started_time, m.last_heartbeat_time, m.heartbeat_count) == (0.2, 0.7, 2)
    assert (m.last_complete_time, m.retry_interval, m.next_time) == (1.0, 4.0, 5.0)
    assert m.last_failure is failure and m.started_time == 0.2
    m.handle(TimerFired(TimerKind.BACKOFF, 2), 5.0)
    assert m.next_time is None and m.started_time is None and m.last_started_time == 0.2


@pytest.mark.parametrize("event", [PauseRequested(), UnpauseRequested(), TerminateRequested(), Suspend(),
                                   Detach(), Resume(), AsyncCompletionPending(1)])
def test_R5_closed_machines_absorb_part2_events(event: Any):
    m = started(ExecutionStateMachine(cfg()))
    m.handle(AttemptCompleted(1, b"x"), 1.0)
    assert m.handle(event, 2.0) == []


def test_D8_restore_sets_every_field_of_the_machine():
    """restore() skips __init__ (recovery rebuilds many machines): no field may be left unset."""
    m = started(ExecutionStateMachine(cfg(heartbeat=2.0)))
    restored = roundtrip(m, details=("x",))
    assert [name for name in ExecutionStateMachine.__slots__ if not hasattr(restored, name)] == []
    assert (restored.caller_resolved, restored.suspended, restored.final_error) == (False, False, None)

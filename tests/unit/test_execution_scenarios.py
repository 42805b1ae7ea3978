"""SEMANTICS.md scenarios driven through the pure ``ExecutionStateMachine`` (h11 style).

A tiny simulator (``Sim``) feeds ``Schedule`` at t=0 and carries out the machine's commands with
injected time: ``StartTimer``/``CancelTimer`` go into a fake timer that fires in deadline order,
ties by ``TimerKind`` value (R14), each ``TimerFired`` fed at its deadline as the supervisor does;
``DispatchAttempt`` is answered by a scripted worker (``AttemptStarted`` after a pick-up delay,
then the scripted reports). Worker reports due at the same instant as a timer go first.
Activity exceptions cross the worker edge exactly as in production (``_serde``, R31).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import pytest

from actorflow import _serde
from actorflow._execution import (
    ABANDON,
    NO_ROOM_MESSAGE,
    TRY_CANCEL,
    WAIT_CANCELLATION_COMPLETED,
    WORKER_SHUTDOWN_MESSAGE,
    AttemptCompleted,
    AttemptFailed,
    AttemptRetrying,
    AttemptStarted,
    CancelRequested,
    CancelTimer,
    DeliverCancel,
    DispatchAttempt,
    ExecutionConfig,
    ExecutionStateError,
    ExecutionStateMachine,
    ForceClose,
    HeartbeatReceived,
    RejectCaller,
    ResolveCaller,
    Schedule,
    ShutdownRequested,
    StartTimer,
    State,
    StopAttempt,
    TimerFired,
    TimerKind,
    WithdrawAttempt,
)
from actorflow.common import ActivityCancellationType, RetryPolicy
from actorflow.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from actorflow.system import ActorSystem, _effective_policy, _normalise, _optional_timeout

S = lambda seconds: timedelta(seconds=seconds)  # noqa: E731
ACTIVITY_ID, ACTIVITY_TYPE = "act-1", "crunch"
MAX_STEPS = 2_000  # a simulation that has not settled by then is looping (fail fast, never hang)


def test_cancellation_type_constants_match_the_public_enum():
    """R41: the machine's cancellation constants are ActivityCancellationType's values."""
    assert (TRY_CANCEL, WAIT_CANCELLATION_COMPLETED, ABANDON) == (
        ActivityCancellationType.TRY_CANCEL,
        ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        ActivityCancellationType.ABANDON,
    )


# ============================================================================ the simulator


def config(
    *,
    stc: Optional[float] = None,
    s2c: Optional[float] = None,
    s2s: Optional[float] = None,
    hb: Optional[float] = None,
    policy: Optional[RetryPolicy] = None,
    cancellation_type: int = TRY_CANCEL,
) -> ExecutionConfig:
    """The ExecutionConfig start_activity would build (R11 normalisation, R20-R24 policy)."""
    as_td = lambda name, v: _optional_timeout(name, None if v is None else S(v))  # noqa: E731
    s2c_, s2s_, stc_, hb_ = _normalise(
        as_td("schedule_to_close_timeout", s2c),
        as_td("schedule_to_start_timeout", s2s),
        as_td("start_to_close_timeout", stc),
        as_td("heartbeat_timeout", hb),
    )
    secs = lambda v: None if v is None else v.total_seconds()  # noqa: E731
    return ExecutionConfig(
        activity_id=ACTIVITY_ID,
        activity_type=ACTIVITY_TYPE,
        start_to_close=stc_.total_seconds(),
        schedule_to_close=secs(s2c_),
        schedule_to_start=secs(s2s_),
        heartbeat=secs(hb_),
        policy=_effective_policy(policy)[0],
        cancellation_type=int(cancellation_type),
    )


def edge(exc: BaseException) -> BaseException:
    """What the supervisor receives when activity code raises ``exc`` (worker edge, R31)."""
    return _serde.failure_from_data(_serde.failure_to_data(exc))


# A worker script: (attempt, started_at) -> [(offset after start, event), ...]
Script = Callable[[int, float], Iterable[Tuple[float, Any]]]


def raises(make_exc: Callable[[int], BaseException], after: float = 0.0) -> Script:
    return lambda attempt, t: [(after, AttemptFailed(attempt, edge(make_exc(attempt))))]


def hangs(attempt: int, t: float) -> List[Tuple[float, Any]]:
    return []


@dataclass
class Sim:
    """Drives one machine with injected time and a fake timer (ties by TimerKind value, R14)."""

    cfg: ExecutionConfig
    worker: Optional[Script] = None
    pickup: Callable[[int], Optional[float]] = lambda attempt: 0.0  # None: no worker takes it
    machine: ExecutionStateMachine = field(init=False)
    now: float = 0.0
    timers: Dict[Tuple[TimerKind, int], float] = field(default_factory=dict)
    log: List[Tuple[float, Any]] = field(default_factory=list)  # (time, command)
    fed: List[Tuple[float, Any, List[Any]]] = field(default_factory=list)  # (time, event, commands)
    dispatched: Dict[int, float] = field(default_factory=dict)
    started: Dict[int, float] = field(default_factory=dict)
    _reports: List[Tuple[float, int, Any]] = field(default_factory=list)
    _seq: Any = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.machine = ExecutionStateMachine(self.cfg)
        self._apply(Schedule(), 0.0)

    # -- driving ------------------------------------------------------------------------

    def run(self, until: float = float("inf")) -> "Sim":
        """Process worker reports and due timers in time order up to ``until``."""
        for _ in range(MAX_STEPS):
            nxt = self._next(until)
            if nxt is None:
                break
            when, event = nxt
            self.now = when
            self._apply(event, when)
        else:
            raise AssertionError(f"no end after {MAX_STEPS} steps (t={self.now}): an endless retry loop?")
        if until != float("inf"):
            self.now = max(self.now, until)
        return self

    def feed(self, event: Any, at: Optional[float] = None) -> List[Any]:
        """Run the simulation up to ``at``, then feed ``event`` there; return its commands."""
        at = self.now if at is None else at
        self.run(until=at)
        return self._apply(event, at)

    def _next(self, until: float) -> Optional[Tuple[float, Any]]:
        """Take the next report or timer due by ``until``; reports first on ties."""
        report_at = self._reports[0][0] if self._reports else None
        timer = min(self.timers.items(), key=lambda kv: (kv[1], kv[0][0]), default=None)
        if timer is not None and (report_at is None or timer[1] < report_at):
            (kind, attempt), deadline = timer
            if deadline > until:
                return None
            del self.timers[(kind, attempt)]
            return deadline, TimerFired(kind, attempt)
        if report_at is not None and report_at <= until:
            when, _, event = heapq.heappop(self._reports)
            return when, event
        return None

    def _push(self, when: float, event: Any) -> None:
        heapq.heappush(self._reports, (when, next(self._seq), event))

    def _apply(self, event: Any, at: float) -> List[Any]:
        commands = self.machine.handle(event, at)
        self.fed.append((at, event, commands))
        for command in commands:
            self.log.append((at, command))
            if isinstance(command, StartTimer):
                self.timers[(command.kind, command.attempt)] = command.deadline
            elif isinstance(command, CancelTimer):
                self.timers.pop((command.kind, command.attempt), None)
            elif isinstance(command, DispatchAttempt):
                assert command.scheduled_time == at
                self.dispatched[command.attempt] = at
                delay = self.pickup(command.attempt) if self.worker is not None else None
                if delay is not None:
                    self._push(at + delay, AttemptStarted(command.attempt))
        if isinstance(event, AttemptStarted) and self.machine.state is State.RUNNING:
            self.started[event.attempt] = at
            assert self.machine.started_time == at
            for offset, report in self.worker(event.attempt, at) if self.worker is not None else ():
                self._push(at + offset, report)
        return commands

    # -- reading the outcome ------------------------------------------------------------

    def commands(self, cls: type) -> List[Tuple[float, Any]]:
        return [(t, c) for t, c in self.log if isinstance(c, cls)]

    def caller_outcome(self) -> Tuple[float, Any]:
        """The one caller resolution (R5: exactly one)."""
        outcomes = self.commands(RejectCaller) + self.commands(ResolveCaller)
        assert len(outcomes) == 1, outcomes
        return outcomes[0]

    def rejection(self, at: float, message: str, retry_state: RetryState) -> ActivityError:
        """Assert the caller was rejected at ``at`` with an R36 ActivityError; return it."""
        when, command = self.caller_outcome()
        assert isinstance(command, RejectCaller), command
        error = command.error
        assert when == pytest.approx(at)
        assert isinstance(error, ActivityError)
        assert (str(error), error.message, error.retry_state) == (message, message, retry_state)
        assert (error.activity_id, error.activity_type) == (ACTIVITY_ID, ACTIVITY_TYPE)
        assert error.cause is error.__cause__ is not None  # R35
        return error

    def result(self, at: float) -> Any:
        when, command = self.caller_outcome()
        assert isinstance(command, ResolveCaller), command
        assert when == pytest.approx(at)
        return command.result

    def retried_failures(self) -> List[BaseException]:
        return [c.failure for _, c in self.commands(AttemptRetrying)]

    def starts(self) -> List[float]:
        return [self.started[a] for a in sorted(self.started)]


def assert_timeout(
    error: BaseException, kind: TimeoutType, message: Optional[str] = None, details: Iterable[Any] = ()
) -> TimeoutError:
    assert isinstance(error, TimeoutError), error
    assert error.type is kind
    if message is not None:
        assert error.message == message
    assert error.last_heartbeat_details == list(details)  # R18
    return error


def assert_app(
    error: BaseException, type_: Optional[str], message: str, non_retryable: bool = False
) -> ApplicationError:
    assert isinstance(error, ApplicationError), error
    assert (error.type, error.message, error.non_retryable) == (type_, message, non_retryable)
    return error


class MyErr(ValueError):
    pass


# ============================================================================ S1-S8: retries and timeouts


def test_S1_capped_exponential_backoff():
    """S1 (R27, R29.4): RP(1s, 2.0, 2s, 5), always ValueError("boom") -> starts 0,1,3,5,7;
    MAXIMUM_ATTEMPTS_REACHED.
    """
    sim = Sim(
        config(stc=10, policy=RetryPolicy(S(1), 2.0, S(2), 5)), raises(lambda a: ValueError("boom"))
    ).run()
    assert sim.starts() == [0, 1, 3, 5, 7]
    assert sim.dispatched == {1: 0, 2: 1, 3: 3, 4: 5, 5: 7}  # R2: scheduled = end + interval
    assert [c.interval for _, c in sim.commands(AttemptRetrying)] == [1, 2, 2, 2]
    error = sim.rejection(7, "Activity task failed", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    cause = assert_app(error.cause, "ValueError", "boom")
    assert str(cause) == "ValueError: boom"
    assert cause.cause is None  # R37: earlier attempts' failures are not attached
    assert sim.commands(StopAttempt) == []  # every attempt ended by itself
    assert sim.machine.closed and sim.machine.outcome == "failed"
    assert sim.timers == {}


def test_S2_default_policy_forever():
    """S2 (R21, R28): no policy, always raises -> starts 0,1,3,7,...,327; no outcome until cancelled."""
    sim = Sim(config(stc=10), raises(lambda a: ValueError("again"))).run(until=400)
    assert sim.starts() == [0, 1, 3, 7, 15, 31, 63, 127, 227, 327]
    assert sim.commands(RejectCaller) == [] and not sim.machine.closed
    assert sim.machine.state is State.BACKOFF and sim.timers == {(TimerKind.BACKOFF, 11): 427}
    sim.feed(CancelRequested(), at=400)  # R61/R69: cancel during the backoff ends it now
    error = sim.rejection(400, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert isinstance(error.cause, CancelledError)
    assert sim.run().starts()[-1] == 327 and 11 not in sim.dispatched


def test_S3_schedule_to_close_stops_retries_early():
    """S3 (R29.6, R42): s2c=10, always ValueError -> starts 0,1,3,7; at t=7 (not 10) TIMEOUT caused by attempt
    4's error.
    """
    sim = Sim(config(s2c=10), raises(lambda a: ValueError(f"attempt {a}"))).run()
    assert sim.starts() == [0, 1, 3, 7]
    error = sim.rejection(7, "Activity task failed", RetryState.TIMEOUT)
    assert_app(error.cause, "ValueError", "attempt 4")
    assert 5 not in sim.dispatched
    assert (7, CancelTimer(TimerKind.SCHEDULE_TO_CLOSE, 0)) in sim.log


def test_S4_start_to_close_with_maximum_attempts():
    """S4 (R7, R17, D2): stc=2, RP(1s, 2.0, None, 3), hangs -> runs 0-2, 3-5, 7-9; cause chain of STC
    timeouts.
    """
    sim = Sim(config(stc=2, policy=RetryPolicy(S(1), 2.0, None, 3)), hangs).run()
    assert sim.starts() == [0, 3, 7]
    # D2: each timed-out attempt is stopped at its deadline
    assert sim.commands(StopAttempt) == [
        (2, StopAttempt(1, "timeout")),
        (5, StopAttempt(2, "timeout")),
        (9, StopAttempt(3, "timeout")),
    ]
    error = sim.rejection(9, "Activity task timed out", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    final = assert_timeout(error.cause, TimeoutType.START_TO_CLOSE, "activity StartToClose timeout")
    first, second = sim.retried_failures()
    assert final.cause is second  # R17: attempt 2's timeout, not attempt 3's own
    assert_timeout(second, TimeoutType.START_TO_CLOSE, "activity StartToClose timeout")
    assert second.cause is first and first.cause is None
    assert sim.machine.outcome == "timed_out"


def test_S5_attempt_timeout_with_no_room_left():
    """S5 (R15): stc=2, s2c=6, hangs -> attempt 2 times out at 5, 7 > 6: SCHEDULE_TO_CLOSE at t=5 (not 6)."""
    sim = Sim(config(stc=2, s2c=6), hangs).run()
    assert sim.starts() == [0, 3]
    error = sim.rejection(5, "Activity task timed out", RetryState.TIMEOUT)
    timeout = assert_timeout(error.cause, TimeoutType.SCHEDULE_TO_CLOSE, NO_ROOM_MESSAGE)
    assert NO_ROOM_MESSAGE == (
        "Not enough time to schedule next retry before activity ScheduleToClose timeout, giving up retrying"
    )
    (first,) = sim.retried_failures()
    assert timeout.cause is first  # R17
    assert_timeout(first, TimeoutType.START_TO_CLOSE)
    assert (5, StopAttempt(2, "timeout")) in sim.log  # D2
    assert 3 not in sim.dispatched


def test_S6_schedule_to_close_fires_mid_attempt():
    """S6 (R6, R16, D2): stc=3, s2c=5 -> attempt 2 starts at 4; S2C at 5 ends it, stops attempt 2; late result
    discarded.
    """
    sim = Sim(config(stc=3, s2c=5), hangs).run()
    assert sim.starts() == [0, 4]
    error = sim.rejection(5, "Activity task timed out", RetryState.TIMEOUT)
    timeout = assert_timeout(error.cause, TimeoutType.SCHEDULE_TO_CLOSE)
    assert "ScheduleToClose" in timeout.message  # R16: names the schedule-to-close timeout
    (first,) = sim.retried_failures()
    assert timeout.cause is first and first.type is TimeoutType.START_TO_CLOSE  # R17
    assert [(t, c.attempt) for t, c in sim.commands(StopAttempt)] == [(3, 1), (5, 2)]  # D2
    assert sim.feed(AttemptCompleted(2, "late"), at=12) == []  # R81
    assert sim.commands(ResolveCaller) == []


@pytest.mark.parametrize("pickup", [0.01, 0.0], ids=["s2c-strictly-first", "tie-R14"])
def test_S7_only_schedule_to_close_given(pickup):
    """S7 (R11, R12, R14): s2c=10 only -> stc=s2s=10; hangs -> at t=10 SCHEDULE_TO_CLOSE, TIMEOUT, no retry.

    With an instant pick-up the STC and S2C deadlines tie at 10: R14 processes START_TO_CLOSE
    first, whose retry has no room (R15), so the caller sees the same SCHEDULE_TO_CLOSE timeout.
    """
    cfg = config(s2c=10)
    assert (cfg.start_to_close, cfg.schedule_to_start, cfg.heartbeat) == (10, 10, None)
    sim = Sim(cfg, hangs, pickup=lambda a: pickup).run()
    assert sim.starts() == [pickup]
    error = sim.rejection(10, "Activity task timed out", RetryState.TIMEOUT)
    timeout = assert_timeout(error.cause, TimeoutType.SCHEDULE_TO_CLOSE)
    assert timeout.cause is None  # R17: no retry happened
    assert sim.commands(AttemptRetrying) == [] and list(sim.dispatched) == [1]
    assert [c.attempt for _, c in sim.commands(StopAttempt)] == [1]  # D2
    fired = [e.kind for _, e, _ in sim.fed if isinstance(e, TimerFired)]
    assert fired == ([TimerKind.SCHEDULE_TO_CLOSE] if pickup else [TimerKind.START_TO_CLOSE])


def test_S8_schedule_to_start():
    """S8 (R8): s2s=2, s2c=10, no worker free -> at t=2 SCHEDULE_TO_START, TIMEOUT; attempt withdrawn, no
    retry.
    """
    sim = Sim(config(s2s=2, s2c=10), worker=None).run()
    error = sim.rejection(2, "Activity task timed out", RetryState.TIMEOUT)
    timeout = assert_timeout(error.cause, TimeoutType.SCHEDULE_TO_START, "activity ScheduleToStart timeout")
    assert timeout.cause is None
    assert sim.commands(WithdrawAttempt) == [(2, WithdrawAttempt(1))]
    assert list(sim.dispatched) == [1] and sim.started == {}


def test_S8_variant_schedule_to_start_counts_from_the_retry():
    """S8 variant (R8, R17): stc=1, s2s=2; attempt 2 is scheduled at 2 and never taken -> S2S fires at 4, not
    2.
    """
    sim = Sim(config(stc=1, s2s=2, policy=RetryPolicy(S(1))), hangs, pickup=lambda a: 0.0 if a == 1 else None)
    sim.run()
    assert sim.dispatched == {1: 0, 2: 2}
    error = sim.rejection(4, "Activity task timed out", RetryState.TIMEOUT)
    timeout = assert_timeout(error.cause, TimeoutType.SCHEDULE_TO_START)
    (first,) = sim.retried_failures()
    assert timeout.cause is first and first.type is TimeoutType.START_TO_CLOSE  # R17
    assert sim.commands(WithdrawAttempt) == [(4, WithdrawAttempt(2))]


# ========================================================================== S9-S13: heartbeats (runtime side)


def test_S9_heartbeat_timeout_carries_details():
    """S9 (R9, R18, R81): hb=1, RP(max 1), heartbeat at 0 then silence -> HEARTBEAT timeout at t=1 with the
    details.
    """
    script = lambda a, t: [
        (0, HeartbeatReceived(a, ("some details!",))),
        (3, AttemptCompleted(a, "too late")),
    ]  # noqa: E731
    sim = Sim(config(stc=180, hb=1, policy=RetryPolicy(maximum_attempts=1)), script).run()
    error = sim.rejection(1, "Activity task timed out", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    assert_timeout(error.cause, TimeoutType.HEARTBEAT, "activity Heartbeat timeout", ["some details!"])
    assert error.cause.cause is None
    assert sim.commands(StopAttempt) == [(1, StopAttempt(1, "timeout"))]  # D2
    late = [cmds for t, e, cmds in sim.fed if isinstance(e, AttemptCompleted)]
    assert late == [[]]  # R4/R81: the return at t=3 is rejected and changes nothing
    assert sim.machine.outcome == "timed_out"


def test_S10_resuming_from_heartbeat_details():
    """S10 (R54, R55): each attempt sees the last recorded details; attempt 4 returns "final count: 36" at
    t=7.
    """
    seen: List[Tuple[Any, ...]] = []

    def script(attempt: int, t: float):
        details = sim.machine.heartbeat_details  # what info().heartbeat_details shows this attempt
        seen.append(details)
        n = (details[0] if details else 0) + 9
        if n < 30:
            return [
                (0, HeartbeatReceived(attempt, (n,))),
                (0, AttemptFailed(attempt, edge(ValueError(n)), (n,))),
            ]
        return [(0, HeartbeatReceived(attempt, (n,))), (0, AttemptCompleted(attempt, f"final count: {n}"))]

    sim = Sim(config(stc=10, policy=RetryPolicy(maximum_attempts=4)), script)
    sim.run()
    assert seen == [(), (9,), (18,), (27,)]
    assert sim.starts() == [0, 1, 3, 7]
    assert sim.result(7) == "final count: 36"
    assert sim.machine.outcome == "completed"


def test_S11_received_heartbeats_rearm_the_heartbeat_timer():
    """S11 (R9, R53): hb=10; heartbeats received at 0, 8, 16 keep re-arming the deadline; no timeout."""
    script = lambda a, t: [
        (0, HeartbeatReceived(a, (0,))),
        (8, HeartbeatReceived(a, (6,))),  # noqa: E731
        (16, HeartbeatReceived(a, (15,))),
        (20, AttemptCompleted(a, "done")),
    ]
    sim = Sim(config(stc=60, hb=10), script).run()
    deadlines = [c.deadline for _, c in sim.commands(StartTimer) if c.kind is TimerKind.HEARTBEAT]
    assert deadlines == [10, 10, 18, 26]  # armed at the start, then max(start, last heartbeat) + 10
    assert sim.result(20) == "done"
    assert sim.machine.heartbeat_details == (15,)


def test_S12_no_heartbeat_timeout_when_unset():
    """S12 (R10): heartbeat_timeout unset -> no heartbeat timer at all; spaced heartbeats are recorded."""
    script = lambda a, t: [
        (0, HeartbeatReceived(a, ("a",))),
        (40, HeartbeatReceived(a, ("b",))),  # noqa: E731
        (45, AttemptCompleted(a, 1)),
    ]
    sim = Sim(config(stc=60), script).run()
    assert [c for _, c in sim.commands(StartTimer) if c.kind is TimerKind.HEARTBEAT] == []
    assert sim.result(45) == 1
    assert sim.machine.heartbeat_details == ("b",)


@pytest.mark.parametrize(
    "reported, attempt2_sees",
    [((), ()), (("a",), ("a",)), (None, ("a",))],
    ids=["empty-heartbeat-pending", "raised-right-after", "nothing-pending"],
)
def test_S13_empty_heartbeat_clears_details(reported, attempt2_sees):
    """S13 (R46, R55): the failure report carries the latest (possibly empty) details; they are stored."""
    seen: List[Tuple[Any, ...]] = []

    def script(attempt: int, t: float):
        seen.append(sim.machine.heartbeat_details)
        if attempt == 1:
            return [
                (0, HeartbeatReceived(1, ("a",))),
                (0.6, AttemptFailed(1, edge(ValueError("x")), reported)),
            ]
        return [(0, AttemptCompleted(attempt, "ok"))]

    sim = Sim(config(stc=10, hb=1, policy=RetryPolicy(maximum_attempts=2)), script)
    sim.run()
    assert sim.starts() == [0, pytest.approx(1.6)]
    assert seen == [(), attempt2_sees]


# ============================================================================ S14-S18: the retry policy


@pytest.mark.parametrize(
    "make_exc, types, retried, cause_type, cause_str",
    [
        (lambda: ValueError("v"), ["ValueError"], False, "ValueError", "ValueError: v"),
        (lambda: MyErr("m"), ["ValueError"], True, "MyErr", "MyErr: m"),  # no subclass match
        (
            lambda: ApplicationError("x", type="Cannot retry me"),
            ["Cannot retry me"],
            False,
            "Cannot retry me",
            "Cannot retry me: x",
        ),
    ],
    ids=["ValueError", "subclass-MyErr", "custom-type"],
)
def test_S14_non_retryable_by_type(make_exc, types, retried, cause_type, cause_str):
    """S14 (R30): an exact type match stops at t=0 with NON_RETRYABLE_FAILURE; MyErr(ValueError) is
    retried.
    """
    policy = RetryPolicy(non_retryable_error_types=types, maximum_attempts=2)
    sim = Sim(config(stc=5, policy=policy), raises(lambda a: make_exc())).run()
    if retried:
        assert sim.starts() == [0, 1]
        error = sim.rejection(1, "Activity task failed", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    else:
        assert sim.starts() == [0]
        error = sim.rejection(0, "Activity task failed", RetryState.NON_RETRYABLE_FAILURE)
    assert error.cause.type == cause_type and str(error.cause) == cause_str


def test_S15_non_retryable_flag():
    """S15 (R32): attempt 2 raises ApplicationError(non_retryable=True) -> stops at t=1 with its details."""

    def make(attempt: int) -> BaseException:
        if attempt == 1:
            return ApplicationError("Retry me")
        return ApplicationError("Do not retry me", "detail1", 123, non_retryable=True)

    sim = Sim(config(stc=5, policy=RetryPolicy(maximum_attempts=100)), raises(make)).run()
    assert sim.starts() == [0, 1]
    error = sim.rejection(1, "Activity task failed", RetryState.NON_RETRYABLE_FAILURE)
    cause = assert_app(error.cause, None, "Do not retry me", non_retryable=True)
    assert str(cause) == "Do not retry me" and tuple(cause.details) == ("detail1", 123)


@pytest.mark.parametrize(
    "policy", [RetryPolicy(maximum_attempts=1), RetryPolicy(maximum_attempts=1, backoff_coefficient=0.5)]
)
def test_S16_maximum_attempts_1(policy):
    """S16 (R23, R24, R29): one attempt; MAXIMUM_ATTEMPTS_REACHED (not NON_RETRYABLE_FAILURE); coefficient 0.5
    accepted.
    """
    sim = Sim(config(stc=5, policy=policy), raises(lambda a: ValueError("once"))).run()
    assert sim.starts() == [0]
    error = sim.rejection(0, "Activity task failed", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    assert_app(error.cause, "ValueError", "once")


def test_S17_next_retry_delay_beats_maximum_interval():
    """S17 (R33): RP(1s, 2.0, 2s, 3), next_retry_delay=10s -> starts 0, 10, 20 (not capped);
    MAXIMUM_ATTEMPTS_REACHED.
    """
    make = lambda a: ApplicationError("later", next_retry_delay=S(10))  # noqa: E731
    sim = Sim(config(stc=5, policy=RetryPolicy(S(1), 2.0, S(2), 3)), raises(make)).run()
    assert sim.starts() == [0, 10, 20]
    error = sim.rejection(20, "Activity task failed", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    assert error.cause.next_retry_delay == S(10)


def test_S18_next_retry_delay_versus_schedule_to_close():
    """S18 (R33, R29.6): s2c=15, next_retry_delay=10s -> starts 0, 10; next would be 20 > 15: TIMEOUT
    at t=10.
    """
    make = lambda a: ApplicationError(f"attempt {a}", next_retry_delay=S(10))  # noqa: E731
    sim = Sim(config(s2c=15), raises(make)).run()
    assert sim.starts() == [0, 10]
    error = sim.rejection(10, "Activity task failed", RetryState.TIMEOUT)
    assert_app(error.cause, None, "attempt 2")


# ======================================================================= S19-S25: cancellation (runtime side)


def running_with_heartbeats(cancellation_type: int, **cfg) -> Sim:
    """S19's set-up: stc=60, hb=2; the runtime receives heartbeats at 0.3 (and the test feeds 1.9)."""
    script = lambda a, t: [(0.3, HeartbeatReceived(a, ("hb", 0.3)))]  # noqa: E731
    cfg.setdefault("stc", 60)
    return Sim(config(hb=2, cancellation_type=cancellation_type, **cfg), script)


def test_S19_try_cancel():
    """S19 (R60, R62): TRY_CANCEL at t=1 rejects the caller at once; the cancel reaches the attempt on its
    next heartbeat.
    """
    sim = running_with_heartbeats(TRY_CANCEL)
    assert [type(c) for c in sim.feed(CancelRequested(), at=1)] == [RejectCaller]
    error = sim.rejection(1, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert (
        type(error.cause) is CancelledError
        and error.cause.message == "Cancelled"
        and error.cause.details == ()
    )
    assert sim.commands(StopAttempt) == [] and sim.commands(WithdrawAttempt) == []  # R62: only marked
    assert sim.commands(DeliverCancel) == []  # the heartbeat at 0.3 came before the request
    assert sim.feed(HeartbeatReceived(1, ("hb", 1.9)), at=1.9) == [
        StartTimer(TimerKind.HEARTBEAT, 1, pytest.approx(3.9)),
        DeliverCancel(1),
    ]
    assert sim.feed(HeartbeatReceived(1, ("hb", 2.0)), at=2.0) == [
        StartTimer(TimerKind.HEARTBEAT, 1, 4.0)
    ]  # delivered once
    sim.feed(AttemptFailed(1, CancelledError("Cancelled")), at=2.1)
    assert sim.machine.closed and sim.machine.outcome == "cancelled"
    sim.caller_outcome()  # still exactly one caller resolution (R5)


def test_S20_wait_cancellation_completed_activity_swallows():
    """S20 (R63): WAIT_CANCELLATION_COMPLETED; the activity returns "cleaned up" after the cancel -> the
    caller gets it.
    """
    sim = running_with_heartbeats(WAIT_CANCELLATION_COMPLETED)
    assert sim.feed(CancelRequested(), at=1) == []
    assert sim.machine.cancel_requested
    assert DeliverCancel(1) in sim.feed(HeartbeatReceived(1, ()), at=1.9)
    assert sim.feed(AttemptCompleted(1, "cleaned up"), at=1.9)[-1] == ResolveCaller("cleaned up")
    assert sim.result(1.9) == "cleaned up"
    assert sim.machine.outcome == "completed"


def test_S21_wait_cancellation_completed_activity_reraises():
    """S21 (R63): the cancellation propagates -> ActivityError(CANCEL_REQUESTED, "Activity cancelled") at
    t=1.9.
    """
    sim = running_with_heartbeats(WAIT_CANCELLATION_COMPLETED)
    sim.feed(CancelRequested(), at=1)
    sim.feed(HeartbeatReceived(1, ()), at=1.9)
    sim.feed(AttemptFailed(1, CancelledError("Cancelled")), at=1.9)
    error = sim.rejection(1.9, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert isinstance(error.cause, CancelledError)
    assert sim.machine.outcome == "cancelled"


def test_S22_wait_cancellation_completed_activity_fails_instead():
    """S22 (R63, R68): after the cancel a ValueError is not retried although the policy allows it."""
    sim = running_with_heartbeats(WAIT_CANCELLATION_COMPLETED, policy=RetryPolicy(maximum_attempts=5))
    sim.feed(CancelRequested(), at=1)
    sim.feed(HeartbeatReceived(1, ()), at=1.9)
    sim.feed(AttemptFailed(1, edge(ValueError("on cancel"))), at=1.9)
    error = sim.rejection(1.9, "Activity task failed", RetryState.CANCEL_REQUESTED)
    assert_app(error.cause, "ValueError", "on cancel")
    assert sim.commands(AttemptRetrying) == [] and list(sim.dispatched) == [1]


def test_S23_abandon():
    """S23 (R60, R68): ABANDON rejects at once, records nothing, never tells the attempt, and keeps
    retrying.
    """
    sim = running_with_heartbeats(ABANDON)
    sim.feed(CancelRequested(), at=1)
    error = sim.rejection(1, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert isinstance(error.cause, CancelledError)
    assert not sim.machine.cancel_requested
    assert DeliverCancel(1) not in sim.feed(HeartbeatReceived(1, ()), at=1.9)
    sim.feed(AttemptFailed(1, edge(ValueError("still running"))), at=2.5)
    assert sim.retried_failures() != []  # retried normally (no request was recorded)
    sim.run(until=3.5)
    assert sim.started.get(2) == 3.5
    sim.feed(AttemptCompleted(2, "ignored"), at=4)
    assert sim.machine.outcome == "completed"
    assert sim.commands(ResolveCaller) == []  # its outcome is ignored
    sim.caller_outcome()


@pytest.mark.parametrize(
    "cancellation_type, details",
    [(TRY_CANCEL, ()), (WAIT_CANCELLATION_COMPLETED, ("ACTIVITY_ID_NOT_STARTED",))],
)
def test_S24_cancel_during_backoff(cancellation_type, details):
    """S24 (R61, R69): cancel at t=3 during a 10 s backoff -> rejected at 3; attempt 2 never runs."""
    sim = Sim(
        config(stc=5, policy=RetryPolicy(initial_interval=S(10)), cancellation_type=cancellation_type),
        raises(lambda a: ValueError("x")),
    )
    sim.run(until=2)
    assert sim.machine.state is State.BACKOFF
    commands = sim.feed(CancelRequested(), at=3)
    assert CancelTimer(TimerKind.BACKOFF, 2) in commands
    error = sim.rejection(3, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert isinstance(error.cause, CancelledError) and tuple(error.cause.details) == details  # R61
    sim.run()
    assert list(sim.dispatched) == [1] and sim.machine.outcome == "cancelled"


def test_S24_abandon_during_backoff_still_runs_attempt_2():
    """S24 (R61): with ABANDON the caller is rejected at 3 but attempt 2 still runs at 10; its outcome is
    ignored.
    """
    sim = Sim(
        config(stc=5, policy=RetryPolicy(initial_interval=S(10)), cancellation_type=ABANDON),
        lambda a, t: (
            [(0, AttemptFailed(a, edge(ValueError("x"))))] if a == 1 else [(1, AttemptCompleted(a, 2))]
        ),
    )
    sim.feed(CancelRequested(), at=3)
    sim.rejection(3, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    sim.run()
    assert sim.starts() == [0, 10]
    assert sim.machine.outcome == "completed" and sim.commands(ResolveCaller) == []


@pytest.mark.parametrize("cancellation_type", [WAIT_CANCELLATION_COMPLETED, TRY_CANCEL])
def test_S25_cancel_a_non_heartbeating_activity(cancellation_type):
    """S25 (R62): the attempt is never told; WAIT gets 42 at t=20, TRY_CANCEL is rejected at t=1 and 42 is
    ignored.
    """
    sim = Sim(
        config(stc=30, cancellation_type=cancellation_type), lambda a, t: [(20, AttemptCompleted(a, 42))]
    )
    sim.feed(CancelRequested(), at=1)
    sim.run()
    assert sim.commands(DeliverCancel) == [] and sim.commands(StopAttempt) == []
    if cancellation_type == WAIT_CANCELLATION_COMPLETED:
        assert sim.result(20) == 42
    else:
        sim.rejection(1, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert sim.machine.outcome == "completed"


# ============================================================================ S26, S30-S33


@pytest.mark.parametrize(
    "listed, hb, kind, at",
    [
        ("TemporalTimeout:StartToClose", None, TimeoutType.START_TO_CLOSE, 2),
        ("TemporalTimeout:Heartbeat", 1, TimeoutType.HEARTBEAT, 1),
    ],
)
def test_S26_timeout_declared_non_retryable(listed, hb, kind, at):
    """S26 (R30): a listed TemporalTimeout:<Kind> makes that timeout final: NON_RETRYABLE_FAILURE."""
    sim = Sim(config(stc=2, hb=hb, policy=RetryPolicy(non_retryable_error_types=[listed])), hangs).run()
    assert sim.starts() == [0]
    error = sim.rejection(at, "Activity task timed out", RetryState.NON_RETRYABLE_FAILURE)
    assert_timeout(error.cause, kind)
    assert sim.commands(StopAttempt) == [(at, StopAttempt(1, "timeout"))]


def test_S30_unknown_activity_name_is_rejected_at_the_call():
    """S30 (R90, D5): the machine part does not apply; system validation raises ValueError, nothing is
    scheduled.
    """
    system = ActorSystem(workers=1)  # never started
    with pytest.raises(ValueError, match="'nope' is not registered"):
        system.start_activity(
            "nope", start_to_close_timeout=S(5), retry_policy=RetryPolicy(maximum_attempts=2)
        )
    assert not system.running


def test_S31_validation_messages():
    """S31 (R13, R24): the SDK's exact ValueError messages, before anything is scheduled."""
    cases = [
        (lambda: config(), "Activity must have start_to_close_timeout or schedule_to_close_timeout"),
        (
            lambda: config(stc=5, policy=RetryPolicy(backoff_coefficient=0.5)),
            "Backoff coefficient cannot be less than 1",
        ),
        (
            lambda: config(stc=5, policy=RetryPolicy(maximum_interval=S(0.5))),
            "Maximum interval cannot be less than initial interval",
        ),
        (
            lambda: config(stc=5, policy=RetryPolicy(maximum_attempts=-1)),
            "Maximum attempts cannot be negative",
        ),
    ]
    for build, message in cases:
        with pytest.raises(ValueError) as info:
            build()
        assert str(info.value) == message


def test_S32_normalisation_and_its_timers():
    """S32 (R11, R14): stc=60, s2c=10, hb=120 -> 10/10/10; the three deadlines tie at 10 and START_TO_CLOSE
    goes first.
    """
    cfg = config(stc=60, s2c=10, hb=120)
    assert (cfg.start_to_close, cfg.schedule_to_close, cfg.heartbeat) == (10, 10, 10)
    sim = Sim(cfg, hangs).run()
    fired = [e.kind for _, e, _ in sim.fed if isinstance(e, TimerFired)]
    assert fired == [TimerKind.START_TO_CLOSE]  # R14: the first that closes wins, the rest are dropped
    error = sim.rejection(10, "Activity task timed out", RetryState.TIMEOUT)
    assert_timeout(error.cause, TimeoutType.SCHEDULE_TO_CLOSE, NO_ROOM_MESSAGE)  # R15


def test_S33_exception_chains():
    """S33 (R31): raise RuntimeError("outer") from KeyError("k") -> ApplicationError chain RuntimeError ->
    KeyError.
    """

    def outer(attempt: int) -> BaseException:
        try:
            raise RuntimeError("outer") from KeyError("k")
        except RuntimeError as exc:
            return exc

    sim = Sim(config(stc=5, policy=RetryPolicy(maximum_attempts=1)), raises(outer)).run()
    error = sim.rejection(0, "Activity task failed", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    cause = assert_app(error.cause, "RuntimeError", "outer")
    assert_app(cause.cause, "KeyError", "'k'")
    assert cause.cause.cause is None
    assert "RuntimeError: outer" in cause.stack_trace


def test_S33_implicit_context_becomes_the_cause():
    """R31: the implicit __context__ becomes the cause unless suppressed (raise ... from None)."""

    def chained(suppress: bool) -> BaseException:
        try:
            try:
                raise KeyError("k")
            except KeyError:
                if suppress:
                    raise RuntimeError("outer") from None
                raise RuntimeError("outer")  # noqa: B904 - the implicit context is the point
        except RuntimeError as exc:
            return exc

    assert edge(chained(False)).cause.type == "KeyError"
    assert edge(chained(True)).cause is None


# ============================================================================ rules: timers and heartbeats


def test_R6_R25_one_schedule_to_close_timer_fresh_attempt_timers():
    """R6: one S2C timer from T0, never restarted; R25: each attempt gets fresh STC and heartbeat clocks."""
    sim = Sim(config(stc=2, s2c=100, hb=1, policy=RetryPolicy(S(1), 2.0, None, 3)), hangs).run()
    timers = [c for _, c in sim.commands(StartTimer)]
    assert [c for c in timers if c.kind is TimerKind.SCHEDULE_TO_CLOSE] == [
        StartTimer(TimerKind.SCHEDULE_TO_CLOSE, 0, 100)
    ]
    # heartbeat timeouts at 1, 3, 6 (R9 armed at each start); backoffs 1, 2
    assert sim.starts() == [0, 2, 5]
    assert [(c.attempt, c.deadline) for c in timers if c.kind is TimerKind.START_TO_CLOSE] == [
        (1, 2),
        (2, 4),
        (3, 7),
    ]
    assert [(c.attempt, c.deadline) for c in timers if c.kind is TimerKind.HEARTBEAT] == [
        (1, 1),
        (2, 3),
        (3, 6),
    ]
    error = sim.rejection(6, "Activity task timed out", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    assert_timeout(error.cause, TimeoutType.HEARTBEAT)


def test_R9_heartbeat_deadline_counts_from_the_last_received_heartbeat():
    """R9: deadline = max(start, last received heartbeat) + heartbeat_timeout; silence then times out."""
    sim = Sim(
        config(stc=60, hb=2, policy=RetryPolicy(maximum_attempts=1)),
        lambda a, t: [(1.5, HeartbeatReceived(a, ("x",))), (3.0, HeartbeatReceived(a, ("y",)))],
    )
    sim.run()
    error = sim.rejection(5, "Activity task timed out", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    assert_timeout(error.cause, TimeoutType.HEARTBEAT, details=["y"])


def test_R9_a_rearmed_heartbeat_timer_ignores_its_earlier_deadline():
    """R9, STYLE.md 2.3: a firing of the old deadline that raced with a re-arm is stale, not a timeout.

    The timer actor may pop deadline 2.0 while the supervisor handles a heartbeat received at 1.9
    (which re-armed the deadline to 3.9); the machine must judge the firing against the current
    deadline, as Temporal's timer task re-checks the activity's heartbeat time.
    """
    sim = Sim(config(stc=60, hb=2), hangs)
    sim.feed(HeartbeatReceived(1, ("fresh",)), at=1.9)
    assert sim.machine.handle(TimerFired(TimerKind.HEARTBEAT, 1), 2.0) == []
    assert sim.machine.state is State.RUNNING
    commands = sim.machine.handle(TimerFired(TimerKind.HEARTBEAT, 1), 3.9)
    assert StopAttempt(1, "timeout") in commands


def test_R14_start_to_close_beats_heartbeat_at_the_same_instant():
    """R14: START_TO_CLOSE and HEARTBEAT due together -> START_TO_CLOSE is processed first and wins."""
    sim = Sim(config(stc=5, hb=5, policy=RetryPolicy(maximum_attempts=1)), hangs).run()
    error = sim.rejection(5, "Activity task timed out", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    assert_timeout(error.cause, TimeoutType.START_TO_CLOSE)
    assert [e.kind for _, e, _ in sim.fed if isinstance(e, TimerFired)] == [TimerKind.START_TO_CLOSE]


def test_R56_R57_details_survive_attempts_and_reach_the_final_timeout():
    """R56/R57: details received by attempt 1 survive its timeout and appear on attempt 2's heartbeat
    timeout.
    """

    def script(attempt: int, t: float):
        return [(0.5, HeartbeatReceived(1, ("one",)))] if attempt == 1 else []

    sim = Sim(config(stc=3, hb=2, policy=RetryPolicy(maximum_attempts=2)), script).run()
    assert sim.starts() == [0, 3.5]  # attempt 1: heartbeat at 0.5, heartbeat timeout at 2.5
    error = sim.rejection(5.5, "Activity task timed out", RetryState.MAXIMUM_ATTEMPTS_REACHED)
    final = assert_timeout(error.cause, TimeoutType.HEARTBEAT, details=["one"])
    assert_timeout(final.cause, TimeoutType.HEARTBEAT, details=["one"])  # R17: attempt 1's timeout


def test_R15_heartbeat_timeout_without_room_becomes_schedule_to_close():
    """R15: a retryable heartbeat timeout whose retry would start after T0 + S2C ends now as
    SCHEDULE_TO_CLOSE.
    """
    sim = Sim(config(s2c=3.5, hb=1), lambda a, t: [(0, HeartbeatReceived(a, ("d",)))]).run()
    assert sim.starts() == [0, 2]  # timeout at 1, retry at 2; timeout at 3, 3 + 2 = 5 > 3.5
    error = sim.rejection(3, "Activity task timed out", RetryState.TIMEOUT)
    timeout = assert_timeout(error.cause, TimeoutType.SCHEDULE_TO_CLOSE, NO_ROOM_MESSAGE, ["d"])
    assert timeout.cause.type is TimeoutType.HEARTBEAT
    fired = [(t, e.kind) for t, e, _ in sim.fed if isinstance(e, TimerFired)]
    assert fired[-1] == (3, TimerKind.HEARTBEAT)  # ended by the attempt timeout, before the S2C deadline


# ========================================================================== rules: cancellation in each state


def queued(cancellation_type: int) -> Sim:
    return Sim(config(stc=5, cancellation_type=cancellation_type), worker=None)


def running(cancellation_type: int, **cfg) -> Sim:
    cfg.setdefault("stc", 30)
    return Sim(config(cancellation_type=cancellation_type, **cfg), hangs).run(until=0)


@pytest.mark.parametrize(
    "cancellation_type, details",
    [(TRY_CANCEL, ()), (WAIT_CANCELLATION_COMPLETED, ("ACTIVITY_ID_NOT_STARTED",))],
)
def test_R61_cancel_while_queued_withdraws_the_attempt(cancellation_type, details):
    """R61: a recorded request with no running attempt cancels at once: withdrawn, rejected, closed."""
    sim = queued(cancellation_type)
    commands = sim.feed(CancelRequested(), at=0.5)
    assert WithdrawAttempt(1) in commands
    error = sim.rejection(0.5, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert isinstance(error.cause, CancelledError) and tuple(error.cause.details) == details
    assert sim.machine.closed and sim.machine.outcome == "cancelled" and sim.timers == {}
    assert sim.feed(AttemptStarted(1), at=0.6) == [
        StopAttempt(1, "closed")
    ]  # a start that raced the withdraw


def test_R61_abandon_while_queued_leaves_the_attempt_queued():
    """R60/R61: ABANDON rejects the caller but records nothing; the queued attempt still runs later."""
    sim = queued(ABANDON)
    commands = sim.feed(CancelRequested(), at=0.5)
    assert [type(c) for c in commands] == [RejectCaller]
    sim.rejection(0.5, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert sim.machine.state is State.QUEUED
    sim.feed(AttemptStarted(1), at=1)
    assert sim.feed(AttemptCompleted(1, "late"), at=2) == [CancelTimer(TimerKind.START_TO_CLOSE, 1)]
    assert sim.machine.outcome == "completed"
    sim.caller_outcome()  # no ResolveCaller after the rejection


@pytest.mark.parametrize(
    "cancellation_type, rejects, recorded",
    [(TRY_CANCEL, True, True), (WAIT_CANCELLATION_COMPLETED, False, True), (ABANDON, True, False)],
)
def test_R60_R62_cancel_while_running_only_marks(cancellation_type, rejects, recorded):
    """R60/R62: with an attempt running nothing is stopped; TRY_CANCEL/ABANDON answer the caller now."""
    sim = running(cancellation_type)
    commands = sim.feed(CancelRequested(), at=1)
    assert [type(c) for c in commands] == ([RejectCaller] if rejects else [])
    assert sim.machine.state is State.RUNNING and sim.machine.cancel_requested is recorded
    assert sim.machine.caller_resolved is rejects


@pytest.mark.parametrize("cancellation_type", [TRY_CANCEL, WAIT_CANCELLATION_COMPLETED, ABANDON])
@pytest.mark.parametrize("where", ["queued", "running", "backoff", "closed"])
def test_R59_only_the_first_request_counts(cancellation_type, where):
    """R59: requesting again, or after the execution has closed, does nothing."""
    if where == "queued":
        sim = queued(cancellation_type)
    elif where == "backoff":
        sim = Sim(config(stc=5, cancellation_type=cancellation_type), raises(lambda a: ValueError("x")))
        sim.run(until=0.5)
    else:
        sim = running(cancellation_type)
        if where == "closed":
            sim.feed(AttemptCompleted(1, "done"), at=0.5)
    sim.feed(CancelRequested(), at=0.6)
    before = (sim.machine.state, sim.machine.cancel_requested, sim.machine.caller_resolved)
    assert sim.feed(CancelRequested(), at=0.7) == []
    assert (sim.machine.state, sim.machine.cancel_requested, sim.machine.caller_resolved) == before
    if where == "closed":
        assert sim.result(0.5) == "done"


@pytest.mark.parametrize("cancellation_type", [TRY_CANCEL, WAIT_CANCELLATION_COMPLETED])
def test_R68_no_retry_after_a_cancel_request(cancellation_type):
    """R68/R29.1: after a recorded request a retryable failure closes the execution as CANCEL_REQUESTED."""
    sim = running(cancellation_type, policy=RetryPolicy(maximum_attempts=10))
    sim.feed(CancelRequested(), at=1)
    sim.feed(AttemptFailed(1, edge(ValueError("x"))), at=2)
    assert sim.commands(AttemptRetrying) == [] and sim.machine.closed and list(sim.dispatched) == [1]
    if cancellation_type == TRY_CANCEL:
        sim.rejection(1, "Activity cancelled", RetryState.CANCEL_REQUESTED)  # R60: its outcome is ignored
    else:
        error = sim.rejection(2, "Activity task failed", RetryState.CANCEL_REQUESTED)
        assert_app(error.cause, "ValueError", "x")


@pytest.mark.parametrize("cancellation_type", [TRY_CANCEL, WAIT_CANCELLATION_COMPLETED])
def test_R63_attempt_times_out_after_the_request(cancellation_type):
    """R63: the attempt times out after the request -> not retried; WAIT gets CANCEL_REQUESTED caused by the
    timeout.
    """
    sim = running(cancellation_type, stc=2)
    sim.feed(CancelRequested(), at=1)
    sim.run()
    assert sim.commands(StopAttempt) == [(2, StopAttempt(1, "timeout"))]  # D2 still applies
    assert sim.commands(AttemptRetrying) == [] and sim.machine.outcome == "timed_out"
    if cancellation_type == WAIT_CANCELLATION_COMPLETED:
        error = sim.rejection(2, "Activity task timed out", RetryState.CANCEL_REQUESTED)
        assert_timeout(error.cause, TimeoutType.START_TO_CLOSE)
    else:
        sim.rejection(1, "Activity cancelled", RetryState.CANCEL_REQUESTED)


def test_R63_schedule_to_close_after_a_wait_request():
    """R63/R16: S2C firing after a WAIT_CANCELLATION_COMPLETED request -> CANCEL_REQUESTED, SCHEDULE_TO_CLOSE
    cause.
    """
    sim = Sim(config(s2c=4, cancellation_type=WAIT_CANCELLATION_COMPLETED), hangs, pickup=lambda a: 0.5)
    sim.feed(CancelRequested(), at=1)
    sim.run()
    error = sim.rejection(4, "Activity task timed out", RetryState.CANCEL_REQUESTED)
    assert_timeout(error.cause, TimeoutType.SCHEDULE_TO_CLOSE)
    assert [c.attempt for _, c in sim.commands(StopAttempt)] == [1]


def test_R62_cancel_is_delivered_on_the_next_heartbeat_only():
    """R62: DeliverCancel answers the first heartbeat received after the request, once per attempt."""
    sim = running(WAIT_CANCELLATION_COMPLETED)
    assert DeliverCancel(1) not in sim.feed(HeartbeatReceived(1, ()), at=0.5)
    sim.feed(CancelRequested(), at=1)
    assert sim.commands(DeliverCancel) == []
    sim.feed(HeartbeatReceived(1, ()), at=1.5)
    sim.feed(HeartbeatReceived(1, ()), at=2.5)
    assert sim.commands(DeliverCancel) == [(1.5, DeliverCancel(1))]


def test_R67_cancelled_error_without_a_request_is_non_retryable():
    """R67/R30: activity code raising CancelledError on its own -> NON_RETRYABLE_FAILURE caused by
    CancelledError.
    """
    sim = Sim(config(stc=5), lambda a, t: [(0, AttemptFailed(a, CancelledError("on my own")))]).run()
    error = sim.rejection(0, "Activity task failed", RetryState.NON_RETRYABLE_FAILURE)
    assert isinstance(error.cause, CancelledError) and error.cause.message == "on my own"


# ============================================================================ D6: shutdown


def test_D6_shutdown_while_queued_cancels():
    """D6: nothing was running -> CANCEL_REQUESTED caused by CancelledError; the attempt is withdrawn."""
    sim = queued(TRY_CANCEL)
    commands = sim.feed(ShutdownRequested(), at=1)
    assert WithdrawAttempt(1) in commands
    error = sim.rejection(1, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert type(error.cause) is CancelledError


def test_D6_shutdown_during_backoff_cancels():
    sim = Sim(config(stc=5), raises(lambda a: ValueError("x")))
    sim.run(until=0.5)
    commands = sim.feed(ShutdownRequested(), at=0.5)
    assert CancelTimer(TimerKind.BACKOFF, 2) in commands
    error = sim.rejection(0.5, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert type(error.cause) is CancelledError
    assert list(sim.dispatched) == [1]


def test_D6_R85_worker_shutdown_failure_is_not_retried():
    """D6/R85: a running attempt that fails with WorkerShutdown ends the execution: CANCEL_REQUESTED, no
    retry.
    """
    sim = running(TRY_CANCEL, policy=RetryPolicy(maximum_attempts=5))
    assert sim.feed(ShutdownRequested(), at=1) == []  # the pool cancels running attempts itself
    assert sim.machine.shutting_down
    failure = ApplicationError(WORKER_SHUTDOWN_MESSAGE, type="WorkerShutdown")
    sim.feed(AttemptFailed(1, failure), at=1)
    error = sim.rejection(1, "Activity task failed", RetryState.CANCEL_REQUESTED)
    assert error.cause is failure
    assert sim.commands(AttemptRetrying) == []


def test_D6_activity_that_returns_during_shutdown_delivers_its_result():
    """D6/R85: an activity that catches the cancellation and returns in time delivers its result (S28)."""
    sim = running(TRY_CANCEL)
    sim.feed(ShutdownRequested(), at=5)
    sim.feed(AttemptCompleted(1, "Properly cancelled"), at=5)
    assert sim.result(5) == "Properly cancelled"


@pytest.mark.parametrize("announced", [True, False], ids=["after-ShutdownRequested", "ForceClose-only"])
def test_D6_force_close_running_attempt(announced):
    """D6: ForceClose with an attempt running -> stop it; CANCEL_REQUESTED caused by
    ApplicationError(WorkerShutdown).
    """
    sim = running(TRY_CANCEL)
    if announced:
        sim.feed(ShutdownRequested(), at=1)
    commands = sim.feed(ForceClose(), at=6)
    assert StopAttempt(1, "closed") in commands
    error = sim.rejection(6, "Activity task failed", RetryState.CANCEL_REQUESTED)
    assert_app(error.cause, "WorkerShutdown", WORKER_SHUTDOWN_MESSAGE)
    assert sim.machine.closed and sim.timers == {}


def test_D6_force_close_queued_and_closed():
    """D6: ForceClose of a queued execution -> CancelledError; of a closed one -> nothing (R5)."""
    sim = queued(WAIT_CANCELLATION_COMPLETED)
    assert WithdrawAttempt(1) in sim.feed(ForceClose(), at=1)
    error = sim.rejection(1, "Activity cancelled", RetryState.CANCEL_REQUESTED)
    assert type(error.cause) is CancelledError
    assert sim.feed(ForceClose(), at=2) == [] and sim.feed(ShutdownRequested(), at=2) == []


def test_D6_force_close_after_try_cancel_answers_nobody_twice():
    sim = running(TRY_CANCEL)
    sim.feed(CancelRequested(), at=1)
    sim.feed(ForceClose(), at=2)
    assert sim.machine.closed
    sim.rejection(1, "Activity cancelled", RetryState.CANCEL_REQUESTED)


# ============================================================================ R4 / R5: stale and late events


def attempt_2_running() -> Sim:
    """Attempt 1 heartbeated ("a",) and timed out at 2; attempt 2 runs from 3."""
    sim = Sim(config(stc=2, hb=2), lambda a, t: [(0.5, HeartbeatReceived(a, ("a",)))] if a == 1 else [])
    sim.run(until=3.1)
    assert sim.machine.state is State.RUNNING and sim.machine.attempt == 2
    return sim


@pytest.mark.parametrize(
    "event",
    [
        HeartbeatReceived(1, ("stale",)),
        AttemptFailed(1, ApplicationError("late"), ("stale",)),
        AttemptCompleted(1, "late"),
        TimerFired(TimerKind.START_TO_CLOSE, 1),
        TimerFired(TimerKind.HEARTBEAT, 1),
        TimerFired(TimerKind.BACKOFF, 2),
        TimerFired(TimerKind.SCHEDULE_TO_START, 2),
        HeartbeatReceived(3, ("future",)),
        AttemptCompleted(3, "future"),
    ],
)
def test_R4_reports_and_timers_of_other_attempts_change_nothing(event):
    """R4, STYLE.md 2.3: reports from an older (or unknown) attempt and stale timers are rejected."""
    sim = attempt_2_running()
    before = (sim.machine.state, sim.machine.attempt, sim.machine.heartbeat_details, sim.machine.started_time)
    assert sim.machine.handle(event, 3.2) == []
    assert (
        sim.machine.state,
        sim.machine.attempt,
        sim.machine.heartbeat_details,
        sim.machine.started_time,
    ) == before
    assert before[2] == ("a",)


def test_R4_stray_start_of_an_old_attempt_is_stopped():
    """R4: a start for an attempt that is not the queued one is stopped and changes nothing."""
    sim = attempt_2_running()
    assert sim.machine.handle(AttemptStarted(1), 3.2) == [StopAttempt(1, "closed")]
    assert sim.machine.started_time == 3.0


@pytest.mark.parametrize(
    "event", [HeartbeatReceived(1, ("x",)), AttemptCompleted(1, 1), AttemptFailed(1, ApplicationError("x"))]
)
def test_R4_reports_before_the_attempt_started_are_ignored(event):
    sim = queued(TRY_CANCEL)
    assert sim.machine.handle(event, 0.1) == [] and sim.machine.state is State.QUEUED


@pytest.mark.parametrize(
    "event",
    [
        HeartbeatReceived(1, ("late",)),
        AttemptFailed(1, ApplicationError("late")),
        AttemptCompleted(1, "late"),
        TimerFired(TimerKind.START_TO_CLOSE, 1),
        TimerFired(TimerKind.SCHEDULE_TO_CLOSE, 0),
        TimerFired(TimerKind.BACKOFF, 2),
        CancelRequested(),
        ShutdownRequested(),
        ForceClose(),
    ],
)
def test_R5_closed_execution_absorbs_late_events(event):
    """R5: the first terminal outcome wins; everything later is ignored quietly."""
    sim = Sim(config(stc=5, s2c=10), lambda a, t: [(1, AttemptCompleted(a, "first"))]).run()
    assert sim.machine.handle(event, 2.0) == []
    assert sim.machine.outcome == "completed" and sim.result(1) == "first"


def test_R5_start_after_close_is_stopped():
    sim = Sim(config(stc=5), raises(lambda a: ApplicationError("x", non_retryable=True))).run()
    assert sim.machine.handle(AttemptStarted(2), 3.0) == [StopAttempt(2, "closed")]
    assert sim.machine.outcome == "failed"


# ============================================================================ STYLE.md 2.2: impossible events


def test_events_before_schedule_raise_and_change_nothing():
    machine = ExecutionStateMachine(config(stc=5))
    with pytest.raises(ExecutionStateError, match="before Schedule"):
        machine.handle(AttemptStarted(1), 0.0)
    assert machine.state is None and machine.attempt == 0


def test_schedule_twice_raises_and_changes_nothing():
    sim = running(TRY_CANCEL)
    with pytest.raises(ExecutionStateError, match="Schedule received twice"):
        sim.machine.handle(Schedule(), 1.0)
    assert sim.machine.state is State.RUNNING and sim.machine.scheduled_time == 0


def test_unknown_event_type_is_a_type_error():
    sim = running(TRY_CANCEL)
    with pytest.raises(TypeError, match="cannot handle"):
        sim.machine.handle("tick", 1.0)  # type: ignore[arg-type]

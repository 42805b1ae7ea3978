"""``ActorSystem``: starts and stops the actor tree and validates every start request.

Start order: timer actor, supervisor actors, worker pool (processes + reader thread). Shutdown
runs in reverse, after D6's sequence: stop accepting work, give running attempts
``graceful_shutdown_timeout``, cancel them, wait ``stop_grace``, kill what is left, and resolve
every handle.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import itertools
import logging
import os
import threading
import uuid
import weakref
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import pykka

from . import _serde, journal as _journal
from ._execution import ExecutionConfig, ExecutionStateMachine
from ._messages import (BeginShutdown, CancelExecution, DetachAll, ForceCloseAll, NewExecution, PoolBroken,
                        SuspendAll, TimersFired, WorkerReports)
from ._retry import EffectivePolicy
from .activity import _definition_of
from .clock import Clock, SystemClock
from .common import ActivityCancellationType, ActivityIDConflictPolicy, ActivityIDReusePolicy, RetryPolicy
from .exceptions import ActivityAlreadyStartedError, ActivityNotFoundError, WorkerPoolBrokenError
from ._outcome import Outcome
from ._recovery import Recovery
from .handle import ActivityHandle
from .supervisor import ExecutionRecord, SupervisorActor
from .timer import TimerActor
from .worker import WorkerPool

__all__ = ["ActorSystem", "SystemStatistics"]

log = logging.getLogger(__name__)

_NO_ARG = object()
_current_system: contextvars.ContextVar[Optional["ActorSystem"]] = contextvars.ContextVar(
    "actorflow_current_system", default=None
)
_running_systems: "weakref.WeakSet[ActorSystem]" = weakref.WeakSet()

DEFAULT_MAX_CONCURRENT_ACTIVITIES = 100
"""Attempts one worker runs at once. Temporal's worker default; async activities cost little
each, and a sync activity only gets a thread when it runs. Lower it for CPU-bound sync work."""


@dataclass(frozen=True)
class SystemStatistics:
    """A snapshot of the system (``ActorSystem.statistics()``)."""

    pending: int
    running: int
    retrying: int
    completed: int
    failed: int
    cancelled: int
    timed_out: Dict[str, int]  # by TimeoutType name
    queued_attempts: int
    running_attempts: int
    workers: int
    workers_ready: int
    worker_restarts: int
    pending_timers: int


class ActorSystem:
    """An embedded runtime that runs activities in worker processes with Temporal's semantics.

    Usable as ``with``, ``async with``, or ``start()`` / ``shutdown()``. See API.md for options.
    """

    def __init__(
        self,
        activities: Iterable[Callable[..., Any]] = (),
        *,
        workers: Optional[int] = None,
        max_concurrent_activities: Optional[int] = None,
        default_heartbeat_throttle_interval: timedelta = timedelta(seconds=30),
        max_heartbeat_throttle_interval: timedelta = timedelta(seconds=60),
        graceful_shutdown_timeout: timedelta = timedelta(0),
        stop_grace: timedelta = timedelta(seconds=5),
        max_restarts: int = 10,
        restart_period: timedelta = timedelta(seconds=10),
        task_queue: str = "default",
        clock: Optional[Clock] = None,
        supervisors: int = 2,
        startup_timeout: timedelta = timedelta(seconds=60),
        journal: "Union[str, os.PathLike[str], None]" = None,
        journal_sync: str = "normal",
        retention: timedelta = timedelta(days=3),
    ) -> None:
        self._workers = _positive_int("workers", workers if workers is not None else (os.cpu_count() or 1))
        self._max_concurrent = _positive_int(
            "max_concurrent_activities",
            max_concurrent_activities if max_concurrent_activities is not None else DEFAULT_MAX_CONCURRENT_ACTIVITIES,
        )
        self._shards = _positive_int("supervisors", supervisors)
        self._default_throttle = _duration("default_heartbeat_throttle_interval", default_heartbeat_throttle_interval)
        self._max_throttle = _duration("max_heartbeat_throttle_interval", max_heartbeat_throttle_interval)
        self._graceful = _duration("graceful_shutdown_timeout", graceful_shutdown_timeout, allow_zero=True)
        self._stop_grace = _duration("stop_grace", stop_grace, allow_zero=True)
        self._max_restarts = _non_negative_int("max_restarts", max_restarts)
        self._restart_period = _duration("restart_period", restart_period)
        self._startup_timeout = _duration("startup_timeout", startup_timeout)
        if not isinstance(task_queue, str) or not task_queue:
            raise ValueError(f"task_queue must be a non-empty string, got {task_queue!r}")
        self._task_queue = task_queue
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must implement actorflow.clock.Clock (now, deadline_to_sleep_time, ...), got {clock!r}")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._to_datetime = self._clock.to_datetime  # one bound method, shared by every handle
        journal_path = _journal_path(journal)
        if journal_sync not in _journal.SYNC_MODES:
            raise ValueError(f"journal_sync must be one of {', '.join(map(repr, _journal.SYNC_MODES))}, "
                             f"got {journal_sync!r}")
        self._retention = _duration("retention", retention)
        clock_now = self._clock.now
        # D8, D9: the index of open ids (and, with a path, the durable record); opened by start().
        self._journal = _journal.open_journal(journal_path, journal_sync, self._retention.total_seconds(),
                                              clock_now)
        self._durable = self._journal.durable
        self._registry: Dict[str, Callable[..., Any]] = {}
        self._registry_bytes: Dict[str, bytes] = {}
        for fn in activities:
            self._register(fn)
        self._by_value_cache: "weakref.WeakKeyDictionary[Any, bytes]" = weakref.WeakKeyDictionary()
        self._timing_cache: Dict[tuple, tuple] = {}  # validated timeouts -> seconds and throttle
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._state = "new"  # new -> running -> stopping -> stopped
        self._broken: Optional[str] = None
        self._timer: Optional[pykka.ActorRef] = None
        self._supervisors: List[pykka.ActorRef] = []
        self._pool: Optional[WorkerPool] = None
        self._context_tokens: List[contextvars.Token] = []
        self._recovery: Optional[Recovery] = None
        self._journal_opened = False

    # -- registration -----------------------------------------------------------------------

    def _register(self, fn: Callable[..., Any]) -> None:
        definition = _definition_of(fn)
        if definition is None:
            raise TypeError(
                f"{fn!r} is not an activity: decorate it with @activity.defn before passing it to ActorSystem"
            )
        if definition.name in self._registry and self._registry[definition.name] is not fn:
            raise ValueError(f"More than one activity named {definition.name!r}: give one of them @activity.defn(name=...)")
        try:
            self._registry_bytes[definition.name] = _serde.dumps(fn)
        except Exception as exc:
            raise TypeError(_unpicklable_activity(definition.name, fn, exc)) from exc
        self._registry[definition.name] = fn

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> "ActorSystem":
        """Start the timer, the supervisors and the worker processes; wait until workers are up."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"ActorSystem.start(): the system is already {self._state}; create a new ActorSystem")
            self._state = "running"
        try:
            recovered = self._journal.open(self._clock, self._registry)  # D8: lock, check, read
            self._journal_opened = True
            self._ids = itertools.count(recovered.next_exec_id)
            # Lazy timer wake-ups only under real time: a virtual clock's idle probe reads the inbox.
            timer_actors: List[TimerActor] = []
            real_time = isinstance(self._clock, SystemClock)
            self._timer = TimerActor.start(self._clock, self._deliver_timers, lazy=real_time,
                                           instances=timer_actors)
            # Busy runtime threads fire due deadlines themselves, under real time only.
            fire_timers = timer_actors[0].fire_due_inline if real_time else None
            self._pool = WorkerPool(
                size=self._workers,
                max_concurrent=self._max_concurrent,
                registry=self._registry_bytes,
                clock=self._clock,
                shards=self._shards,
                route=self._route_reports,
                max_restarts=self._max_restarts,
                restart_period=self._restart_period.total_seconds(),
                on_broken=self._pool_broken,
            )
            self._supervisor_actors: List[SupervisorActor] = []
            self._supervisors = [
                SupervisorActor.start(self._pool, self._timer, self._clock, self._stop_grace.total_seconds(),
                                      self._supervisor_actors, fire_timers, self._journal)
                for i in range(self._shards)
            ]
            self._pool.start(self._startup_timeout.total_seconds())
            if recovered.runs or recovered.unregistered:
                self._recovery = Recovery(self._journal, self._clock, self._shards)
                self._recovery.resume(recovered, self._supervisors)
            attach = getattr(self._clock, "attach_idle_probe", None)
            if attach is not None:
                attach(self._is_idle)  # a virtual clock skips ahead only while the system is idle
        except BaseException:
            self._teardown()
            with self._lock:
                self._state = "stopped"
            raise
        _running_systems.add(self)
        atexit.register(self.shutdown)
        return self

    def shutdown(self) -> None:
        """Shut down as D6 says; every handle is resolved when this returns. Idempotent."""
        with self._lock:
            if self._state != "running":
                return
            self._state = "stopping"
        try:
            atexit.unregister(self.shutdown)
            if self._durable:
                self._shutdown_durable()
            else:
                self._tell_all(BeginShutdown())
                self._barrier()
                self._stop_running_attempts(before_kill=self._force_close)
                self._force_close()
        finally:
            self._teardown()
            _running_systems.discard(self)
            with self._lock:
                self._state = "stopped"

    def _stop_running_attempts(self, before_kill: Callable[[], None]) -> bool:
        """D6: give running attempts ``graceful_shutdown_timeout``, then cancel them (R84), then
        after ``stop_grace`` kill their workers. True if workers were killed."""
        pool = self._pool
        if pool.wait_idle(self._graceful.total_seconds()):
            return False
        pool.cancel_all_running("shutdown")
        if pool.wait_idle(self._stop_grace.total_seconds()):
            return False
        before_kill()
        pool.kill_all()
        return True

    def _force_close(self) -> None:
        self._tell_all(ForceCloseAll())
        self._barrier()

    def _shutdown_durable(self) -> None:
        """D8: stop running attempts as D6 does, but end no execution: what was running stays
        running in the journal (the next system retries it as SystemRestarted), and callers here
        get ``ActivityError(retry_state=IN_PROGRESS)`` caused by ``SystemShutdown``."""
        self._tell_all(SuspendAll())
        self._barrier()
        if self._stop_running_attempts(before_kill=_nothing):
            self._pool.wait_idle(self._stop_grace.total_seconds() + 1.0)  # the kills' reports
        self._tell_all(DetachAll())
        self._barrier()
        if self._recovery is not None:
            self._recovery.detach_foreign()

    def _is_idle(self) -> bool:
        """No attempt runs or waits for a slot and no actor has unhandled messages.

        Called by a virtual clock (actorflow.testing) from the timer thread before it skips time.
        """
        pool = self._pool
        if pool is None or pool.busy():
            return False
        refs = [*self._supervisors, self._timer]
        if not all(ref.actor_inbox.empty() for ref in refs):
            return False
        # A supervisor may be mid-message with an empty inbox, its timer and pipe writes not yet
        # sent: a no-op ask (a cancel for no execution; it reads no clock) returns only after it
        # has finished and flushed. Then look again.
        for ref in self._supervisors:
            ref.ask(CancelExecution(-1), timeout=2)
        return not pool.busy() and all(ref.actor_inbox.empty() for ref in refs)

    def _teardown(self) -> None:
        detach = getattr(self._clock, "detach_idle_probe", None)
        if detach is not None:
            detach(self._is_idle)
        if self._pool is not None:
            self._pool.close()
        for ref in self._supervisors:
            ref.stop(block=True, timeout=10)
        if self._timer is not None:
            self._timer.stop(block=True, timeout=10)
        if self._journal_opened:
            self._journal_opened = False
            self._journal.close()  # D8: the last commits, a checkpoint, the owner lock released

    def _barrier(self) -> None:
        """Wait until every supervisor has handled what was told to it before."""
        for ref in self._supervisors:
            ref.ask("statistics", timeout=30)

    def __enter__(self) -> "ActorSystem":
        self.start()
        self._context_tokens.append(_current_system.set(self))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self.shutdown()
        finally:
            if self._context_tokens:
                _reset_quietly(self._context_tokens.pop())

    async def __aenter__(self) -> "ActorSystem":
        await _in_thread(self.start)
        self._context_tokens.append(_current_system.set(self))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await _in_thread(self.shutdown)
        finally:
            if self._context_tokens:
                _reset_quietly(self._context_tokens.pop())

    @property
    def running(self) -> bool:
        return self._state == "running"

    # -- starting activities ----------------------------------------------------------------

    def start_activity(
        self,
        activity: Union[Callable[..., Any], str],
        arg: Any = _NO_ARG,
        *,
        args: Sequence[Any] = (),
        activity_id: Optional[str] = None,
        task_queue: Optional[str] = None,
        schedule_to_close_timeout: Optional[timedelta] = None,
        schedule_to_start_timeout: Optional[timedelta] = None,
        start_to_close_timeout: Optional[timedelta] = None,
        heartbeat_timeout: Optional[timedelta] = None,
        retry_policy: Optional[RetryPolicy] = None,
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
        id_reuse_policy: ActivityIDReusePolicy = ActivityIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy: ActivityIDConflictPolicy = ActivityIDConflictPolicy.FAIL,
    ) -> ActivityHandle:
        """Validate everything, then schedule the execution; returns its handle at once (R87),
        with a journal once the start is committed (D8)."""
        name, fn_bytes = self._resolve_activity(activity)
        if fn_bytes is not None and self._durable:
            raise ValueError(
                f"activity {name!r} is not registered, and a journaled system runs only registered "
                "activities (D8: the journal refers to an activity by its registered name, so the "
                "next system can run it). Define it at module level in an importable module (not "
                "a closure, lambda or __main__) and pass it in ActorSystem(activities=[...])")
        reuse, conflict = _id_policies(id_reuse_policy, id_conflict_policy)
        call_args = _call_args(arg, args)
        timing_key = (schedule_to_close_timeout, schedule_to_start_timeout, start_to_close_timeout,
                      heartbeat_timeout)
        try:
            timing = self._timing_cache.get(timing_key)
        except TypeError:  # an unhashable value: the validation below names it
            timing = None
        if timing is None:
            timing = self._timing(*timing_key)
            if len(self._timing_cache) < _TIMING_CACHE:
                self._timing_cache[timing_key] = timing
        s2c_s, s2s_s, stc_s, hb_s, throttle = timing
        policy = _effective_policy(retry_policy)
        if cancellation_type.__class__ is not ActivityCancellationType and (
                not isinstance(cancellation_type, int) or cancellation_type not in (0, 1, 2)):
            raise ValueError(
                f"cancellation_type must be an ActivityCancellationType (TRY_CANCEL, "
                f"WAIT_CANCELLATION_COMPLETED or ABANDON), got {cancellation_type!r}"
            )
        if task_queue is not None and task_queue != self._task_queue:
            raise ValueError(
                f"task_queue {task_queue!r} is not this system's queue {self._task_queue!r}; "
                "omit task_queue (one queue per ActorSystem)"
            )
        if activity_id is not None and (not isinstance(activity_id, str) or not activity_id):
            raise TypeError(f"activity_id must be a non-empty string, got {activity_id!r}")
        try:
            args_bytes = _serde.dumps(call_args)
        except Exception as exc:
            raise TypeError(f"the arguments of activity {name!r} cannot be pickled: {exc}") from exc
        explicit = activity_id is not None
        with self._lock:
            self._check_running()
            exec_id = next(self._ids)
            config = ExecutionConfig(
                activity_id=activity_id if explicit else str(exec_id),
                activity_type=name,
                start_to_close=stc_s,
                schedule_to_close=s2c_s,
                schedule_to_start=s2s_s,
                heartbeat=hb_s,
                policy=policy[0],
                cancellation_type=int(cancellation_type),
                run_id=str(uuid.uuid4()),
                durable=self._durable,
            )
            future = Outcome()
            shard = exec_id % self._shards
            record = ExecutionRecord(
                exec_id=exec_id,
                shard=shard,
                machine=ExecutionStateMachine(config),
                future=future,
                fn_name=name,
                fn_bytes=fn_bytes,
                args_bytes=args_bytes,
                task_queue=self._task_queue,
                throttle=throttle,
                policy_fields=policy[1],
                explicit_id=explicit,
            )
            # Still under the lock: a shutdown that begins now comes after this hand-over (D6).
            existing = self._claim(record, explicit, reuse, conflict)
            if existing is not None:
                return self._handle_of_open(existing)  # USE_EXISTING (D9)
            if not explicit:  # the claim may have moved a generated id on
                exec_id, shard, config = record.exec_id, record.shard, record.machine.config
            ticket = None
            if self._durable:
                record.start_time = self._clock.now()
                try:
                    ticket = self._journal.record_new(record)
                except BaseException:
                    self._journal.release_claim(config.activity_id, record)
                    raise
            supervisor = self._supervisors[shard]
            message = NewExecution(record)
            if not self._supervisor_actors[shard].handle_inline(message, may_write=True):
                supervisor.tell(message)
        if ticket is not None:  # outside the lock, so that concurrent starts share commits
            self._journal.wait_durable(ticket)  # D8: group commit with concurrent starts
        return ActivityHandle(config.activity_id, name, future, _Canceller(supervisor, exec_id),
                              record.history, self._to_datetime)

    def _claim(self, record: ExecutionRecord, explicit: bool, reuse: ActivityIDReusePolicy,
               conflict: ActivityIDConflictPolicy) -> Optional[Any]:
        """D9: take the record's activity_id among open executions. A generated id that an
        explicit one already holds moves on to the next free number."""
        journal = self._journal
        config = record.machine.config
        if explicit:
            return journal.claim(config.activity_id, config.activity_type, record, True, reuse, conflict)
        while True:
            try:
                return journal.claim(config.activity_id, config.activity_type, record, False, reuse,
                                     ActivityIDConflictPolicy.FAIL)
            except ActivityAlreadyStartedError:
                with self._lock:
                    record.exec_id = next(self._ids)
                config = record.machine.config = replace(config, activity_id=str(record.exec_id))
                record.shard = record.exec_id % self._shards

    # -- addressing executions by id (D9) ---------------------------------------------------

    def get_activity_handle(self, activity_id: str) -> ActivityHandle:
        """A handle to the open execution with ``activity_id``, else to its latest retained run;
        with a journal, also one that an earlier system started (D8, D9).

        Raises ``ActivityNotFoundError`` for an id that is neither open nor retained.
        """
        if not isinstance(activity_id, str) or not activity_id:
            raise TypeError(f"activity_id must be a non-empty string, got {activity_id!r}")
        self._check_running()
        journal = self._journal
        open_run = journal.open_record(activity_id)
        if open_run is not None:
            return self._handle_of_open(open_run)
        latest = journal.latest_closed(activity_id)
        if latest is None:
            open_run = journal.open_record(activity_id)  # it may have closed meanwhile
            if open_run is not None:
                return self._handle_of_open(open_run)
            hint = "" if self._durable else (
                "; without a journal only executions started with an explicit activity_id are "
                "retained once closed (the most recent 10,000)")
            raise ActivityNotFoundError(
                f"no execution with activity_id {activity_id!r}: none is open, and none closed "
                f"within the retention of {self._retention} (ActorSystem(retention=...)){hint}")
        if isinstance(latest, ExecutionRecord):
            return self._handle_of_record(latest)
        return self._recovery_view().closed_handle(latest)

    def _handle_of_open(self, open_run: Any) -> ActivityHandle:
        if isinstance(open_run, ExecutionRecord):
            return self._handle_of_record(open_run)
        return self._recovery_view().foreign_handle(open_run)  # D8: a type this system lacks

    def _handle_of_record(self, record: ExecutionRecord) -> ActivityHandle:
        earlier = None
        if record.history_base:
            earlier = self._recovery_view().earlier_history(record)
        return ActivityHandle(record.machine.config.activity_id, record.machine.config.activity_type,
                              record.future, _Canceller(self._supervisors[record.shard], record.exec_id),
                              record.history, self._to_datetime, earlier)

    def _recovery_view(self) -> Recovery:
        if self._recovery is None:
            self._recovery = Recovery(self._journal, self._clock, self._shards)
        return self._recovery

    def _timing(self, schedule_to_close: Any, schedule_to_start: Any, start_to_close: Any,
                heartbeat: Any) -> Tuple[Optional[float], Optional[float], float, Optional[float], float]:
        """Validate and normalise the four timeouts (R1-R10); seconds, and the heartbeat throttle."""
        s2c = _optional_timeout("schedule_to_close_timeout", schedule_to_close)
        s2s = _optional_timeout("schedule_to_start_timeout", schedule_to_start)
        stc = _optional_timeout("start_to_close_timeout", start_to_close)
        hb = _optional_timeout("heartbeat_timeout", heartbeat)
        s2c, s2s, stc, hb = _normalise(s2c, s2s, stc, hb)
        throttle = heartbeat_throttle_interval(hb, self._default_throttle, self._max_throttle)
        return (s2c.total_seconds() if s2c else None, s2s.total_seconds() if s2s else None,
                stc.total_seconds(), hb.total_seconds() if hb else None, throttle)

    async def execute_activity(self, activity: Union[Callable[..., Any], str], arg: Any = _NO_ARG, **options: Any) -> Any:
        """``start_activity(...)`` then await the handle (R87)."""
        return await self.start_activity(activity, arg, **options)

    def _check_running(self) -> None:
        if self._broken is not None:
            raise WorkerPoolBrokenError(self._broken)
        if self._state != "running":
            hint = "use `with ActorSystem(...) as system:` or call start() first" if self._state == "new" \
                else "the system has shut down; start a new ActorSystem"
            raise RuntimeError(f"ActorSystem is not running ({self._state}): {hint}")

    def _resolve_activity(self, activity: Any) -> Tuple[str, Optional[bytes]]:
        """The activity's name, and its pickled function unless the workers have it registered."""
        if isinstance(activity, str):
            if activity not in self._registry:
                known = ", ".join(sorted(self._registry)) or "none"
                raise ValueError(
                    f"activity {activity!r} is not registered; known: {known}. Pass it in "
                    "ActorSystem(activities=[...]) or pass the decorated function itself"
                )
            return activity, None
        definition = _definition_of(activity)
        if definition is None:
            raise TypeError(
                f"{activity!r} is not an activity: did you forget to decorate it with @activity.defn?"
            )
        if self._registry.get(definition.name) is activity:
            return definition.name, None
        try:
            fn_bytes = self._by_value_cache.get(activity)
        except TypeError:
            fn_bytes = None
        if fn_bytes is None:
            try:
                fn_bytes = _serde.dumps(activity)
            except Exception as exc:
                raise TypeError(_unpicklable_activity(definition.name, activity, exc)) from exc
            try:
                self._by_value_cache[activity] = fn_bytes
            except TypeError:
                pass
        return definition.name, fn_bytes

    # -- plumbing for the actors ------------------------------------------------------------

    def _route_reports(self, reports: Dict[int, list], dispatches: Dict[int, list]) -> None:
        """Runs on the pool's reader thread (or a supervisor's): one message per supervisor."""
        for shard in set(reports) | set(dispatches):
            self._handle_or_tell(shard, WorkerReports(reports.get(shard, ()), dispatches.get(shard, ())))

    def _deliver_timers(self, due: List[Tuple[Any, float]]) -> None:
        """Runs on the timer actor's thread, or on a runtime thread that fires inline."""
        by_shard: Dict[int, list] = {}
        for item in due:
            by_shard.setdefault(item[0][0] % self._shards, []).append(item)
        for shard, fired in by_shard.items():
            self._handle_or_tell(shard, TimersFired(fired))

    def _handle_or_tell(self, shard: int, message: Any) -> None:
        """Hand ``message`` to a supervisor: on this thread if it is idle, else to its inbox.
        Never on a pipe: the reader and the timer must not block on a worker."""
        try:
            handled = self._supervisor_actors[shard].handle_inline(message, may_write=False)
        except Exception:  # an actorflow bug: keep this thread alive, as the actor would
            log.error("internal error handling %s inline", type(message).__name__, exc_info=True)
            handled = True
        if not handled:
            self._supervisors[shard].tell(message)

    def _pool_broken(self, reason: str) -> None:
        self._broken = reason
        log.error("worker pool broken: %s", reason)
        self._tell_all(PoolBroken(reason))

    def _tell_all(self, message: Any) -> None:
        for ref in self._supervisors:
            ref.tell(message)

    # -- introspection ----------------------------------------------------------------------

    def statistics(self) -> SystemStatistics:
        """A snapshot of executions by state, attempts, workers and timers."""
        self._check_running()
        counts: Dict[str, int] = {}
        for ref in self._supervisors:
            for k, v in ref.ask("statistics", timeout=30).items():
                counts[k] = counts.get(k, 0) + v
        pool = self._pool.statistics()
        timers = self._timer.ask("statistics", timeout=30)
        return SystemStatistics(
            pending=counts.get("pending", 0),
            running=counts.get("running", 0),
            retrying=counts.get("retrying", 0),
            completed=counts.get("completed", 0),
            failed=counts.get("failed", 0),
            cancelled=counts.get("cancelled", 0),
            timed_out={k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("timed_out:")},
            queued_attempts=pool.queued,
            running_attempts=pool.running,
            workers=pool.workers,
            workers_ready=pool.workers_ready,
            worker_restarts=pool.worker_restarts,
            pending_timers=timers.pending,
        )

    def worker_pids(self) -> List[int]:
        """The pids of the current worker processes."""
        return self._pool.worker_pids() if self._pool is not None else []


def _nothing() -> None:
    pass


def _journal_path(journal: Any) -> Optional[str]:
    """D8: None, or the path of a journal file whose folder exists."""
    if journal is None:
        return None
    if not isinstance(journal, (str, os.PathLike)):
        raise TypeError(f"journal must be a file path (str or os.PathLike) or None, got {journal!r}")
    path = os.path.abspath(os.fspath(journal))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(f"the folder of journal {os.fspath(journal)!r} does not exist ({folder}); "
                         "create it first, or give a path in an existing folder")
    return path


def _id_policies(reuse: Any, conflict: Any) -> Tuple[ActivityIDReusePolicy, ActivityIDConflictPolicy]:
    """D9: the two policies as their enums (UNSPECIFIED means the default)."""
    if not isinstance(reuse, ActivityIDReusePolicy):
        raise TypeError(f"id_reuse_policy must be an actorflow.common.ActivityIDReusePolicy, got {reuse!r}")
    if not isinstance(conflict, ActivityIDConflictPolicy):
        raise TypeError(
            f"id_conflict_policy must be an actorflow.common.ActivityIDConflictPolicy, got {conflict!r}")
    if reuse == ActivityIDReusePolicy.UNSPECIFIED:
        reuse = ActivityIDReusePolicy.ALLOW_DUPLICATE
    if conflict == ActivityIDConflictPolicy.UNSPECIFIED:
        conflict = ActivityIDConflictPolicy.FAIL
    return reuse, conflict


def current_system() -> "ActorSystem":
    """The system entered in this context, else the only running one (API.md, workflow façade)."""
    system = _current_system.get()
    if system is not None and system.running:
        return system
    running = [s for s in list(_running_systems) if s.running]
    if len(running) == 1:
        return running[0]
    if not running:
        raise RuntimeError(
            "no ActorSystem is running: start one with `with ActorSystem(activities=[...]):` "
            "(or `async with`) around this call"
        )
    raise RuntimeError(
        f"{len(running)} ActorSystems are running and none was entered in this context: call "
        "system.execute_activity(...) on the one you mean, or enter it with `with system:`"
    )


# -- validation helpers -------------------------------------------------------------------


def _unpicklable_activity(name: str, fn: Any, exc: Exception) -> str:
    """The error text for an activity that cannot travel to the workers, with the fix."""
    text = f"activity {name!r} cannot be pickled for the worker processes: {exc}."
    module = getattr(fn, "__module__", None)
    if module == "__main__" or "<locals>" in getattr(fn, "__qualname__", ""):
        where = "the main module or an interactive session" if module == "__main__" else "a function"
        text += (
            f" An activity defined in {where} travels by value, together with the globals and "
            "closure variables it uses; move it (or the object that cannot be pickled) to a module "
            "of its own that the workers can import, or create that object inside the activity"
        )
    else:
        text += f" Workers import it from {module!r}; check what it holds that pickle cannot"
    return text


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _duration(name: str, value: Any, allow_zero: bool = False) -> timedelta:
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, e.g. timedelta(seconds=5); got {value!r}")
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else 'positive'}, got {value}")
    return value


def _optional_timeout(name: str, value: Any) -> Optional[timedelta]:
    """R13, D5: a timeout is a positive timedelta or None."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta such as timedelta(seconds=10), got {value!r}")
    if value <= timedelta(0):
        raise ValueError(
            f"{name} must be positive, got {value}; leave it out (None) if you do not want this timeout"
        )
    return value


def _normalise(
    s2c: Optional[timedelta], s2s: Optional[timedelta], stc: Optional[timedelta], hb: Optional[timedelta]
) -> Tuple[Optional[timedelta], Optional[timedelta], timedelta, Optional[timedelta]]:
    """R11, R12: derive the effective timeouts from the given ones."""
    if s2c is not None:
        s2s = min(s2s, s2c) if s2s is not None else s2c
        stc = min(stc, s2c) if stc is not None else s2c
    elif stc is None:
        raise ValueError("Activity must have start_to_close_timeout or schedule_to_close_timeout")
    if hb is not None:
        hb = min(hb, stc)
    return s2c, s2s, stc, hb


_TIMING_CACHE = 256  # distinct timeout combinations remembered per system


class _Canceller:
    """A handle's ``cancel()`` request: one small object, where a closure would take three."""

    __slots__ = ("_supervisor", "_exec_id")

    def __init__(self, supervisor: Any, exec_id: int) -> None:
        self._supervisor = supervisor
        self._exec_id = exec_id

    def __call__(self) -> None:
        self._supervisor.tell(CancelExecution(self._exec_id))


def heartbeat_throttle_interval(heartbeat_timeout: Optional[timedelta], default: timedelta,
                                maximum: timedelta) -> float:
    """R49: min(0.8 x heartbeat_timeout, or ``default`` when unset; ``maximum``), in seconds."""
    base = heartbeat_timeout.total_seconds() * 0.8 if heartbeat_timeout else default.total_seconds()
    return min(base, maximum.total_seconds())


_policy_cache: Dict[int, Tuple[Optional[RetryPolicy], Tuple[EffectivePolicy, tuple]]] = {}
_POLICY_CACHE_SIZE = 256


def _effective_policy(policy: Optional[RetryPolicy]) -> Tuple[EffectivePolicy, tuple]:
    """R20-R24: validate and fill in defaults; returns the machine's view and the wire's fields
    (from which the worker rebuilds ``info().retry_policy``).

    RetryPolicy is frozen, so the result is cached per policy object (callers usually pass the
    same one, or none); the cache holds the policy itself so its id cannot be reused.
    """
    cached = _policy_cache.get(id(policy))
    if (cached is not None and cached[0] is policy
            and cached[1][1][4] == tuple(getattr(policy, "non_retryable_error_types", None) or ())):
        return cached[1]  # (a list of error types may have been changed in place since)
    result = _compute_effective_policy(policy)
    if len(_policy_cache) >= _POLICY_CACHE_SIZE:
        _policy_cache.clear()
    _policy_cache[id(policy)] = (policy, result)
    return result


def _compute_effective_policy(policy: Optional[RetryPolicy]) -> Tuple[EffectivePolicy, tuple]:
    if policy is None:
        policy = RetryPolicy()
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"retry_policy must be an actorflow.RetryPolicy, got {policy!r}")
    policy._validate()
    full = policy.with_defaults()
    effective = EffectivePolicy(
        initial_interval=full.initial_interval.total_seconds(),
        backoff_coefficient=full.backoff_coefficient,
        maximum_interval=full.maximum_interval.total_seconds(),
        maximum_attempts=full.maximum_attempts,
        non_retryable_error_types=tuple(full.non_retryable_error_types or ()),
    )
    fields = (effective.initial_interval, effective.backoff_coefficient, effective.maximum_interval,
              effective.maximum_attempts, effective.non_retryable_error_types)
    return effective, fields


def _call_args(arg: Any, args: Sequence[Any]) -> tuple:
    """R88: one positional ``arg`` or several ``args``, not both."""
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or tuple of arguments, got {args!r}")
    if arg is not _NO_ARG:
        if args:
            raise ValueError("Cannot have arg and args")
        return (arg,)
    return tuple(args)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking call on a short-lived thread, so no executor thread outlives the system."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001
            loop.call_soon_threadsafe(_set_exception, done, exc)
        else:
            loop.call_soon_threadsafe(_set_result, done, result)

    thread = threading.Thread(target=run, name="actorflow-lifecycle", daemon=True)
    thread.start()
    try:
        return await asyncio.shield(done)
    finally:
        thread.join()  # it has already handed its result over; this only reaps it


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _reset_quietly(token: contextvars.Token) -> None:
    try:
        _current_system.reset(token)
    except ValueError:
        pass  # entered in another context

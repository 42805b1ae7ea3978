"""``python -m actorflow demo``: a multi-process workload that shows what the runtime does.

A few hundred activity executions run over several worker processes. Most succeed; some fail and
are retried with backoff; some heartbeat their progress and resume from it after a failure or
after their worker process is killed; one hits each of the four timeouts; one is cancelled. A live
view shows executions by state, attempts, retries and timeouts as they happen, and a summary
table ends the run.

Every execution has an outcome predicted from the rules (SEMANTICS.md, API.md D1): the demo exits
with status 1 if any outcome differs from its prediction, so it doubles as an end-to-end check.

The phases, and why (the predictions must hold on a slow, shared machine, and the supervisors
do not keep one global order between executions started at the same moment):

1. One activity heartbeats its progress and SIGKILLs its own worker process on attempt 1 (D1).
   It runs alone, so the crash takes no other attempt with it; the demo then waits until the
   replacement worker is up.
2. The four timeout cases and the two cancellations start, and the demo waits until each runs.
   Then slow activities take every remaining slot, and one activity with a 100 ms
   schedule-to-start timeout is started: no slot frees up before the start-to-close case times
   out, 0.8 s after it started, so it times out waiting. Then the two cancellations are
   requested.
3. The main mix: successes, retries with backoff, ``next_retry_delay``, ``maximum_attempts``,
   non-retryable errors and heartbeat resumes.

Runs in the calling process; the activities below run in the worker processes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import signal
import sys
import threading
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Deque, Dict, List, TextIO, Tuple

from . import activity, clock
from .common import ActivityCancellationType, RetryPolicy
from .exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError
from .system import ActorSystem

__all__ = ["run_demo", "DemoResult", "minimum_activities", "SLOTS_PER_WORKER"]

SLOTS_PER_WORKER = 8
"""``max_concurrent_activities`` for the demo: small, so the queue (and schedule-to-start) shows."""

_MIN_MAIN = 10
FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=50), backoff_coefficient=2.0,
                         maximum_interval=timedelta(milliseconds=400))


def minimum_activities(workers: int) -> int:
    """The smallest ``--activities`` for which every prediction holds with ``workers``."""
    return SLOTS_PER_WORKER * workers + 2 + _MIN_MAIN  # the slots, crash, schedule-to-start, main


# -- the activities (they run in the worker processes) ----------------------------------------


def _attempt() -> int:
    return activity.info().attempt


@activity.defn
async def fetch(seconds: float) -> Dict[str, Any]:
    """An I/O-bound call: runs on the worker's event loop."""
    await asyncio.sleep(seconds)
    return {"attempt": _attempt()}


@activity.defn
def crunch(n: int) -> Dict[str, Any]:
    """A CPU-bound call: a plain ``def`` runs on one of the worker's threads."""
    return {"attempt": _attempt(), "total": sum(i * i for i in range(n))}


@activity.defn
async def flaky(failures: int) -> Dict[str, Any]:
    """Fails ``failures`` times with a plain exception, then succeeds (R31: a retryable error)."""
    attempt = _attempt()
    await asyncio.sleep(0.02)
    if attempt <= failures:
        raise ConnectionError(f"upstream unavailable (attempt {attempt})")
    return {"attempt": attempt}


@activity.defn
async def rate_limited(retry_after: float) -> Dict[str, Any]:
    """Asks for a specific retry delay with ``next_retry_delay`` (R33), once."""
    attempt = _attempt()
    if attempt == 1:
        raise ApplicationError("rate limited, come back later", type="RateLimited",
                               next_retry_delay=timedelta(seconds=retry_after))
    return {"attempt": attempt}


@activity.defn
def doomed(reason: str) -> None:
    """Always fails: the retry policy's ``maximum_attempts`` ends it (R23)."""
    raise ValueError(reason)


@activity.defn
def reject(reason: str) -> None:
    """Fails with a non-retryable error: one attempt only (R32)."""
    raise ApplicationError(reason, type="InvalidInput", non_retryable=True)


def _resume_point() -> int:
    details = activity.info().heartbeat_details
    return int(details[0]) if details else 0


@activity.defn
def resumable(items: int, fail_at: int) -> Dict[str, Any]:
    """Heartbeats progress; attempt 1 fails at ``fail_at``; attempt 2 resumes from there (R54, R55)."""
    start = _resume_point()
    for item in range(start, items):
        clock.sleep(0.02)  # process one item
        activity.heartbeat(item + 1)  # the next item to do
        if _attempt() == 1 and item + 1 == fail_at:
            raise ConnectionError(f"lost the connection after item {fail_at}")
    return {"attempt": _attempt(), "resumed_from": start}


@activity.defn
def crash_once(items: int, crash_at: int) -> Dict[str, Any]:
    """Heartbeats progress; attempt 1 SIGKILLs its own worker process (D1); attempt 2 resumes."""
    start = _resume_point()
    for item in range(start, items):
        clock.sleep(0.03)
        activity.heartbeat(item + 1)
        if _attempt() == 1 and item + 1 == crash_at:
            clock.sleep(0.5)  # longer than the heartbeat throttle: the last progress is sent
            os.kill(os.getpid(), signal.SIGKILL)
    return {"attempt": _attempt(), "resumed_from": start}


@activity.defn
async def hang(heartbeat_first: bool) -> None:
    """Never finishes by itself; only a timeout ends it (and D2 cancels it then)."""
    if heartbeat_first:
        activity.heartbeat(f"attempt {_attempt()} started")
    await asyncio.sleep(3600)


@activity.defn
async def wait_for_cancel(clean_up: bool) -> Dict[str, Any]:
    """Heartbeats until cancelled (R62); with ``clean_up`` it catches the cancellation and returns."""
    try:
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        if clean_up:
            return {"attempt": _attempt(), "cleaned_up": True}
        raise


DEMO_ACTIVITIES = [fetch, crunch, flaky, rate_limited, doomed, reject, resumable, crash_once, hang,
                   wait_for_cancel]


# -- what runs, and what the rules predict ---------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """A predicted outcome: ``"completed"`` or ``"<RETRY_STATE> <- <cause>"``."""

    outcome: str
    attempts: int  # attempts that started
    extra: Any = None  # result fields, or the final TimeoutError's last_heartbeat_details
    rule: str = ""


@dataclass
class Job:
    kind: str
    activity: Callable[..., Any]
    args: Tuple[Any, ...]
    options: Dict[str, Any]
    expect: Expect
    handle: Any = None


@dataclass(frozen=True)
class Kind:
    label: str
    shows: str


KINDS: Dict[str, Kind] = {
    "crash": Kind("worker crash", "SIGKILLs its worker; retried, resumes from its heartbeat (D1)"),
    "ok": Kind("async I/O", "succeeds on the first attempt"),
    "cpu": Kind("sync CPU", "a plain def on a worker thread"),
    "slow": Kind("slow", "holds a slot 1 s (fills the pool)"),
    "flaky": Kind("flaky", "fails 1-2 times, retried with backoff (R27)"),
    "delay": Kind("next_retry_delay", "asks for its own retry delay (R33)"),
    "doomed": Kind("always fails", "maximum_attempts=3 ends it (R23)"),
    "fatal": Kind("non-retryable", "non_retryable=True: one attempt (R32)"),
    "resume": Kind("resume", "fails mid-way, resumes from its heartbeat (R54)"),
    "stc": Kind("start-to-close", "hangs; each attempt times out (R7)"),
    "heartbeat": Kind("heartbeat", "heartbeats once, then goes quiet (R9)"),
    "s2c": Kind("schedule-to-close", "hangs past its overall budget (R6)"),
    "s2s": Kind("schedule-to-start", "finds no free slot in time (R8)"),
    "cancel": Kind("cancelled", "TRY_CANCEL: caller answered at once (R60)"),
    "cancel-wait": Kind("cancel, wait", "WAIT_CANCELLATION_COMPLETED, cleans up (R63)"),
}

_STC = timedelta(seconds=30)


@dataclass
class Plan:
    crash: Job  # phase 1, alone
    first: List[Job]  # phase 2: the timeouts and the cancellations; each gets a slot
    fill: List[Job]  # phase 3: fill the remaining slots
    s2s: Job  # phase 4: finds no slot
    main: List[Job]  # phase 5

    @property
    def jobs(self) -> List[Job]:
        return [self.crash, *self.first, *self.fill, self.s2s, *self.main]


def plan(activities: int, workers: int, seed: int) -> Plan:
    """What runs in each phase, with the outcome the rules predict for each execution."""
    rng = random.Random(seed)
    slots = SLOTS_PER_WORKER * workers
    crash = Job("crash", crash_once, (10, 4), dict(start_to_close_timeout=_STC, retry_policy=FAST_RETRY),
                Expect("completed", 2, {"resumed_from": 4}, "D1, R54"))
    first = [
        Job("stc", hang, (False,), dict(start_to_close_timeout=timedelta(milliseconds=800),
                                        retry_policy=_attempts(2)),
            Expect("MAXIMUM_ATTEMPTS_REACHED <- TimeoutError(START_TO_CLOSE)", 2, None, "R7, R29")),
        Job("heartbeat", hang, (True,), dict(start_to_close_timeout=_STC,
                                             heartbeat_timeout=timedelta(seconds=1),
                                             retry_policy=_attempts(2)),
            Expect("MAXIMUM_ATTEMPTS_REACHED <- TimeoutError(HEARTBEAT)", 2, ["attempt 2 started"],
                   "R9, R18")),
        Job("s2c", hang, (False,), dict(schedule_to_close_timeout=timedelta(seconds=1),
                                        retry_policy=FAST_RETRY),
            Expect("TIMEOUT <- TimeoutError(SCHEDULE_TO_CLOSE)", 1, None, "R6, R16")),
        Job("cancel", wait_for_cancel, (False,), dict(start_to_close_timeout=_STC),
            Expect("CANCEL_REQUESTED <- CancelledError", 1, None, "R60")),
        Job("cancel-wait", wait_for_cancel, (True,), dict(
            start_to_close_timeout=_STC,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED),
            Expect("completed", 1, {"cleaned_up": True}, "R63")),
    ]
    fill = [Job("slow", fetch, (1.0,), dict(start_to_close_timeout=_STC), Expect("completed", 1))
            for _ in range(max(0, slots - len(first)))]
    s2s = Job("s2s", fetch, (0.01,), dict(start_to_close_timeout=_STC,
                                          schedule_to_start_timeout=timedelta(milliseconds=100)),
              Expect("TIMEOUT <- TimeoutError(SCHEDULE_TO_START)", 0, None, "R8"))
    main = [_main_job(rng) for _ in range(activities - 2 - len(first) - len(fill))]
    return Plan(crash, first, fill, s2s, main)


def _attempts(n: int) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=n)


def _main_job(rng: random.Random) -> Job:
    stc = dict(start_to_close_timeout=_STC, retry_policy=FAST_RETRY)
    roll = rng.random()
    if roll < 0.52:
        return Job("ok", fetch, (rng.uniform(0.1, 0.5),), stc, Expect("completed", 1))
    if roll < 0.66:
        return Job("cpu", crunch, (rng.randrange(20_000, 200_000),), stc, Expect("completed", 1))
    if roll < 0.80:
        failures = rng.choice((1, 2))
        return Job("flaky", flaky, (failures,), stc, Expect("completed", failures + 1, None, "R27"))
    if roll < 0.84:
        return Job("delay", rate_limited, (0.3,), stc, Expect("completed", 2, None, "R33"))
    if roll < 0.89:
        return Job("doomed", doomed, ("this input can never be processed",),
                   dict(start_to_close_timeout=_STC, retry_policy=_attempts(3)),
                   Expect("MAXIMUM_ATTEMPTS_REACHED <- ApplicationError(ValueError)", 3, None, "R23"))
    if roll < 0.93:
        return Job("fatal", reject, ("malformed record",), stc,
                   Expect("NON_RETRYABLE_FAILURE <- ApplicationError(InvalidInput)", 1, None, "R32"))
    fail_at = rng.randrange(2, 7)
    return Job("resume", resumable, (8, fail_at), stc,
               Expect("completed", 2, {"resumed_from": fail_at}, "R54, R55"))


# -- what happened ----------------------------------------------------------------------------


@dataclass
class Measured:
    outcome: str
    attempts: int
    extra: Any


def describe(error: BaseException) -> str:
    """``"<RETRY_STATE> <- <cause>"`` for an ActivityError, the class name otherwise."""
    if not isinstance(error, ActivityError):
        return f"unexpected {type(error).__name__}: {error}"
    cause = error.cause
    if isinstance(cause, TimeoutError):
        what = f"TimeoutError({cause.type.name if cause.type is not None else None})"
    elif isinstance(cause, ApplicationError):
        what = f"ApplicationError({cause.type})"
    elif isinstance(cause, CancelledError):
        what = "CancelledError"
    else:
        what = type(cause).__name__
    state = error.retry_state.name if error.retry_state is not None else "None"
    return f"{state} <- {what}"


def matches(expect: Expect, got: Measured) -> bool:
    if got.outcome != expect.outcome or got.attempts != expect.attempts:
        return False
    if isinstance(expect.extra, dict):
        return isinstance(got.extra, dict) and all(got.extra.get(k) == v for k, v in expect.extra.items())
    return expect.extra is None or got.extra == expect.extra


class _Tracker:
    """Follows every execution's ``handle.history()`` and turns it into counters and events.

    Also listens to the worker pool's WARNING log, which names a worker that died. Runs in the
    calling process: ``poll`` on the main thread, ``emit`` on the pool's reader thread.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.seen: Dict[int, int] = {}  # id(job) -> history events already counted
        self.retries: Counter = Counter()  # why attempts were retried
        self.timeouts: Counter = Counter()  # TimeoutType name -> attempts or executions it ended
        self.events: Deque[str] = deque(maxlen=6)
        self.new_events: List[str] = []
        self.mutex = threading.Lock()
        self.log_handler = _LogEvents(self)

    def event(self, text: str) -> None:
        line = f"{clock.monotonic() - self.started:5.1f}s  {text}"
        with self.mutex:
            self.events.append(line)
            self.new_events.append(line)

    def take_new_events(self) -> List[str]:
        with self.mutex:
            events, self.new_events = self.new_events, []
        return events

    def poll(self, jobs: List[Job]) -> None:
        for job in jobs:
            if job.handle is None:
                continue
            history = job.handle.history()
            done = self.seen.get(id(job), 0)
            for ev in history[done:]:
                self._count(job, ev)
            self.seen[id(job)] = len(history)

    def _count(self, job: Job, ev: Any) -> None:
        aid = job.handle.activity_id
        if ev.kind == "attempt_failed" and ev.detail.get("next_delay") is not None:
            failure = ev.detail.get("failure")
            what = _failure_name(failure)
            self.retries[what] += 1
            if isinstance(failure, TimeoutError) and failure.type is not None:
                self.timeouts[failure.type.name] += 1
            if isinstance(failure, TimeoutError) or what == "WorkerCrashed":
                self.event(f"{aid} attempt {ev.attempt}: {what}; retry in {ev.detail['next_delay']:.2f} s")
        elif ev.kind == "cancel_requested":
            self.event(f"{aid}: cancel requested")
        elif ev.kind == "closed" and ev.detail.get("error") is not None:
            error = ev.detail["error"]
            cause = getattr(error, "cause", None)
            if isinstance(cause, TimeoutError) and cause.type is not None:
                self.timeouts[cause.type.name] += 1
            if isinstance(cause, (TimeoutError, CancelledError)):
                self.event(f"{aid}: {describe(error)}")


def _failure_name(failure: Any) -> str:
    if isinstance(failure, TimeoutError):
        return f"{failure.type.name} timeout" if failure.type is not None else "timeout"
    if isinstance(failure, ApplicationError):
        return failure.type or "ApplicationError"
    return type(failure).__name__


class _LogEvents(logging.Handler):
    """Shows the worker pool's warnings (a worker process died) as events."""

    def __init__(self, tracker: _Tracker) -> None:
        super().__init__(logging.WARNING)
        self.tracker = tracker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.tracker.event(record.getMessage())
        except Exception:  # noqa: BLE001 - a display helper never breaks the run
            self.handleError(record)


@dataclass
class DemoResult:
    """What ``run_demo`` found: per-job outcomes and whether each matched its prediction."""

    jobs: List[Job]
    measured: Dict[int, Measured]
    seconds: float
    worker_restarts: int
    retries: int
    timeouts: Dict[str, int]
    mismatches: List[Tuple[Job, Measured]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


# -- running it -------------------------------------------------------------------------------


def run_demo(activities: int = 300, workers: int = 4, view: str = "auto", seed: int = 7,
             out: TextIO = sys.stdout) -> DemoResult:
    """Run the demo workload; returns what happened. ``view``: "auto", "live" or "plain"."""
    if activities < minimum_activities(workers):
        raise ValueError(f"activities must be at least {minimum_activities(workers)} with "
                         f"{workers} workers (every worker slot is filled once, see the docstring)")
    display = _make_display(view, out)
    started = clock.monotonic()
    tracker = _Tracker(started)
    pool_log = logging.getLogger("actorflow.worker")
    pool_log.addHandler(tracker.log_handler)
    the_plan = plan(activities, workers, seed)
    all_jobs = the_plan.jobs
    slots = SLOTS_PER_WORKER * workers
    try:
        display.start(f"{activities} activities on {workers} worker processes "
                      f"({SLOTS_PER_WORKER} slots each)")
        with ActorSystem(activities=DEMO_ACTIVITIES, workers=workers,
                         max_concurrent_activities=SLOTS_PER_WORKER,
                         default_heartbeat_throttle_interval=timedelta(milliseconds=100),
                         stop_grace=timedelta(seconds=2)) as system:
            monitor = _Monitor(system, all_jobs, tracker, display, started)
            display.note(f"workers up after {clock.monotonic() - started:.1f} s")
            display.note("phase 1: one activity kills its own worker process")
            _start(system, the_plan.crash)
            monitor.wait(lambda: the_plan.crash.handle.done())
            _wait_workers_ready(system, workers, monitor)
            display.note("phase 2: the timeouts and the cancellations start; then the pool fills up")
            for job in the_plan.first:
                _start(system, job)
            monitor.wait(lambda: all(_started(j) for j in the_plan.first), poll=0.01)
            for job in the_plan.fill:
                _start(system, job)
            monitor.wait(lambda: system.statistics().running_attempts >= slots, poll=0.01)
            _start(system, the_plan.s2s)  # no slot frees within its 100 ms: it cannot start in time
            monitor.wait(lambda: the_plan.s2s.handle.done(), poll=0.01)
            for job in the_plan.first:
                if job.kind.startswith("cancel"):
                    job.handle.cancel()  # running for a while now: delivered on its next heartbeat
            display.note("phase 3: the main mix")
            for job in the_plan.main:
                _start(system, job)
            monitor.wait(lambda: all(j.handle.done() for j in all_jobs))
            restarts = system.statistics().worker_restarts
        tracker.poll(all_jobs)
        measured = {id(j): _measure(j) for j in all_jobs}
        seconds = clock.monotonic() - started
    finally:
        pool_log.removeHandler(tracker.log_handler)
        display.stop()
    result = DemoResult(all_jobs, measured, seconds, restarts, sum(tracker.retries.values()),
                        dict(tracker.timeouts))
    result.mismatches = [(j, measured[id(j)]) for j in all_jobs if not matches(j.expect, measured[id(j)])]
    display.summary(result)
    return result


def _start(system: ActorSystem, job: Job) -> None:
    job.handle = system.start_activity(job.activity, args=list(job.args),
                                       activity_id=f"{job.kind}-{_next_id()}", **job.options)


_ids = itertools.count(1)


def _next_id() -> int:
    return next(_ids)


def _wait_workers_ready(system: ActorSystem, workers: int, monitor: "_Monitor") -> None:
    """Wait until the crashed worker's replacement is up, so phase 2 finds every slot free."""
    monitor.wait(lambda: system.statistics().workers_ready >= workers, seconds=60.0)


def _started(job: Job) -> bool:
    return any(ev.kind == "attempt_started" for ev in job.handle.history())


def _measure(job: Job) -> Measured:
    """The outcome, the attempts that started (from ``handle.history()``), and the extras."""
    handle = job.handle
    attempts = sum(1 for ev in handle.history() if ev.kind == "attempt_started")
    error = handle.exception(timeout=0)
    if error is None:
        return Measured("completed", attempts, handle.result(timeout=0))
    cause = getattr(error, "cause", None)
    extra = None
    if isinstance(cause, TimeoutError) and cause.last_heartbeat_details:
        extra = list(cause.last_heartbeat_details)
    return Measured(describe(error), attempts, extra)


class _Monitor:
    """Polls the system and refreshes the display until a condition holds."""

    def __init__(self, system: ActorSystem, jobs: List[Job], tracker: _Tracker, display: Any,
                 started: float) -> None:
        self.system, self.jobs, self.tracker, self.display = system, jobs, tracker, display
        self.started = started

    def wait(self, condition: Callable[[], bool], seconds: float = 120.0, poll: float = 0.1) -> None:
        """Refresh the display every 0.1 s until ``condition()`` holds (checked every ``poll`` s)."""
        deadline = clock.monotonic() + seconds
        next_refresh = 0.0
        while True:
            done = condition()
            now = clock.monotonic()
            if done or now >= next_refresh:
                self.tracker.poll(self.jobs)
                self.display.update(_snapshot(self))
                next_refresh = now + 0.1
            if done or now > deadline:
                return
            clock.sleep(poll)


@dataclass
class Snapshot:
    elapsed: float
    queued: int
    running: int
    backoff: int
    completed: int
    failed: int
    total: int
    workers: int
    restarts: int
    retries: Dict[str, int]
    timeouts: Dict[str, int]
    per_kind: Dict[str, Tuple[int, int, int]]  # kind -> (executions, done, failed)
    events: List[str]
    new_events: List[str]


def _snapshot(monitor: _Monitor) -> Snapshot:
    stats = monitor.system.statistics()
    per_kind: Dict[str, List[int]] = defaultdict(lambda: [0, 0, 0])
    completed = failed = 0
    for job in monitor.jobs:
        row = per_kind[job.kind]
        row[0] += 1
        handle = job.handle
        if handle is not None and handle.done():
            row[1] += 1
            if handle.exception(timeout=0) is not None:
                row[2] += 1
                failed += 1
            else:
                completed += 1
    tracker = monitor.tracker
    with tracker.mutex:
        events = list(tracker.events)
    return Snapshot(clock.monotonic() - monitor.started, stats.pending, stats.running, stats.retrying,
                    completed, failed, len(monitor.jobs), stats.workers, stats.worker_restarts,
                    dict(tracker.retries), dict(tracker.timeouts),
                    {k: (v[0], v[1], v[2]) for k, v in per_kind.items()}, events, tracker.take_new_events())


# -- displays ---------------------------------------------------------------------------------

_TIMEOUT_NAMES = ("START_TO_CLOSE", "SCHEDULE_TO_START", "SCHEDULE_TO_CLOSE", "HEARTBEAT")


def _make_display(view: str, out: TextIO) -> Any:
    if view not in ("auto", "live", "plain"):
        raise ValueError(f"view must be auto, live or plain, got {view!r}")
    if view == "plain":
        return _PlainDisplay(out)
    try:
        from rich.console import Console
    except ImportError:
        if view == "live":
            raise RuntimeError("the live view needs rich: pip install 'actorflow[demo]'") from None
        return _PlainDisplay(out)
    console = Console(file=out, force_terminal=True if view == "live" else None)
    if view == "auto" and not console.is_terminal:
        return _PlainDisplay(out)
    return _RichDisplay(console)


def _outcome_rows(result: DemoResult) -> List[Tuple[str, str, int, int, int, str, str]]:
    """Per kind: label, what it shows, runs, attempts, retries, outcome(s), predicted ok."""
    rows = []
    for kind, spec in KINDS.items():
        jobs = [j for j in result.jobs if j.kind == kind]
        if not jobs:
            continue
        got = [result.measured[id(j)] for j in jobs]
        outcomes = sorted({m.outcome for m in got})
        good = sum(1 for j, m in zip(jobs, got) if matches(j.expect, m))
        attempts = sum(m.attempts for m in got)
        retries = sum(max(0, m.attempts - 1) for m in got)  # s2s: no attempt ran, so 0
        rows.append((spec.label, spec.shows, len(jobs), attempts, retries, " | ".join(outcomes),
                     f"{good}/{len(jobs)}"))
    return rows


def _verdict(result: DemoResult) -> str:
    n = len(result.jobs)
    if result.ok:
        return f"all {n} outcomes as predicted"
    return f"{len(result.mismatches)} of {n} outcomes differ from the prediction"


def _timeouts_text(timeouts: Dict[str, int]) -> str:
    parts = [f"{name.lower().replace('_', '-')} {timeouts[name]}"
             for name in _TIMEOUT_NAMES if timeouts.get(name)]
    return ", ".join(parts) or "none yet"


class _PlainDisplay:
    """Plain lines, for when stdout is not a terminal (CI logs, pipes)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = 0.0

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def start(self, title: str) -> None:
        self._print(f"actorflow demo: {title}")

    def note(self, text: str) -> None:
        self._print(text)

    def update(self, s: Snapshot) -> None:
        for line in s.new_events:
            self._print(f"  event {line}")
        if s.elapsed - self.last < 1.0 and s.completed + s.failed < s.total:
            return
        self.last = s.elapsed
        self._print(f"[{s.elapsed:5.1f}s] queued {s.queued}  running {s.running}  backoff {s.backoff}  "
                    f"completed {s.completed}  failed {s.failed}  of {s.total}  |  "
                    f"retries {sum(s.retries.values())}  "
                    f"timeouts: {_timeouts_text(s.timeouts)}  worker restarts {s.restarts}")

    def stop(self) -> None:
        pass

    def summary(self, result: DemoResult) -> None:
        self._print()
        self._print("Summary")
        header = ("kind", "runs", "attempts", "retries", "outcome", "as predicted")
        rows = [(r[0], str(r[2]), str(r[3]), str(r[4]), r[5], r[6]) for r in _outcome_rows(result)]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for row in (header, *rows):
            self._print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        self._print()
        for line in _closing_lines(result):
            self._print(line)


def _closing_lines(result: DemoResult) -> List[str]:
    lines = [f"{len(result.jobs)} executions, {sum(m.attempts for m in result.measured.values())} attempts, "
             f"{result.retries} retries, timeouts: {_timeouts_text(result.timeouts)}, "
             f"worker restarts: {result.worker_restarts}, in {result.seconds:.1f} s"]
    for job, got in result.mismatches[:20]:
        lines.append(f"MISMATCH {job.handle.activity_id}: got {got.outcome}, {got.attempts} attempt(s), "
                     f"{got.extra!r}; predicted {job.expect.outcome}, {job.expect.attempts} attempt(s), "
                     f"{job.expect.extra!r} ({job.expect.rule})")
    lines.append(_verdict(result))
    return lines


class _RichDisplay:
    """A rich Live view that redraws a few times a second."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.console = console
        self.title = ""
        self.notes: List[str] = []
        self.live = Live(console=console, refresh_per_second=8, transient=False)

    def start(self, title: str) -> None:
        self.title = title
        self.live.start()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def update(self, s: Snapshot) -> None:
        self.live.update(self._render(s))

    def stop(self) -> None:
        self.live.stop()

    def _render(self, s: Snapshot) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        states = Table.grid(padding=(0, 3))
        for _ in range(6):
            states.add_column(justify="right")
        states.add_row("[bold]queued", "[bold]running", "[bold]backoff", "[bold green]completed",
                       "[bold red]failed", "[bold]total")
        states.add_row(str(s.queued), str(s.running), str(s.backoff), str(s.completed), str(s.failed),
                       str(s.total))
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=s.total, completed=s.completed + s.failed, width=50),
                    f"{s.completed + s.failed}/{s.total} done")
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        causes = ", ".join(f"{k} {v}" for k, v in sorted(s.retries.items(), key=lambda kv: -kv[1]))
        facts.add_row("retries", f"{sum(s.retries.values())}" + (f"  ({causes})" if causes else ""))
        facts.add_row("timeouts", _timeouts_text(s.timeouts))
        facts.add_row("workers", f"{s.workers} processes, {s.restarts} replaced after a crash")
        kinds = [k for k in KINDS if k in s.per_kind]
        half = (len(kinds) + 1) // 2
        columns = Table.grid(padding=(0, 4))
        columns.add_row(self._kinds_table(s, kinds[:half]), self._kinds_table(s, kinds[half:]))
        events = "\n".join(s.events[-4:]) or "-"
        body = Group(states, bar, facts, columns, Panel(events, title="recent events", title_align="left"))
        note = self.notes[-1] if self.notes else ""
        return Panel(body, title=f"actorflow demo - {s.elapsed:4.1f} s - {note}", subtitle=self.title)

    @staticmethod
    def _kinds_table(s: Snapshot, kinds: List[str]) -> Any:
        from rich.table import Table

        table = Table(box=None, padding=(0, 1), show_edge=False)
        table.add_column("kind")
        table.add_column("done", justify="right")
        table.add_column("failed", justify="right")
        for kind in kinds:
            total, finished, failed = s.per_kind[kind]
            table.add_row(KINDS[kind].label, f"{finished}/{total}", str(failed) if failed else "")
        return table

    def summary(self, result: DemoResult) -> None:
        from rich.table import Table

        table = Table(title="Summary", show_lines=False)
        for col, justify in (("kind", "left"), ("shows", "left"), ("runs", "right"), ("attempts", "right"),
                             ("retries", "right"), ("outcome", "left"), ("as predicted", "right")):
            table.add_column(col, justify=justify)
        for label, shows, runs, attempts, retries, outcome, good in _outcome_rows(result):
            n_good, n = good.split("/")
            style = "green" if n_good == n else "bold red"
            table.add_row(label, shows, str(runs), str(attempts), str(retries), outcome,
                          f"[{style}]{good}")
        self.console.print(table)
        lines = _closing_lines(result)
        for line in lines[:-1]:
            self.console.print(line, highlight=False)
        self.console.print(f"[bold {'green' if result.ok else 'red'}]{lines[-1]}")

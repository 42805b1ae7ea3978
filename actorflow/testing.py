"""Testing helpers: a time-skipping ``VirtualClock`` and Temporal's ``ActivityEnvironment``.

``VirtualClock`` implements the ``actorflow.clock.Clock`` protocol. Passed as
``ActorSystem(clock=VirtualClock())`` it drives every timer of the system (timeouts, retry
backoff, ``stop_grace``) and every time ``activity.info()`` reports. Virtual time advances at the
real rate, plus jumps:

* automatic skipping (on by default): whenever the system is idle -- no attempt runs or waits for
  a worker slot, no report is in flight, no actor has work left -- time jumps straight to the
  earliest pending deadline;
* ``advance(timedelta)`` jumps by hand, also while attempts run.

While an attempt runs nothing is skipped, so activity code keeps its real timeouts (a hung attempt
still times out, after its real start-to-close) and the worker processes' heartbeat throttle,
which uses real time, stays consistent with the system's view.

How a skip is decided (theory of operation)
-------------------------------------------
The ``TimerActor`` asks the clock ``deadline_to_sleep_time(next_deadline)`` on its own thread each
time before it waits. With automatic skipping the clock answers from that same thread:

1. It calls the idle probe that ``ActorSystem.start`` attached (``attach_idle_probe``). The probe
   is race-free on its own: it checks that the pool has nothing running, queued or in flight
   between its reader thread and a supervisor, that every inbox is empty, then has every
   supervisor finish the message it may be handling (a no-op ask, which also makes it flush any
   batched writes) and checks again.
2. If the system is idle it waits ``settle`` (1 ms) and probes again, counting every ``now()``
   read by another thread from the start of that second probe. A supervisor that begins handling a
   new message (a start or a cancel from the caller's thread) reads the clock first, so a count
   above zero means "someone is acting on the current time": no skip this round.
3. Only then does it move virtual time to the deadline it was asked about, which is the earliest
   deadline of the timer's map at that instant (the timer thread owns the map), and returns 0.
   Nothing pending can be earlier: a batch of new deadlines would sit in the timer's inbox, and
   the probe requires it to be empty.

When the system is busy the clock answers with at most ``poll`` (5 ms), so the timer looks again
soon after the last attempt ends.

``ActivityEnvironment`` runs one activity function in the calling process, without any actor
system, as ``temporalio.testing.ActivityEnvironment`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, List, Optional, Set

from . import clock as _clock
from .activity import ActivityCancellationDetails, Info, _Context, _current, _definition_of
from .exceptions import CancelledError

__all__ = ["ActivityEnvironment", "VirtualClock"]

log = logging.getLogger(__name__)

IdleProbe = Callable[[], bool]


class VirtualClock:
    """A clock whose time skips ahead while the ``ActorSystem`` it drives is idle.

    Args:
        auto_skip: Jump to the next deadline whenever the system is idle (default True). Without
            it, virtual time runs at the real rate and only ``advance()`` jumps, like Temporal's
            ``auto_time_skipping_disabled()``.
        start: The aware datetime that ``now() == 0`` maps to (``info()`` times); default: the
            wall-clock time when the clock is created.
        settle: How long the system must stay idle between two probes before a skip.
        poll: Longest real wait between two looks while the system is busy.

    ``now()`` reads virtual seconds since the clock was created (a float, like ``SystemClock``);
    it never goes backwards. One clock drives one running ``ActorSystem`` at a time.
    """

    def __init__(
        self,
        *,
        auto_skip: bool = True,
        start: Optional[datetime] = None,
        settle: timedelta = timedelta(milliseconds=1),
        poll: timedelta = timedelta(milliseconds=5),
    ) -> None:
        if start is None:
            start = _clock.wall_now()
        elif not isinstance(start, datetime) or start.tzinfo is None:
            raise ValueError(
                "start must be an aware datetime such as datetime(2030, 1, 1, tzinfo=timezone.utc), "
                f"got {start!r}"
            )
        for name, value in (("settle", settle), ("poll", poll)):
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise ValueError(f"{name} must be a positive timedelta, got {value!r}")
        self._start = start.astimezone(timezone.utc)
        self._start_timestamp = self._start.timestamp()
        self._settle = settle.total_seconds()
        self._poll = poll.total_seconds()
        self._lock = threading.Lock()
        self._offset = -_clock.monotonic()  # virtual = real monotonic + offset
        self._floor = 0.0  # the last reading handed out: time never goes backwards
        self._skipped = 0.0
        self._skips = 0
        self._auto_skip = bool(auto_skip)
        self._wakers: List[Callable[[], None]] = []
        self._probe: Optional[IdleProbe] = None
        self._prober: Optional[int] = None  # thread deciding a skip; reads by others are counted
        self._foreign_reads = 0

    # -- the Clock protocol ----------------------------------------------------------------

    def now(self) -> float:
        """Virtual seconds since the clock was created. Any thread."""
        with self._lock:
            t = _clock.monotonic() + self._offset
            if t < self._floor:
                t = self._floor
            else:
                self._floor = t
            if self._prober is not None and self._prober != threading.get_ident():
                self._foreign_reads += 1
            return t

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Real seconds to wait until ``deadline``; skips to it first if the system is idle.

        Runs on the timer actor's thread.
        """
        remaining = deadline - self.now()
        if remaining <= 0:
            return 0.0
        probe = self._probe
        if not self._auto_skip or probe is None:
            return remaining  # virtual time runs at the real rate between jumps
        if self._try_skip(probe, deadline):
            return 0.0
        return min(remaining, self._poll)

    def to_datetime(self, t: float) -> datetime:
        """The aware UTC datetime of the reading ``t``."""
        return self._start + timedelta(seconds=t)

    def to_timestamp(self, t: float) -> float:
        """The POSIX timestamp of the reading ``t``."""
        return self._start_timestamp + t

    def add_waker(self, waker: Callable[[], None]) -> None:
        """``waker`` runs after every jump (the timer actor puts a tick in its inbox)."""
        with self._lock:
            self._wakers.append(waker)

    def remove_waker(self, waker: Callable[[], None]) -> None:
        with self._lock:
            if waker in self._wakers:
                self._wakers.remove(waker)

    # -- the ActorSystem hook --------------------------------------------------------------

    def attach_idle_probe(self, probe: IdleProbe) -> None:
        """Called by ``ActorSystem.start``: ``probe()`` tells whether the system is idle."""
        with self._lock:
            if self._probe is not None and self._probe != probe:
                raise RuntimeError(
                    "this VirtualClock already drives a running ActorSystem; give each system its own "
                    "VirtualClock() (a skip must never pass another system's earlier deadline)"
                )
            self._probe = probe
        self._wake()

    def detach_idle_probe(self, probe: IdleProbe) -> None:
        """Called by ``ActorSystem`` at teardown."""
        with self._lock:
            if self._probe == probe:
                self._probe = None

    # -- manual control --------------------------------------------------------------------

    def advance(self, delta: timedelta) -> None:
        """Move virtual time forward by ``delta`` now, busy system or not; due timers fire at once.

        Raises:
            TypeError: ``delta`` is not a ``timedelta``.
            ValueError: ``delta`` is negative (time never goes backwards).
        """
        if not isinstance(delta, timedelta):
            raise TypeError(
                f"advance() takes a datetime.timedelta, e.g. timedelta(seconds=30); got {delta!r}"
            )
        if delta < timedelta(0):
            raise ValueError(f"advance() cannot go backwards: delta must be >= 0, got {delta}")
        seconds = delta.total_seconds()
        with self._lock:
            self._offset += seconds
            self._floor += seconds
            self._skipped += seconds
        self._wake()

    @property
    def auto_skip(self) -> bool:
        """Whether time jumps to the next deadline while the system is idle. Settable."""
        return self._auto_skip

    @auto_skip.setter
    def auto_skip(self, value: bool) -> None:
        self._auto_skip = bool(value)
        self._wake()  # the timer may be in a long real wait: let it ask again

    @contextlib.contextmanager
    def auto_skip_disabled(self) -> Iterator[None]:
        """``with clock.auto_skip_disabled():`` time runs at the real rate inside the block."""
        previous = self._auto_skip
        self.auto_skip = False
        try:
            yield
        finally:
            self.auto_skip = previous

    @property
    def skipped(self) -> timedelta:
        """Total virtual time added by jumps (automatic and ``advance()``)."""
        return timedelta(seconds=self._skipped)

    @property
    def skips(self) -> int:
        """How many automatic skips happened."""
        return self._skips

    def __repr__(self) -> str:
        return (f"<VirtualClock now={self.now():.3f}s skipped={self._skipped:.3f}s "
                f"auto_skip={self._auto_skip} attached={self._probe is not None}>")

    # -- internals -------------------------------------------------------------------------

    def _try_skip(self, probe: IdleProbe, deadline: float) -> bool:
        """Runs on the timer thread: jump to ``deadline`` if the system is and stays idle."""
        if not _idle(probe):
            return False
        _clock.sleep(self._settle)
        me = threading.get_ident()
        with self._lock:
            self._prober, self._foreign_reads = me, 0
        try:
            if not _idle(probe):
                return False
            with self._lock:
                if self._foreign_reads or self._probe is not probe or not self._auto_skip:
                    return False  # somebody acted on the current time meanwhile: look again later
                current = max(self._floor, _clock.monotonic() + self._offset)
                if deadline > current:
                    delta = deadline - current
                    self._offset += delta
                    self._skipped += delta
                    self._skips += 1
                self._floor = max(current, deadline)  # now() >= deadline despite float rounding
        finally:
            with self._lock:
                self._prober = None
        self._wake()
        return True

    def _wake(self) -> None:
        with self._lock:
            wakers = list(self._wakers)
        for waker in wakers:
            waker()


def _idle(probe: IdleProbe) -> bool:
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - a system being torn down is simply not idle
        log.debug("idle probe failed; not skipping", exc_info=True)
        return False


# ------------------------------------------------------------------------ ActivityEnvironment

_REQUESTED = ActivityCancellationDetails(cancel_requested=True)


class ActivityEnvironment:
    """Runs activity functions in the calling process with a made-up context, as Temporal's does.

    No actor system, no worker process: ``activity.info()``, ``heartbeat()``, ``is_cancelled()``,
    ``wait_for_cancelled()``, ``wait_for_cancelled_sync()`` and ``activity.logger`` work inside
    ``run``.

    Attributes:
        info: The ``Info`` that ``activity.info()`` returns; change it with
            ``dataclasses.replace(env.info, attempt=3)``. Read when ``run`` starts.
        on_heartbeat: Called with each ``activity.heartbeat(*details)`` call's details, unthrottled
            and on the activity's own thread.
    """

    def __init__(self) -> None:
        self.info: Info = ActivityEnvironment.default_info()
        self.on_heartbeat: Callable[..., None] = lambda *details: None
        self._lock = threading.Lock()
        self._cancelled: Optional[ActivityCancellationDetails] = None
        self._runs: Set[_Run] = set()

    @staticmethod
    def default_info() -> Info:
        """A fresh copy of the default ``Info`` (Temporal's values; attempt 1)."""
        utc_zero = datetime.fromtimestamp(0, tz=timezone.utc)
        return Info(
            activity_id="test",
            activity_type="unknown",
            attempt=1,
            scheduled_time=utc_zero,
            current_attempt_scheduled_time=utc_zero,
            started_time=utc_zero,
            heartbeat_details=[],
            heartbeat_timeout=None,
            schedule_to_close_timeout=timedelta(seconds=1),
            start_to_close_timeout=timedelta(seconds=1),
            task_queue="test",
            retry_policy=None,
            task_token=b"test",
        )

    def cancel(
        self,
        cancellation_details: ActivityCancellationDetails = _REQUESTED,
    ) -> None:
        """Cancel the running activity, and any that ``run`` starts later. Only the first call counts.

        An async activity's task is cancelled (``asyncio.CancelledError`` at its next ``await``);
        a sync activity gets ``actorflow.exceptions.CancelledError`` raised in its thread. Both see
        ``is_cancelled()`` turn True and ``cancellation_details()`` return ``cancellation_details``.
        Callable from any thread, and from inside the activity (e.g. from ``on_heartbeat``).
        """
        with self._lock:
            if self._cancelled is not None:
                return
            self._cancelled = cancellation_details
            runs = list(self._runs)
        for run in runs:
            run.cancel(cancellation_details)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in an activity context.

        A sync function runs in the calling thread (as in Temporal) and its result is returned.
        For an async function this returns an awaitable; await it on your event loop.
        """
        return _Run(self, fn).run(args, kwargs)

    def _register(self, run: "_Run") -> Optional[ActivityCancellationDetails]:
        with self._lock:
            self._runs.add(run)
            return self._cancelled

    def _unregister(self, run: "_Run") -> None:
        with self._lock:
            self._runs.discard(run)


class _Run:
    """One ``ActivityEnvironment.run`` call."""

    def __init__(self, env: ActivityEnvironment, fn: Callable[..., Any]) -> None:
        self.env = env
        self.fn = fn
        definition = _definition_of(fn)
        if definition is not None:
            self.is_async = definition.is_async
        else:
            self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
                getattr(fn, "__call__", None)
            )
        self.lock = threading.Lock()
        self.ctx: Optional[_Context] = None
        self.thread_id: Optional[int] = None
        self.fn_running = False
        self.injected = False  # a CancelledError was injected into the activity's thread (D4)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.task: Optional[asyncio.Future] = None

    def run(self, args: tuple, kwargs: dict) -> Any:
        if self.is_async:
            return self._run_async(args, kwargs)
        return self._run_sync(args, kwargs)

    def _heartbeat(self, details: tuple) -> None:
        self.env.on_heartbeat(*details)

    @contextlib.contextmanager
    def _registered(self, ctx: _Context) -> Iterator[None]:
        self.ctx = ctx
        already = self.env._register(self)
        try:
            if already is not None:
                ctx.mark_cancelled("requested", already)  # cancelled before it started: it starts cancelled (Temporal)
            yield
        finally:
            self.env._unregister(self)

    def _run_sync(self, args: tuple, kwargs: dict) -> Any:
        ctx = _Context(self.env.info, self._heartbeat, None, False)
        with self._registered(ctx):
            token = _current.set(ctx)
            try:
                with self.lock:
                    self.thread_id = threading.get_ident()
                    self.fn_running = True
                try:
                    return self.fn(*args, **kwargs)
                finally:
                    with self.lock:
                        self.fn_running = False
                        if self.injected:  # not surfaced yet: withdraw it (a NULL exception), so
                            self.injected = False  # it cannot escape into the caller's code
                            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id), None)
            finally:
                _current.reset(token)

    async def _run_async(self, args: tuple, kwargs: dict) -> Any:
        self.loop = asyncio.get_running_loop()
        self.thread_id = threading.get_ident()
        ctx = _Context(self.env.info, self._heartbeat, self.loop, True)
        with self._registered(ctx):
            token = _current.set(ctx)
            try:
                self.task = asyncio.ensure_future(self.fn(*args, **kwargs))  # copies the context
            finally:
                _current.reset(token)
            if ctx.cancel_reason is not None:
                self.task.cancel(msg="Activity cancelled")
            return await self.task

    def cancel(self, details: ActivityCancellationDetails) -> None:
        """Deliver the cancellation (R64). Any thread."""
        if self.is_async:
            loop = self.loop
            if loop is None:
                return  # not started: it will start cancelled
            if threading.get_ident() == self.thread_id:
                self._cancel_async(details)
            else:
                loop.call_soon_threadsafe(self._cancel_async, details)
            return
        ctx = self.ctx
        if ctx is None or not ctx.mark_cancelled("requested", details):
            return
        with self.lock:
            if self.fn_running and self.thread_id is not None:
                self.injected = True
                # May surface right here when called from the activity's own thread (on_heartbeat):
                # it then propagates out of heartbeat() into the activity, as in Temporal.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread_id), ctypes.py_object(CancelledError)
                )

    def _cancel_async(self, details: ActivityCancellationDetails) -> None:
        """Runs on the activity's event loop."""
        ctx = self.ctx
        if ctx is None or not ctx.mark_cancelled("requested", details):
            return
        task = self.task
        if task is not None and not task.done():
            task.cancel(msg="Activity cancelled")


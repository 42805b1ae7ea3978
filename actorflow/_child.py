"""The worker actor: runs in each worker process (spawned, never forked).

Exactly one thread at a time reads the parent's pipe: the *reader*. Async activities run as
tasks on the process's event loop thread; sync activities run on activity threads. Which of them
reads follows the work (a leader/follower scheme), so that a RUN is started by the thread that
read it, with no thread hop in the worker:

- while sync activities arrive, an activity thread blocks on the pipe. When it reads a sync RUN
  it runs the attempt itself and keeps the reader role: the pipe goes into an epoll set that the
  loop watches, and only if a message arrives before the attempt ends does the loop take the
  role over. A quick attempt thus costs no thread wake-up in the worker at all;
- while async activities arrive, the event loop reads the pipe (``loop.add_reader``) and starts
  the task at once; a sync RUN is handed to an idle activity thread, together with the reader
  role if it was the batch's last RUN.

Reports go back from the thread where the attempt ends. Cancellation arrives as a message: an
async activity's task is cancelled (``asyncio.CancelledError`` at its next await), a sync
activity gets ``actorflow.exceptions.CancelledError`` raised in its thread (R64, D4).

When the parent dies, even by SIGKILL, the pipe reaches EOF and the worker exits at once (D6),
taking its process group (everything activity code started, see _launch.py) with it.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import pickle
import queue
import select
import signal
import threading
import traceback
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Optional, Tuple

from . import _serde
from ._messages import CANCEL, COMPLETED, EXIT, FAILED, HEARTBEAT, READY, RUN
from ._execution import WORKER_SHUTDOWN_MESSAGE
from .activity import Info, _Context, _current, _definition_of
from .common import RetryPolicy
from .exceptions import ApplicationError, CancelledError

__all__ = ["worker_main"]

_NOTHING = object()
_BY_VALUE_CACHE = 256
_LEAD = object()  # a job for an idle activity thread: "become the pipe's reader"
_LOOP = "loop"  # the reader role's owner when the event loop reads
_EX_SOFTWARE = 70  # exit status of a worker that hit an internal error (sysexits.h)
_IMPORT_HINT = (
    " (a worker imports an activity of an importable module by name, with the program's sys.path"
    " as it was when the system started: make that module importable from there, or define the"
    " activity in the main module, which travels by value)"
)


def worker_main(conn: Any, index: int, registry: Dict[str, bytes], max_concurrent: int) -> None:
    """Entry point of a worker process. Runs in the worker process."""
    _WorkerRuntime(conn, registry, max_concurrent).run()


def _owner_gone() -> None:
    """The owner died (its pipe end closed): D6, nothing may outlive it. SIGKILL the worker's
    process group, the worker included, so no process activity code started is orphaned."""
    if os.getpgrp() == os.getpid():  # never the owner's group, should the worker not lead one
        os.killpg(0, signal.SIGKILL)
    os._exit(0)


_policies: Dict[tuple, RetryPolicy] = {}


def _info(fields: tuple, details: list) -> Info:
    """Rebuild ``Info`` from the RUN message's plain fields (see _messages.py)."""
    (activity_id, activity_type, attempt, scheduled, attempt_scheduled, started, _,
     (heartbeat, schedule_to_close, start_to_close), task_queue, policy_fields) = fields
    policy = _policies.get(policy_fields)
    if policy is None:
        policy = _policies[policy_fields] = RetryPolicy.from_fields(policy_fields)
    return Info(
        activity_id, activity_type, attempt, _utc(scheduled), _utc(attempt_scheduled), _utc(started),
        details, _delta(heartbeat), _delta(schedule_to_close), _delta(start_to_close), task_queue, policy,
    )


def _is_async(fn: Callable[..., Any]) -> bool:
    definition = _definition_of(fn)
    return definition.is_async if definition is not None else asyncio.iscoroutinefunction(fn)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


def _delta(seconds: Optional[float]) -> Optional[timedelta]:
    return None if seconds is None else timedelta(seconds=seconds)


class _Heartbeater:
    """Per-attempt heartbeat throttle (R49-R53): first call immediate, then latest-wins."""

    __slots__ = ("_runtime", "_attempt", "_interval", "_lock", "_throttled", "_pending", "_latest",
                 "_finished")

    def __init__(self, runtime: "_WorkerRuntime", attempt: "_Attempt", interval: float) -> None:
        self._runtime = runtime
        self._attempt = attempt
        self._interval = interval
        self._lock = threading.Lock()
        self._throttled = False
        self._pending: Any = _NOTHING
        self._latest: Any = _NOTHING  # the details of the latest call, sent or not (R55)
        self._finished = False

    def __call__(self, details: Tuple[Any, ...]) -> None:
        """Runs on the activity's thread (or the loop thread for async activities)."""
        with self._lock:
            if self._finished:
                return  # R47: a heartbeat after the attempt finished is ignored
            self._latest = details
            if self._throttled:
                self._pending = details  # R50.2: latest wins
                return
            self._throttled = True
        self._send(details)  # R50.1: nothing sent recently -> send now
        self._runtime.call_later_threadsafe(self._interval, self._elapsed)

    def _send(self, details: Tuple[Any, ...]) -> None:
        try:
            data = _serde.dumps(tuple(details))
        except Exception as exc:  # noqa: BLE001 - R48: the attempt fails with the encoding error
            self._runtime.heartbeat_encode_failed(self._attempt, exc)
            return
        a = self._attempt
        self._runtime.send((HEARTBEAT, a.exec_id, a.number, data))

    def _elapsed(self) -> None:
        """Runs on the loop thread when a throttle interval ends (R50.3)."""
        with self._lock:
            pending, self._pending = self._pending, _NOTHING
            if pending is _NOTHING or self._finished:
                self._throttled = False  # nothing pending: drop the state
                return
        self._send(pending)
        self._runtime.loop.call_later(self._interval, self._elapsed)

    def finish(self) -> Any:
        """The attempt ended: stop sending; return the latest call's details, or _NOTHING if none.

        A failure report carries them (R55) even when they were already sent: a send made on the
        loop thread may still sit in the outbox (or a pipe write race the failure report, for a
        sync activity), and a heartbeat that arrives after the failure is rejected (R4).
        """
        with self._lock:
            self._finished = True
            self._pending = _NOTHING
        return self._latest


class _Attempt:
    __slots__ = ("exec_id", "number", "ctx", "is_async", "task", "thread_id", "fn_running", "injected",
                 "lock", "heartbeater", "encode_failure", "reported")

    def __init__(self, exec_id: int, number: int, is_async: bool) -> None:
        self.exec_id = exec_id
        self.number = number
        self.is_async = is_async
        self.ctx: Optional[_Context] = None
        self.task: Optional[asyncio.Task] = None
        self.thread_id: Optional[int] = None
        self.fn_running = False
        self.injected = False  # a CancelledError was injected into the activity's thread (D4)
        self.lock = threading.Lock()
        self.heartbeater: Optional[_Heartbeater] = None
        self.encode_failure: Optional[_serde.FailureData] = None
        self.reported = False


class _WorkerRuntime:
    def __init__(self, conn: Any, registry: Dict[str, bytes], max_concurrent: int) -> None:
        self.conn = conn
        self._fd = conn.fileno()
        self._registry_bytes = registry
        self._registered: Dict[str, Callable[..., Any]] = {}
        self._by_value: "OrderedDict[bytes, Callable[..., Any]]" = OrderedDict()
        self._attempts: Dict[Tuple[int, int], _Attempt] = {}
        self._send_lock = threading.Lock()
        self._outbox: list = []
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._loop_thread = threading.get_ident()
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)
        # Activity threads: at most one per concurrent attempt plus the reader (the parent never
        # sends more than max_concurrent RUNs at once). Idle ones wait on _jobs for an attempt
        # or _LEAD; _idle counts the waiting threads that nobody has claimed yet.
        self._jobs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._idle = 0
        self._threads = 0
        self._max_threads = max_concurrent + 1
        self._threads_lock = threading.Lock()
        # The reader role. _owner is the reading activity thread's ident, _LOOP, or None while
        # the role is on its way to an idle thread. _open: the owning thread runs a sync attempt
        # and the pipe sits in _watch, an epoll set that the loop watches, so that the loop
        # takes the role over only if a message arrives meanwhile (no thread wakes otherwise).
        self._role_lock = threading.Lock()
        self._owner: Any = None
        self._open = False
        self._watch = select.epoll() if hasattr(select, "epoll") else None
        self._watch_poller = select.poll()  # the loop's own check that a message is there
        self._watch_poller.register(self._fd, select.POLLIN)

    # -- plumbing ---------------------------------------------------------------------------

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        if self._watch is not None:
            self.loop.add_reader(self._watch.fileno(), self._on_watch)
        if self._warm_up():
            self._owner = _LOOP
            self.loop.add_reader(self._fd, self._on_readable)
        else:
            self._start_thread("lead")
        self._start_thread("idle")  # so that a first handover does not start a thread
        self._write([(READY, os.getpid())])
        self.loop.run_forever()
        os._exit(0)

    def _warm_up(self) -> bool:
        """Before READY: import the registered activities, so a first attempt does not pay for it
        inside its start-to-close budget. True if they are all async (the loop reads first)."""
        kinds = set()
        for name in self._registry_bytes:
            try:
                fn = self._function(name, None)
            except Exception:  # noqa: BLE001 - reported by the attempt that needs it (R44)
                continue
            kinds.add(_is_async(fn))
        return kinds == {True}

    def _start_thread(self, mode: str) -> None:
        """Start an activity thread that begins by reading ("lead"), by waiting as a counted idle
        thread ("idle"), or by taking the job it was started for ("take")."""
        with self._threads_lock:
            if mode == "take" and self._threads >= self._max_threads:
                return  # enough threads: a busy one takes the job when it finishes
            self._threads += 1
            number = self._threads
            if mode == "idle":
                self._idle += 1
        threading.Thread(target=self._activity_thread, args=(mode,), daemon=True,
                         name=f"actorflow-activity-{number}").start()

    def _dispatch(self, job: Any) -> None:
        """Give an attempt (or the reader role) to an idle activity thread, starting one if none."""
        with self._threads_lock:
            claimed = self._idle > 0
            if claimed:
                self._idle -= 1
        if not claimed:
            self._start_thread("take")
        self._jobs.put(job)

    def _go_idle(self) -> None:
        with self._threads_lock:
            self._idle += 1

    def _activity_thread(self, mode: str) -> None:
        try:
            self._serve(mode)
        except BaseException:  # noqa: BLE001 - an actorflow bug: losing the reader would hang
            traceback.print_exc()  # the worker, so crash it; the pool reports WorkerCrashed (D1)
            os._exit(_EX_SOFTWARE)

    def _serve(self, mode: str) -> None:
        me = threading.get_ident()
        lead = mode == "lead"
        if lead:
            with self._role_lock:
                self._owner = me
        while True:
            if lead:
                job = self._read_as_thread(me)
                if job is None:  # the loop reads now, and nothing is for this thread to run
                    lead = False
                    self._go_idle()
                    continue
                self._run_sync(*job)
                lead = self._close_watch(me)
                if not lead:
                    self._go_idle()
                continue
            job = self._jobs.get()
            if job is _LEAD:
                with self._role_lock:
                    self._owner = me
                lead = True
                continue
            self._run_sync(*job)
            self._go_idle()

    def _open_watch(self) -> bool:
        """The reading thread is about to run a sync attempt: keep the role, and let the
        loop take it over if a message arrives meanwhile. False where that is not possible."""
        if self._watch is None:
            return False
        with self._role_lock:
            self._open = True
            self._watch.register(self._fd, select.EPOLLIN)
        return True

    def _close_watch(self, me: int) -> bool:
        """The attempt ended: True if ``me`` still holds the role (reads on), False if the loop
        took it over meanwhile."""
        with self._role_lock:
            if self._owner != me or not self._open:
                return False
            self._open = False
            self._watch.unregister(self._fd)  # type: ignore[union-attr]
            return True

    def _on_watch(self) -> None:
        """Runs on the loop: a message arrived while the reading thread runs an attempt."""
        with self._role_lock:
            if not self._open or not self._watch_poller.poll(0):
                return  # the thread took the role back first (and may have opened it again)
            self._open = False
            self._watch.unregister(self._fd)  # type: ignore[union-attr]
            self._owner = _LOOP
        self.loop.add_reader(self._fd, self._on_readable)
        self._on_readable()

    def _read_batch(self) -> list:
        """Read everything the parent has sent so far (blocking for the first message)."""
        try:
            batch = pickle.loads(self.conn.recv_bytes())
            while self._poller.poll(0):  # Connection.poll() would build a selector per call
                batch.extend(pickle.loads(self.conn.recv_bytes()))
        except (EOFError, OSError):
            _owner_gone()
        return batch

    def _take_batch(self, on_loop: bool) -> Tuple[list, list, Optional[bool]]:
        """Read a batch and act on it where this thread may. Returns the sync attempts to run,
        what only the loop may do (when not on it: start async attempts, cancel their tasks),
        and whether the batch's last RUN was async (None if it had no RUN)."""
        sync_jobs: list = []
        for_loop: list = []
        last_run_async = None
        for message in self._read_batch():
            tag = message[0]
            if tag == RUN:
                prepared = self._prepare(*message[1:])
                if prepared is None:
                    continue
                last_run_async = prepared[0].is_async
                if not last_run_async:
                    sync_jobs.append(prepared)
                elif on_loop:
                    self._start_async(*prepared)
                else:
                    for_loop.append(prepared)
            elif tag == CANCEL:
                attempt = self._attempts.get((message[1], message[2]))
                if not on_loop and attempt is not None and attempt.is_async:
                    for_loop.append(message)  # an asyncio task is cancelled on its loop
                else:
                    self._cancel((message[1], message[2]), message[3])
            elif tag == EXIT:
                self._exit()
            else:
                raise TypeError(f"worker cannot handle message {message!r}")
        return sync_jobs, for_loop, last_run_async

    def _read_as_thread(self, me: int) -> Optional[tuple]:
        """Read on activity thread ``me`` until a sync attempt is for it to run (returns its
        ``_run_sync`` arguments; the role stays with ``me`` behind an open watch, or went on
        to the loop or another thread), or until async work arrives (the loop reads next;
        returns None unless a sync attempt came in the same batch)."""
        while True:
            sync_jobs, for_loop, last_run_async = self._take_batch(on_loop=False)
            if last_run_async:
                with self._role_lock:
                    self._owner = _LOOP
                self.loop.call_soon_threadsafe(self._on_loop_batch, for_loop, True)
            elif for_loop:
                self.loop.call_soon_threadsafe(self._on_loop_batch, for_loop, False)
            mine = sync_jobs.pop() if sync_jobs else None
            for job in sync_jobs:
                self._dispatch(job)
            if last_run_async:
                return mine
            if mine is not None:
                if not self._open_watch():  # no epoll here: hand the role on before running
                    with self._role_lock:
                        self._owner = None
                    self._dispatch(_LEAD)
                return mine

    def _on_loop_batch(self, items: list, lead: bool) -> None:
        """Runs on the loop thread: start async attempts and cancel tasks that a reading activity
        thread passed over, in the order they arrived; then read the pipe if told to."""
        for item in items:
            if isinstance(item[0], _Attempt):
                self._start_async(*item)
            else:
                self._cancel((item[1], item[2]), item[3])
        if lead:
            self.loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        """The loop holds the reader role: handle a batch; hand the role to an activity thread
        if the batch's last RUN was sync."""
        sync_jobs, _, last_run_async = self._take_batch(on_loop=True)
        if last_run_async is False:
            self.loop.remove_reader(self._fd)
            with self._role_lock:
                self._owner = None
            self._dispatch(_LEAD)
        for job in sync_jobs:
            self._dispatch(job)

    def _exit(self) -> None:
        self._flush()
        os._exit(0)

    def _write(self, messages: list) -> None:
        data = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self._send_lock:
                self.conn.send_bytes(data)
        except (OSError, EOFError):
            _owner_gone()

    def send(self, message: Tuple[Any, ...]) -> None:
        """Queue a report; from the loop thread it is batched until the loop's next turn."""
        if threading.get_ident() == self._loop_thread:
            if not self._outbox:
                self.loop.call_soon(self._flush)
            self._outbox.append(message)
        else:
            self._write([message])

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        if outbox:
            self._write(outbox)

    def call_later_threadsafe(self, delay: float, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self._loop_thread:
            self.loop.call_later(delay, fn)
        else:
            self.loop.call_soon_threadsafe(self.loop.call_later, delay, fn)

    # -- messages ---------------------------------------------------------------------------

    def _function(self, name: str, fn_bytes: Optional[bytes]) -> Callable[..., Any]:
        if fn_bytes is None:
            fn = self._registered.get(name)
            if fn is None:
                fn = self._registered[name] = _serde.loads(self._registry_bytes[name])
            return fn
        fn = self._by_value.get(fn_bytes)
        if fn is None:
            fn = self._by_value[fn_bytes] = _serde.loads(fn_bytes)
            if len(self._by_value) > _BY_VALUE_CACHE:
                self._by_value.popitem(last=False)
        return fn

    def _prepare(self, exec_id: int, number: int, name: str, fn_bytes: Optional[bytes],
                 args_bytes: bytes, info_fields: tuple, throttle: float) -> Optional[tuple]:
        """Decode a RUN and register its attempt; None if it failed early (already reported)."""
        try:
            fn = self._function(name, fn_bytes)
        except Exception as exc:  # noqa: BLE001
            what = "Failed loading activity function"
            if isinstance(exc, (ImportError, AttributeError)):
                what += _IMPORT_HINT
            self._report_early_failure(exec_id, number, exc, what)
            return None
        attempt = _Attempt(exec_id, number, _is_async(fn))
        try:
            args = _serde.loads(args_bytes)
        except Exception as exc:  # noqa: BLE001 - R44: retryable
            self._report_early_failure(exec_id, number, exc, "Failed decoding arguments")
            return None
        try:
            details_bytes = info_fields[6]
            details = list(_serde.loads(details_bytes)) if details_bytes is not None else []
        except Exception as exc:  # noqa: BLE001 - R44: not retryable, every attempt would see them
            self._report_early_failure(exec_id, number, exc, "Failed decoding heartbeat details",
                                       non_retryable=True)
            return None
        attempt.heartbeater = _Heartbeater(self, attempt, throttle)
        # Info is built on the first activity.info(): most attempts never ask.
        attempt.ctx = _Context(functools.partial(_info, info_fields, details), attempt.heartbeater,
                               self.loop, attempt.is_async)
        self._attempts[(exec_id, number)] = attempt
        return attempt, fn, args

    def _start_async(self, attempt: "_Attempt", fn: Callable[..., Any], args: tuple) -> None:
        """Runs on the loop thread."""
        attempt.task = self.loop.create_task(self._run_async(attempt, fn, args))
        attempt.task.add_done_callback(lambda task: self._async_done(attempt, task))

    def _report_early_failure(self, exec_id: int, number: int, exc: Exception, message: str,
                              non_retryable: bool = False) -> None:
        data = _serde.failure_to_data(exc)
        data = data._replace(message=f"{message}: {data.message}", cause=None,
                             non_retryable=data.non_retryable or non_retryable)
        self.send((FAILED, exec_id, number, data, None))

    async def _run_async(self, attempt: _Attempt, fn: Callable[..., Any], args: tuple) -> Any:
        _current.set(attempt.ctx)
        return await fn(*args)

    def _async_done(self, attempt: _Attempt, task: asyncio.Task) -> None:
        if task.cancelled():
            self._finish(attempt, False, asyncio.CancelledError())
            return
        exc = task.exception()
        if exc is not None:
            self._finish(attempt, False, exc)
        else:
            self._finish(attempt, True, task.result())

    def _run_sync(self, attempt: _Attempt, fn: Callable[..., Any], args: tuple) -> None:
        """Runs on a worker thread. An injected CancelledError may surface anywhere in the try.

        ``_cancel`` injects only while ``fn_running`` is set, under ``attempt.lock``; both ends of
        that window are decided under the same lock here, and an injection that has not surfaced
        by the time ``fn`` returns is withdrawn, so it can never escape the try and cost the
        attempt its report (R64: injection happens only while the activity function runs).
        """
        ok, value = False, None
        token = _current.set(attempt.ctx)
        try:
            try:
                with attempt.lock:
                    attempt.thread_id = threading.get_ident()
                    cancelled_already = attempt.ctx.cancel_reason is not None
                    attempt.fn_running = not cancelled_already
                if cancelled_already:
                    raise CancelledError()  # cancelled while it waited for a thread (R84)
                try:
                    value = fn(*args)
                    ok = True
                finally:
                    with attempt.lock:
                        attempt.fn_running = False
                        if attempt.injected:  # a NULL exception withdraws one still pending
                            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                                ctypes.c_ulong(attempt.thread_id), None)
            except BaseException as exc:  # noqa: BLE001 - every outcome is reported
                ok, value = False, exc
        finally:
            _current.reset(token)
        self._finish(attempt, ok, value)

    def _cancel(self, key: Tuple[int, int], reason: str) -> None:
        """Runs on the loop thread: deliver a cancellation to a running attempt (R64)."""
        attempt = self._attempts.get(key)
        if attempt is None or attempt.ctx is None or not attempt.ctx.mark_cancelled(reason):
            return
        if attempt.is_async:
            if attempt.task is not None:
                attempt.task.cancel(msg="Activity cancelled")
            return
        with attempt.lock:
            if attempt.fn_running and attempt.thread_id is not None:
                attempt.injected = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(attempt.thread_id), ctypes.py_object(CancelledError)
                )

    def heartbeat_encode_failed(self, attempt: _Attempt, exc: Exception) -> None:
        """R48: details that cannot be pickled cancel the attempt, which fails with that error."""
        attempt.encode_failure = _serde.encode_failure_of(exc, "heartbeat details")
        key = (attempt.exec_id, attempt.number)
        if threading.get_ident() == self._loop_thread:
            self._cancel(key, "heartbeat_error")
        else:
            self.loop.call_soon_threadsafe(self._cancel, key, "heartbeat_error")

    # -- outcomes ---------------------------------------------------------------------------

    def _finish(self, attempt: _Attempt, ok: bool, value: Any) -> None:
        """Report how the attempt ended. Runs on the loop thread or the activity's thread."""
        if attempt.reported:
            return
        attempt.reported = True
        self._attempts.pop((attempt.exec_id, attempt.number), None)
        latest = attempt.heartbeater.finish()
        head = (attempt.exec_id, attempt.number)
        if attempt.encode_failure is not None:
            self.send((FAILED, *head, attempt.encode_failure, None))
            return
        if ok:
            try:
                self.send((COMPLETED, *head, _serde.dumps(value)))
            except Exception as exc:  # noqa: BLE001 - API.md: an unpicklable result fails the attempt
                self.send((FAILED, *head, _serde.encode_failure_of(exc, "the activity's result"), None))
            return
        failure = self._failure_data(attempt, value)
        details = None
        if latest is not _NOTHING:
            try:
                details = _serde.dumps(tuple(latest))  # R55: the latest details travel along
            except Exception as exc:  # noqa: BLE001
                failure = _serde.encode_failure_of(exc, "heartbeat details")
        self.send((FAILED, *head, failure, details))

    def _failure_data(self, attempt: _Attempt, exc: BaseException) -> _serde.FailureData:
        reason = attempt.ctx.cancel_reason
        is_cancellation = isinstance(exc, (asyncio.CancelledError, CancelledError))
        if is_cancellation and reason == "shutdown":
            return _serde.failure_to_data(
                ApplicationError(WORKER_SHUTDOWN_MESSAGE, type="WorkerShutdown")  # R85
            )
        if is_cancellation and reason is not None:
            return _serde.failure_to_data(CancelledError("Cancelled"))
        return _serde.failure_to_data(exc)  # R67: a self-raised asyncio.CancelledError included

"""The worker actor: runs in each worker process (spawned, never forked).

One event loop thread receives messages from the parent's pipe (``loop.add_reader``, so no extra
thread hop), runs async activities as tasks on that loop and sync activities on a thread pool,
and sends started/heartbeat/completed/failed reports back. Cancellation arrives as a message:
an async activity's task is cancelled (``asyncio.CancelledError`` at its next await), a sync
activity gets ``actorflow.exceptions.CancelledError`` raised in its thread (R64, D4).

When the parent dies, even by SIGKILL, the pipe reaches EOF and the worker exits at once (D6).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pickle
import select
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
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


def worker_main(conn: Any, index: int, registry: Dict[str, bytes], max_concurrent: int) -> None:
    """Entry point of a worker process. Runs in the worker process."""
    _WorkerRuntime(conn, registry, max_concurrent).run()


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
        self._registry_bytes = registry
        self._registered: Dict[str, Callable[..., Any]] = {}
        self._by_value: "OrderedDict[bytes, Callable[..., Any]]" = OrderedDict()
        self._max_concurrent = max_concurrent
        self._attempts: Dict[Tuple[int, int], _Attempt] = {}
        self._send_lock = threading.Lock()
        self._outbox: list = []
        self._pool: Optional[ThreadPoolExecutor] = None
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._loop_thread = threading.get_ident()

    # -- plumbing ---------------------------------------------------------------------------

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._warm_up()
        self._poller = select.poll()
        self._poller.register(self.conn.fileno(), select.POLLIN)
        self.loop.add_reader(self.conn.fileno(), self._on_readable)
        self._write([(READY, os.getpid())])
        self.loop.run_forever()
        os._exit(0)

    def _warm_up(self) -> None:
        """Before READY: import the registered activities and start one activity thread, so a
        first attempt does not pay for them inside its start-to-close budget."""
        for name in self._registry_bytes:
            try:
                self._function(name, None)
            except Exception:  # noqa: BLE001 - reported by the attempt that needs it (R44)
                pass
        self._pool = ThreadPoolExecutor(self._max_concurrent, thread_name_prefix="actorflow-activity")
        self._pool.submit(lambda: None).result()

    def _on_readable(self) -> None:
        try:
            while self._poller.poll(0):  # Connection.poll() would build a selector per call
                for message in pickle.loads(self.conn.recv_bytes()):
                    self._handle(message)
        except (EOFError, OSError):
            os._exit(0)  # the parent is gone (D6)

    def _write(self, messages: list) -> None:
        data = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self._send_lock:
                self.conn.send_bytes(data)
        except (OSError, EOFError):
            os._exit(0)

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

    def _handle(self, message: Tuple[Any, ...]) -> None:
        tag = message[0]
        if tag == RUN:
            self._run(*message[1:])
        elif tag == CANCEL:
            self._cancel((message[1], message[2]), message[3])
        elif tag == EXIT:
            self._flush()
            os._exit(0)
        else:
            raise TypeError(f"worker cannot handle message {message!r}")

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

    def _run(self, exec_id: int, number: int, name: str, fn_bytes: Optional[bytes],
             args_bytes: bytes, info_fields: tuple, throttle: float) -> None:
        try:
            fn = self._function(name, fn_bytes)
        except Exception as exc:  # noqa: BLE001
            self._report_early_failure(exec_id, number, exc, "Failed loading activity function")
            return
        definition = _definition_of(fn)
        is_async = definition.is_async if definition is not None else asyncio.iscoroutinefunction(fn)
        attempt = _Attempt(exec_id, number, is_async)
        try:
            args = _serde.loads(args_bytes)
        except Exception as exc:  # noqa: BLE001 - R44: retryable
            self._report_early_failure(exec_id, number, exc, "Failed decoding arguments")
            return
        try:
            details_bytes = info_fields[6]
            details = list(_serde.loads(details_bytes)) if details_bytes is not None else []
        except Exception as exc:  # noqa: BLE001 - R44: not retryable, every attempt would see them
            self._report_early_failure(exec_id, number, exc, "Failed decoding heartbeat details",
                                       non_retryable=True)
            return
        info = _info(info_fields, details)
        attempt.heartbeater = _Heartbeater(self, attempt, throttle)
        attempt.ctx = _Context(info, attempt.heartbeater, self.loop, is_async)
        self._attempts[(exec_id, number)] = attempt
        if is_async:
            attempt.task = self.loop.create_task(self._run_async(attempt, fn, args))
            attempt.task.add_done_callback(lambda task: self._async_done(attempt, task))
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_concurrent, thread_name_prefix="actorflow-activity")
            self._pool.submit(self._run_sync, attempt, fn, args)

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

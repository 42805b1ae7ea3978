"""The API used inside an activity, mirroring ``temporalio.activity``.

``@activity.defn`` marks a function as an activity. While an attempt runs (in a worker process, or
in the test's own process under ``actorflow.testing.ActivityEnvironment``) the module functions
below read the attempt's context from a ``contextvars.ContextVar``; outside one they raise
``RuntimeError("Not in activity context")`` (R47, R71).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, MutableMapping, Optional, Sequence, Tuple, TypeVar, overload

from .common import RetryPolicy

__all__ = [
    "defn",
    "info",
    "Info",
    "heartbeat",
    "is_cancelled",
    "wait_for_cancelled",
    "wait_for_cancelled_sync",
    "in_activity",
    "cancellation_details",
    "ActivityCancellationDetails",
    "logger",
]

F = TypeVar("F", bound=Callable[..., Any])

_DEFINITION_ATTR = "__actorflow_activity_definition__"


@dataclass(frozen=True)
class _Definition:
    name: str
    fn: Callable[..., Any]
    is_async: bool


@overload
def defn(fn: F) -> F: ...


@overload
def defn(*, name: Optional[str] = None) -> Callable[[F], F]: ...


def defn(fn: Optional[F] = None, *, name: Optional[str] = None) -> Any:
    """Mark a function as an activity; ``name`` defaults to its ``__name__`` (R92).

    An ``async def`` runs on the worker's event loop; a plain ``def`` runs on one of the worker's
    threads and can be cancelled (D4).
    """

    def decorate(f: F) -> F:
        if not callable(f):
            raise TypeError(f"@activity.defn needs a function, got {f!r}")
        if getattr(f, _DEFINITION_ATTR, None) is not None and _DEFINITION_ATTR in getattr(f, "__dict__", {}):
            raise ValueError("Function already contains activity definition")
        activity_name = name if name is not None else getattr(f, "__name__", None)
        if not isinstance(activity_name, str) or not activity_name:
            raise ValueError(
                f"@activity.defn could not name {f!r}: pass name='...' to the decorator"
            )
        for param in inspect.signature(f).parameters.values():
            if param.kind is inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(
                    f"Activity {activity_name!r} has keyword-only parameter {param.name!r}; "
                    "activities take positional arguments only (R88): make it positional"
                )
        definition = _Definition(activity_name, f, inspect.iscoroutinefunction(f))
        setattr(f, _DEFINITION_ATTR, definition)
        return f

    if fn is not None:
        return decorate(fn)
    return decorate


def _definition_of(fn: Any) -> Optional[_Definition]:
    return getattr(fn, _DEFINITION_ATTR, None)


@dataclass(frozen=True)
class Info:
    """What an attempt knows about itself (R72). Do not construct directly outside tests."""

    activity_id: str
    activity_type: str
    attempt: int
    scheduled_time: datetime
    current_attempt_scheduled_time: datetime
    started_time: datetime
    heartbeat_details: Sequence[Any]
    heartbeat_timeout: Optional[timedelta]
    schedule_to_close_timeout: Optional[timedelta]
    start_to_close_timeout: Optional[timedelta]
    task_queue: str
    retry_policy: Optional[RetryPolicy] = None
    task_token: bytes = b""
    is_local: bool = False
    namespace: str = "default"
    workflow_id: Optional[str] = None
    workflow_namespace: Optional[str] = None
    workflow_run_id: Optional[str] = None
    workflow_type: Optional[str] = None
    priority: Any = None
    activity_run_id: Optional[str] = None

    @property
    def in_workflow(self) -> bool:
        return self.workflow_id is not None


@dataclass(frozen=True)
class ActivityCancellationDetails:
    """Why the attempt was cancelled (R65); set once."""

    cancel_requested: bool = False
    worker_shutdown: bool = False
    timed_out: bool = False
    not_found: bool = False
    paused: bool = False
    reset: bool = False


_REASON_DETAILS = {
    "requested": ActivityCancellationDetails(cancel_requested=True),
    "shutdown": ActivityCancellationDetails(worker_shutdown=True),
    "timeout": ActivityCancellationDetails(timed_out=True, not_found=True),
    "heartbeat_error": ActivityCancellationDetails(),
}


_EVENT_LOCK = threading.Lock()


class _Context:
    """The running attempt's context. Shared by the activity's code and its worker runtime.

    ``info`` may be given as a zero-argument callable: the worker passes one, so that an attempt
    that never calls ``activity.info()`` does not pay for building it. The threading.Event behind
    ``wait_for_cancelled_sync`` is created on first use for the same reason.
    """

    __slots__ = ("_info", "heartbeat", "loop", "is_async", "cancel_reason", "cancel_details",
                 "_cancelled_sync", "_cancelled_async")

    def __init__(
        self,
        info: "Info | Callable[[], Info]",
        heartbeat: Callable[[Tuple[Any, ...]], None],
        loop: Optional[asyncio.AbstractEventLoop],
        is_async: bool,
    ) -> None:
        self._info = info
        self.heartbeat = heartbeat
        self.loop = loop
        self.is_async = is_async
        self.cancel_reason: Optional[str] = None
        self.cancel_details: Optional[ActivityCancellationDetails] = None
        self._cancelled_sync: Optional[threading.Event] = None
        self._cancelled_async: Optional[asyncio.Event] = None

    @property
    def info(self) -> Info:
        info = self._info
        if not isinstance(info, Info):
            info = self._info = info()
        return info

    def mark_cancelled(self, reason: str, details: Optional[ActivityCancellationDetails] = None) -> bool:
        """Record the cancellation (``details``: those of ``reason`` unless given); False if one
        was already recorded. The details are set before anything waiting for the cancellation
        wakes.

        Runs on the thread that reads the worker's pipe: the loop thread for an async activity.
        """
        if self.cancel_reason is not None:
            return False
        self.cancel_details = details if details is not None else _REASON_DETAILS.get(
            reason, ActivityCancellationDetails())
        self.cancel_reason = reason  # before reading the events: see sync_event()
        if self._cancelled_sync is not None:
            self._cancelled_sync.set()
        if self._cancelled_async is not None:
            self._cancelled_async.set()
        return True

    def sync_event(self) -> threading.Event:
        """The Event set on cancellation. Created on first use: whichever of this and
        ``mark_cancelled`` runs second sees the other's write and sets it."""
        event = self._cancelled_sync
        if event is None:
            with _EVENT_LOCK:
                event = self._cancelled_sync
                if event is None:
                    event = self._cancelled_sync = threading.Event()
            if self.cancel_reason is not None:
                event.set()
        return event

    def async_event(self) -> asyncio.Event:
        if self._cancelled_async is None:
            self._cancelled_async = asyncio.Event()
            if self.cancel_reason is not None:
                self._cancelled_async.set()
        return self._cancelled_async


_current: contextvars.ContextVar[_Context] = contextvars.ContextVar("actorflow_activity")


def _context() -> _Context:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("Not in activity context") from None


def in_activity() -> bool:
    """Whether the caller runs inside an activity attempt."""
    return _current.get(None) is not None


def info() -> Info:
    """The current attempt's ``Info`` (R71, R72)."""
    return _context().info


def heartbeat(*details: Any) -> None:
    """Record progress; throttled (R49-R53); the latest details win (R46). Never blocks."""
    _context().heartbeat(details)


def is_cancelled() -> bool:
    """True once the attempt has been cancelled, for any reason (R65)."""
    return _context().cancel_reason is not None


def cancellation_details() -> Optional[ActivityCancellationDetails]:
    """Why the attempt was cancelled, or None if it was not (R65)."""
    return _context().cancel_details


async def wait_for_cancelled() -> None:
    """Wait until the attempt is cancelled (async activities only, R64)."""
    ctx = _context()
    if not ctx.is_async:
        raise RuntimeError("not in async activity: use activity.wait_for_cancelled_sync()")
    await ctx.async_event().wait()


def wait_for_cancelled_sync(timeout: Optional[float | timedelta] = None) -> bool:
    """Block the activity's thread until it is cancelled or ``timeout`` passes; True if cancelled."""
    ctx = _context()
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    return ctx.sync_event().wait(timeout)


class _ActivityLoggerAdapter(logging.LoggerAdapter):
    """Adds the activity's id, type and attempt to each record, when there is an activity."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> Tuple[Any, MutableMapping[str, Any]]:
        ctx = _current.get(None)
        if ctx is None:
            return msg, kwargs
        i = ctx.info
        extra = dict(kwargs.get("extra") or {})
        extra.update(activity_id=i.activity_id, activity_type=i.activity_type, attempt=i.attempt)
        kwargs["extra"] = extra
        return f"{msg} ({{'activity_id': {i.activity_id!r}, 'activity_type': {i.activity_type!r}, 'attempt': {i.attempt}}})", kwargs


logger: logging.LoggerAdapter = _ActivityLoggerAdapter(logging.getLogger("actorflow.activity"), {})
"""Logs with the activity's id, type and attempt appended (without them outside an activity)."""

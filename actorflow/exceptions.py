"""The error tree a caller and an activity see, mirroring ``temporalio.exceptions``.

``ActorflowError`` <- ``FailureError`` <- ``ApplicationError``, ``CancelledError``,
``TimeoutError``, ``ActivityError`` (SEMANTICS R35-R43). Runtime faults that are not execution
outcomes (``WorkerPoolBrokenError``, ``InternalError``) derive from ``ActorflowError`` only.

``TimeoutError`` and ``CancelledError`` deliberately shadow builtins here and are *not* re-exported
from the top-level package, so ``from actorflow import *`` never hides the builtins.
"""

from __future__ import annotations

import asyncio
import enum
from datetime import timedelta
from typing import Any, Sequence

__all__ = [
    "ActorflowError",
    "FailureError",
    "ApplicationError",
    "ApplicationErrorCategory",
    "CancelledError",
    "TimeoutError",
    "TimeoutType",
    "ActivityError",
    "RetryState",
    "TerminatedError",
    "ActivityAlreadyStartedError",
    "ActivityNotFoundError",
    "JournalError",
    "JournalLockedError",
    "WorkerPoolBrokenError",
    "InternalError",
    "is_cancelled_exception",
]


class TimeoutType(enum.IntEnum):
    """Which of the four activity timeouts fired (integer values of R41)."""

    START_TO_CLOSE = 1
    SCHEDULE_TO_START = 2
    SCHEDULE_TO_CLOSE = 3
    HEARTBEAT = 4


class RetryState(enum.IntEnum):
    """Why an execution stopped retrying (integer values of R41)."""

    IN_PROGRESS = 1
    NON_RETRYABLE_FAILURE = 2
    TIMEOUT = 3
    MAXIMUM_ATTEMPTS_REACHED = 4
    RETRY_POLICY_NOT_SET = 5
    INTERNAL_SERVER_ERROR = 6
    CANCEL_REQUESTED = 7


class ApplicationErrorCategory(enum.IntEnum):
    """Temporal's failure category; BENIGN only lowers log levels (R34)."""

    UNSPECIFIED = 0
    BENIGN = 1


class ActorflowError(Exception):
    """Base of every error actorflow raises."""

    @property
    def message(self) -> str:
        """The message without the type prefix."""
        return str(self.args[0]) if self.args else ""


class FailureError(ActorflowError):
    """Base of the errors that describe how an execution or attempt ended."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message
        self._stack_trace = ""

    @property
    def message(self) -> str:
        return self._message

    @property
    def cause(self) -> BaseException | None:
        """The failure that led to this one (identical to ``__cause__``)."""
        return self.__cause__

    @property
    def stack_trace(self) -> str:
        """The remote traceback as text when the failure came from a worker process."""
        return self._stack_trace

    def __reduce__(self) -> Any:
        # Exceptions with keyword-only constructors do not survive pickle's default path
        # (STYLE.md pitfall 9); rebuild through __dict__ instead.
        # ``args`` travel too: ApplicationError's str() is "<type>: <message>" (R38).
        return (_rebuild_failure, (type(self), self.__dict__, self.__cause__, self.args))


def _rebuild_failure(
    cls: type, state: dict, cause: BaseException | None, args: tuple | None = None
) -> FailureError:
    obj = cls.__new__(cls)
    Exception.__init__(obj, *(args if args is not None else (state.get("_message", ""),)))
    obj.__dict__.update(state)
    obj.__cause__ = cause
    return obj


def _to_seconds(value: timedelta | None, name: str) -> timedelta | None:
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, got {type(value).__name__}")
    return value


class ApplicationError(FailureError):
    """An error raised by activity code, or any exception converted at the worker edge (R31, R38).

    ``str(err)`` is ``"<type>: <message>"`` when ``type`` is set, else the message.
    """

    def __init__(
        self,
        message: str,
        *details: Any,
        type: str | None = None,
        non_retryable: bool = False,
        next_retry_delay: timedelta | None = None,
        category: ApplicationErrorCategory = ApplicationErrorCategory.UNSPECIFIED,
    ) -> None:
        next_retry_delay = _to_seconds(next_retry_delay, "next_retry_delay")
        if next_retry_delay is not None and next_retry_delay < timedelta(0):
            # D5 / R33: a negative delay is a mistake, not "retry immediately".
            raise ValueError(
                f"next_retry_delay cannot be negative (got {next_retry_delay}); "
                "pass a positive timedelta, or None to use the retry policy's backoff"
            )
        if next_retry_delay == timedelta(0):
            next_retry_delay = None  # R33: a zero delay means "not set".
        super().__init__(message)
        if type is not None:
            Exception.__init__(self, f"{type}: {message}")
        self._details = tuple(details)
        self._type = type
        self._non_retryable = bool(non_retryable)
        self._next_retry_delay = next_retry_delay
        self._category = category

    @property
    def details(self) -> Sequence[Any]:
        return self._details

    @property
    def type(self) -> str | None:
        return self._type

    @property
    def non_retryable(self) -> bool:
        return self._non_retryable

    @property
    def next_retry_delay(self) -> timedelta | None:
        return self._next_retry_delay

    @property
    def category(self) -> ApplicationErrorCategory:
        return self._category

    def __repr__(self) -> str:
        return (
            f"ApplicationError({self._message!r}, type={self._type!r}, "
            f"non_retryable={self._non_retryable})"
        )


class CancelledError(FailureError):
    """The execution (or attempt) was cancelled (R40).

    Raised inside a sync activity's thread when its cancellation is delivered (D4).
    """

    def __init__(self, message: str = "Cancelled", *details: Any) -> None:
        super().__init__(message)
        self._details = tuple(details)

    @property
    def details(self) -> Sequence[Any]:
        return self._details


class TimeoutError(FailureError):
    """One of the four timeouts ended an attempt or the execution (R39)."""

    def __init__(
        self,
        message: str,
        *,
        type: TimeoutType | None,
        last_heartbeat_details: Sequence[Any] = (),
    ) -> None:
        super().__init__(message)
        self._type = type
        self._last_heartbeat_details = list(last_heartbeat_details)

    @property
    def type(self) -> TimeoutType | None:
        return self._type

    @property
    def last_heartbeat_details(self) -> Sequence[Any]:
        return self._last_heartbeat_details

    def __repr__(self) -> str:
        name = self._type.name if self._type is not None else None
        return f"TimeoutError({self._message!r}, type={name})"


class ActivityError(FailureError):
    """What the caller's await raises for any unsuccessful execution (R35, R36)."""

    def __init__(
        self,
        message: str,
        *,
        scheduled_event_id: int = 0,
        started_event_id: int = 0,
        identity: str = "",
        activity_type: str,
        activity_id: str,
        retry_state: RetryState | None,
    ) -> None:
        super().__init__(message)
        self._scheduled_event_id = scheduled_event_id
        self._started_event_id = started_event_id
        self._identity = identity
        self._activity_type = activity_type
        self._activity_id = activity_id
        self._retry_state = retry_state

    @property
    def scheduled_event_id(self) -> int:
        return self._scheduled_event_id

    @property
    def started_event_id(self) -> int:
        return self._started_event_id

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def activity_type(self) -> str:
        return self._activity_type

    @property
    def activity_id(self) -> str:
        return self._activity_id

    @property
    def retry_state(self) -> RetryState | None:
        return self._retry_state

    def __repr__(self) -> str:
        state = self._retry_state.name if self._retry_state is not None else None
        return (
            f"ActivityError({self._message!r}, activity_id={self._activity_id!r}, "
            f"retry_state={state}, cause={self.__cause__!r})"
        )


class TerminatedError(FailureError):
    """The execution was terminated (``handle.terminate(reason)``, D10): no grace, no retry."""

    def __init__(self, message: str, *details: Any) -> None:
        super().__init__(message)
        self._details = tuple(details)

    @property
    def details(self) -> Sequence[Any]:
        return self._details


class ActivityAlreadyStartedError(FailureError):
    """``start_activity`` met an ``activity_id`` its id policies do not allow again (D9).

    ``run_id`` is the run that holds the id (the open one, or the latest closed one).
    """

    def __init__(self, activity_id: str, activity_type: str, *, run_id: str | None = None,
                 message: str = "Activity execution already started") -> None:
        super().__init__(message)
        self.activity_id = activity_id
        self.activity_type = activity_type
        self.run_id = run_id


class ActivityNotFoundError(ActorflowError):
    """No open or retained execution has this id, or a task token names an attempt that
    has already ended (D9, D13)."""


class JournalError(ActorflowError):
    """The journal file cannot be used (not a journal, a newer schema, corrupt, D8).

    ``path`` names the file; the file is left untouched.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class JournalLockedError(JournalError):
    """Another running system owns the journal (D8); ``pid`` is the owner's process id."""

    def __init__(self, message: str, *, path: str | None = None, pid: int | None = None) -> None:
        super().__init__(message, path=path)
        self.pid = pid


class WorkerPoolBrokenError(ActorflowError):
    """The worker pool could not keep workers alive (restart intensity exceeded, D1)."""


class InternalError(ActorflowError):
    """An actorflow bug: please report it with the traceback."""


def is_cancelled_exception(exception: BaseException) -> bool:
    """True for the exceptions that mean "cancelled" (R43)."""
    return (
        isinstance(exception, (asyncio.CancelledError, CancelledError))
        or (isinstance(exception, ActivityError) and isinstance(exception.cause, CancelledError))
    )

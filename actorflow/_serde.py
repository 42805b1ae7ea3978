"""The cloudpickle boundary: payloads, and failures as plain data (STYLE.md 2.10, pitfall 9).

Exceptions never cross the process boundary as objects: the worker sends the class name, the
message, the traceback text and the cause chain, and the parent rebuilds ``ApplicationError``
(R31), so an exception that cannot be pickled or unpickled still reaches the caller.
"""

from __future__ import annotations

import pickle
import traceback
from datetime import timedelta
from typing import Any, NamedTuple, Optional, Tuple

import cloudpickle

from .exceptions import ApplicationError, ApplicationErrorCategory, CancelledError

__all__ = ["FailureData", "dumps", "loads", "failure_to_data", "failure_from_data", "encode_failure_of", "decode_details"]

_MAX_CAUSE_DEPTH = 20


_PLAIN = (int, float, str, bytes, bool, type(None))
_PLAIN_CONTAINERS = (tuple, list)


def _is_plain(value: Any, depth: int = 0) -> bool:
    """Builtin scalars, and small tuples/lists/dicts of them: stdlib pickle handles these alike."""
    kind = type(value)
    if kind in _PLAIN:
        return True
    if depth >= 3:
        return False
    if kind in _PLAIN_CONTAINERS:
        if len(value) > 64:
            return False
        for item in value:  # a loop, not all(genexpr): this runs for every start_activity
            if type(item) not in _PLAIN and not _is_plain(item, depth + 1):
                return False
        return True
    if kind is dict:
        return len(value) <= 64 and all(
            type(k) in _PLAIN and _is_plain(v, depth + 1) for k, v in value.items()
        )
    return False


def dumps(value: Any) -> bytes:
    """Pickle a payload. Plain builtin values take stdlib pickle (several times faster);
    everything else goes through cloudpickle, which also ships functions and classes defined in
    ``__main__`` or in closures by value."""
    if _is_plain(value):
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    return pickle.loads(data)


class FailureData(NamedTuple):
    """A failure as plain, always-picklable data."""

    kind: str  # "application" | "cancelled"
    type: Optional[str]
    message: str
    details: Optional[bytes]
    non_retryable: bool
    next_retry_delay: Optional[float]
    stack_trace: str
    cause: Optional["FailureData"]
    category: int = 0


def _details_bytes(details: Tuple[Any, ...]) -> Optional[bytes]:
    if not details:
        return None
    try:
        return dumps(tuple(details))
    except Exception:  # noqa: BLE001 - details that cannot travel are replaced by their repr
        return dumps(tuple(repr(d) for d in details))


def failure_to_data(exc: BaseException, _depth: int = 0) -> FailureData:
    """Runs in the worker process: describe ``exc`` and its cause chain (R31)."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if exc.__cause__ is not None:
        cause_exc: Optional[BaseException] = exc.__cause__
    elif exc.__context__ is not None and not exc.__suppress_context__:
        cause_exc = exc.__context__
    else:
        cause_exc = None
    cause = (
        failure_to_data(cause_exc, _depth + 1)
        if cause_exc is not None and _depth < _MAX_CAUSE_DEPTH
        else None
    )
    if isinstance(exc, ApplicationError):
        delay = exc.next_retry_delay.total_seconds() if exc.next_retry_delay is not None else None
        return FailureData(
            "application", exc.type, exc.message, _details_bytes(tuple(exc.details)),
            exc.non_retryable, delay, stack, cause, int(exc.category),
        )
    if isinstance(exc, CancelledError):
        return FailureData("cancelled", None, exc.message, _details_bytes(tuple(exc.details)),
                           True, None, stack, cause)
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = f"<str() of {type(exc).__name__} failed>"
    return FailureData("application", type(exc).__name__, message, None, False, None, stack, cause)


def failure_from_data(data: FailureData) -> BaseException:
    """Runs in the parent: rebuild the failure the caller sees."""
    try:
        details = tuple(loads(data.details)) if data.details is not None else ()
    except Exception:  # noqa: BLE001 - a detail whose class the parent lacks
        details = ("<details could not be unpickled>",)
    if data.kind == "cancelled":
        error: BaseException = CancelledError(data.message, *details)
    else:
        delay = timedelta(seconds=data.next_retry_delay) if data.next_retry_delay else None
        error = ApplicationError(
            data.message,
            *details,
            type=data.type,
            non_retryable=data.non_retryable,
            next_retry_delay=delay,
            category=ApplicationErrorCategory(data.category),
        )
    error._stack_trace = data.stack_trace  # type: ignore[attr-defined]
    if data.cause is not None:
        error.__cause__ = failure_from_data(data.cause)
    return error


def encode_failure_of(exc: BaseException, what: str) -> FailureData:
    """A failure for a value that could not be pickled (R48, API.md): type = the error's class."""
    return FailureData(
        "application",
        type(exc).__name__,
        f"{what} could not be pickled: {exc}",
        None,
        False,
        None,
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        None,
    )


def decode_details(data: bytes) -> tuple:
    """Heartbeat details as the calling process sees them. Details it cannot unpickle (a worker
    may) get a placeholder here instead of failing the caller's side (STYLE.md 2.11); the bytes
    themselves still travel to the next attempt (which fails per R44 if it cannot decode them)."""
    try:
        return tuple(loads(data))
    except Exception as exc:  # noqa: BLE001
        return (f"<heartbeat details could not be unpickled in the calling process: {exc!r}>",)

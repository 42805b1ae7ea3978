"""The error tree (``actorflow.exceptions``): SEMANTICS R35-R43, API.md "Errors", D5."""

from __future__ import annotations

import asyncio
import builtins
import pickle
from datetime import timedelta

import pytest

from actorflow import exceptions as ex
from actorflow.common import ActivityCancellationType
from actorflow.exceptions import (
    ActivityError,
    ActorflowError,
    ApplicationError,
    ApplicationErrorCategory,
    CancelledError,
    FailureError,
    RetryState,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)


def activity_error(cause: BaseException | None = None, **kw) -> ActivityError:
    fields = dict(activity_type="crunch", activity_id="7", retry_state=RetryState.TIMEOUT)
    fields.update(kw)
    error = ActivityError("Activity task timed out", **fields)
    error.__cause__ = cause
    return error


# ----------------------------------------------------------------------------- hierarchy


@pytest.mark.parametrize("cls", [ApplicationError, CancelledError, TimeoutError, ActivityError])
def test_hierarchy_mirrors_temporal(cls):
    """API.md: ActorflowError <- FailureError <- ApplicationError, CancelledError, TimeoutError,
    ActivityError.
    """
    assert issubclass(cls, FailureError) and issubclass(FailureError, ActorflowError)
    assert issubclass(ActorflowError, Exception)


@pytest.mark.parametrize("cls", [ex.WorkerPoolBrokenError, ex.InternalError])
def test_runtime_faults_are_not_failures(cls):
    """STYLE.md 2.10: runtime faults derive from ActorflowError only."""
    assert issubclass(cls, ActorflowError) and not issubclass(cls, FailureError)


def test_shadowing_names_are_distinct_from_builtins():
    """STYLE.md 2.8: actorflow's TimeoutError/CancelledError are its own classes."""
    assert TimeoutError is not builtins.TimeoutError
    assert CancelledError is not asyncio.CancelledError


# ----------------------------------------------------------------------------- R38 ApplicationError


@pytest.mark.parametrize(
    "message, type_, expected",
    [
        ("boom", "ValueError", "ValueError: boom"),
        ("x", "Cannot retry me", "Cannot retry me: x"),  # S14
        ("Do not retry me", None, "Do not retry me"),  # S15
        ("'k'", "KeyError", "KeyError: 'k'"),
        ("", None, ""),
    ],
)
def test_R38_str_format(message, type_, expected):
    """R38: str(e) is "<type>: <message>" when type is set, else the message; .message has no prefix."""
    error = ApplicationError(message, type=type_)
    assert str(error) == expected
    assert error.message == message


def test_R38_fields_and_defaults():
    """R38/R31: type defaults to None (never "ApplicationError"); details are the extra positionals."""
    error = ApplicationError("Do not retry me", "detail1", 123, non_retryable=True)
    assert error.type is None
    assert error.details == ("detail1", 123)
    assert error.non_retryable is True
    assert error.next_retry_delay is None
    assert error.category is ApplicationErrorCategory.UNSPECIFIED
    assert error.cause is None
    plain = ApplicationError("m")
    assert (plain.details, plain.non_retryable) == ((), False)


def test_R33_next_retry_delay_values():
    """R33/D5: positive kept, zero means unset, negative is a ValueError naming the option."""
    assert ApplicationError("m", next_retry_delay=timedelta(seconds=10)).next_retry_delay == timedelta(
        seconds=10
    )
    assert ApplicationError("m", next_retry_delay=timedelta(0)).next_retry_delay is None
    with pytest.raises(ValueError, match="next_retry_delay cannot be negative"):
        ApplicationError("m", next_retry_delay=timedelta(seconds=-5))
    with pytest.raises(TypeError, match="next_retry_delay"):
        ApplicationError("m", next_retry_delay=10)  # type: ignore[arg-type]


def test_R35_cause_is_dunder_cause():
    """R35: .cause is identical to __cause__."""
    inner = ApplicationError("inner", type="KeyError")
    outer = activity_error(inner)
    assert outer.cause is inner is outer.__cause__


# ----------------------------------------------------------------------------- R39 / R40 / R36


def test_R39_timeout_error_fields():
    """R39: type, last_heartbeat_details (a list), message; str is the message."""
    error = TimeoutError(
        "activity Heartbeat timeout", type=TimeoutType.HEARTBEAT, last_heartbeat_details=("some details!",)
    )
    assert error.type is TimeoutType.HEARTBEAT
    assert error.last_heartbeat_details == ["some details!"]
    assert isinstance(error.last_heartbeat_details, list)
    assert str(error) == error.message == "activity Heartbeat timeout"
    assert TimeoutError("m", type=TimeoutType.START_TO_CLOSE).last_heartbeat_details == []


def test_R40_cancelled_error_defaults():
    """R40: CancelledError(message="Cancelled", *details)."""
    assert (CancelledError().message, CancelledError().details) == ("Cancelled", ())
    error = CancelledError("Cancelled", "ACTIVITY_ID_NOT_STARTED")
    assert error.details == ("ACTIVITY_ID_NOT_STARTED",)
    assert str(error) == "Cancelled"


def test_R36_activity_error_fields():
    """R36: message, activity_id, activity_type, retry_state; event ids 0 and identity "" by default."""
    error = activity_error()
    assert str(error) == error.message == "Activity task timed out"
    assert (error.activity_id, error.activity_type, error.retry_state) == ("7", "crunch", RetryState.TIMEOUT)
    assert (error.scheduled_event_id, error.started_event_id, error.identity) == (0, 0, "")


# ----------------------------------------------------------------------------- R41 enum values


@pytest.mark.parametrize(
    "member, value",
    [
        (RetryState.IN_PROGRESS, 1),
        (RetryState.NON_RETRYABLE_FAILURE, 2),
        (RetryState.TIMEOUT, 3),
        (RetryState.MAXIMUM_ATTEMPTS_REACHED, 4),
        (RetryState.RETRY_POLICY_NOT_SET, 5),
        (RetryState.INTERNAL_SERVER_ERROR, 6),
        (RetryState.CANCEL_REQUESTED, 7),
        (TimeoutType.START_TO_CLOSE, 1),
        (TimeoutType.SCHEDULE_TO_START, 2),
        (TimeoutType.SCHEDULE_TO_CLOSE, 3),
        (TimeoutType.HEARTBEAT, 4),
        (ActivityCancellationType.TRY_CANCEL, 0),
        (ActivityCancellationType.WAIT_CANCELLATION_COMPLETED, 1),
        (ActivityCancellationType.ABANDON, 2),
    ],
)
def test_R41_enum_integer_values(member, value):
    """R41: the enums mirror Temporal's integers."""
    assert int(member) == value
    assert type(member)(value) is member


@pytest.mark.parametrize(
    "enum_cls, names",
    [
        (
            RetryState,
            [
                "IN_PROGRESS",
                "NON_RETRYABLE_FAILURE",
                "TIMEOUT",
                "MAXIMUM_ATTEMPTS_REACHED",
                "RETRY_POLICY_NOT_SET",
                "INTERNAL_SERVER_ERROR",
                "CANCEL_REQUESTED",
            ],
        ),
        (TimeoutType, ["START_TO_CLOSE", "SCHEDULE_TO_START", "SCHEDULE_TO_CLOSE", "HEARTBEAT"]),
        (ActivityCancellationType, ["TRY_CANCEL", "WAIT_CANCELLATION_COMPLETED", "ABANDON"]),
    ],
)
def test_R41_enums_have_exactly_these_members(enum_cls, names):
    assert [m.name for m in enum_cls] == names


# ----------------------------------------------------------------------------- R43


@pytest.mark.parametrize(
    "exc, expected",
    [
        (asyncio.CancelledError(), True),
        (CancelledError(), True),
        (activity_error(CancelledError(), retry_state=RetryState.CANCEL_REQUESTED), True),
        (activity_error(ApplicationError("x", type="ValueError")), False),
        (activity_error(None), False),
        (activity_error(TimeoutError("t", type=TimeoutType.START_TO_CLOSE)), False),
        (ApplicationError("x", type="CancelledError"), False),
        (TimeoutError("t", type=TimeoutType.HEARTBEAT), False),
        (ValueError("x"), False),
    ],
)
def test_R43_is_cancelled_exception(exc, expected):
    """R43: true for asyncio.CancelledError, CancelledError, and ActivityError caused by CancelledError."""
    assert is_cancelled_exception(exc) is expected


# ----------------------------------------------------------------------------- pickling


def roundtrip(error):
    return pickle.loads(pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL))


def test_application_error_survives_pickle():
    error = ApplicationError(
        "boom",
        "d1",
        {"k": 2},
        type="ValueError",
        non_retryable=True,
        next_retry_delay=timedelta(seconds=3),
        category=ApplicationErrorCategory.BENIGN,
    )
    error.__cause__ = ApplicationError("'k'", type="KeyError")
    error._stack_trace = "Traceback ...\nValueError: boom\n"
    copy = roundtrip(error)
    assert type(copy) is ApplicationError
    assert str(copy) == "ValueError: boom"  # R38 survives
    assert (copy.message, copy.type, copy.details, copy.non_retryable) == (
        "boom",
        "ValueError",
        ("d1", {"k": 2}),
        True,
    )
    assert copy.next_retry_delay == timedelta(seconds=3)
    assert copy.category is ApplicationErrorCategory.BENIGN
    assert copy.stack_trace == "Traceback ...\nValueError: boom\n"
    assert isinstance(copy.cause, ApplicationError) and str(copy.cause) == "KeyError: 'k'"
    assert copy.cause is copy.__cause__


def test_untyped_application_error_survives_pickle():
    copy = roundtrip(ApplicationError("Do not retry me", "detail1", 123))
    assert (str(copy), copy.type, copy.details, copy.cause) == (
        "Do not retry me",
        None,
        ("detail1", 123),
        None,
    )


def test_timeout_error_survives_pickle():
    error = TimeoutError(
        "activity Heartbeat timeout", type=TimeoutType.HEARTBEAT, last_heartbeat_details=[1, "a"]
    )
    error.__cause__ = TimeoutError("activity StartToClose timeout", type=TimeoutType.START_TO_CLOSE)
    copy = roundtrip(error)
    assert (str(copy), copy.type, copy.last_heartbeat_details) == (
        "activity Heartbeat timeout",
        TimeoutType.HEARTBEAT,
        [1, "a"],
    )
    assert copy.cause.type is TimeoutType.START_TO_CLOSE and copy.cause.cause is None


def test_cancelled_error_survives_pickle():
    copy = roundtrip(CancelledError("Cancelled", "ACTIVITY_ID_NOT_STARTED"))
    assert (str(copy), copy.message, copy.details) == ("Cancelled", "Cancelled", ("ACTIVITY_ID_NOT_STARTED",))


def test_activity_error_survives_pickle_with_cause_chain():
    """ActivityError -> TimeoutError -> ApplicationError: every field and __cause__ survive."""
    app = ApplicationError("boom", type="ValueError")
    timeout = TimeoutError(
        "Not enough time", type=TimeoutType.SCHEDULE_TO_CLOSE, last_heartbeat_details=["hb"]
    )
    timeout.__cause__ = app
    error = activity_error(timeout, scheduled_event_id=5, started_event_id=6, identity="w1")
    copy = roundtrip(error)
    assert type(copy) is ActivityError
    assert (str(copy), copy.activity_id, copy.activity_type, copy.retry_state) == (
        "Activity task timed out",
        "7",
        "crunch",
        RetryState.TIMEOUT,
    )
    assert (copy.scheduled_event_id, copy.started_event_id, copy.identity) == (5, 6, "w1")
    assert isinstance(copy.cause, TimeoutError) and copy.cause.last_heartbeat_details == ["hb"]
    assert isinstance(copy.cause.cause, ApplicationError) and str(copy.cause.cause) == "ValueError: boom"
    assert is_cancelled_exception(roundtrip(activity_error(CancelledError())))

"""Bad input: what API.md says must fail at the call, before anything is scheduled, with an
error naming the option and the fix (R13, R24, R88, R90/D5, R92, S30, S31); and payloads that
cannot cross the process boundary (API.md "Errors", R31, R44, R48, STYLE.md pitfalls 8-9).

The tests share one module-scoped system (``shared_system``): nothing the validation tests do may
schedule anything, and each checks so (``assert_nothing_scheduled``).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import cloudpickle
import pytest

from actorflow import ActorSystem, RetryPolicy, activity
from actorflow.common import ActivityCancellationType
from actorflow.exceptions import ActivityError, ApplicationError, RetryState
from tests.process import activities as acts

pytestmark = pytest.mark.slow

STC = dict(start_to_close_timeout=timedelta(seconds=5))
TIMEOUT_OPTIONS = ["start_to_close_timeout", "schedule_to_close_timeout", "schedule_to_start_timeout",
                   "heartbeat_timeout"]


@pytest.fixture
def bad_system(shared_system: ActorSystem) -> ActorSystem:
    return shared_system


def assert_nothing_scheduled(system: ActorSystem) -> None:
    """Supervisor inboxes are FIFO, so a start told before this ask would already show."""
    stats = system.statistics()
    assert (stats.pending, stats.running, stats.retrying) == (0, 0, 0)
    assert (stats.queued_attempts, stats.running_attempts) == (0, 0)


def undecorated(x: int) -> int:
    return x


def start_options(**overrides: Any) -> dict:
    options = dict(STC)
    options.update(overrides)
    return options


# -- timeouts --------------------------------------------------------------------------------


def test_no_timeouts(bad_system: ActorSystem, journal) -> None:
    """R13, S31: Temporal's message, naming both options."""
    with pytest.raises(ValueError, match="must have start_to_close_timeout or schedule_to_close_timeout"):
        bad_system.start_activity(acts.always_fail, str(journal))
    with pytest.raises(ValueError, match="must have start_to_close_timeout or schedule_to_close_timeout"):
        # the other two timeouts alone are not enough
        bad_system.start_activity(acts.always_fail, str(journal),
                                  schedule_to_start_timeout=timedelta(seconds=1),
                                  heartbeat_timeout=timedelta(seconds=1))
    assert_nothing_scheduled(bad_system)
    assert journal.records() == []


@pytest.mark.parametrize("option", TIMEOUT_OPTIONS)
@pytest.mark.parametrize("value", [timedelta(0), timedelta(seconds=-1), timedelta(microseconds=-1)],
                         ids=["zero", "negative", "negative-1us"])
def test_zero_or_negative_timeout(bad_system: ActorSystem, journal, option: str, value: timedelta) -> None:
    """R13 / D5: zero and negative timeouts are rejected with a ValueError naming the option."""
    options = {"schedule_to_close_timeout": timedelta(seconds=5)}
    options[option] = value
    with pytest.raises(ValueError) as info:
        bad_system.start_activity(acts.always_fail, str(journal), **options)
    message = str(info.value)
    assert option in message and "positive" in message
    assert_nothing_scheduled(bad_system)
    assert journal.records() == []


@pytest.mark.parametrize("option", TIMEOUT_OPTIONS)
@pytest.mark.parametrize("value", [5, 5.0, "5s"], ids=["int", "float", "str"])
def test_timeout_of_the_wrong_type(bad_system: ActorSystem, option: str, value: Any) -> None:
    """All durations are timedelta (API.md): a number or string is a TypeError saying so."""
    options = {"schedule_to_close_timeout": timedelta(seconds=5)}
    options[option] = value
    with pytest.raises(TypeError) as info:
        bad_system.start_activity(acts.add, args=[1, 2], **options)
    assert option in str(info.value) and "timedelta" in str(info.value)
    assert_nothing_scheduled(bad_system)


# -- retry policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "error", "message"),
    [
        (RetryPolicy(backoff_coefficient=0.5), ValueError, "Backoff coefficient cannot be less than 1"),
        (RetryPolicy(maximum_interval=timedelta(milliseconds=500)), ValueError,
         "Maximum interval cannot be less than initial interval"),
        (RetryPolicy(maximum_attempts=-1), ValueError, "Maximum attempts cannot be negative"),
        (RetryPolicy(initial_interval=timedelta(seconds=-1)), ValueError,
         "Initial interval cannot be negative"),
        (RetryPolicy(maximum_interval=timedelta(seconds=-1)), ValueError,
         "Maximum interval cannot be negative"),
        (RetryPolicy(initial_interval=1), TypeError, "initial_interval must be a datetime.timedelta"),
        (RetryPolicy(maximum_interval=10), TypeError, "maximum_interval must be a datetime.timedelta"),
        (RetryPolicy(backoff_coefficient="2"), TypeError, "backoff_coefficient must be a number"),
        (RetryPolicy(maximum_attempts=2.0), TypeError, "maximum_attempts must be an int"),
        (RetryPolicy(non_retryable_error_types="ValueError"), TypeError,
         "non_retryable_error_types must be a list of strings"),
        (RetryPolicy(non_retryable_error_types=["TemporalTimeout:Sometimes"]), ValueError,
         "after 'TemporalTimeout:' use one of StartToClose"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_invalid_retry_policy(
        bad_system: ActorSystem, policy: RetryPolicy, error: type, message: str) -> None:
    """R24, S31: the policy is validated at the call, with Temporal's wording where it has one."""
    with pytest.raises(error, match=message):
        bad_system.start_activity(acts.add, args=[1, 2], retry_policy=policy, **STC)
    assert_nothing_scheduled(bad_system)


def test_retry_policy_of_the_wrong_type(bad_system: ActorSystem) -> None:
    with pytest.raises(TypeError, match="retry_policy must be an actorflow.RetryPolicy"):
        bad_system.start_activity(acts.add, args=[1, 2], retry_policy={"maximum_attempts": 3}, **STC)
    assert_nothing_scheduled(bad_system)


# -- the activity and its arguments ----------------------------------------------------------


def test_unknown_activity_name_lists_the_known_ones(bad_system: ActorSystem) -> None:
    """S30, R90 / D5."""
    with pytest.raises(ValueError) as info:
        bad_system.start_activity("no-such-activity", **STC)
    message = str(info.value)
    assert "'no-such-activity' is not registered" in message
    for name in ("add", "async_add", "custom-name", "raise_unpicklable"):
        assert name in message
    assert "ActorSystem(activities=[...])" in message  # the fix
    assert_nothing_scheduled(bad_system)


def test_unknown_name_with_nothing_registered(make_system) -> None:
    system = make_system(workers=1)
    with pytest.raises(ValueError, match="known: none"):
        system.start_activity("add", args=[1, 2], **STC)


def test_arg_and_args_together(bad_system: ActorSystem) -> None:
    """R88."""
    with pytest.raises(ValueError, match="^Cannot have arg and args$"):
        bad_system.start_activity(acts.add, 1, args=[2], **STC)
    with pytest.raises(TypeError, match="args must be a list or tuple"):
        bad_system.start_activity(acts.add, args="12", **STC)
    assert_nothing_scheduled(bad_system)


def test_undecorated_function(bad_system: ActorSystem) -> None:
    """R92: starting an undecorated function is a TypeError asking whether it was decorated."""
    with pytest.raises(TypeError, match=r"forget to decorate it with @activity\.defn"):
        bad_system.start_activity(undecorated, 1, **STC)
    with pytest.raises(TypeError, match="not an activity"):
        bad_system.start_activity(42, **STC)
    assert_nothing_scheduled(bad_system)
    with pytest.raises(TypeError, match=r"decorate it with @activity\.defn"):
        ActorSystem(activities=[undecorated])  # also at registration, before anything starts


def test_duplicate_and_malformed_definitions() -> None:
    """R92: two activities with one name, decorating twice, keyword-only parameters."""

    @activity.defn(name="add")
    def another_add(a: int, b: int) -> int:
        return a - b

    with pytest.raises(ValueError, match="More than one activity named 'add'"):
        ActorSystem(activities=[acts.add, another_add])
    with pytest.raises(ValueError, match="already contains activity definition"):
        activity.defn(acts.add)
    with pytest.raises(TypeError, match="keyword-only parameter 'b'"):
        @activity.defn
        def kw_only(a: int, *, b: int) -> int:
            return a + b


def test_arguments_that_cannot_be_pickled(bad_system: ActorSystem) -> None:
    """API.md / STYLE.md pitfall 8: a TypeError at the call naming the activity."""
    with pytest.raises(TypeError) as info:
        bad_system.start_activity(acts.echo, threading.Lock(), **STC)
    assert "'echo'" in str(info.value) and "cannot be pickled" in str(info.value)
    assert info.value.__cause__ is not None  # the pickling error itself is kept
    with pytest.raises(TypeError, match="'add'"):
        bad_system.start_activity(acts.add, args=[1, (x for x in range(3))], **STC)  # a generator
    assert_nothing_scheduled(bad_system)


def test_closure_that_cannot_be_pickled(bad_system: ActorSystem) -> None:
    """A by-value function that captures a lock cannot reach the workers: TypeError naming it."""
    lock = threading.Lock()

    @activity.defn
    def holds_lock() -> bool:
        return lock.locked()

    with pytest.raises(TypeError, match="activity 'holds_lock' cannot be pickled"):
        bad_system.start_activity(holds_lock, **STC)
    assert_nothing_scheduled(bad_system)


def test_task_queue_other_than_the_systems(bad_system: ActorSystem) -> None:
    with pytest.raises(ValueError) as info:
        bad_system.start_activity(acts.add, args=[1, 2], task_queue="elsewhere", **STC)
    message = str(info.value)
    assert "'elsewhere'" in message and "'default'" in message and "omit task_queue" in message
    assert_nothing_scheduled(bad_system)
    # the system's own queue is accepted
    assert bad_system.start_activity(acts.add, args=[1, 2], task_queue="default", **STC).result(10) == 3


def test_bad_cancellation_type_and_activity_id(bad_system: ActorSystem) -> None:
    with pytest.raises(ValueError, match="cancellation_type must be an ActivityCancellationType"):
        bad_system.start_activity(acts.add, args=[1, 2], cancellation_type=5, **STC)
    with pytest.raises(ValueError, match="cancellation_type"):
        bad_system.start_activity(acts.add, args=[1, 2], cancellation_type="TRY_CANCEL", **STC)
    for bad_id in (123, ""):
        with pytest.raises(TypeError, match="activity_id must be a non-empty string"):
            bad_system.start_activity(acts.add, args=[1, 2], activity_id=bad_id, **STC)
    assert_nothing_scheduled(bad_system)
    handle = bad_system.start_activity(acts.add, args=[1, 2], activity_id="ok",
                                       cancellation_type=ActivityCancellationType.ABANDON, **STC)
    assert handle.result(10) == 3


# -- payloads that cannot cross the boundary -------------------------------------------------


def test_exception_that_cannot_be_pickled_still_reaches_the_caller(bad_system: ActorSystem) -> None:
    """API.md, pitfall 9: class name as type, the message, and the remote traceback as text."""
    handle = bad_system.start_activity(acts.raise_unpicklable, retry_policy=RetryPolicy(maximum_attempts=1),
                                       **STC)
    error = handle.exception(timeout=10)
    assert isinstance(error, ActivityError)
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    cause = error.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.message) == ("LockHoldingError", "holds a lock")
    assert "LockHoldingError: holds a lock" in cause.stack_trace
    assert "raise_unpicklable" in cause.stack_trace


def test_exception_that_cannot_be_unpickled_still_reaches_the_caller(bad_system: ActorSystem) -> None:
    """A custom __init__ signature breaks unpickling (pitfall 9); the caller still gets it all."""
    with pytest.raises(TypeError):  # the premise: this exception does not survive a round trip
        cloudpickle.loads(cloudpickle.dumps(acts.TwoArgError(7, "bad signature")))
    handle = bad_system.start_activity(acts.raise_ununpicklable,
                                       retry_policy=RetryPolicy(maximum_attempts=1), **STC)
    error = handle.exception(timeout=10)
    cause = error.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.message) == ("TwoArgError", "code 7: bad signature")
    assert "TwoArgError: code 7: bad signature" in cause.stack_trace
    assert "raise_ununpicklable" in cause.stack_trace


def test_unpicklable_result_fails_the_attempt_retryably(bad_system: ActorSystem, journal) -> None:
    """API.md: type = the pickling error's class name; retried under the policy like any failure."""
    try:
        cloudpickle.dumps(threading.Lock())
    except Exception as exc:  # noqa: BLE001
        expected_type = type(exc).__name__
    else:  # pragma: no cover
        pytest.fail("a lock pickled")
    handle = bad_system.start_activity(
        acts.return_unpicklable, str(journal),
        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=2), **STC,
    )
    error = handle.exception(timeout=10)
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED  # retryable: both attempts ran
    cause = error.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == expected_type
    assert "result" in cause.message and "pickle" in cause.message
    assert cause.non_retryable is False
    assert [r["attempt"] for r in journal.records("start")] == [1, 2]


def test_arguments_that_cannot_be_unpickled_in_the_worker(bad_system: ActorSystem) -> None:
    """R44: arguments that cannot be decoded fail the attempt, retryably, and say so."""
    handle = bad_system.start_activity(
        acts.echo, acts.PicklesButFailsToLoad(),
        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=2), **STC,
    )
    error = handle.exception(timeout=10)
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    cause = error.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "RuntimeError"
    assert cause.message.startswith("Failed decoding arguments")
    assert "cannot be rebuilt in the worker" in cause.message
    assert cause.non_retryable is False

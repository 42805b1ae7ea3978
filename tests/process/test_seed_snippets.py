"""The seed document's snippets run with only their import lines changed (issue 3, API.md).

Source: "Activity Timeouts - Python SDK" (temporal.io docs, kept as
``seed/activity-timeouts-python-sdk.md``). Each snippet below is copied verbatim; only the
``from temporalio... import`` lines become ``from actorflow... import``. What a snippet leaves
undefined (``your_activity``, ``YourParams``, ``greeting``, ``MyActivityInput``, ``name``, an
activity registered as "your-activity") is supplied here, and the one placeholder comment
(``# Your activity logic goes here``) gets a line of logic, since Python needs a statement there.

Two snippets are expressions inside workflow code; they are kept as text and evaluated verbatim.
The last one (``execute_activity(activity="your-activity", name, ...)``) is not valid Python (a
positional argument after a keyword argument), in actorflow as in temporalio: the test proves
that, then runs the nearest valid spelling.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest

from actorflow import ActorSystem
from actorflow.exceptions import ActivityError, CancelledError, RetryState
from tests.process.hb_activities import HeartbeatSpy, _sleep_until_sync, about, note, read_notes

# -- the snippets' imports, changed -------------------------------------------------------------
from actorflow import activity, workflow  # was: from temporalio import activity, workflow
from actorflow.common import RetryPolicy  # was: from temporalio.common import RetryPolicy
from actorflow.exceptions import ApplicationError  # was: from temporalio.exceptions import ...

JOURNAL_ENV = "ACTORFLOW_SEED_SNIPPET_JOURNAL"  # workers inherit the environment


def _journal(event: str, **fields) -> None:
    path = os.environ.get(JOURNAL_ENV)
    if path:
        note(path, event, **fields)


# -- what the snippets assume (the documentation's sample app) --------------------------------------


@dataclass
class YourParams:
    greeting: str
    name: str


@activity.defn
async def your_activity(input: YourParams) -> str:
    _journal("your_activity", attempt=activity.info().attempt)
    if input.name == "Retry Policy options" and activity.info().attempt == 1:
        raise ConnectionError("flaky")
    return f"{input.greeting}, {input.name}!"


@dataclass
class MyActivityInput:
    fail_attempts: int


def your_activity_logic(input: MyActivityInput) -> str:
    _journal("logic", attempt=activity.info().attempt)
    if activity.info().attempt <= input.fail_attempts:
        raise ConnectionError("service unavailable")
    return "logic done"


@activity.defn(name="your-activity")
def your_heartbeating_activity(name: str = "nobody") -> str:
    """Heartbeats every 0.3 s for 1.2 s: longer than the snippet's heartbeat_timeout of 1 s."""
    _journal("start", activity_id=activity.info().activity_id)
    start = time.monotonic()
    try:
        for i in range(1, 5):
            _sleep_until_sync(start + 0.3 * i)
            activity.heartbeat(i)
    except CancelledError as exc:
        details = activity.cancellation_details()
        _journal("cancelled", activity_id=activity.info().activity_id, is_cancelled=activity.is_cancelled(),
                 cancel_requested=bool(details and details.cancel_requested), exc_type=type(exc).__name__)
        raise
    return f"heartbeated for {name}"


@activity.defn
async def heartbeat_then_fail() -> list:
    """The seed's prose: heartbeat(123, 456), fail; the next run sees 123 and 456."""
    if activity.info().attempt == 1:
        activity.heartbeat(123, 456)
        raise ValueError("fail after heartbeating")
    return list(activity.info().heartbeat_details)


# -- seed snippet "Override the retry interval with next_retry_delay" (verbatim but the placeholder)


@activity.defn
async def my_activity(input: MyActivityInput):
    try:
        # Your activity logic goes here
        return your_activity_logic(input)  # the placeholder, filled in
    except Exception as e:
        attempt = activity.info().attempt
        raise ApplicationError(
            f"Error encountered on attempt {attempt}",
            next_retry_delay=timedelta(seconds=3 * attempt),
        ) from e


# -- seed snippet "Heartbeat an Activity" (verbatim) ---------------------------------------------


@activity.defn
async def your_activity_definition() -> str:
    activity.heartbeat("heartbeat details!")


# -- seed snippets "Set a Heartbeat Timeout" (verbatim text) -----------------------------------------

START_ACTIVITY_SNIPPET = """\
workflow.start_activity(
    activity="your-activity",
    schedule_to_close_timeout=timedelta(seconds=5),
    heartbeat_timeout=timedelta(seconds=1),
)"""

EXECUTE_ACTIVITY_SNIPPET = """\
workflow.execute_activity(
    activity="your-activity",
    name,
    schedule_to_close_timeout=timedelta(seconds=5),
    heartbeat_timeout=timedelta(seconds=1),
)"""

ACTIVITIES = [your_activity, my_activity, your_activity_definition, your_heartbeating_activity,
              heartbeat_then_fail]


@pytest.fixture
def snippet_journal(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "journal.jsonl")
    monkeypatch.setenv(JOURNAL_ENV, path)
    return path


# -- the tests -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_set_activity_timeouts_and_retry_policy_snippets(snippet_journal: str) -> None:
    """The seed's first two snippets: execute_activity with start_to_close_timeout, then with a
    RetryPolicy(backoff 2.0, 5 attempts, 1 s initial, 2 s maximum) that retries a flaky activity
    (it fails on its first attempt)."""
    greeting = "Hello"

    async def workflow_run() -> tuple:
        async with ActorSystem(activities=ACTIVITIES, workers=1):
            # ...
            activity_timeout_result = await workflow.execute_activity(
                your_activity,
                YourParams(greeting, "Activity Timeout option"),
                # Activity Execution Timeout
                start_to_close_timeout=timedelta(seconds=10),
                # schedule_to_start_timeout=timedelta(seconds=10),
                # schedule_to_close_timeout=timedelta(seconds=10),
            )
            # ...
            activity_result = await workflow.execute_activity(
                your_activity,
                YourParams(greeting, "Retry Policy options"),
                start_to_close_timeout=timedelta(seconds=10),
                # Retry Policy
                retry_policy=RetryPolicy(
                    backoff_coefficient=2.0,
                    maximum_attempts=5,
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(seconds=2),
                    # non_retryable_error_types=["ValueError"],
                ),
            )
            return activity_timeout_result, activity_result

    t0 = time.monotonic()
    assert asyncio.run(workflow_run()) == ("Hello, Activity Timeout option!", "Hello, Retry Policy options!")
    # the flaky call fails once and is retried after initial_interval (R27)
    starts = [n["t"] for n in read_notes(snippet_journal, "your_activity")][1:]
    assert len(starts) == 2
    about(starts[1] - starts[0], 1.0, 0.4, "retry interval")
    assert time.monotonic() - t0 < 10


@pytest.mark.slow
def test_next_retry_delay_snippet(snippet_journal: str) -> None:
    """The seed's next_retry_delay snippet: the retry after attempt n waits 3 s x n (R33). With
    RetryPolicy(maximum_attempts=2) and logic that always fails: attempt 2 runs ~3 s after attempt
    1; the caller's cause is attempt 2's ApplicationError with next_retry_delay 6 s, chained to the
    original error."""

    async def run() -> BaseException:
        async with ActorSystem(activities=ACTIVITIES, workers=1):
            with pytest.raises(ActivityError) as info:
                await workflow.execute_activity(my_activity, MyActivityInput(fail_attempts=5),
                                                start_to_close_timeout=timedelta(seconds=10),
                                                retry_policy=RetryPolicy(maximum_attempts=2))
            return info.value

    error = asyncio.run(run())
    assert error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
    cause = error.cause
    assert isinstance(cause, ApplicationError) and cause.message == "Error encountered on attempt 2"
    assert cause.next_retry_delay == timedelta(seconds=6)
    assert isinstance(cause.cause, ApplicationError) and cause.cause.type == "ConnectionError"
    starts = [n["t"] for n in read_notes(snippet_journal, "logic")]
    assert len(starts) == 2
    about(starts[1] - starts[0], 3.0, 0.4, "the retry waited next_retry_delay = 3 s x attempt 1")


@pytest.mark.slow
def test_heartbeat_an_activity_snippet(monkeypatch: pytest.MonkeyPatch, snippet_journal: str) -> None:
    """The seed's heartbeat snippet reaches the runtime with its details; and, as the seed says,
    heartbeat(123, 456) before a failure shows up as heartbeat_details on the next run."""
    spy = HeartbeatSpy().install(monkeypatch)

    async def run() -> tuple:
        async with ActorSystem(activities=ACTIVITIES, workers=1):
            handle = workflow.start_activity(your_activity_definition,
                                             start_to_close_timeout=timedelta(seconds=10))
            result = await handle
            details = await workflow.execute_activity(
                heartbeat_then_fail, start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=0.1)))
            return handle.activity_id, result, details

    activity_id, result, details = asyncio.run(run())
    assert result is None  # the snippet's activity returns nothing
    assert [d for _, _, d in spy.of(activity_id)] == [("heartbeat details!",)]
    assert details == [123, 456]


@pytest.mark.slow
def test_heartbeat_timeout_start_activity_snippet(snippet_journal: str) -> None:
    """The seed's start_activity(activity="your-activity", schedule_to_close_timeout=5s,
    heartbeat_timeout=1s) evaluated verbatim: the activity heartbeats every 0.3 s for 1.2 s (past
    the 1 s heartbeat timeout) and completes. A second start is cancelled: as the seed says, the
    cancellation is delivered when the activity heartbeats (throttled at 0.8 s).

    (The snippet's 1 s heartbeat timeout against a 0.8 s throttle leaves 0.2 s for delivery
    (R53): on a badly overloaded machine an attempt may time out on heartbeat and be retried
    under the default policy; the assertions allow for that.)"""
    with ActorSystem(activities=ACTIVITIES, workers=1):
        handle = eval(START_ACTIVITY_SNIPPET)
        assert handle.result(timeout=10) == "heartbeated for nobody"

        t0 = time.monotonic()
        handle = eval(START_ACTIVITY_SNIPPET)
        time.sleep(0.5)
        t_cancel = time.monotonic()
        handle.cancel()
        error = handle.exception(timeout=5)
        assert isinstance(error, ActivityError) and error.retry_state is RetryState.CANCEL_REQUESTED
        assert time.monotonic() - t_cancel < 0.5, "TRY_CANCEL resolves the caller at once"
        deadline = time.monotonic() + 5
        while not (mine := [n for n in read_notes(snippet_journal, "cancelled")
                            if n["activity_id"] == handle.activity_id and n["cancel_requested"]]):
            assert time.monotonic() < deadline, read_notes(snippet_journal)
            time.sleep(0.02)
        # heartbeats at 0.3 (sent), 0.6, 0.9 (held back until 1.1): delivered at t~1.1
        about(mine[0]["t"] - t0, 1.1, 0.5, "cancellation delivered on a heartbeat")
        assert mine[0]["is_cancelled"] and mine[0]["exc_type"] == "CancelledError", mine


@pytest.mark.slow
def test_heartbeat_timeout_execute_activity_snippet(snippet_journal: str) -> None:
    """The seed's execute_activity(activity="your-activity", name, ...) is a SyntaxError in any
    Python (positional argument follows keyword argument), so it cannot run anywhere unchanged.
    Its evident meaning, with the activity passed positionally, runs."""
    with pytest.raises(SyntaxError, match="positional argument follows keyword argument"):
        compile(EXECUTE_ACTIVITY_SNIPPET, "<seed snippet>", "eval")
    runnable = EXECUTE_ACTIVITY_SNIPPET.replace('activity="your-activity"', '"your-activity"')
    name = "Temporal"

    async def run() -> str:
        async with ActorSystem(activities=ACTIVITIES, workers=1):
            return await eval(runnable, globals(), {"name": name})

    assert asyncio.run(run()) == "heartbeated for Temporal"

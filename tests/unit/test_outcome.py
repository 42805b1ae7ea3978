"""``Outcome``: the one-shot result slot behind every handle (R5: the first outcome wins)."""

from __future__ import annotations

import threading
import time

import pytest

from actorflow._outcome import Outcome

pytestmark = pytest.mark.timeout(10)


def test_first_outcome_wins_and_waiters_on_several_threads_all_wake() -> None:
    outcome = Outcome()
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(outcome.result())) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)  # let them block
    assert outcome.set(result=42)
    assert not outcome.set(error=ValueError("late"))  # R5
    for t in threads:
        t.join(5)
    assert seen == [42, 42, 42, 42]
    assert outcome.exception() is None


def test_a_timed_out_wait_withdraws_and_a_later_set_still_resolves() -> None:
    outcome = Outcome()
    assert outcome.wait(0.01) is False
    with pytest.raises(TimeoutError):
        outcome.result(timeout=0.01)
    assert outcome._waiters == []  # withdrawn, not leaked
    outcome.set(error=ValueError("boom"))
    assert outcome.wait(0) is True
    with pytest.raises(ValueError, match="boom"):
        outcome.result()
    assert isinstance(outcome.exception(), ValueError)


def test_callbacks_run_once_on_the_setter_or_at_once_when_already_done() -> None:
    outcome = Outcome()
    calls = []
    outcome.add_done_callback(lambda o: calls.append(("before", o.result())))
    outcome.set(result="r")
    outcome.add_done_callback(lambda o: calls.append(("after", o.result())))
    assert calls == [("before", "r"), ("after", "r")]

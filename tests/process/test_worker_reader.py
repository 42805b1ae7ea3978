"""The worker's pipe reader moves between the event loop and activity threads (``_child.py``).

Whichever thread reads a RUN starts it; the reader role goes to the loop when async RUNs arrive
and to an activity thread when sync ones do. These tests mix the two kinds on a single worker so
that the role changes hands while attempts run, and check that every RUN and every CANCEL still
reaches its attempt (R62, R64, D4), including when every slot runs a sync attempt. The
activities heartbeat every 20 ms with a 50 ms throttle, so a cancel is delivered promptly (R62).
"""

from __future__ import annotations

import pytest

from datetime import timedelta

from actorflow.exceptions import ActivityError, CancelledError
from tests.process import activities as acts
from tests.process import hb_activities as hb

pytestmark = pytest.mark.timeout(60)
STC = timedelta(seconds=60)
FAST_THROTTLE = timedelta(milliseconds=50)


def _beating(journal) -> list:
    return [str(journal), 0.02, 30.0, "reraise"]


def _assert_cancelled(handle) -> None:
    with pytest.raises(ActivityError) as info:
        handle.result(timeout=20)
    assert isinstance(info.value.__cause__, CancelledError)


def test_interleaved_sync_and_async_attempts_all_run_and_all_cancel(make_system, journal) -> None:
    system = make_system(activities=[hb.beat_loop, hb.beat_loop_sync], workers=1,
                         max_concurrent_activities=6, default_heartbeat_throttle_interval=FAST_THROTTLE)
    kinds = [hb.beat_loop_sync, hb.beat_loop, hb.beat_loop, hb.beat_loop_sync, hb.beat_loop_sync,
             hb.beat_loop]
    handles = []
    for i, fn in enumerate(kinds):
        handles.append(system.start_activity(fn, args=_beating(journal), start_to_close_timeout=STC))
        journal.wait_for("start", count=i + 1)  # one RUN per batch: the role moves each time
    assert len({r["pid"] for r in journal.records("start")}) == 1
    for handle in handles[::-1]:
        handle.cancel()
    for handle in handles:
        _assert_cancelled(handle)
    assert len(journal.wait_for("cancelled", count=len(kinds))) == len(kinds)


def test_cancel_reaches_attempts_when_every_slot_runs_a_sync_attempt(make_system, journal) -> None:
    system = make_system(activities=[hb.beat_loop_sync, acts.add], workers=1, max_concurrent_activities=3,
                         default_heartbeat_throttle_interval=FAST_THROTTLE)
    hanging = [system.start_activity(hb.beat_loop_sync, args=_beating(journal), start_to_close_timeout=STC)
               for _ in range(3)]
    journal.wait_for("start", count=3)
    queued = system.start_activity(acts.add, args=(2, 3), start_to_close_timeout=STC)
    hanging[1].cancel()  # needs a reader although three threads are busy
    _assert_cancelled(hanging[1])
    assert queued.result(timeout=20) == 5  # took the freed slot
    for handle in (hanging[0], hanging[2]):
        handle.cancel()
        _assert_cancelled(handle)


def test_a_mixed_burst_on_one_worker_returns_every_result(make_system) -> None:
    system = make_system(activities=[acts.add, acts.async_add], workers=1, max_concurrent_activities=8)
    handles = [system.start_activity(acts.add if i % 3 else acts.async_add, args=(i, 1),
                                     start_to_close_timeout=STC) for i in range(600)]
    assert [h.result(timeout=30) for h in handles] == [i + 1 for i in range(600)]

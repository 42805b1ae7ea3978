"""``VirtualClock`` on its own and with a real ``TimerActor`` (no worker processes): the Clock
protocol, ``advance``, never backwards, and when an automatic skip may or may not happen."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Hashable, List, Tuple

import pytest

from actorflow.clock import Clock
from actorflow.testing import VirtualClock
from actorflow.timer import TimerActor, TimerBatch


def test_is_a_clock_starting_at_zero_and_running_at_the_real_rate() -> None:
    clock = VirtualClock()
    assert isinstance(clock, Clock)
    t0 = clock.now()
    assert 0 <= t0 < 0.5
    time.sleep(0.05)
    assert 0.04 <= clock.now() - t0 < 1.0


def test_advance_moves_time_and_rejects_bad_values() -> None:
    clock = VirtualClock(auto_skip=False)
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    assert 300 <= clock.now() - before < 301
    assert clock.skipped == timedelta(minutes=5)
    clock.advance(timedelta(0))  # allowed
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(TypeError, match="timedelta"):
        clock.advance(5)  # type: ignore[arg-type]


def test_never_goes_backwards_under_concurrent_readers_and_advances() -> None:
    clock = VirtualClock()
    bad: List[Tuple[float, float]] = []

    def read() -> None:
        last = clock.now()
        for _ in range(5000):
            t = clock.now()
            if t < last:
                bad.append((last, t))
            last = t

    def advance() -> None:
        for _ in range(500):
            clock.advance(timedelta(microseconds=7))

    threads = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=advance)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def test_to_datetime_maps_readings_onto_the_start() -> None:
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    clock = VirtualClock(start=start)
    assert clock.to_datetime(0) == start
    assert clock.to_datetime(90.5) == start + timedelta(seconds=90.5)
    assert clock.to_datetime(clock.now()).tzinfo is not None
    with pytest.raises(ValueError, match="aware"):
        VirtualClock(start=datetime(2030, 1, 1))
    default = VirtualClock()
    assert abs(default.to_datetime(default.now()) - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_wakers_run_on_every_jump() -> None:
    clock = VirtualClock()
    calls: List[int] = []
    waker = lambda: calls.append(1)  # noqa: E731
    clock.add_waker(waker)
    clock.advance(timedelta(seconds=1))
    assert calls == [1]
    clock.remove_waker(waker)
    clock.advance(timedelta(seconds=1))
    assert calls == [1]


def test_without_a_probe_or_with_auto_skip_off_it_waits_in_real_time() -> None:
    clock = VirtualClock()
    deadline = clock.now() + 100
    assert 99 < clock.deadline_to_sleep_time(deadline) <= 100  # no system attached: nothing skips
    clock.attach_idle_probe(lambda: True)
    clock.auto_skip = False
    assert 99 < clock.deadline_to_sleep_time(deadline) <= 100
    assert clock.now() < 1
    assert clock.deadline_to_sleep_time(clock.now() - 1) == 0.0


def test_idle_probe_true_skips_to_the_deadline() -> None:
    clock = VirtualClock()
    clock.attach_idle_probe(lambda: True)
    deadline = clock.now() + 3600
    assert clock.deadline_to_sleep_time(deadline) == 0.0
    assert deadline <= clock.now() < deadline + 0.5
    assert clock.skips == 1


def test_busy_system_is_polled_not_skipped() -> None:
    clock = VirtualClock(poll=timedelta(milliseconds=5))
    clock.attach_idle_probe(lambda: False)
    deadline = clock.now() + 3600
    assert 0 < clock.deadline_to_sleep_time(deadline) <= 0.005
    assert clock.now() < 1 and clock.skips == 0


def test_a_failing_probe_means_busy() -> None:
    clock = VirtualClock()

    def probe() -> bool:
        raise RuntimeError("actor is dead")

    clock.attach_idle_probe(probe)
    assert clock.deadline_to_sleep_time(clock.now() + 60) > 0
    assert clock.skips == 0


def test_idle_must_last_the_settle_period() -> None:
    """Idle at the first look but busy at the second (a report was in flight): no skip."""
    clock = VirtualClock()
    answers = iter([True, False])
    clock.attach_idle_probe(lambda: next(answers))
    assert clock.deadline_to_sleep_time(clock.now() + 60) > 0
    assert clock.skips == 0


def test_no_skip_while_another_thread_acts_on_the_current_time() -> None:
    """A supervisor starting to handle a new message reads the clock first: a read by another
    thread during the final probe cancels the skip (it is retried at the next look)."""
    clock = VirtualClock()
    calls = []

    def probe() -> bool:
        calls.append(1)
        if len(calls) == 2:  # the final probe: somebody reads the time meanwhile
            reader = threading.Thread(target=clock.now)
            reader.start()
            reader.join()
        return True

    clock.attach_idle_probe(probe)
    deadline = clock.now() + 60
    assert clock.deadline_to_sleep_time(deadline) > 0
    assert clock.skips == 0
    assert clock.deadline_to_sleep_time(deadline) == 0.0  # next look: quiet, so it skips
    assert clock.skips == 1


def test_one_clock_drives_one_system_at_a_time() -> None:
    clock = VirtualClock()
    first, second = (lambda: True), (lambda: True)
    clock.attach_idle_probe(first)
    clock.attach_idle_probe(first)  # the same probe again is fine
    with pytest.raises(RuntimeError, match="own VirtualClock"):
        clock.attach_idle_probe(second)
    clock.detach_idle_probe(first)
    clock.attach_idle_probe(second)  # sequential reuse is fine
    clock.detach_idle_probe(first)  # detaching another probe is a no-op
    assert clock.deadline_to_sleep_time(clock.now() + 5) == 0.0


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="settle"):
        VirtualClock(settle=timedelta(0))
    with pytest.raises(ValueError, match="poll"):
        VirtualClock(poll=timedelta(seconds=-1))


def test_auto_skip_disabled_context_restores() -> None:
    clock = VirtualClock()
    with clock.auto_skip_disabled():
        assert not clock.auto_skip
    assert clock.auto_skip
    assert "VirtualClock" in repr(clock)


# -- with a real TimerActor -----------------------------------------------------------------


@pytest.fixture
def timer_with_clock() -> Any:
    """A TimerActor on a VirtualClock whose idle probe says: idle when the timer's inbox is empty."""
    clock = VirtualClock()
    fired: List[Tuple[Hashable, float, float]] = []
    done = threading.Event()

    def deliver(due: List[Tuple[Hashable, float]]) -> None:
        for key, deadline in due:
            fired.append((key, deadline, clock.now()))
        done.set()

    ref = TimerActor.start(clock, deliver)
    idle = threading.Event()  # the test says when "the rest of the system" is idle
    idle.set()
    probe = lambda: idle.is_set() and ref.actor_inbox.empty()  # noqa: E731
    clock.attach_idle_probe(probe)
    yield clock, ref, fired, idle
    clock.detach_idle_probe(probe)
    ref.stop(block=True, timeout=10)


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_timer_fires_skipped_deadlines_in_order_at_their_own_times(timer_with_clock: Any) -> None:
    clock, ref, fired, idle = timer_with_clock
    idle.clear()
    now = clock.now()
    started = time.monotonic()
    # two batches: the later deadline arrives first; the skips must stop at each earlier one
    ref.tell(TimerBatch(adds=[("late", now + 3600, 0)]))
    ref.tell(TimerBatch(adds=[("early", now + 60, 0), ("middle", now + 600, 0)]))
    assert ref.ask("statistics", timeout=5).pending == 3
    idle.set()
    _wait(lambda: len(fired) == 3)
    assert time.monotonic() - started < 2
    assert [key for key, _, _ in fired] == ["early", "middle", "late"]
    for _, deadline, at in fired:
        assert deadline <= at < deadline + 0.5  # it fired at its deadline, not later virtual time


def test_advance_wakes_a_timer_that_waits_in_real_time(timer_with_clock: Any) -> None:
    clock, ref, fired, _ = timer_with_clock
    clock.auto_skip = False
    ref.tell(TimerBatch(adds=[("k", clock.now() + 30, 0)]))
    time.sleep(0.1)
    assert fired == []
    clock.advance(timedelta(seconds=30))
    _wait(lambda: len(fired) == 1)
    assert fired[0][0] == "k"

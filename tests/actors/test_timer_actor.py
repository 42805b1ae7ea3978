"""TimerActor on a real thread (STYLE.md 2.15 actors layer): firing order, lazy wake-ups."""

from __future__ import annotations

import threading
import time

import pytest

from actorflow.clock import SystemClock
from pykka._envelope import Envelope

from actorflow.timer import TimerActor, TimerBatch


class _Recorder:
    def __init__(self) -> None:
        self.fired: list = []
        self.event = threading.Event()

    def __call__(self, due) -> None:
        self.fired.extend(key for key, _ in due)
        self.event.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.fired) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return len(self.fired) >= count


@pytest.fixture(params=[True, False], ids=["lazy", "eager"])
def timer(request):
    clock = SystemClock()
    recorder = _Recorder()
    ref = TimerActor.start(clock, recorder, lazy=request.param)
    yield ref, clock, recorder
    ref.stop(block=True, timeout=5)


def test_timers_fire_in_deadline_order(timer):
    ref, clock, recorder = timer
    now = clock.now()
    ref.tell(TimerBatch([("c", now + 0.15, 0), ("a", now + 0.05, 0), ("b", now + 0.10, 0)]))
    assert recorder.wait_for(3)
    assert recorder.fired == ["a", "b", "c"]


def test_R14_same_deadline_fires_by_priority(timer):
    ref, clock, recorder = timer
    at = clock.now() + 0.05
    ref.tell(TimerBatch([("heartbeat", at, 4), ("start_to_close", at, 1), ("schedule_to_close", at, 3)]))
    assert recorder.wait_for(3)
    assert recorder.fired == ["start_to_close", "schedule_to_close", "heartbeat"]


def test_cancelled_timer_never_fires_even_when_the_cancel_is_deferred(timer):
    ref, clock, recorder = timer
    now = clock.now()
    ref.tell(TimerBatch([("first", now + 0.1, 0)]))
    time.sleep(0.02)  # the thread now sleeps towards "first"
    ref.tell(TimerBatch([("later", now + 0.3, 0)]))  # deferred under lazy: no earlier than 0.1
    ref.tell(TimerBatch([], ["later"]))  # deferred cancel of a deferred add
    assert recorder.wait_for(1)
    time.sleep(0.4)
    assert recorder.fired == ["first"]


def test_deferred_add_is_not_lost_when_the_map_empties(timer):
    """A deferred add must fire even if the timer's map empties before it wakes again."""
    ref, clock, recorder = timer
    now = clock.now()
    ref.tell(TimerBatch([("far", now + 0.3, 0)]))
    time.sleep(0.02)
    ref.tell(TimerBatch([("deferred", now + 0.4, 0)]))  # later than the current wake-up
    ref.tell(TimerBatch([("due now", now - 1.0, 0)], ["far"]))  # urgent; then the map is empty
    assert recorder.wait_for(2, timeout=3.0)
    assert recorder.fired == ["due now", "deferred"]


def test_statistics_reports_pending_timers(timer):
    ref, clock, recorder = timer
    ref.tell(TimerBatch([("x", clock.now() + 60, 0), ("y", clock.now() + 61, 0)], []))
    ref.tell(TimerBatch([], ["y"]))
    stats = ref.ask("statistics", timeout=5)
    assert stats.pending == 1


def test_put_ops_defers_like_a_batch_and_an_earlier_deadline_still_wakes_the_thread(timer):
    """The supervisors' path (``put_ops``): one op per key, a cancel (None) wins over the add."""
    ref, clock, recorder = timer
    inbox = ref.actor_inbox
    now = clock.now()
    inbox.put_ops({"first": (now + 0.3, 0)})
    time.sleep(0.02)  # the thread now sleeps towards "first"
    inbox.put_ops({"later": (now + 0.5, 0), "gone": (now + 0.4, 0)})  # deferred under lazy
    inbox.put_ops({"gone": None})
    inbox.put_ops({"urgent": (now + 0.05, 0)})  # earlier than the wake-up: must wake it now
    assert recorder.wait_for(1, timeout=3.0)
    assert recorder.fired == ["urgent"]
    assert recorder.wait_for(3, timeout=3.0)
    time.sleep(0.2)
    assert recorder.fired == ["urgent", "first", "later"]


def _unstarted_timer():
    """A TimerActor whose own thread never runs: only fire_due_inline can fire its deadlines."""
    clock = SystemClock()
    fired = []
    actor = TimerActor(clock, lambda due: fired.append((threading.current_thread().name, due)), lazy=True)
    return actor, clock, fired


def test_fire_due_inline_fires_on_the_calling_thread_once_a_deadline_has_passed():
    actor, clock, fired = _unstarted_timer()
    now = clock.now()
    actor.actor_inbox.put_ops({"due": (now - 0.01, 0), "not yet": (now + 60, 0)})
    actor.fire_due_inline()
    assert fired == [(threading.current_thread().name, [("due", now - 0.01)])]
    actor.fire_due_inline()  # nothing else is due: the hint now says so
    assert len(fired) == 1


def test_fire_due_inline_applies_deferred_and_queued_cancels_first():
    actor, clock, fired = _unstarted_timer()
    inbox = actor.actor_inbox
    now = clock.now()
    inbox.put_ops({"queued": (now + 0.02, 0)})  # no thread asleep: queued
    inbox._wake_at = now + 0.02  # as if the thread slept towards "queued"
    inbox.put_ops({"deferred": (now + 0.03, 0)})
    inbox.put_ops({"queued": None, "deferred": None})  # both cancelled before they are due
    time.sleep(0.05)
    actor.fire_due_inline()
    assert fired == []


def test_fire_due_inline_leaves_other_messages_to_the_actor_thread():
    import pykka

    actor, clock, fired = _unstarted_timer()
    actor.actor_inbox.put_ops({"due": (clock.now() - 1, 0)})
    actor.actor_inbox.put(Envelope("statistics", reply_to=pykka.ThreadingFuture()))
    actor.fire_due_inline()
    assert fired == []  # order is kept: the ask must be answered first, by the actor's thread


def test_fire_due_inline_wakes_the_timer_thread_when_it_sleeps_past_the_new_next_deadline():
    """The inline path may take the very operations that were to wake the actor's thread; the
    thread must then be woken to re-arm for the earlier deadline, not sleep on towards the old."""
    clock = SystemClock()
    recorder = _Recorder()
    instances: list = []
    ref = TimerActor.start(clock, recorder, lazy=True, instances=instances)
    try:
        actor = instances[0]
        inbox = ref.actor_inbox
        now = clock.now()
        inbox.put_ops({"far": (now + 30, 0)})
        time.sleep(0.1)  # the thread now sleeps towards "far"
        with inbox.mutex:  # as if these had arrived and not yet reached the thread
            inbox._deferred.update({"due": (now - 0.01, 0), "soon": (now + 0.2, 0)})
            inbox._lower_hint(now - 0.01)
        actor.fire_due_inline()
        assert recorder.fired == ["due"]
        assert recorder.wait_for(2, timeout=3.0), "the thread slept on towards the old deadline"
        assert recorder.fired == ["due", "soon"]
    finally:
        ref.stop(block=True, timeout=5)


def test_queued_operations_come_out_before_newer_deferred_ones():
    """put() moves deferred operations into the queue ahead of an urgent batch, so what is still
    deferred is newer than anything queued; get() must not hand it over first (an older add of
    the same key would then overwrite the newer deadline)."""
    actor, clock, fired = _unstarted_timer()
    inbox = actor.actor_inbox
    now = clock.now()
    inbox._wake_at = now + 10  # as if the thread slept towards a deadline 10 s away
    inbox.put_ops({"k": (now + 1, 0)})  # earlier than the wake-up: queued
    inbox.put_ops({"k": (now + 20, 0)})  # the newer deadline of the same key: deferred
    first, second = inbox.get().message, inbox.get().message
    assert list(first.adds) == [("k", now + 1, 0)]
    assert list(second.adds) == [("k", now + 20, 0)]


def test_fire_due_inline_does_not_overtake_a_message_the_timer_thread_holds():
    actor, clock, fired = _unstarted_timer()
    inbox = actor.actor_inbox
    now = clock.now()
    inbox.put_ops({"k": (now + 100, 0)})
    held = inbox.get()  # the actor's thread took it and has not handled it yet
    inbox.put_ops({"k": (now + 200, 0), "due": (now - 1, 0)})  # newer: k moves later
    actor.fire_due_inline()
    assert fired == []  # overtaking would set k to +200 now and back to +100 after
    actor.on_receive(held.message)
    actor.fire_due_inline()  # now nothing is in flight: the newer operations apply, in order
    assert [key for _, due in fired for key, _ in due] == ["due"]
    assert actor._map._entries["k"][0] == now + 200

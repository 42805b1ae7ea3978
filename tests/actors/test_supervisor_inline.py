"""SupervisorActor.handle_inline keeps the order of told messages (STYLE.md 5, the hot path)."""

from __future__ import annotations

from pykka._envelope import Envelope

from actorflow._messages import CancelExecution
from actorflow.clock import SystemClock
from actorflow.supervisor import SupervisorActor


class _Timer:
    class actor_inbox:
        @staticmethod
        def put_ops(ops):
            pass


def test_handle_inline_waits_for_a_message_taken_from_the_inbox_but_not_yet_handled():
    actor = SupervisorActor(pool=None, timer=_Timer(), clock=SystemClock(), stop_grace=1.0)
    nothing = CancelExecution(-1)  # no such execution: handling it changes nothing
    assert actor.handle_inline(nothing, may_write=False) is True
    actor.actor_inbox.put(Envelope(CancelExecution(-2)))
    assert actor.handle_inline(nothing, may_write=False) is False  # queued: it goes first
    taken = actor.actor_inbox.get()  # as pykka's loop does, before it calls on_receive
    assert not actor.actor_inbox.queue
    assert actor.handle_inline(nothing, may_write=False) is False  # in flight: still first
    actor.on_receive(taken.message)
    assert actor.handle_inline(nothing, may_write=False) is True

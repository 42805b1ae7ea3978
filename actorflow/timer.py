"""The timer actor and the pure deadline map it owns (STYLE.md 2.6).

``DeadlineMap`` is a plain sorted map (sortedcontainers) with O(log n) add and cancel.
``TimerActor`` is one pykka actor, so one thread, whose inbox ``get`` waits no longer than the
next deadline: the actor thread *is* the waiting thread.

Under load that thread has to win the GIL from the busy runtime threads when a deadline comes,
which can take tens of milliseconds. So the runtime's own busy threads (supervisors, the pool's
reader, callers) also call ``fire_due_inline`` after each message they handle: a float compare in
the common case, and when a deadline has passed and the actor is idle, the same actor logic runs
on that thread, serialised with the actor's thread by a lock (as ``SupervisorActor.handle_inline``).
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import pykka
from pykka._envelope import Envelope
from sortedcontainers import SortedList

from .clock import Clock

__all__ = ["DeadlineMap", "TimerActor", "TimerBatch", "TimerStatistics"]


class DeadlineMap:
    """Deadlines by key; ``pop_due`` returns keys in (deadline, priority, insertion) order."""

    def __init__(self) -> None:
        self._sorted: SortedList = SortedList()
        self._entries: Dict[Hashable, Tuple[float, int, int, Hashable]] = {}
        self._seq = itertools.count()

    def add(self, key: Hashable, deadline: float, priority: int = 0) -> None:
        """Set ``key``'s deadline, replacing any earlier one for the same key."""
        old = self._entries.get(key)
        if old is not None:
            self._sorted.remove(old)
        entry = (deadline, priority, next(self._seq), key)
        self._entries[key] = entry
        self._sorted.add(entry)

    def cancel(self, key: Hashable) -> bool:
        """Forget ``key``; False if it was not pending (already fired or never added)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._sorted.remove(entry)
        return True

    def next_deadline(self) -> Optional[float]:
        return self._sorted[0][0] if self._sorted else None

    def pop_due(self, now: float) -> List[Tuple[Hashable, float]]:
        """Remove and return ``(key, deadline)`` of every entry due at ``now``, in order."""
        due = []
        while self._sorted and self._sorted[0][0] <= now:
            deadline, _, _, key = self._sorted.pop(0)
            del self._entries[key]
            due.append((key, deadline))
        return due

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries


@dataclass(frozen=True)
class TimerBatch:
    """Timers to add ``(key, deadline, priority)`` and keys to cancel, applied in that order."""

    adds: Sequence[Tuple[Hashable, float, int]] = ()
    cancels: Sequence[Hashable] = ()

    def to_ops(self) -> Dict[Hashable, Optional[Tuple[float, int]]]:
        """The inverse of ``from_ops``: adds, then cancels (a key in both ends cancelled)."""
        ops: Dict[Hashable, Optional[Tuple[float, int]]] = {key: (deadline, priority)
                                                              for key, deadline, priority in self.adds}
        ops.update(dict.fromkeys(self.cancels))
        return ops

    @classmethod
    def from_ops(cls, ops: Dict[Hashable, Optional[Tuple[float, int]]]) -> "TimerBatch":
        """From ``{key: (deadline, priority)}`` (add) or ``{key: None}`` (cancel), one op per key."""
        adds = [(key, op[0], op[1]) for key, op in ops.items() if op is not None]
        cancels = [key for key, op in ops.items() if op is None]
        return cls(adds, cancels)


@dataclass(frozen=True)
class TimerStatistics:
    pending: int
    fired: int
    max_lateness: float


class _Tick:
    """Inbox sentinel: a deadline may be due (or the clock jumped)."""


_TICK = _Tick()


_LAZY_LIMIT = 4096  # deferred timer keys that wake the timer anyway, bounding memory


class _DeadlineInbox(queue.Queue):
    """An inbox whose ``get`` returns a tick when the next deadline is due.

    With ``lazy`` on, a ``TimerBatch`` that only cancels timers or adds deadlines no earlier than
    the one the thread already sleeps towards does *not wake the thread*: its operations are
    merged into a per-key dict (the last operation on a key wins, so an attempt's start-to-close
    add and its cancel collapse into one entry) and handed over when the thread wakes anyway, or
    ahead of the next message that must wake it, so operations keep their order. Most timers are
    cancelled long before they are due, so on the hot path the timer thread does not compete for
    the GIL at all.
    """

    def __init__(self, next_deadline: Callable[[], Optional[float]], clock: Clock, lazy: bool) -> None:
        super().__init__()
        self._next_deadline = next_deadline
        self._clock = clock
        self._lazy = lazy
        self._wake_at: Optional[float] = None  # the deadline the thread sleeps towards
        self._deferred: Dict[Hashable, Optional[Tuple[float, int]]] = {}  # key -> add or cancel
        # No pending deadline (in the map, queued or deferred) is earlier; read without the
        # mutex by fire_due_inline, so a plain float.
        self.due_hint = math.inf
        self._deferred_min = math.inf  # no deferred add is earlier
        # A message was handed to the actor's thread and is not handled yet (set under the mutex
        # as it leaves, cleared by the actor when done): fire_due_inline must not overtake it.
        self.in_flight = False

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:  # type: ignore[override]
        with self.mutex:
            # Deferred operations are newer than anything queued (put() moves them in ahead of
            # an urgent message), so they come out only once the queue is empty.
            deferred = None if self.queue else self._take_deferred()
            if deferred is not None:
                self.in_flight = True
                return Envelope(deferred)  # awake anyway: apply what was deferred first
            if self._lazy:  # the map may be in use on another thread (fire_due_inline): the hint
                deadline: Optional[float] = None if self.due_hint == math.inf else self.due_hint
            else:
                deadline = self._next_deadline()
            self._wake_at = deadline  # read and set under the mutex, as reset_hint compares them
        if deadline is None:
            return super().get()
        try:
            return super().get(timeout=self._clock.deadline_to_sleep_time(deadline))
        except queue.Empty:
            with self.mutex:
                batch = self._take_deferred()
                self.in_flight = True
            # deferred cancels are applied before anything fires
            return Envelope(batch if batch is not None else _TICK)

    def _get(self) -> Any:
        """Mutex held (Queue.get): the message leaves the queue and is in flight at once."""
        self.in_flight = True
        return self.queue.popleft()

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        if self._lazy and isinstance(item.message, TimerBatch) and item.reply_to is None:
            self.put_ops(item.message.to_ops())
        elif self._lazy:
            with self.mutex:
                self._enqueue(item)
        else:
            super().put(item)

    def put_ops(self, ops: Dict[Hashable, Optional[Tuple[float, int]]]) -> None:
        """Same as telling ``TimerBatch.from_ops(ops)``, without building the batch when the
        operations can be deferred (the common case: see the class docstring)."""
        if not self._lazy:
            super().put(Envelope(TimerBatch.from_ops(ops)))
            return
        with self.mutex:
            earliest = min((op[0] for op in ops.values() if op is not None), default=math.inf)
            self._lower_hint(earliest)
            if self._wake_at is None or earliest < self._wake_at:
                self._enqueue(Envelope(TimerBatch.from_ops(ops)))  # must wake the thread
                return
            self._deferred.update(ops)
            if len(self._deferred) >= _LAZY_LIMIT:
                self._enqueue(Envelope(self._take_deferred()))

    def _enqueue(self, item: Any) -> None:
        """Mutex held. Queue ``item`` behind what was deferred before it, and wake the thread."""
        deferred = self._take_deferred()
        if deferred is not None:
            self._put(Envelope(deferred))
            self.unfinished_tasks += 1
        self._put(item)
        self.unfinished_tasks += 1
        self.not_empty.notify()

    def _lower_hint(self, deadline: float) -> None:
        """Mutex held. Every add passes here when it is put, queued or deferred."""
        if deadline < self.due_hint:
            self.due_hint = deadline
        if deadline < self._deferred_min:
            self._deferred_min = deadline  # a lower bound, whether or not this add is deferred

    def reset_hint(self, next_deadline: Optional[float], wake_thread: bool = False) -> None:
        """The actor's map changed: ``next_deadline`` is its earliest deadline. The hint becomes
        the earliest of that and of what is still queued or deferred.

        ``wake_thread``: another thread changed the map (``fire_due_inline``), and may have taken
        the very message that was to wake the actor's thread; if that thread sleeps towards a
        later deadline than the new hint (or none), a tick wakes it to re-arm.
        """
        with self.mutex:
            hint = math.inf if next_deadline is None else next_deadline
            if self._deferred and self._deferred_min < hint:
                hint = self._deferred_min
            for envelope in self.queue:  # usually empty: only urgent batches are queued
                message = envelope.message
                if isinstance(message, TimerBatch) and message.adds:
                    hint = min(hint, min(deadline for _, deadline, _ in message.adds))
            self.due_hint = hint
            wake_at = math.inf if self._wake_at is None else self._wake_at
            if wake_thread and hint < wake_at:
                self._put(Envelope(_TICK))
                self.unfinished_tasks += 1
                self.not_empty.notify()

    def take_timer_operations(self) -> Optional[List[Any]]:
        """Mutex held by the caller. Remove and return every queued message, then the deferred
        operations, in order, if they are all timer operations or ticks; None (taking nothing)
        if anything else waits, which only the actor's thread may handle, or if the actor's
        thread holds a message it has not handled yet (it is older than all of these)."""
        if self.in_flight:
            return None
        for envelope in self.queue:
            if envelope.reply_to is not None or not isinstance(envelope.message, (TimerBatch, _Tick)):
                return None
        messages = [envelope.message for envelope in self.queue]
        self.queue.clear()
        deferred = self._take_deferred()
        if deferred is not None:
            messages.append(deferred)
        return messages

    def _take_deferred(self) -> Optional["TimerBatch"]:
        """Mutex held. The deferred operations as one batch (each key once), or None."""
        if not self._deferred:
            return None
        deferred, self._deferred = self._deferred, {}
        self._deferred_min = math.inf
        return TimerBatch.from_ops(deferred)


class TimerActor(pykka.ThreadingActor):
    """Owns every deadline of the system; tells ``deliver`` the keys that fire, in order.

    Runs on its own actor thread. ``deliver`` is called with a list of ``(key, deadline)`` on
    that thread, or on a runtime thread in ``fire_due_inline``; it must only hand the keys on,
    never block.
    """

    use_daemon_thread = True

    def __init__(self, clock: Clock, deliver: Callable[[List[Tuple[Hashable, float]]], None],
                 lazy: bool = True, instances: Optional[List["TimerActor"]] = None) -> None:
        self._clock = clock
        self._lazy = lazy
        self._deliver = deliver
        self._map = DeadlineMap()
        self._fired = 0
        self._max_lateness = 0.0
        self._processing = threading.Lock()  # held while the map is used, on any thread
        super().__init__()
        if instances is not None:
            instances.append(self)
        self._inbox: _DeadlineInbox = self.actor_inbox  # type: ignore[assignment]
        self._waker = lambda: self.actor_inbox.put(Envelope(_TICK))

    def _create_actor_inbox(self) -> _DeadlineInbox:  # type: ignore[override]
        return _DeadlineInbox(self._map.next_deadline, self._clock, self._lazy)

    def on_start(self) -> None:
        self._clock.add_waker(self._waker)

    def on_stop(self) -> None:
        self._clock.remove_waker(self._waker)

    def on_receive(self, message: Any) -> Any:
        with self._processing:
            try:
                if message == "statistics":
                    return TimerStatistics(len(self._map), self._fired, self._max_lateness)
                self._apply(message)
                self._fire_due()  # also under a steady stream of messages, so firing is never starved
                if self._lazy:
                    self._inbox.reset_hint(self._map.next_deadline())
                return None
            finally:
                self._inbox.in_flight = False

    def fire_due_inline(self) -> None:
        """Fire the deadlines that are due on the calling thread, if the actor is idle.

        Called by the runtime's busy threads after each message they handle; costs a clock read
        and a compare unless a deadline has passed. Only for the real clock (a virtual clock's
        jumps are driven through the actor's thread).
        """
        inbox = self._inbox
        # (not lazy: a virtual clock, whose idle probe asks the supervisors while holding the
        # clock's lock, so this must not read that clock)
        if not self._lazy or inbox.due_hint > self._clock.now():
            return
        if not self._processing.acquire(blocking=False):
            return  # the actor's thread (or another) is at it
        try:
            with inbox.mutex:
                messages = inbox.take_timer_operations()
            if messages is None:
                return  # something only the actor's thread may handle is queued: it will fire
            for message in messages:
                self._apply(message)
            self._fire_due()
            inbox.reset_hint(self._map.next_deadline(), wake_thread=True)
        finally:
            self._processing.release()

    def _apply(self, message: Any) -> None:
        if isinstance(message, TimerBatch):
            for key, deadline, priority in message.adds:
                self._map.add(key, deadline, priority)
            for key in message.cancels:
                self._map.cancel(key)
        elif not isinstance(message, _Tick):
            raise TypeError(f"TimerActor cannot handle {message!r}")

    def _fire_due(self) -> None:
        next_deadline = self._map.next_deadline()
        if next_deadline is None:
            return
        now = self._clock.now()
        if next_deadline > now:
            return
        due = self._map.pop_due(now)
        self._fired += len(due)
        lateness = now - due[0][1]
        if lateness > self._max_lateness:
            self._max_lateness = lateness
        self._deliver(due)

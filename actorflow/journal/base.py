"""The journal interface, and the in-memory journal behind ``ActorSystem(journal=None)``.

The supervisors and the system talk to a ``Journal`` only; what it is made of (memory, SQLite)
is its own business, as with SQLAlchemy's dialects. Every journal keeps the index of *open*
executions by ``activity_id`` (D9: an id is unique among open executions); what differs is where
closed executions are retained and whether anything survives the process (``durable``).

Threads: ``claim`` and ``latest_closed`` run on callers' threads; ``record_*`` on
the supervisor (or inline) thread that handles the execution; both sides take ``self._lock``
only for dictionary work.

The in-memory journal keeps the record (machine, history, outcome) of recently closed executions
that were started with an explicit ``activity_id`` (see ``MEMORY_RETAINED_MAX``), so that
``get_activity_handle`` and the id reuse policies see them. Nothing here is written anywhere: the
hot path pays a dictionary insert at start and a delete at close.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

from ..common import ActivityIDConflictPolicy, ActivityIDReusePolicy
from ..exceptions import ActivityAlreadyStartedError

__all__ = ["Journal", "MemoryJournal", "Recovered", "StoredRun", "COMPLETED_STATUSES", "MEMORY_RETAINED_MAX"]

log = logging.getLogger(__name__)

COMPLETED_STATUSES = frozenset({"Completed"})
"""D9: ALLOW_DUPLICATE_FAILED_ONLY lets an id start again unless its last run completed."""


@dataclass
class StoredRun:
    """An execution read back from a journal: a closed one (for handles, describe and id
    policies), or an open one to recover. Times are POSIX timestamps (wall clock)."""

    exec_id: int
    run_id: str
    activity_id: str
    activity_type: str
    task_queue: str
    status: str  # the visibility spelling: "Running", "Completed", ... (_codec.STATUS_OF_OUTCOME)
    start_time: float
    close_time: Optional[float]
    options: Dict[str, Any]
    args_bytes: Optional[bytes] = None
    state: Optional[tuple] = None  # the machine snapshot, times as timestamps; None: not scheduled yet
    details_bytes: Optional[bytes] = None
    outcome: Optional[tuple] = None  # ("result", bytes) | ("error", ActivityError)
    history_seq: int = 0  # the next history index


@dataclass
class Recovered:
    """What ``Journal.open`` found: open executions to resume, and the first free exec id."""

    runs: List[StoredRun] = field(default_factory=list)
    next_exec_id: int = 1
    unregistered: Dict[str, int] = field(default_factory=dict)  # activity type -> open executions


class Journal:
    """The interface the system and the supervisors call; also the in-memory index of open
    executions that every journal shares. Subclasses decide where closed executions live."""

    durable = False

    def __init__(self, retention: float) -> None:
        self.retention = retention  # seconds a closed execution stays addressable
        self._lock = threading.Lock()
        self._open: Dict[str, Any] = {}  # activity_id -> ExecutionRecord of the open run

    # -- life cycle -------------------------------------------------------------------------

    def open(self, clock: Any, registered: Iterable[str]) -> Recovered:
        """Take ownership and read what must be resumed. Nothing to do in memory."""
        return Recovered()

    def close(self) -> None:
        """Release ownership (after the last write)."""

    # -- ids (callers' threads) -------------------------------------------------------------

    def claim(self, activity_id: str, activity_type: str, record: Any, explicit: bool,
              reuse: ActivityIDReusePolicy, conflict: ActivityIDConflictPolicy) -> Any:
        """D9: register ``record`` as the open run of ``activity_id``; return None when it may
        start, or the open record that ``USE_EXISTING`` answers with. Raises
        ``ActivityAlreadyStartedError`` when the policies forbid the start."""
        with self._lock:
            existing = self._open.get(activity_id)
            if existing is not None:
                if conflict == ActivityIDConflictPolicy.USE_EXISTING:
                    return existing
                raise ActivityAlreadyStartedError(
                    activity_id, existing.activity_type, run_id=existing.run_id,
                    message=(f"Activity execution already started: activity_id {activity_id!r} is "
                             f"open (run {existing.run_id}); pass id_conflict_policy="
                             "ActivityIDConflictPolicy.USE_EXISTING to get a handle to it, or use "
                             "another activity_id"),
                )
            if explicit and reuse in (ActivityIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                                      ActivityIDReusePolicy.REJECT_DUPLICATE):
                latest = self.latest_closed(activity_id)
                if latest is not None and (reuse == ActivityIDReusePolicy.REJECT_DUPLICATE
                                           or latest.status in COMPLETED_STATUSES):
                    rule = ("REJECT_DUPLICATE allows no new run of a retained id"
                            if reuse == ActivityIDReusePolicy.REJECT_DUPLICATE else
                            "ALLOW_DUPLICATE_FAILED_ONLY allows a new run only after one that did "
                            "not complete")
                    raise ActivityAlreadyStartedError(
                        activity_id, latest.activity_type, run_id=latest.run_id,
                        message=(f"Activity execution already started: activity_id {activity_id!r} "
                                 f"has a closed run ({latest.status}, run {latest.run_id}) and "
                                 f"{rule}; use another id or id_reuse_policy=ALLOW_DUPLICATE"),
                    )
            self._open[activity_id] = record
            return None

    def adopt(self, record: Any) -> None:
        """A recovered execution takes its id among the open ones (D8)."""
        with self._lock:
            self._open[record.machine.config.activity_id] = record

    def release_claim(self, activity_id: str, record: Any) -> None:
        """Undo ``claim`` for a start that failed before it was scheduled."""
        with self._lock:
            if self._open.get(activity_id) is record:
                del self._open[activity_id]

    def open_record(self, activity_id: str) -> Any:
        """The open run's record, or None."""
        return self._open.get(activity_id)

    def latest_closed(self, activity_id: str) -> Optional[Any]:
        """The latest retained closed run of ``activity_id`` (a record in memory, a ``StoredRun``
        in a durable journal), or None. ``self._lock`` may be held by the caller."""
        raise NotImplementedError

    # -- what supervisors record (the execution's thread) -----------------------------------

    def record_new(self, record: Any) -> Any:
        """A start: returns a ticket for ``wait_durable`` (None when nothing needs waiting)."""
        return None

    def wait_durable(self, ticket: Any) -> None:
        """Return once the start behind ``ticket`` is committed."""

    def record_update(self, record: Any) -> None:
        """The machine changed (an event was handled); durable journals keep its snapshot."""

    def record_closed(self, record: Any) -> None:
        """The execution closed: move it from the open index to the retained ones."""
        raise NotImplementedError

    def after_durable(self, callbacks: List[Callable[[], None]]) -> None:
        """Run ``callbacks`` once everything recorded so far is committed (at once in memory)."""
        for callback in callbacks:
            callback()

    # -- reading (callers' threads) ---------------------------------------------------------

    def history_prefix(self, record: Any) -> List[tuple]:
        """History entries of ``record`` written by an earlier system (raw events, POSIX
        timestamps); empty when the record's own list holds all of it."""
        return []


MEMORY_RETAINED_MAX = 10_000
"""Closed executions a system without a journal keeps: those started with an explicit
``activity_id``, the most recent ones, within ``retention``.

Memory, not disk, holds them, and the garbage collector walks whatever is kept (measured: the
last 10,000 closed no-op executions doubled the collector's cost per execution). So a system
without a journal retains only ids its caller chose, and at most this many: a busy in-memory
system stays as fast and as small as before ids became addressable. A system that must address
every closed execution uses a journal."""


class MemoryJournal(Journal):
    """``journal=None``: open and retained executions in this process only (D9, D10)."""

    def __init__(self, retention: float, now: Callable[[], float]) -> None:
        super().__init__(retention)
        self._now = now  # the system clock's now(), for the retention horizon
        # Closed runs in the order they closed: (close time, record); swept from the left.
        self._closed: Deque[Tuple[float, Any]] = collections.deque()
        self._latest: Dict[str, Any] = {}  # activity_id -> latest closed record

    def record_closed(self, record: Any) -> None:
        machine = record.machine
        activity_id = machine.config.activity_id
        if not record.explicit_id:  # a generated id is not retained in memory (MEMORY_RETAINED_MAX)
            self.release_claim(activity_id, record)
            return
        record.args_bytes = record.fn_bytes = None  # not needed once closed: keep it small
        with self._lock:
            if self._open.get(activity_id) is record:
                del self._open[activity_id]
            self._latest[activity_id] = record
            closed = self._closed
            closed.append((machine.close_time, record))
            if len(closed) > MEMORY_RETAINED_MAX:
                self._forget(closed.popleft()[1])
            if len(closed) & 255 == 0:
                self._sweep_locked()

    def _sweep_locked(self) -> None:
        horizon = self._now() - self.retention
        closed = self._closed
        while closed and closed[0][0] < horizon:
            self._forget(closed.popleft()[1])

    def _forget(self, record: Any) -> None:
        activity_id = record.machine.config.activity_id
        if self._latest.get(activity_id) is record:
            del self._latest[activity_id]

    def latest_closed(self, activity_id: str) -> Optional[Any]:
        record = self._latest.get(activity_id)
        if record is None or record.machine.close_time < self._now() - self.retention:
            return None  # past its retention: not addressable even before the sweep (D8)
        return record

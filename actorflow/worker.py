"""The parent side of the worker processes: spawn, slots, the attempt queue, crashes (D1, D2).

``WorkerPool`` owns every worker process and its pipe, the slots (``max_concurrent_activities``
per worker) and the queue of attempts waiting for a slot (the wait that schedule-to-start bounds).
One reader thread waits on every pipe and every process sentinel at once (as CPython's
ProcessPoolExecutor does) and hands what it reads to the supervisors as ``tell``s, grouped per
supervisor; it never writes to a pipe, so a worker blocked on a full pipe can never deadlock it.
Writes happen on the supervisor threads.

Slots and the queue are shared by all supervisors, so they live here behind one lock, held only
for dictionary work, never across I/O.

Workers are started by _launch.py: fresh interpreters that never run the program's main module,
each leading its own process group, which is killed with the worker (D2, D6).
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import select
import selectors
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import clock as _clock
from ._launch import WorkerProcess
from ._messages import CANCEL, COMPLETED, EXIT, FAILED, HEARTBEAT, READY
from ._serde import FailureData
from .clock import Clock
from .exceptions import WorkerPoolBrokenError

__all__ = ["WorkerPool", "PoolStatistics", "Reservation"]

log = logging.getLogger(__name__)

Key = Tuple[int, int]  # (exec_id, attempt)
# route(reports_by_shard, dispatches_by_shard): hand reader output to the supervisors
Route = Callable[[Dict[int, list], Dict[int, list]], None]


@dataclass(frozen=True)
class PoolStatistics:
    workers: int
    workers_ready: int
    running: int
    queued: int
    worker_restarts: int


class _Worker:
    """One worker process and its pipe, as seen from the parent."""

    def __init__(self, index: int, process: Any, conn: Any) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        self.pid: Optional[int] = process.pid
        self.send_lock = threading.Lock()
        self.ready = False
        self.dead = False
        self.eof = False
        self.free = 0
        self.ran_anything = False
        self.running: Dict[Key, int] = {}  # key -> shard
        self._poller = select.poll()  # kept: Connection.poll() builds a selector per call
        self._poller.register(conn.fileno(), select.POLLIN)

    def readable(self) -> bool:
        """Whether the pipe has data (or EOF) to read now. Reader thread only."""
        return bool(self._poller.poll(0))


# (worker, started_at) for an attempt that got a slot
Reservation = Tuple[_Worker, float]


class WorkerPool:
    """Worker processes, their slots and the attempt queue. Thread-safe."""

    def __init__(
        self,
        *,
        size: int,
        max_concurrent: int,
        registry: Dict[str, bytes],
        clock: Clock,
        shards: int,
        route: Route,
        max_restarts: int,
        restart_period: float,
        on_broken: Callable[[str], None],
    ) -> None:
        self._size = size
        self._max_concurrent = max_concurrent
        self._registry = registry
        self._clock = clock
        self._shards = shards
        self._route = route
        self._max_restarts = max_restarts
        self._restart_period = restart_period
        self._on_broken = on_broken
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._workers: List[_Worker] = []
        self._running: Dict[Key, _Worker] = {}
        self._queue: "collections.OrderedDict[Key, int]" = collections.OrderedDict()
        self._restarts = 0
        self._early_deaths: Deque[float] = collections.deque()
        self._broken: Optional[str] = None
        self._closing = False
        self._routing = False  # the reader holds reports it has not told the supervisors yet
        self._sel: Optional[selectors.BaseSelector] = None
        self._selector_dirty = True
        self._wake_r, self._wake_w = os.pipe()
        self._reader = threading.Thread(target=self._read_loop, name="actorflow-pool-reader", daemon=True)

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Spawn the workers and wait until each is ready (or the pool is broken)."""
        with self._lock:
            for index in range(self._size):
                self._workers.append(self._spawn(index))
        self._reader.start()
        deadline = _clock.monotonic() + timeout
        with self._changed:
            while not self._broken and not all(w.ready for w in self._workers):
                remaining = deadline - _clock.monotonic()
                if remaining <= 0:
                    raise WorkerPoolBrokenError(
                        f"worker processes did not start within {timeout:.0f} s; check that the "
                        "activities' modules import cleanly in a fresh interpreter"
                    )
                self._changed.wait(remaining)
            if self._broken:
                raise WorkerPoolBrokenError(self._broken)

    def _spawn(self, index: int) -> _Worker:
        boot = {
            "sys_path": list(sys.path), "sys_argv": list(sys.argv), "index": index,
            "registry": self._registry, "max_concurrent": self._max_concurrent,
        }
        process = WorkerProcess(f"actorflow-worker-{index}", boot)
        log.debug("started worker %d (pid %s)", index, process.pid)
        return _Worker(index, process, process.conn)

    def close(self, timeout: float = 2.0) -> None:
        """Stop every worker (EXIT, then kill), then the reader. Idempotent."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
        for w in workers:
            self._send(w, [(EXIT,)])
        deadline = _clock.monotonic() + timeout
        for w in workers:
            w.process.join(max(0.0, deadline - _clock.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(5.0)
        self._wake()
        if self._reader.is_alive():
            self._reader.join(5.0)
        for w in workers:
            _close_quietly(w.conn)
            try:
                w.process.close()
            except ValueError:
                pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- slots and queue (called from supervisor threads) -----------------------------------

    def submit(self, key: Key, shard: int) -> Optional[Reservation]:
        """Give attempt ``key`` a slot now (returned), or queue it (None)."""
        with self._lock:
            worker = self._free_worker()
            if worker is None:
                self._queue[key] = shard
                return None
            return self._reserve(worker, key, shard)

    def withdraw(self, key: Key) -> bool:
        """Take a queued attempt out of the queue; False if it is not queued."""
        with self._lock:
            return self._queue.pop(key, None) is not None

    def release(self, key: Key) -> None:
        """Give back the slot of a reservation the supervisor decided not to send."""
        dispatches: Dict[int, list] = {}
        with self._lock:
            self._release(key, dispatches)
        if dispatches:
            self._route({}, dispatches)

    def claim(self, worker: _Worker, key: Key) -> bool:
        """Confirm a reservation before its RUN is written; False if the worker died meanwhile
        (its attempts were then already written off as WorkerCrashed or never counted)."""
        with self._lock:
            return not worker.dead and self._running.get(key) is worker

    def send(self, worker: _Worker, messages: list) -> bool:
        """Write a batch of messages to a worker's pipe (any thread but the reader's)."""
        return self._send(worker, messages)

    def worker_of(self, key: Key) -> Optional[_Worker]:
        """The worker running attempt ``key``, if any."""
        with self._lock:
            return self._running.get(key)

    def cancel_all_running(self, reason: str) -> None:
        with self._lock:
            running = list(self._running.items())
        for key, worker in running:
            self._send(worker, [(CANCEL, key[0], key[1], reason)])

    def kill_if_running(self, key: Key) -> bool:
        """D2: the attempt outlived stop_grace: kill its worker process and the processes its
        activities started (the worker's process group); the worker is replaced."""
        with self._lock:
            worker = self._running.get(key)
            if worker is None or worker.dead:
                return False
        log.warning("attempt %s ignored its cancellation for stop_grace; killing worker pid %s",
                    key, worker.pid)
        try:
            worker.process.kill()
        except (OSError, ValueError):
            return False
        return True

    def kill_all(self) -> None:
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            try:
                w.process.kill()
            except (OSError, ValueError):
                pass

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no attempt runs; False on timeout."""
        deadline = _clock.monotonic() + timeout
        with self._changed:
            while self._running or self._routing:
                remaining = deadline - _clock.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def busy(self) -> bool:
        """True while an attempt runs or waits for a slot."""
        with self._lock:
            return bool(self._running or self._queue or self._routing)

    def statistics(self) -> PoolStatistics:
        with self._lock:
            return PoolStatistics(
                workers=len(self._workers),
                workers_ready=sum(1 for w in self._workers if w.ready),
                running=len(self._running),
                queued=len(self._queue),
                worker_restarts=self._restarts,
            )

    def worker_pids(self) -> List[int]:
        with self._lock:
            return [w.pid for w in self._workers if w.pid is not None]

    @property
    def broken(self) -> Optional[str]:
        return self._broken

    # -- internals (lock held) --------------------------------------------------------------

    def _free_worker(self) -> Optional[_Worker]:
        best = None
        for w in self._workers:
            if w.ready and not w.dead and w.free > 0 and (best is None or w.free > best.free):
                best = w
        return best

    def _reserve(self, worker: _Worker, key: Key, shard: int) -> Reservation:
        worker.free -= 1
        worker.ran_anything = True
        worker.running[key] = shard
        self._running[key] = worker
        return worker, self._clock.now()

    def _release(self, key: Key, dispatches: Dict[int, list]) -> None:
        worker = self._running.pop(key, None)
        if worker is None:
            return
        worker.running.pop(key, None)
        if not worker.dead:
            worker.free += 1
        self._dispatch_queued(dispatches)
        if not self._running:
            self._changed.notify_all()

    def _dispatch_queued(self, dispatches: Dict[int, list]) -> None:
        while self._queue:
            worker = self._free_worker()
            if worker is None:
                return
            key, shard = self._queue.popitem(last=False)
            _, started_at = self._reserve(worker, key, shard)
            dispatches.setdefault(shard, []).append((key[0], key[1], worker, started_at))

    # -- I/O --------------------------------------------------------------------------------

    def _send(self, worker: _Worker, messages: list) -> bool:
        data = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with worker.send_lock:
                worker.conn.send_bytes(data)
            return True
        except (OSError, EOFError, ValueError):
            return False  # the worker is dying; its sentinel reports the loss

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _selector(self) -> selectors.BaseSelector:
        """Reader thread. One selector kept across wake-ups, rebuilt only when workers change
        (building one per ``wait`` cost a third of the reader's time)."""
        if self._selector_dirty or self._sel is None:
            if self._sel is not None:
                self._sel.close()
            self._sel = selectors.DefaultSelector()
            self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
            with self._lock:
                self._selector_dirty = False
                for w in self._workers:
                    if not w.dead:
                        self._sel.register(w.process.sentinel, selectors.EVENT_READ, ("exit", w))
                        if not w.eof:
                            self._sel.register(w.conn.fileno(), selectors.EVENT_READ, ("pipe", w))
        return self._sel

    def _read_loop(self) -> None:
        """Runs on the reader thread until the pool closes."""
        try:
            self._read_until_closed()
        finally:
            if self._sel is not None:
                self._sel.close()

    def _read_until_closed(self) -> None:
        while True:
            with self._lock:
                if self._closing and all(w.dead for w in self._workers):
                    return
            ready = self._selector().select()
            with self._lock:
                self._routing = True
            reports: Dict[int, list] = {}
            dispatches: Dict[int, list] = {}
            exits = []
            for key, _ in ready:
                what, worker = key.data
                if what == "wake":
                    os.read(self._wake_r, 4096)
                elif what == "pipe":
                    self._read_pipe(worker, reports, dispatches)
                else:
                    exits.append(worker)
            for worker in exits:
                self._read_pipe(worker, reports, dispatches)  # results sent before it died
                self._worker_died(worker, reports, dispatches)
            if reports or dispatches:
                self._route(reports, dispatches)
            with self._changed:
                # Only now are the reports in the supervisors' inboxes: a shutdown waiting for
                # idleness must not overtake them (D6: a result that made it wins).
                self._routing = False
                self._changed.notify_all()

    def _read_pipe(self, worker: _Worker, reports: Dict[int, list], dispatches: Dict[int, list]) -> None:
        conn = worker.conn
        try:
            while not worker.eof and worker.readable():
                batch = pickle.loads(conn.recv_bytes())
                with self._lock:
                    for message in batch:
                        self._on_message(worker, message, reports, dispatches)
        except (EOFError, OSError):
            worker.eof = True
            self._selector_dirty = True

    def _on_message(self, worker: _Worker, message: tuple, reports: Dict[int, list],
                    dispatches: Dict[int, list]) -> None:
        """Lock held. Route one worker message; free the slot of a finished attempt."""
        tag = message[0]
        if tag == READY:
            worker.ready = True
            worker.pid = message[1]
            worker.free = self._max_concurrent
            self._dispatch_queued(dispatches)
            self._changed.notify_all()
            return
        key = (message[1], message[2])
        shard = key[0] % self._shards
        if tag in (COMPLETED, FAILED):
            if worker.running.get(key) is None:
                return  # the attempt was already written off (its worker was replaced)
            self._release(key, dispatches)
        elif tag != HEARTBEAT:
            log.error("unknown message from worker %d: %r", worker.index, message)
            return
        reports.setdefault(shard, []).append(message)

    def _worker_died(self, worker: _Worker, reports: Dict[int, list], dispatches: Dict[int, list]) -> None:
        """D1: fail the attempts it was running (WorkerCrashed), replace it, watch the restart rate."""
        worker.process.join(1.0)
        code = worker.process.exitcode
        how = _describe_exit(code)
        broken = None
        replaced = False
        with self._lock:
            worker.dead = True
            self._selector_dirty = True
            lost = list(worker.running.items())
            for key, _ in lost:
                self._running.pop(key, None)
            worker.running.clear()
            if not self._closing:
                if not worker.ran_anything:
                    broken = self._note_early_death(how)
                if broken is None:
                    replacement = self._spawn(worker.index)
                    self._workers[self._workers.index(worker)] = replacement
                    self._restarts += 1
                    replaced = True
            if not self._running:
                self._changed.notify_all()
        _close_quietly(worker.conn)
        if replaced:
            worker.process.close()  # its sentinel; close() below sees only the replacement
        if lost and not self._closing:
            log.warning("worker pid %s %s while running %d attempt(s)", worker.pid, how, len(lost))
        for key, shard in lost:
            failure = FailureData(
                "application", "WorkerCrashed",
                f"worker process (pid {worker.pid}) {how} while running this attempt",
                None, False, None, "", None,
            )
            reports.setdefault(shard, []).append((FAILED, key[0], key[1], failure, None))
        if broken is not None:
            self._on_broken(broken)

    def _note_early_death(self, how: str) -> Optional[str]:
        """Lock held. D1 restart intensity: too many workers dying before running anything."""
        now = _clock.monotonic()
        self._early_deaths.append(now)
        while self._early_deaths and self._early_deaths[0] < now - self._restart_period:
            self._early_deaths.popleft()
        if len(self._early_deaths) <= self._max_restarts:
            return None
        self._broken = (
            f"worker processes keep dying before running anything ({len(self._early_deaths)} within "
            f"{self._restart_period:g} s, max_restarts={self._max_restarts}); the last one {how}. "
            "Check that the activities' modules import in a fresh interpreter (each worker is a "
            "new `python` with this program's sys.path; its error is on stderr above)"
        )
        for w in self._workers:
            w.dead = w.dead or not w.process.is_alive()
        self._selector_dirty = True
        self._changed.notify_all()
        return self._broken


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (exit code {code})"
    return f"exited with exit code {code}"


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except OSError:
        pass

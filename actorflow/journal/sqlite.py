"""The SQLite journal: ``ActorSystem(journal=PATH)`` (D8).

Writes
------
Callers and supervisors never write SQL themselves: they queue operations (a new execution, the
latest snapshot of a machine, history entries, callbacks to run once durable) and *drive* the
committer. Whoever drives when no commit is in progress becomes the committer: it takes every
queued operation, writes them in one transaction, commits, runs the callbacks, and goes on while
more were queued meanwhile. So a lone start commits on its own thread (no thread hop, no window
to wait out), and a burst of starts and events shares transactions (group commit). Snapshots of
one execution coalesce: only the latest is written. One connection writes, under
``_commit_lock``; one writer at a time, as SQLite allows anyway.

The ``actorflow-journal`` thread does what must not sit on the hot path: WAL checkpoints
(automatic checkpointing is off: it put 4-6 ms stalls into commits), the retention sweep in
small batches, and the commits of what supervisors queue (snapshots, history), woken by them.

Reads (handles, id policies) use a second connection: WAL readers see the last commit
and never block the writer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .._execution import SNAPSHOT_FIELDS
from ..clock import from_timestamp_function, monotonic, timestamp_function
from ..exceptions import JournalError
from . import _codec, _schema
from ._lock import OwnerLock
from .base import Journal, Recovered, StoredRun

__all__ = ["SqliteJournal"]

log = logging.getLogger(__name__)

SYNC_MODES = {"normal": "NORMAL", "full": "FULL"}
CHECKPOINT_EVERY = 1.0  # seconds between passive WAL checkpoints (when anything was written)
SWEEP_BATCH = 500  # closed executions deleted per sweep transaction
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes a reset WAL file is truncated to
_STATE_INDEX = SNAPSHOT_FIELDS.index("state")
_CLOSE_INDEX = SNAPSHOT_FIELDS.index("close_time")
_OUTCOME_INDEX = SNAPSHOT_FIELDS.index("outcome")
_INSERT_SQL = (
    "INSERT INTO executions (exec_id, run_id, activity_id, activity_type, task_queue, status, start_time, "
    "execution_time, options, args, close_time, state, details, outcome) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_ROW_SQL = ("SELECT exec_id, run_id, activity_id, activity_type, task_queue, status, start_time, "
            "execution_time, close_time FROM executions")


class SqliteJournal(Journal):
    """Executions in a SQLite file (WAL mode), owned by one running system at a time."""

    durable = True

    def __init__(self, path: str, sync: str, retention: float) -> None:
        super().__init__(retention)
        self.path = path
        self.sync_mode = sync
        self._owner = OwnerLock(path)
        self._db: Optional[sqlite3.Connection] = None  # the writer, under _commit_lock
        self._reader: Optional[sqlite3.Connection] = None  # under _read_lock
        self._commit_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._queue_lock = threading.Lock()  # the queued operations below
        self._committed = threading.Condition(self._queue_lock)
        self._new: List[tuple] = []
        self._updates: Dict[int, tuple] = {}  # exec_id -> (record, snapshot, details, outcome)
        self._history: Dict[Tuple[int, int], tuple] = {}
        self._callbacks: List[Callable[[], None]] = []
        self._queued = 0  # operations queued so far (tickets)
        self._done = 0  # ... of which committed
        self._failure: Optional[JournalError] = None
        self._to_ts: Callable[[float], float] = float
        self._now: Callable[[], float] = float
        self._options_cache: Dict[tuple, bytes] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._wrote = False

    # -- life cycle -------------------------------------------------------------------------

    def open(self, clock: Any, registered: Iterable[str]) -> Recovered:
        """Take the owner lock, validate (the file is untouched if it is refused), create or
        migrate the schema, and read the open executions (D8)."""
        self._to_ts = timestamp_function(clock)
        from_ts = from_timestamp_function(clock)
        self._now = lambda: self._to_ts(clock.now())
        self._owner.acquire()
        try:
            version = _schema.validate(self.path)
            self._db = self._connect()
            if version == 0:
                _schema.create(self._db, self._now)
            elif version < _schema.SCHEMA_VERSION:
                _schema.migrate(self._db, version)
            self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            recovered = self._read_open(set(registered), from_ts)
        except BaseException:
            self._close_connections()
            self._owner.release(remove=True)
            raise
        self._thread = threading.Thread(target=self._background, name="actorflow-journal", daemon=True)
        self._thread.start()
        return recovered

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA page_size={_schema.PAGE_SIZE}")  # a new file only; before WAL fixes it
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={SYNC_MODES[self.sync_mode]}")
        db.execute("PRAGMA wal_autocheckpoint=0")  # the background thread checkpoints
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def close(self) -> None:
        """Commit what is queued, checkpoint the WAL into the file, release the lock."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        try:
            self._drive()
            if self._db is not None:
                with self._commit_lock:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.error("journal %s: final commit or checkpoint failed: %s", self.path, exc)
        finally:
            self._close_connections()
            self._owner.release()

    def _close_connections(self) -> None:
        for db in (self._reader, self._db):
            if db is not None:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
        self._reader = self._db = None

    # -- recovery ---------------------------------------------------------------------------

    def _read_open(self, registered: set, from_ts: Callable[[float], float]) -> Recovered:
        db = self._db
        next_id = (db.execute("SELECT MAX(exec_id) FROM executions").fetchone()[0] or 0) + 1
        seqs = dict(db.execute(
            "SELECT h.exec_id, MAX(h.seq) FROM history h JOIN executions e ON e.exec_id = h.exec_id "
            "WHERE e.close_time IS NULL GROUP BY h.exec_id"))
        recovered = Recovered(next_exec_id=next_id)
        options: Dict[bytes, dict] = {}
        rows = db.execute(
            "SELECT exec_id, run_id, activity_id, activity_type, task_queue, status, start_time, "
            "options, args, state, details FROM executions WHERE close_time IS NULL ORDER BY exec_id")
        for (exec_id, run_id, activity_id, activity_type, task_queue, status, start_time, options_blob,
             args, state, details) in rows:
            opts = options.get(options_blob)
            if opts is None:
                opts = options[options_blob] = _codec.loads(options_blob)
            run = StoredRun(exec_id, run_id, activity_id, activity_type, task_queue, status, start_time,
                            None, opts, args, None if state is None else _codec.decode_state(state, from_ts),
                            details, None, seqs.get(exec_id, -1) + 1)
            if activity_type in registered:
                recovered.runs.append(run)
            else:
                recovered.unregistered[activity_type] = recovered.unregistered.get(activity_type, 0) + 1
                self._open[activity_id] = run  # untouched, but its id stays taken (D9)
        return recovered

    # -- queueing and committing -------------------------------------------------------------

    def record_new(self, record: Any) -> int:
        config = record.machine.config
        options = _codec.options_of(record)
        key = tuple(options.values())
        try:
            blob = self._options_cache.get(key)
        except TypeError:  # an unhashable option value: no caching
            key, blob = None, None
        if blob is None:
            blob = _codec.dumps(options)
            if key is not None and len(self._options_cache) < 256:
                self._options_cache[key] = blob
        start = self._to_ts(record.start_time)
        row = (record.exec_id, config.run_id, config.activity_id, config.activity_type, record.task_queue,
               "Running", start, start + (config.start_delay or 0.0), blob, record.args_bytes)
        with self._queue_lock:
            self._check_healthy()
            self._new.append(row)
            self._queued += 1
            return self._queued

    def wait_durable(self, ticket: Any) -> None:
        """Commit (or wait for the committer to commit) everything up to ``ticket``."""
        while True:
            self._drive()
            with self._queue_lock:
                if self._failure is not None:
                    raise self._failure
                if self._done >= ticket:
                    return
                # Another thread commits: it goes on while anything is queued. Wait a little
                # and drive again, in case it finished just before our operation was queued.
                self._committed.wait(0.05)

    def record_update(self, record: Any) -> None:
        snapshot = record.machine.snapshot()
        entries = self._new_history(record)
        with self._queue_lock:
            self._updates[record.exec_id] = (record, snapshot, record.details_bytes, None)
            if entries:
                self._history.update(entries)
            self._queued += 1
        self._wake.set()  # committed by the journal thread, soon, with whatever else is queued

    @staticmethod
    def _new_history(record: Any) -> Dict[Tuple[int, int], tuple]:
        """History entries not yet queued, and the last queued one again (a heartbeat may have
        been folded into it). Runs on the execution's thread, which owns ``record.history``."""
        history = record.history
        first = max(0, record.history_written - 1)
        if first >= len(history):
            return {}
        base = record.history_base
        entries = {(record.exec_id, base + i): history[i] for i in range(first, len(history))}
        record.history_written = len(history)
        return entries

    def record_closed(self, record: Any) -> None:
        snapshot = record.machine.snapshot()
        outcome = _codec.encode_outcome(record)
        entries = self._new_history(record)
        activity_id = record.machine.config.activity_id

        def forget() -> None:  # once durable: the id is no longer open (D9)
            self.release_claim(activity_id, record)

        with self._queue_lock:
            self._updates[record.exec_id] = (record, snapshot, record.details_bytes, outcome)
            if entries:
                self._history.update(entries)
            self._callbacks.append(forget)
            self._queued += 1
        record.args_bytes = record.fn_bytes = None

    def after_durable(self, callbacks: List[Callable[[], None]]) -> None:
        with self._queue_lock:
            self._callbacks.extend(callbacks)
            self._queued += 1
        self._drive()

    def _drive(self) -> None:
        while self._pending():
            if not self._commit_lock.acquire(blocking=False):
                return  # the thread committing will take our operations in its next round
            try:
                while self._pending():
                    self._commit_round()
            finally:
                self._commit_lock.release()

    def _pending(self) -> bool:
        return self._done < self._queued

    def _commit_round(self) -> None:
        """``_commit_lock`` held: write every queued operation in one transaction."""
        with self._queue_lock:
            new, self._new = self._new, []
            updates, self._updates = self._updates, {}
            history, self._history = self._history, {}
            callbacks, self._callbacks = self._callbacks, []
            ticket = self._queued
        try:
            if self._failure is None and (new or updates or history):
                self._write(new, updates, history)
        except sqlite3.Error as exc:
            self._fail(exc)
        finally:
            with self._queue_lock:
                self._done = ticket
                self._committed.notify_all()
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # noqa: BLE001 - a settlement must not stop the others
                    log.exception("journal callback failed")

    def _write(self, new: List[tuple], updates: Dict[int, tuple], history: Dict[Tuple[int, int], tuple]) -> None:
        """One transaction. A new execution whose first snapshot is queued too is inserted with
        it (one statement, not two): fewer statements, fewer trips through the GIL."""
        to_ts = self._to_ts
        changed: Dict[int, tuple] = {}
        for exec_id, (record, snapshot, details, outcome) in updates.items():
            close = snapshot[_CLOSE_INDEX]
            changed[exec_id] = (
                _codec.STATUS_OF_OUTCOME[snapshot[_OUTCOME_INDEX]], None if close is None else to_ts(close),
                _codec.encode_state(snapshot, to_ts) if snapshot[_STATE_INDEX] is not None else None,
                details, outcome)
        inserts = []
        for row in new:
            change = changed.pop(row[0], None)
            if change is None:
                inserts.append(row + (None, None, None, None))
            else:
                status, close, state, details, outcome = change
                inserts.append(row[:5] + (status,) + row[6:] + (close, state, details, outcome))
        rows = [change + (exec_id,) for exec_id, change in changed.items()]
        entries = [(exec_id, seq, to_ts(event[0]), event[1], event[2], _codec.dumps_detail(event[3]))
                   for (exec_id, seq), event in history.items()]
        db = self._db
        db.execute("BEGIN")
        try:
            if inserts:
                db.executemany(_INSERT_SQL, inserts)
            if rows:
                db.executemany("UPDATE executions SET status=?, close_time=?, state=?, details=?, "
                               "outcome=COALESCE(?, outcome) WHERE exec_id=?", rows)
            if entries:
                db.executemany("INSERT OR REPLACE INTO history (exec_id, seq, time, kind, attempt, detail) "
                               "VALUES (?,?,?,?,?,?)", entries)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._wrote = True

    def _fail(self, exc: sqlite3.Error) -> None:
        self._failure = JournalError(
            f"journal {self.path!r}: a write failed ({exc}); executions started from now on are "
            "refused. Check the disk (space, permissions), then restart the system", path=self.path)
        log.error("%s", self._failure)

    def _check_healthy(self) -> None:
        if self._failure is not None:
            raise self._failure

    # -- background work ----------------------------------------------------------------------

    def _background(self) -> None:
        """Runs on the actorflow-journal thread: commits what the supervisors queued (woken by
        ``record_update``), a passive checkpoint at most every ``CHECKPOINT_EVERY`` s, the sweep."""
        checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        sweep_every = max(1.0, min(60.0, self.retention / 10))
        last_checkpoint = last_sweep = monotonic()
        try:
            while not self._stop.is_set():
                self._wake.wait(CHECKPOINT_EVERY)
                self._wake.clear()
                self._drive()
                now = monotonic()
                if self._wrote and now - last_checkpoint >= CHECKPOINT_EVERY:
                    self._wrote = False
                    last_checkpoint = now
                    try:
                        checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    except sqlite3.Error as exc:
                        log.warning("journal %s: checkpoint failed: %s", self.path, exc)
                if now - last_sweep >= sweep_every:
                    last_sweep = now
                    self.sweep()
        finally:
            checkpointer.close()

    def sweep(self) -> int:
        """Delete closed executions past their retention, a batch per transaction (D8)."""
        deleted = 0
        while not self._stop.is_set() or deleted == 0:
            horizon = self._now() - self.retention
            with self._commit_lock:
                db = self._db
                if db is None:
                    return deleted
                ids = [(row[0],) for row in db.execute(
                    "SELECT exec_id FROM executions WHERE close_time < ? LIMIT ?", (horizon, SWEEP_BATCH))]
                if not ids:
                    return deleted
                db.execute("BEGIN")
                db.executemany("DELETE FROM history WHERE exec_id = ?", ids)
                db.executemany("DELETE FROM executions WHERE exec_id = ?", ids)
                db.execute("COMMIT")
                self._wrote = True
            deleted += len(ids)
            if len(ids) < SWEEP_BATCH:
                return deleted
        return deleted

    # -- reading -----------------------------------------------------------------------------

    def _read(self, sql: str, params: Iterable[Any] = ()) -> List[tuple]:
        with self._read_lock:
            return self._reader.execute(sql, tuple(params)).fetchall()

    def latest_closed(self, activity_id: str) -> Optional[StoredRun]:
        rows = self._read(
            _ROW_SQL.replace("close_time FROM", "close_time, options, state, details, outcome FROM")
            + " WHERE activity_id = ? AND close_time >= ? ORDER BY close_time DESC, exec_id DESC LIMIT 1",
            (activity_id, self._now() - self.retention))
        return self._stored(rows[0]) if rows else None

    def _stored(self, row: tuple) -> StoredRun:
        (exec_id, run_id, activity_id, activity_type, task_queue, status, start, _execution_time, close,
         options, state, details, outcome) = row
        return StoredRun(exec_id, run_id, activity_id, activity_type, task_queue, status, start, close,
                         _codec.loads(options), None, None if state is None else _codec.decode_state(state),
                         details, _codec.decode_outcome(outcome))

    def history_prefix(self, record: Any) -> List[tuple]:
        """The entries an earlier system wrote for a recovered execution (D8)."""
        if not record.history_base:
            return []
        return self.history_of(record.exec_id, below=record.history_base)

    def history_of(self, exec_id: int, below: Optional[int] = None) -> List[tuple]:
        """Raw history entries of an execution (times as POSIX timestamps), in order."""
        sql = "SELECT time, kind, attempt, detail FROM history WHERE exec_id = ?"
        params: List[Any] = [exec_id]
        if below is not None:
            sql += " AND seq < ?"
            params.append(below)
        return [(t, kind, attempt, _codec.loads(detail))
                for t, kind, attempt, detail in self._read(sql + " ORDER BY seq", params)]

"""The journal's SQLite schema, its version, and the checks that run before anything is written.

A file is accepted only if it is missing, empty (zero bytes), or an actorflow journal of this
schema version or an older one (then migrated in place). Everything else raises ``JournalError``
with the path and the cause, and the file is not modified: validation reads through a read-only
connection, and the writable connection is opened only once the file has passed.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from typing import Callable, Dict, List

from ..exceptions import JournalError

__all__ = ["APPLICATION", "SCHEMA_VERSION", "PAGE_SIZE", "CREATE", "validate", "create", "migrate", "read_only"]

APPLICATION = "actorflow-journal"
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"

CREATE = [
    "CREATE TABLE actorflow_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # One row per run. ``status`` uses the visibility-query spelling (Running, Completed, ...).
    # ``close_time`` is NULL while open. Times are POSIX timestamps.
    """CREATE TABLE executions (
        exec_id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        activity_id TEXT NOT NULL,
        activity_type TEXT NOT NULL,
        task_queue TEXT NOT NULL,
        status TEXT NOT NULL,
        start_time REAL NOT NULL,
        execution_time REAL NOT NULL,
        close_time REAL,
        options BLOB NOT NULL,
        args BLOB NOT NULL,
        state BLOB,
        details BLOB,
        outcome BLOB
    )""",
    # Every index costs each commit its pages (WAL frames are whole pages): only lookups by id
    # (handles, D9's policies), by status (recovery reads the open ones; D10 lists by status,
    # newest first) and by close time (the retention sweep).
    "CREATE INDEX executions_activity_id ON executions (activity_id, start_time)",
    "CREATE INDEX executions_status ON executions (status, start_time)",
    "CREATE INDEX executions_close ON executions (close_time)",
    """CREATE TABLE history (
        exec_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        detail BLOB NOT NULL,
        PRIMARY KEY (exec_id, seq)
    ) WITHOUT ROWID""",
]

# version -> statements that bring a journal of that version to version + 1
MIGRATIONS: Dict[int, List[str]] = {}


def read_only(path: str) -> sqlite3.Connection:
    """A connection that cannot write to ``path`` (validation, the command line)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def validate(path: str) -> int:
    """The schema version of the journal at ``path``; 0 if there is none yet (no file, or an
    empty one). Raises ``JournalError`` for anything that is not a usable actorflow journal."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return 0
    if not os.path.isfile(path):
        raise JournalError(f"journal {path!r} is not a regular file; give the path of a file", path=path)
    with open(path, "rb") as f:
        magic = f.read(len(SQLITE_MAGIC))
    if magic != SQLITE_MAGIC:
        raise JournalError(
            f"{path!r} is not an actorflow journal (not a SQLite database); it was left untouched: "
            "give ActorSystem(journal=...) a new file name, or the journal an earlier system wrote",
            path=path)
    try:
        db = read_only(path)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path!r} cannot be opened: {exc}", path=path) from exc
    try:
        return _check(db, path)
    except sqlite3.DatabaseError as exc:
        raise JournalError(
            f"journal {path!r} is corrupt ({exc}); it was left untouched: restore it from a backup, "
            "or move it aside to start with an empty journal", path=path) from exc
    finally:
        db.close()


def _check(db: sqlite3.Connection, path: str) -> int:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "actorflow_meta" not in tables:
        raise JournalError(
            f"{path!r} is a SQLite database but not an actorflow journal (it has no actorflow_meta "
            "table); it was left untouched: give ActorSystem(journal=...) another file", path=path)
    meta = dict(db.execute("SELECT key, value FROM actorflow_meta"))
    if meta.get("application") != APPLICATION:
        raise JournalError(
            f"{path!r} is not an actorflow journal (application {meta.get('application')!r}); it was "
            "left untouched", path=path)
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise JournalError(f"journal {path!r} has no valid schema_version "
                           f"({meta.get('schema_version')!r}): it is corrupt", path=path) from None
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path!r} has schema version {version}, newer than this actorflow's "
            f"({SCHEMA_VERSION}); it was left untouched: upgrade actorflow to open it", path=path)
    if version < 1 or (version < SCHEMA_VERSION and version not in MIGRATIONS):
        raise JournalError(f"journal {path!r} has schema version {version}, which this actorflow "
                           "cannot migrate", path=path)
    problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise JournalError(f"journal {path!r} is corrupt: {'; '.join(problems)}; it was left "
                           "untouched: restore it from a backup, or move it aside", path=path)
    return version


PAGE_SIZE = 1024
"""Bytes per database page, set on a new file before WAL mode fixes it. A commit appends every
page it touched to the WAL, whole: small pages make a journal's small transactions cheap
(measured: 40 % less time per execution than SQLite's default 4096)."""


def create(db: sqlite3.Connection, now: Callable[[], float]) -> None:
    """Write the schema into a new journal (one transaction)."""
    db.execute("BEGIN IMMEDIATE")
    for statement in CREATE:
        db.execute(statement)
    db.executemany("INSERT INTO actorflow_meta (key, value) VALUES (?, ?)", [
        ("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION)),
        ("created", repr(now())),
    ])
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a journal of ``version`` to ``SCHEMA_VERSION``, one version per transaction."""
    while version < SCHEMA_VERSION:
        db.execute("BEGIN IMMEDIATE")
        for statement in MIGRATIONS[version]:
            db.execute(statement)
        version += 1
        db.execute("UPDATE actorflow_meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        db.execute("COMMIT")

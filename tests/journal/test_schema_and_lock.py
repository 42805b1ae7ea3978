"""D8: what a journal file must be before a system writes to it, and who may own it.

Real files only: SQLite databases written by ``sqlite3``, a journal file damaged on disk, and an
owner lock held by a real second process that is then SIGKILLed. A rejected file is compared byte
for byte before and after: rejection never modifies it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from actorflow.exceptions import JournalError, JournalLockedError
from actorflow.journal import OwnerLock
from actorflow.journal._schema import SCHEMA_VERSION
from actorflow.journal import _schema


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def new_journal(path: Path) -> None:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    _schema.create(db, time.time)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def rejected(path: Path, *words: str) -> JournalError:
    before = digest(path)
    with pytest.raises(JournalError) as info:
        _schema.validate(str(path))
    assert info.value.path == str(path) and str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)
    assert digest(path) == before, "D8: a rejected journal is left byte for byte untouched"
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    return info.value


# ------------------------------------------------------------------------------------- schema


def test_D8_no_file_and_an_empty_file_are_new_journals(tmp_path: Path):
    assert _schema.validate(str(tmp_path / "missing.db")) == 0
    empty = tmp_path / "empty.db"
    empty.touch()
    assert _schema.validate(str(empty)) == 0
    assert not (tmp_path / "missing.db").exists(), "validation creates nothing"


def test_D8_a_journal_written_by_this_version_is_accepted(tmp_path: Path):
    path = tmp_path / "j.db"
    new_journal(path)
    before = digest(path)
    assert _schema.validate(str(path)) == SCHEMA_VERSION
    assert digest(path) == before  # validation reads through a read-only connection
    tables = {r[0] for r in sqlite3.connect(str(path)).execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    assert {"executions", "history", "actorflow_meta", "executions_activity_id",
            "executions_status"} <= tables


def test_D8_a_file_that_is_not_sqlite_is_rejected_untouched(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("a shopping list, not a journal\n" * 100)
    rejected(path, "not an actorflow journal", "new file name")


def sqlite_file(path: Path, *statements: str) -> Path:
    """A SQLite database at ``path`` made by running ``statements``."""
    db = sqlite3.connect(str(path))
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()
    return path


def test_D8_a_foreign_sqlite_database_is_rejected_untouched(tmp_path: Path):
    path = sqlite_file(tmp_path / "app.db", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
                       "INSERT INTO users (name) VALUES ('ada')")
    rejected(path, "not an actorflow journal", "actorflow_meta")


def test_D8_a_database_of_another_application_with_a_meta_table_is_rejected(tmp_path: Path):
    path = sqlite_file(tmp_path / "other.db",
                       "CREATE TABLE actorflow_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                       "INSERT INTO actorflow_meta VALUES ('application', 'something-else')")
    rejected(path, "something-else")


def test_D8_a_journal_of_a_newer_schema_is_rejected_untouched(tmp_path: Path):
    path = tmp_path / "j.db"
    new_journal(path)
    sqlite_file(path, f"UPDATE actorflow_meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    rejected(path, f"schema version {SCHEMA_VERSION + 1}", "upgrade actorflow")


def test_D8_a_journal_with_a_broken_version_is_rejected(tmp_path: Path):
    path = tmp_path / "j.db"
    new_journal(path)
    sqlite_file(path, "UPDATE actorflow_meta SET value = 'x' WHERE key = 'schema_version'")
    rejected(path, "schema_version", "corrupt")


def test_D8_a_journal_damaged_on_disk_is_rejected_untouched(tmp_path: Path):
    path = tmp_path / "j.db"
    new_journal(path)
    db = sqlite3.connect(str(path))
    db.executemany("INSERT INTO history VALUES (?, ?, 0, 'x', 1, ?)",
                   [(i, 0, os.urandom(200)) for i in range(2000)])  # several pages of b-tree
    db.commit()
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page:5 * page] = b"\xff" * (2 * page)  # wipe two pages in the middle of the tree
    path.write_bytes(bytes(data))
    rejected(path, "corrupt", "backup")


def test_D8_a_directory_is_not_a_journal(tmp_path: Path):
    with pytest.raises(JournalError, match="not a regular file"):
        _schema.validate(str(tmp_path))


# --------------------------------------------------------------------------------------- lock

HOLDER = textwrap.dedent("""
    import sys, time
    from actorflow.journal import OwnerLock
    lock = OwnerLock(sys.argv[1])
    lock.acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_D8_one_owner_per_journal_names_the_owners_pid_and_a_SIGKILL_frees_it(tmp_path: Path):
    journal = str(tmp_path / "j.db")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, journal], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JournalLockedError) as info:
            OwnerLock(journal).acquire()
        assert info.value.pid == holder.pid and str(holder.pid) in str(info.value)
        assert info.value.path == journal and "stop that system first" in str(info.value)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        lock = OwnerLock(journal)
        lock.acquire()  # the kernel dropped the dead owner's lock: a restart is never blocked
        assert Path(journal + ".lock").read_text() == str(os.getpid())
        lock.release()
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()


def test_D8_the_owner_lock_is_exclusive_within_one_process_too(tmp_path: Path):
    journal = str(tmp_path / "j.db")
    first = OwnerLock(journal)
    first.acquire()
    try:
        with pytest.raises(JournalLockedError) as info:
            OwnerLock(journal).acquire()
        assert info.value.pid == os.getpid()
    finally:
        first.release()
    second = OwnerLock(journal)
    second.acquire()
    second.release()


def test_D8_a_lock_taken_for_a_rejected_journal_leaves_no_side_file(tmp_path: Path):
    journal = str(tmp_path / "j.db")
    lock = OwnerLock(journal)
    lock.acquire()
    lock.release(remove=True)
    assert not Path(journal + ".lock").exists()
    Path(journal + ".lock").write_text("")  # a side file that was there before stays
    lock = OwnerLock(journal)
    lock.acquire()
    lock.release(remove=True)
    assert Path(journal + ".lock").exists()

"""D8 end to end: a journaled system on a real SQLite file, owners really SIGKILLed, recovery.

Each test that kills an owner runs ``tests/journal/owner.py`` as a subprocess, SIGKILLs it (its
workers see their owner die and exit), and opens a system on the same file in this process. The
activities append a line per attempt to a side file, so "ran again" and "never ran again" are
facts read off the disk, not inferred.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, List

import pytest

from actorflow import ActorSystem, RetryPolicy, activity
from actorflow.exceptions import (
    ActivityError,
    ActivityNotFoundError,
    ApplicationError,
    CancelledError,
    JournalError,
    JournalLockedError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from actorflow.testing import VirtualClock
from tests.journal import activities as acts

ROOT = Path(__file__).resolve().parents[2]
MINUTE = timedelta(minutes=1)


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "executions.db")


@pytest.fixture
def side(tmp_path: Path) -> str:
    return str(tmp_path / "runs.txt")


def system_on(journal: str, **options) -> ActorSystem:
    options.setdefault("workers", 1)
    return ActorSystem(acts.ALL, journal=journal, **options)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def killed_owner(journal: str, side: str) -> Iterator[List[int]]:
    """Run tests/journal/owner.py on the journal, SIGKILL it once READY; yields its worker pids."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen([sys.executable, "-m", "tests.journal.owner", journal, side], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline().split()
        assert line and line[0] == "READY", f"owner did not get ready: {line!r}"
        workers = [int(pid) for pid in line[1:]]
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        # D6: workers do not outlive their owner, not even a SIGKILLed one.
        wait_until(lambda: not any(pid_alive(p) for p in workers), 10, "the owner's workers to exit")
        yield workers
    finally:
        owner.kill()
        owner.wait(10)
        owner.stdout.close()


# ---------------------------------------------------------------------------- durable start


def test_D8_start_returns_once_the_execution_is_committed(journal: str, side: str):
    with system_on(journal) as system:
        system.start_activity(acts.block, args=[side, 30.0], activity_id="committed",
                              start_to_close_timeout=MINUTE)
        reader = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)  # another process's view
        row = reader.execute("SELECT activity_type, status, close_time FROM executions "
                             "WHERE activity_id = 'committed'").fetchone()
        reader.close()
        assert row == ("block", "Running", None)
        assert system.get_activity_handle("committed").cancel()


def test_D8_concurrent_starts_share_commits(journal: str, side: str):
    """Group commit: a burst of starts from several threads commits in fewer transactions than
    starts (each start still returns only once its own row is committed)."""
    import threading

    with system_on(journal, workers=1) as system:
        sj = system._journal
        commits = []
        original = sj._write

        def counting(*args):
            commits.append(1)
            return original(*args)

        sj._write = counting

        def burst(k: int) -> None:
            for i in range(50):
                system.start_activity(acts.add, args=[side, k, i], activity_id=f"b{k}-{i}",
                                      start_to_close_timeout=MINUTE)

        threads = [threading.Thread(target=burst, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k in range(4):
            for i in range(50):
                assert system.get_activity_handle(f"b{k}-{i}").result(30) == k + i
        assert len(commits) < 200 + 200  # 200 starts and 200 outcomes, far fewer transactions


# ---------------------------------------------------------------------------- SIGKILL and recovery


def test_D8_R54_R55_after_a_SIGKILL_every_open_execution_resumes_and_no_committed_one_reruns(
        journal: str, side: str, killed_owner: List[int], caplog):
    before = acts.runs(side)
    assert before.count("add:done:1") == 1 and "add:queued:1" not in before
    with system_on(journal, workers=2) as system:
        # completed and committed before the kill: never runs again, its result is still there
        assert system.get_activity_handle("done").result(30) == 42
        # running at the kill: that attempt failed as SystemRestarted; the retry resumes from
        # the last committed heartbeat (R54)
        running = system.get_activity_handle("running").result(60)
        assert running == {"attempt": 2, "resumed_from": 4, "details": [3]}
        # backing off at the kill (next_retry_delay 4 s, R33), with R55's throttled tail committed:
        # the retry sees it (R54)
        assert system.get_activity_handle("backoff").result(60) == {"attempt": 2, "details": ["tail"]}
        # queued behind the busy slot at the kill: re-queued and run
        assert system.get_activity_handle("queued").result(30) == 3
        history = system.get_activity_handle("running").history()
    after = acts.runs(side)
    assert after.count("add:done:1") == 1, "D8: a committed completion never runs again"
    assert after.count("checkpointed:running:2") == 1 and after.count("add:queued:1") == 1
    kinds = [(e.kind, e.attempt) for e in history]
    assert kinds[:2] == [("scheduled", 1), ("attempt_started", 1)]  # written by the killed owner
    failed = [e for e in history if e.kind == "attempt_failed"]
    assert failed[0].attempt == 1 and isinstance(failed[0].detail["failure"], ApplicationError)
    assert failed[0].detail["failure"].type == "SystemRestarted"
    assert kinds[-1] == ("closed", 2)


def test_D8_a_backoff_that_ended_while_no_system_ran_dispatches_at_once(journal: str, side: str,
                                                                     killed_owner: List[int]):
    time.sleep(4.5)  # the "backoff" execution's 4 s retry delay passes while nothing runs
    with system_on(journal, workers=2) as system:
        started = time.monotonic()
        assert system.get_activity_handle("backoff").result(30)["attempt"] == 2
        assert time.monotonic() - started < 3.0  # not another full delay


# ---------------------------------------------------------------------------- journaled shutdown


def test_D8_shutdown_keeps_open_executions_and_the_next_system_retries_them(journal: str, side: str):
    with system_on(journal, stop_grace=timedelta(seconds=1)) as system:
        handle = system.start_activity(acts.block, args=[side, 60.0], activity_id="long",
                                       start_to_close_timeout=timedelta(minutes=5),
                                       retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))
        wait_until(lambda: "block:long:1" in acts.runs(side), what="attempt 1 to start")
    error = handle.exception(5)
    assert isinstance(error, ActivityError) and error.retry_state is RetryState.IN_PROGRESS
    assert isinstance(error.cause, ApplicationError) and error.cause.type == "SystemShutdown"
    with system_on(journal) as system:
        resumed = system.get_activity_handle("long")
        assert resumed.result(30) == "done on attempt 2"
        failure = [e for e in resumed.history() if e.kind == "attempt_failed"][0].detail["failure"]
        assert failure.type == "SystemRestarted" and not failure.non_retryable


def test_D8_R29_an_execution_cancelled_before_shutdown_is_not_retried_by_the_next_system(journal: str, side: str):
    with system_on(journal) as system:
        handle = system.start_activity(acts.block, args=[side, 60.0], activity_id="c",
                                       start_to_close_timeout=MINUTE)
        wait_until(lambda: "block:c:1" in acts.runs(side))
        handle.cancel()
        error = handle.exception(30)
    assert isinstance(error.cause, CancelledError)  # TRY_CANCEL answers at once (R60)
    with system_on(journal) as system:
        # The attempt ignored the cancel and was still running at shutdown: it stayed open,
        # and the next system closes it without a retry, because a cancel was requested (R29).
        again = system.get_activity_handle("c").exception(30)
        assert again.retry_state is RetryState.CANCEL_REQUESTED
    assert acts.runs(side).count("block:c:2") == 0


# ---------------------------------------------------------------------------- time while stopped


def test_D8_schedule_to_close_keeps_counting_while_no_system_runs(journal: str, side: str):
    """Wall-clock deadlines: the next system's (virtual) clock starts an hour later, so the
    deadline passed meanwhile and fires at once (also shows a journal works with VirtualClock)."""
    first = VirtualClock(auto_skip=False)
    with system_on(journal, clock=first) as system:
        system.start_activity(acts.block, args=[side, 60.0], activity_id="s2c",
                              schedule_to_close_timeout=timedelta(minutes=30))
        wait_until(lambda: "block:s2c:1" in acts.runs(side))
    later = VirtualClock(start=datetime.now(timezone.utc) + timedelta(hours=1))
    with system_on(journal, clock=later) as system:
        error = system.get_activity_handle("s2c").exception(30)
    assert isinstance(error.cause, TimeoutError) and error.cause.type is TimeoutType.SCHEDULE_TO_CLOSE
    assert acts.runs(side).count("block:s2c:2") == 0


# ---------------------------------------------------------------------------- unregistered types


def test_D8_open_executions_of_unregistered_types_stay_untouched_with_one_warning(
        journal: str, side: str, caplog):
    with system_on(journal) as system:
        system.start_activity(acts.block, args=[side, 60.0], activity_id="other",
                              start_to_close_timeout=MINUTE,
                              retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))
        wait_until(lambda: "block:other:1" in acts.runs(side))
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    row_before = db.execute("SELECT * FROM executions WHERE activity_id = 'other'").fetchone()
    db.close()
    with caplog.at_level(logging.WARNING, logger="actorflow"):
        with ActorSystem([acts.add], workers=1, journal=journal) as system:
            assert system.start_activity(acts.add, args=[side, 1, 1], start_to_close_timeout=MINUTE).result(30) == 2
            handle = system.get_activity_handle("other")
            assert not handle.done() and [e.kind for e in handle.history()][:1] == ["scheduled"]
            with pytest.raises(ValueError, match="does not register"):
                handle.cancel()
    warnings = [r.getMessage() for r in caplog.records if "does not register" in r.getMessage()]
    assert len(warnings) == 1 and "'block' (1)" in warnings[0]
    assert handle.exception(5).retry_state is RetryState.IN_PROGRESS
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    assert db.execute("SELECT * FROM executions WHERE activity_id = 'other'").fetchone() == row_before
    db.close()
    with system_on(journal) as system:  # a system that registers it resumes it
        assert system.get_activity_handle("other").result(30) == "done on attempt 2"


# ---------------------------------------------------------------------------- owner, bad files


def test_D8_one_owner_a_second_system_gets_JournalLockedError_naming_the_pid(journal: str, tmp_path: Path):
    with system_on(journal):
        second = system_on(journal)
        with pytest.raises(JournalLockedError) as info:
            second.start()
        assert info.value.pid == os.getpid() and str(os.getpid()) in str(info.value)
        assert not second.running
    with system_on(journal):  # released on shutdown
        pass


@pytest.mark.parametrize("content", [b"not a database at all\n" * 50, None])
def test_D8_a_file_that_is_not_a_journal_is_refused_at_start_and_left_untouched(tmp_path: Path, content):
    path = tmp_path / "other.db"
    if content is None:
        db = sqlite3.connect(str(path))
        db.execute("CREATE TABLE t (x)")
        db.commit()
        db.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    system = system_on(str(path))
    with pytest.raises(JournalError) as info:
        system.start()
    assert info.value.path == str(path) and "not an actorflow journal" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]  # no lock or WAL left behind
    assert not system.running


def test_D8_bad_journal_options_are_clear_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="does not exist"):
        ActorSystem(acts.ALL, journal=tmp_path / "missing-folder" / "j.db")
    with pytest.raises(ValueError, match="journal_sync"):
        ActorSystem(acts.ALL, journal=tmp_path / "j.db", journal_sync="fast")
    with pytest.raises(TypeError, match="journal must be a file path"):
        ActorSystem(acts.ALL, journal=42)
    with pytest.raises(ValueError, match="retention must be positive"):
        ActorSystem(acts.ALL, journal=tmp_path / "j.db", retention=timedelta(0))
    assert list(tmp_path.iterdir()) == []


def test_D8_journal_sync_full_sets_synchronous_full(journal: str, side: str):
    with system_on(journal, journal_sync="full") as system:
        assert system._journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert system.start_activity(acts.add, args=[side, 2, 3], start_to_close_timeout=MINUTE).result(30) == 5


def _closure_activity():
    @activity.defn(name="closure")
    def inner() -> int:
        return 1

    return inner


def test_D8_closures_and_unregistered_activities_are_refused_on_a_journaled_system(journal: str):
    with system_on(journal) as system:
        with pytest.raises(ValueError, match="register") as info:
            system.start_activity(_closure_activity(), start_to_close_timeout=MINUTE)
        assert "importable module" in str(info.value)


# ---------------------------------------------------------------------------- ids across restarts


def test_D8_D9_handles_to_retained_executions_of_an_earlier_system(journal: str, side: str):
    with system_on(journal) as system:
        assert system.start_activity(acts.add, args=[side, 1, 2], activity_id="ok",
                                     start_to_close_timeout=MINUTE).result(30) == 3
        with pytest.raises(ActivityError):
            system.start_activity(acts.fail, args=[side], activity_id="bad",
                                  start_to_close_timeout=MINUTE).result(30)
    with system_on(journal) as system:
        ok = system.get_activity_handle("ok")
        assert ok.done() and ok.result() == 3 and not ok.cancel()
        assert [e.kind for e in ok.history()] == ["scheduled", "attempt_started", "closed"]
        bad = system.get_activity_handle("bad")
        assert isinstance(bad.exception().cause, ApplicationError) and bad.exception().cause.non_retryable
        with pytest.raises(ActivityNotFoundError, match="nope"):
            system.get_activity_handle("nope")
    assert acts.runs(side).count("add:ok:1") == 1


def test_D8_past_its_retention_an_execution_is_not_addressable_and_is_swept(journal: str, side: str):
    with system_on(journal, retention=timedelta(seconds=1)) as system:
        system.start_activity(acts.add, args=[side, 1, 2], activity_id="old",
                              start_to_close_timeout=MINUTE).result(30)
        assert system.get_activity_handle("old").result() == 3
        time.sleep(1.2)
        with pytest.raises(ActivityNotFoundError):
            system.get_activity_handle("old")

        def rows() -> int:
            db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
            try:
                return db.execute("SELECT COUNT(*) FROM executions").fetchone()[0]
            finally:
                db.close()

        wait_until(lambda: rows() == 0, 15, "the retention sweep")


def test_D8_cancel_through_a_handle_of_a_recovered_execution(journal: str, side: str):
    with system_on(journal, stop_grace=timedelta(seconds=1)) as system:
        system.start_activity(acts.checkpointed, args=[side, 10, 0], activity_id="r",
                              start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=timedelta(seconds=2),
                              retry_policy=RetryPolicy(initial_interval=timedelta(seconds=30)))
        wait_until(lambda: "checkpointed:r:1" in acts.runs(side))
    with system_on(journal) as system:
        handle = system.get_activity_handle("r")  # backing off 30 s after SystemRestarted
        wait_until(lambda: any(e.kind == "attempt_failed" for e in handle.history()))
        assert handle.cancel()
        assert isinstance(handle.exception(30).cause, CancelledError)


def test_D8_a_virtual_clock_skips_a_recovered_hour_long_backoff(journal: str, side: str):
    """Works with VirtualClock: the recovered retry is due in an hour of virtual time, which the
    idle system skips, so the test takes seconds."""
    with system_on(journal, clock=VirtualClock(auto_skip=False)) as system:
        system.start_activity(acts.fail_then_succeed, args=[side, 3600.0], activity_id="hour",
                              start_to_close_timeout=MINUTE, heartbeat_timeout=timedelta(minutes=10))
        wait_until(lambda: "fail_then_succeed:hour:1" in acts.runs(side))
        wait_until(lambda: any(e.kind == "attempt_failed" for e in system.get_activity_handle("hour").history()))
    clock = VirtualClock()
    started = time.monotonic()
    with system_on(journal, clock=clock) as system:
        assert system.get_activity_handle("hour").result(60) == {"attempt": 2, "details": ["tail"]}
    assert time.monotonic() - started < 30

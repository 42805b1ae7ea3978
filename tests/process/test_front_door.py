"""The front door and process hygiene (issue 15), each case a real program run by ``sys.executable``.

- No ``if __name__ == "__main__":`` guard is needed: workers never run the main module, and
  activities defined there (or interactively) travel by value. A script file, a script read from
  stdin, ``python -c`` and an interactive session all work.
- Ctrl-C (SIGINT to the program's whole process group, as a terminal sends it) reaches only the
  owner: one ``KeyboardInterrupt``, no worker output, every handle resolved as D6 says.
- Nothing a worker's activity code starts outlives the worker: a grandchild is killed with its
  worker (D2), when the worker crashes (D1), when the system exits (D6), and when the owner is
  SIGKILLed (D6).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import List, Optional

import pytest

from actorflow import ActorSystem, RetryPolicy, activity
from actorflow.exceptions import ActivityError, TimeoutError
from actorflow.pytest_plugin import _pid_alive as _alive  # a zombie (exited, unreaped) is gone

pytestmark = pytest.mark.slow

STC = timedelta(seconds=30)
ROOT = str(Path(__file__).resolve().parents[2])  # the checkout: programs import actorflow from it

# A guard-less program: module-level code starts the system. Blank lines after each block keep it
# valid for an interactive session too (`python -i`), where a block ends at a blank line.
GUARDLESS = textwrap.dedent('''
    import asyncio
    from datetime import timedelta
    from actorflow import ActorSystem, activity

    print("MAIN MODULE RAN", flush=True)

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    @activity.defn
    def add(a, b):
        return a + b

    @activity.defn
    async def mul(a, b):
        await asyncio.sleep(0)
        return a * b

    @activity.defn
    def shift(p):
        return Point(p.x + 1, p.y + 1)

    @activity.defn
    async def twice(text):
        return text * 2

    STC = timedelta(seconds=30)
    with ActorSystem(activities=[add, mul], workers=2) as system:
        p = system.start_activity(shift, Point(1, 2), start_to_close_timeout=STC).result(timeout=30)
        results = [
            system.start_activity(add, args=[1, 2], start_to_close_timeout=STC).result(timeout=30),
            system.start_activity("mul", args=[3, 4], start_to_close_timeout=STC).result(timeout=30),
            system.start_activity(twice, "ab", start_to_close_timeout=STC).result(timeout=30),
            (type(p).__name__, isinstance(p, Point), p.x, p.y),
        ]

    async def main():
        async with ActorSystem(activities=[mul], workers=1) as system:
            return await system.execute_activity(mul, args=[5, 6], start_to_close_timeout=STC)

    results.append(asyncio.run(main()))
    print("RESULTS", results, flush=True)
''')
EXPECTED = "RESULTS [3, 12, 'abab', ('Point', True, 2, 3), 30]"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(argv: List[str], cwd: Path, stdin: Optional[str] = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], input=stdin, capture_output=True, text=True,
                          cwd=cwd, env=_env(), timeout=timeout)


def _gone_within(pids: List[int], seconds: float) -> List[int]:
    """The pids of ``pids`` still running after ``seconds`` (empty: all gone in time)."""
    deadline = time.monotonic() + seconds
    while True:
        left = [pid for pid in pids if _alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def _wait_for_file(path: Path, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written within {seconds} s")


# -- no __main__ guard --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["script file", "stdin", "python -c", "interactive"])
def test_a_guardless_program_runs_activities_and_exits_0(tmp_path, how):
    """Sync and async activities, registered and not, a class of the main module as argument and
    result, ``with`` and ``async with``: the main module runs once (never in a worker)."""
    if how == "script file":
        (tmp_path / "app.py").write_text(GUARDLESS)
        out = _run(["app.py"], tmp_path)
    elif how == "stdin":
        out = _run(["-"], tmp_path, stdin=GUARDLESS)
    elif how == "python -c":
        out = _run(["-c", GUARDLESS], tmp_path)
    else:  # as a REPL or notebook: every definition is typed into __main__
        out = _run(["-i", "-q"], tmp_path, stdin=GUARDLESS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("MAIN MODULE RAN") == 1, out.stdout
    assert EXPECTED in out.stdout, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_a_guardless_program_run_with_python_m_runs_activities(tmp_path):
    """``python -m pkg.app``: the main module is a package module, and it is not re-imported."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "app.py").write_text(GUARDLESS)
    out = _run(["-m", "pkg.app"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("MAIN MODULE RAN") == 1, out.stdout
    assert EXPECTED in out.stdout


def test_an_activity_of_the_main_module_that_cannot_travel_names_the_cause_and_the_fix(tmp_path):
    """What still cannot work: an activity defined in ``__main__`` travels by value with the
    globals it uses, and a lock cannot. The error says so and how to fix it."""
    program = textwrap.dedent('''
        import threading
        from actorflow import ActorSystem, activity

        LOCK = threading.Lock()

        @activity.defn
        def locked():
            with LOCK:
                return 1

        try:
            ActorSystem(activities=[locked], workers=1)
        except TypeError as exc:
            print("ERROR:", exc)
    ''')
    out = _run(["-c", program], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ERROR: activity 'locked' cannot be pickled for the worker processes" in out.stdout
    assert "lock" in out.stdout
    assert "by value" in out.stdout and "module of its own" in out.stdout, out.stdout


# -- Ctrl-C -------------------------------------------------------------------------------------

CTRL_C = textwrap.dedent('''
    import sys, time
    from datetime import timedelta
    from actorflow import ActorSystem, activity
    from actorflow.exceptions import ActivityError

    @activity.defn
    def slow_sync(marker):
        open(marker, "a").write("sync\\n")
        for _ in range(6000):
            time.sleep(0.01)

    @activity.defn
    async def slow_async(marker):
        import asyncio
        open(marker, "a").write("async\\n")
        await asyncio.sleep(60)

    STC = timedelta(seconds=60)
    CATCH = sys.argv[1] == "catch"
    handles = []
    try:
        with ActorSystem(workers=2, max_concurrent_activities=1) as system:
            handles.append(system.start_activity(slow_sync, sys.argv[2], start_to_close_timeout=STC))
            handles.append(system.start_activity(slow_async, sys.argv[3], start_to_close_timeout=STC))
            handles.append(system.start_activity(slow_sync, "queued", start_to_close_timeout=STC))
            while system.statistics().running_attempts < 2:
                time.sleep(0.01)
            print("WAITING", flush=True)
            handles[0].result()
    except KeyboardInterrupt:
        if not CATCH:
            raise
        print("CAUGHT KeyboardInterrupt", flush=True)
        for h in handles:
            err = h.exception(timeout=0)
            print("HANDLE", type(err).__name__, err.retry_state.name, type(err.cause).__name__,
                  getattr(err.cause, "type", None), flush=True)
''')


@pytest.mark.parametrize("catch", [False, True])
def test_ctrl_c_reaches_only_the_owner_which_shuts_down_in_order(tmp_path, catch):
    """SIGINT to the program's process group, as a terminal's Ctrl-C: workers (own process
    groups) see nothing and print nothing; the owner gets one KeyboardInterrupt; leaving the
    system resolves every handle as D6 says (R85: WorkerShutdown if an attempt ran, else
    CancelledError)."""
    (tmp_path / "app.py").write_text(CTRL_C)
    markers = [str(tmp_path / "sync.started"), str(tmp_path / "async.started")]
    proc = subprocess.Popen([sys.executable, "app.py", "catch" if catch else "raise", *markers],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "WAITING"
        time.sleep(0.2)  # the owner is inside handle.result() now
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if catch:
        assert proc.returncode == 0, stdout + stderr
        assert stderr == "", stderr  # no traceback, nothing from a worker
        lines = [line for line in stdout.splitlines() if line.startswith("HANDLE")]
        assert lines == [
            "HANDLE ActivityError CANCEL_REQUESTED ApplicationError WorkerShutdown",
            "HANDLE ActivityError CANCEL_REQUESTED ApplicationError WorkerShutdown",
            "HANDLE ActivityError CANCEL_REQUESTED CancelledError None",
        ], stdout
    else:
        assert proc.returncode in (-signal.SIGINT, 1, 130), (proc.returncode, stderr)
        assert stderr.count("Traceback (most recent call last)") == 1, stderr
        assert stderr.count("KeyboardInterrupt") == 1, stderr
        assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr


# -- no orphaned grandchildren ------------------------------------------------------------------


@activity.defn
def start_sleeper_and_hang(pid_file: str) -> None:
    """Start a grandchild, then block where no cancellation can reach (one C call)."""
    child = subprocess.Popen(["sleep", "1000"])
    Path(pid_file).write_text(f"{child.pid}\n")
    time.sleep(3600)


@activity.defn
def start_sleeper(pid_file: str) -> int:
    child = subprocess.Popen(["sleep", "1000"])
    Path(pid_file).write_text(f"{child.pid}\n")
    return child.pid


@activity.defn
def start_sleeper_and_crash(pid_file: str) -> None:
    child = subprocess.Popen(["sleep", "1000"])
    Path(pid_file).write_text(f"{child.pid}\n")
    os._exit(3)


def test_D2_a_grandchild_dies_with_its_attempts_killed_worker(tmp_path):
    pid_file = tmp_path / "pid"
    with ActorSystem(workers=1, stop_grace=timedelta(seconds=0.2)) as system:
        handle = system.start_activity(start_sleeper_and_hang, str(pid_file),
                                       start_to_close_timeout=timedelta(seconds=1),
                                       retry_policy=RetryPolicy(maximum_attempts=1))
        grandchild = int(_wait_for_file(pid_file))
        assert _alive(grandchild)
        err = handle.exception(timeout=30)
        assert isinstance(err, ActivityError) and isinstance(err.cause, TimeoutError)
        deadline = time.monotonic() + 30
        while system.statistics().worker_restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert system.statistics().worker_restarts == 1  # the worker was killed (D2) ...
        assert _gone_within([grandchild], 1.0) == []  # ... and its grandchild with it


def test_D1_a_grandchild_dies_with_its_crashed_worker(tmp_path):
    pid_file = tmp_path / "pid"
    with ActorSystem(workers=1) as system:
        handle = system.start_activity(start_sleeper_and_crash, str(pid_file), start_to_close_timeout=STC,
                                       retry_policy=RetryPolicy(maximum_attempts=1))
        err = handle.exception(timeout=30)
        assert err.cause.type == "WorkerCrashed"
        grandchild = int(_wait_for_file(pid_file))
        assert _gone_within([grandchild], 1.0) == []


def test_D6_a_grandchild_dies_when_the_system_exits(tmp_path):
    pid_file = tmp_path / "pid"
    with ActorSystem(workers=1) as system:
        grandchild = system.start_activity(start_sleeper, str(pid_file),
                                           start_to_close_timeout=STC).result(timeout=30)
        time.sleep(0.1)
        assert _alive(grandchild)  # an attempt's end alone does not stop what it started
    assert _gone_within([grandchild], 1.0) == []


OWNER = textwrap.dedent('''
    import subprocess, sys, time
    from datetime import timedelta
    from actorflow import ActorSystem, activity

    @activity.defn
    def start_sleeper():
        return subprocess.Popen(["sleep", "1000"]).pid

    with ActorSystem(workers=2) as system:
        pids = [system.start_activity(start_sleeper, start_to_close_timeout=timedelta(seconds=30)).result()
                for _ in range(2)]
        print(" ".join(map(str, pids + system.worker_pids())), flush=True)
        time.sleep(3600)
''')


def test_D6_no_grandchild_outlives_a_SIGKILLed_owner_and_its_pipe_ends(tmp_path):
    """`python app.py | tail` must end: once the owner is SIGKILLed, its workers and their
    grandchildren go within 5 s, and with them every holder of the owner's stdout."""
    (tmp_path / "app.py").write_text(OWNER)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: List[int] = []
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 4, pids  # two grandchildren, two workers
        assert all(_alive(pid) for pid in pids)
        proc.kill()
        assert _gone_within(pids, 5.0) == []
        # EOF on both pipes: nobody holds them any more (communicate reads until then)
        assert proc.communicate(timeout=5) == ("", "")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@activity.defn
def pool_in_activity(n: int) -> list:
    """An activity may start multiprocessing children of its own (workers are not daemonic
    multiprocessing children any more)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return pool.map(abs, range(-n, 0))


@activity.defn
def hang_in_python(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_an_activity_can_use_a_multiprocessing_pool():
    with ActorSystem(workers=1) as system:
        handle = system.start_activity(pool_in_activity, 3, start_to_close_timeout=STC)
        assert handle.result(timeout=60) == [3, 2, 1]


def test_a_SIGINT_sent_to_a_worker_itself_ends_it_quietly_and_it_is_replaced(capfd):
    """Not the terminal's (that reaches only the owner): a SIGINT sent to the worker's pid ends it
    like a crash (D1: WorkerCrashed, retried), with no KeyboardInterrupt traceback."""
    with ActorSystem(workers=1) as system:
        handle = system.start_activity(hang_in_python, 0.5, start_to_close_timeout=STC,
                                       retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))
        deadline = time.monotonic() + 30
        while system.statistics().running_attempts < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(system.worker_pids()[0], signal.SIGINT)
        assert handle.result(timeout=30) is None
        failed = [e for e in handle.history() if e.kind == "attempt_failed"]
        assert len(failed) == 1 and "SIGINT" in str(failed[0].detail), failed
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "KeyboardInterrupt" not in captured.err, captured.err


def test_an_activity_whose_module_the_workers_cannot_import_names_the_cause_and_the_fix():
    """R44: the attempt fails (retryable) with the import error and what to do about it."""
    import types

    ghost = types.ModuleType("af_ghost_module")  # importable in this process only: sys.modules
    exec("def lost():\n    return 1\n", ghost.__dict__)
    sys.modules["af_ghost_module"] = ghost
    try:
        lost = activity.defn(ghost.lost)
        with ActorSystem(workers=1) as system:
            handle = system.start_activity(lost, start_to_close_timeout=STC,
                                           retry_policy=RetryPolicy(maximum_attempts=1))
            err = handle.exception(timeout=30)
    finally:
        del sys.modules["af_ghost_module"]
    assert isinstance(err, ActivityError)
    assert err.cause.type == "ModuleNotFoundError", err.cause
    message = err.cause.message
    assert message.startswith("Failed loading activity function"), message
    assert "No module named 'af_ghost_module'" in message
    assert "make that module importable" in message and "main module" in message

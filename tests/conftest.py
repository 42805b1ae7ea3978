"""Shared fixtures: systems that are always shut down, and a check that nothing outlives a test.

D6 says no worker process or actor thread outlives an ``ActorSystem``. Every test is checked for
that: the autouse ``no_leftovers`` fixture fails a test after which a new multiprocessing child,
or a new thread named ``actorflow*`` / ``TimerActor-*`` / ``SupervisorActor-*``, is still alive.
Only threads and children that appeared during the test count, so a wider-scoped fixture that
keeps its own system does not trip it; such fixtures check themselves with ``assert_no_leftovers``.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from actorflow import ActorSystem
from actorflow._launch import active_workers

# Thread-name prefixes of actorflow's own threads: the pool reader and lifecycle threads
# ("actorflow-..."), and the pykka actor threads (pykka names them "<ClassName>-<n>").
ACTOR_THREAD_PREFIXES = ("actorflow", "TimerActor-", "SupervisorActor-")
LEFTOVER_GRACE = 5.0  # seconds a finished system's threads/processes get to disappear


def actorflow_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.is_alive() and t.name.startswith(ACTOR_THREAD_PREFIXES)]


def live_children() -> list:
    """This process's live child processes as objects: actorflow's workers (started by
    actorflow._launch, not multiprocessing) and multiprocessing's children. Reaps exited ones."""
    return [*active_workers(), *multiprocessing.active_children()]


def _snapshot() -> tuple:
    """The live children and actorflow threads, as objects (pids and thread idents get reused)."""
    return set(live_children()), set(actorflow_threads())


def _leftovers(before: tuple) -> tuple:
    procs_before, threads_before = before
    procs = [p for p in live_children() if p not in procs_before]
    threads = [t for t in actorflow_threads() if t not in threads_before]
    return procs, threads


def assert_no_leftovers(before: tuple = (set(), set()), grace: float = LEFTOVER_GRACE) -> None:
    """Fail if processes/threads not in ``before`` are still alive after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        procs, threads = _leftovers(before)  # live_children() also reaps finished children
        if not procs and not threads:
            return
        if time.monotonic() > deadline:
            for p in procs:  # do not let one leak cascade into the next tests
                p.kill()
                p.join(5)
            pytest.fail(
                "D6: left behind after the test: "
                f"processes {[(p.name, p.pid) for p in procs]}, threads {[t.name for t in threads]}",
                pytrace=False,
            )
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """D6: no worker process and no actorflow thread that a test started survives it."""
    before = _snapshot()
    yield
    assert_no_leftovers(before)


@pytest.fixture
def make_system() -> Iterator[Callable[..., ActorSystem]]:
    """Factory: ``make_system(activities=[...], workers=2, ...)`` returns a started system.

    Every system it made is shut down in teardown, whatever the test did.
    """
    systems: List[ActorSystem] = []

    def make(activities: Any = (), **options: Any) -> ActorSystem:
        options.setdefault("workers", 2)
        system = ActorSystem(activities=activities, **options)
        systems.append(system)
        return system.start()

    yield make
    for system in reversed(systems):
        system.shutdown()


@pytest.fixture
def system(make_system: Callable[..., ActorSystem]) -> ActorSystem:
    """A fresh running system: 2 workers, 4 slots each, every activity of tests.process.activities."""
    from tests.process import activities

    return make_system(activities=activities.REGISTERED, workers=2, max_concurrent_activities=4)


@contextlib.contextmanager
def long_lived_system(**options: Any) -> Iterator[ActorSystem]:
    """A system for a module- or class-scoped fixture; checks D6 itself after its shutdown.

    Starting worker processes dominates the layer's run time on a loaded machine, so tests that
    only need *a* running system share one. The per-test check (``no_leftovers``) only sees what a
    test started, hence the check here.
    """
    from tests.process import activities

    options.setdefault("activities", activities.REGISTERED)
    options.setdefault("workers", 2)
    options.setdefault("max_concurrent_activities", 4)
    before = _snapshot()
    system = ActorSystem(**options).start()
    try:
        yield system
    finally:
        system.shutdown()
        assert_no_leftovers(before)


@pytest.fixture(scope="module")
def shared_system() -> Iterator[ActorSystem]:
    """Like ``system``, but one per test module, for tests that need no fresh state."""
    with long_lived_system() as system:
        yield system


class Journal:
    """An append-only JSON-lines file that activities in worker processes write to.

    Activities get ``str(journal)`` as an argument and call ``activities.note(path, ...)``; the
    test reads the records back in the order they were written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def __str__(self) -> str:
        return str(self.path)

    def records(self, event: str | None = None) -> List[Dict[str, Any]]:
        lines = self.path.read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        return [r for r in records if event is None or r["event"] == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """Poll until ``count`` records of ``event`` exist (the writer is another process)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.records(event)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"journal has {len(found)} {event!r} records, expected {count}: {self.records()}")
            time.sleep(0.01)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / f"journal-{os.getpid()}.jsonl")


def seconds(value: timedelta) -> float:
    return value.total_seconds()


class SchedulingNoise:
    """Measures how late this process's threads wake up while it runs (a context manager).

    A thread sleeps ``period`` seconds again and again and records how much longer each sleep
    took. On a quiet machine ``worst`` is well under a millisecond; when other work saturates the
    CPUs it is what any thread of the runtime (timer, supervisor, pool reader) may also lose per
    wake-up. Real-time tests use it to tell the runtime's latency from the machine's.
    """

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.samples: List[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-scheduling-noise", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            time.sleep(self.period)
            self.samples.append(time.perf_counter() - t - self.period)

    def __enter__(self) -> "SchedulingNoise":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def worst(self) -> float:
        return max(self.samples, default=0.0)

    @property
    def median(self) -> float:
        ordered = sorted(self.samples)
        return ordered[len(ordered) // 2] if ordered else 0.0

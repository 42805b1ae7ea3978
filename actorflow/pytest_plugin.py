"""pytest plugin: fixtures that give a test a running ``ActorSystem`` and check that it leaves
nothing behind. Registered through the ``pytest11`` entry point, so installing actorflow is enough.

Fixtures (all function-scoped):

``actorflow_system``
    A started ``ActorSystem`` with real worker processes and real time.
``actorflow_time_skipping_system``
    The same, driven by ``actorflow_clock`` (a ``VirtualClock``): backoffs and timeouts of minutes
    pass in milliseconds while no attempt runs.
``actorflow_clock``
    The ``VirtualClock`` of ``actorflow_time_skipping_system``; ``advance()`` it by hand if needed.
``actorflow_system_factory``
    ``make(activities=(), *, time_skipping=False, clock=None, **options) -> ActorSystem``, for
    tests that need several systems or options that differ per test.
``actorflow_activity_environment``
    An ``ActivityEnvironment`` (no system at all).

Configuration: override ``actorflow_activities`` (the activities registered with the systems,
default none: any ``@activity.defn`` function can be passed to ``start_activity`` anyway) and
``actorflow_system_options`` (extra ``ActorSystem`` keyword arguments; default ``workers=1``) in a
test module or a ``conftest.py``.

Teardown shuts every system down, even when the test failed, then fails the test if a worker
process, a pykka actor of actorflow or an ``actorflow`` thread it started is still alive
``LEAK_GRACE`` seconds later (leaked processes are killed, so one leak does not spill over).
Disable the plugin with ``-p no:actorflow``.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import pytest

from . import clock as _clock
from .system import ActorSystem
from .testing import ActivityEnvironment, VirtualClock

__all__ = [
    "actorflow_activities",
    "actorflow_system_options",
    "actorflow_clock",
    "actorflow_system_factory",
    "actorflow_system",
    "actorflow_time_skipping_system",
    "actorflow_activity_environment",
]

LEAK_GRACE = 5.0
"""Seconds a shut-down system's threads and processes get to disappear before it is a leak."""

DEFAULT_OPTIONS: Dict[str, Any] = {"workers": 1}
"""One worker keeps fixtures cheap; it still runs up to max_concurrent_activities attempts at once."""

# actorflow's own threads ("actorflow-pool-reader", "actorflow-lifecycle", ...) and the pykka actor
# threads of its actors (pykka names them "<ClassName>-<n>").
_THREAD_PREFIXES = ("actorflow", "TimerActor-", "SupervisorActor-")


@pytest.fixture
def actorflow_activities() -> Sequence[Callable[..., Any]]:
    """Activities registered with the fixtures' systems. Override to register yours."""
    return ()


@pytest.fixture
def actorflow_system_options() -> Dict[str, Any]:
    """Extra ``ActorSystem`` keyword arguments for the fixtures' systems. Override to change them."""
    return {}


@pytest.fixture
def actorflow_clock() -> VirtualClock:
    """The ``VirtualClock`` that drives ``actorflow_time_skipping_system``."""
    return VirtualClock()


class _Snapshot:
    """The worker processes, actorflow threads and actors alive before a fixture started any."""

    def __init__(self) -> None:
        self.children = {p.pid for p in _children()}
        self.threads = {t.ident for t in _runtime_threads()}
        self.actors = {id(ref) for ref in _runtime_actors()}


def _children() -> List[Any]:
    """Live child processes (reaping exited ones): actorflow's workers and multiprocessing's."""
    from ._launch import active_workers

    return [*active_workers(), *multiprocessing.active_children()]


def _runtime_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.is_alive() and t.name.startswith(_THREAD_PREFIXES)]


def _runtime_actors() -> List[Any]:
    import pykka

    return [ref for ref in pykka.ActorRegistry.get_all()
            if ref.is_alive() and ref.actor_class.__module__.startswith("actorflow")]


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie has exited; it does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def _leaks(
    before: _Snapshot, worker_pids: Iterable[int]
) -> Tuple[List[Tuple[str, Optional[int]]], List[str], List[str]]:
    procs: Dict[Optional[int], str] = {}
    for p in _children():  # also reaps children that have exited
        if p.pid not in before.children:
            procs[p.pid] = p.name
    for pid in worker_pids:
        if pid not in procs and _pid_alive(pid):
            procs[pid] = "actorflow worker"
    threads = [t.name for t in _runtime_threads() if t.ident not in before.threads]
    actors = [ref.actor_class.__name__ for ref in _runtime_actors() if id(ref) not in before.actors]
    return sorted(((name, pid) for pid, name in procs.items()), key=str), threads, actors


def _assert_nothing_left(before: _Snapshot, worker_pids: Iterable[int]) -> None:
    """Fail the current test if a process, thread or actor not in ``before`` outlives
    ``LEAK_GRACE`` seconds (read at call time, so a test can lower it)."""
    grace = LEAK_GRACE
    worker_pids = set(worker_pids)
    deadline = _clock.monotonic() + grace
    while True:
        procs, threads, actors = _leaks(before, worker_pids)
        if not (procs or threads or actors):
            return
        if _clock.monotonic() > deadline:
            break
        _clock.sleep(0.02)
    for _, pid in procs:  # do not let this leak spill into the next tests
        if pid is not None:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    _children()  # reap them
    parts = []
    if procs:
        listed = ", ".join(f"{name} (pid {pid})" for name, pid in procs)
        parts.append(f"worker processes {listed} (now killed)")
    if threads:
        parts.append("threads " + ", ".join(threads))
    if actors:
        parts.append("pykka actors " + ", ".join(actors))
    pytest.fail(
        f"actorflow: still alive {grace:g} s after the test's ActorSystem shut down: {'; '.join(parts)}. "
        "Every ActorSystem must be shut down (use `with`, `async with`, or shutdown()) and must "
        "leave nothing behind (API.md D6)",
        pytrace=False,
    )


@pytest.fixture
def actorflow_system_factory(
    actorflow_system_options: Dict[str, Any],
) -> Iterator[Callable[..., ActorSystem]]:
    """Factory of started systems: ``make(activities=(), *, time_skipping=False, clock=None, **options)``.

    ``actorflow_system_options`` give the defaults, ``options`` override them. With
    ``time_skipping=True`` (and no ``clock``) each system gets a fresh ``VirtualClock``; pass your
    own ``clock=VirtualClock()`` instead to keep a handle on it. Every system is shut down and
    checked for leftovers in teardown.
    """
    before = _Snapshot()
    systems: List[ActorSystem] = []
    worker_pids: Set[int] = set()

    def make(activities: Iterable[Callable[..., Any]] = (), *, time_skipping: bool = False,
             clock: Any = None, **options: Any) -> ActorSystem:
        merged = {**DEFAULT_OPTIONS, **actorflow_system_options, **options}
        if clock is None and time_skipping:
            clock = VirtualClock()
        if clock is not None:
            merged["clock"] = clock
        system = ActorSystem(activities=activities, **merged)
        systems.append(system)
        system.start()
        worker_pids.update(system.worker_pids())
        return system

    yield make
    errors = []
    for system in reversed(systems):
        try:
            worker_pids.update(system.worker_pids())
            system.shutdown()
        except Exception as exc:  # noqa: BLE001 - shut the others down too, then report
            errors.append(exc)
    if errors:
        raise errors[0]
    _assert_nothing_left(before, worker_pids)


@pytest.fixture
def actorflow_system(
    actorflow_system_factory: Callable[..., ActorSystem],
    actorflow_activities: Sequence[Callable[..., Any]],
) -> ActorSystem:
    """A started ``ActorSystem`` (real worker processes, real time), shut down after the test."""
    return actorflow_system_factory(actorflow_activities)


@pytest.fixture
def actorflow_time_skipping_system(
    actorflow_system_factory: Callable[..., ActorSystem],
    actorflow_activities: Sequence[Callable[..., Any]],
    actorflow_clock: VirtualClock,
) -> ActorSystem:
    """A started ``ActorSystem`` driven by ``actorflow_clock``, shut down after the test."""
    return actorflow_system_factory(actorflow_activities, clock=actorflow_clock)


@pytest.fixture
def actorflow_activity_environment() -> ActivityEnvironment:
    """An ``ActivityEnvironment``: runs activity code in the test's process, no system."""
    return ActivityEnvironment()

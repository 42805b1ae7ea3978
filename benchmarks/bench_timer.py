"""The timer: add/cancel cost with many pending deadlines, and firing lateness, idle and under load.

Lateness is measured on the system's own ``TimerActor``: probe deadlines are added to it (keys
with negative execution ids, which no supervisor hosts) next to ``timer_pending`` far-future
ones, and the system's ``_deliver_timers`` is wrapped *on the instance* to note when each probe
is handed to the supervisors. The reference is a plain thread that waits for the same schedule
with ``threading.Event.wait`` (the OS + interpreter floor), measured in the same conditions.
"""

from __future__ import annotations

import collections
import gc
import heapq
import itertools
import random
import threading
import time
from datetime import timedelta
from typing import Dict, List

from actorflow import ActorSystem
from actorflow.clock import SystemClock
from actorflow.timer import DeadlineMap, TimerActor, TimerBatch

import bench_activities as acts
from _common import Metric, Sizes, percentile, value_at_most

PROBE_KIND = 5  # BACKOFF: a supervisor ignores a fired key whose execution it does not host


class _HeapTimers:
    """Reference structure: asyncio's design (heap + lazy cancellation through a dict)."""

    def __init__(self) -> None:
        self._heap: list = []
        self._entries: Dict = {}
        self._seq = itertools.count()

    def add(self, key, deadline: float, priority: int = 0) -> None:
        old = self._entries.get(key)
        if old is not None:
            old[3] = None
        entry = [deadline, priority, next(self._seq), key]
        self._entries[key] = entry
        heapq.heappush(self._heap, entry)

    def cancel(self, key) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        entry[3] = None
        return True


def _ops_per_call(structure, pending: int, ops: int, rng: random.Random) -> tuple:
    for i in range(pending):
        structure.add(("p", i), rng.uniform(1e5, 2e5))
    keys = [("n", i) for i in range(ops)]
    deadlines = [rng.uniform(1e5, 2e5) for _ in range(ops)]
    add = structure.add
    clock = time.thread_time  # CPU of this thread: a busy machine's preemption does not count
    t0 = clock()
    for key, deadline in zip(keys, deadlines):
        add(key, deadline)
    t1 = clock()
    victims = rng.sample(range(pending), ops)
    cancel = structure.cancel
    victim_keys = [("p", i) for i in victims]
    t2 = clock()
    for key in victim_keys:
        cancel(key)
    t3 = clock()
    return (t1 - t0) / ops * 1e6, (t3 - t2) / ops * 1e6


def _actor_batch_add(pending: int) -> float:
    """Seconds per add when ``pending`` adds reach a TimerActor in one batch (incl. the tell)."""
    clock = SystemClock()
    ref = TimerActor.start(clock, lambda due: None)
    try:
        ref.ask("statistics", timeout=30)
        now = clock.now()
        adds = [((-(i + 1), PROBE_KIND, 1), now + 3600 + i * 1e-3, PROBE_KIND) for i in range(pending)]
        t0 = time.perf_counter()
        ref.tell(TimerBatch(adds, ()))
        ref.ask("statistics", timeout=60)
        return (time.perf_counter() - t0) / pending * 1e6
    finally:
        ref.stop(block=True, timeout=10)


class _Probes:
    """Collects the lateness of probe deadlines fired by the system's timer."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.lateness: List[float] = []
        self.expected = 0
        self.done = threading.Event()
        original = system._deliver_timers  # bound method, looked up before start() binds it

        def deliver(due):
            now = system._clock.now()
            rest = []
            for item in due:
                if item[0][0] < 0:
                    if item[0][2] == 1:  # probes; attempt 0 marks the far-future filler
                        self.lateness.append(now - item[1])
                else:
                    rest.append(item)
            if len(self.lateness) >= self.expected > 0:
                self.done.set()
            if rest:
                original(rest)

        system._deliver_timers = deliver  # instance attribute: TimerActor.start picks it up

    def fill(self, pending: int) -> None:
        now = self.system._clock.now()
        adds = [((-(10_000_000 + i), PROBE_KIND, 0), now + 3600 + i * 1e-3, PROBE_KIND) for i in range(pending)]
        self.system._timer.tell(TimerBatch(adds, ()))
        self.system._timer.ask("statistics", timeout=60)

    def run(self, count: int, interval: float) -> List[float]:
        self.lateness = []
        self.expected = count
        self.done.clear()
        start = self.system._clock.now() + 0.05
        base = random.randrange(1, 1_000_000) * 10_000
        adds = [((-(base + i + 1), PROBE_KIND, 1), start + i * interval, PROBE_KIND) for i in range(count)]
        self.system._timer.tell(TimerBatch(adds, ()))
        self.done.wait(count * interval + 30)
        return list(self.lateness)


def _reference_sleeper(count: int, interval: float) -> List[float]:
    """A thread waiting for each deadline of the same schedule with Event.wait (the floor)."""
    out: List[float] = []
    event = threading.Event()

    def run() -> None:
        start = time.monotonic() + 0.05
        for i in range(count):
            deadline = start + i * interval
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                event.wait(left)
            out.append(time.monotonic() - deadline)

    t = threading.Thread(target=run, name="bench-reference-sleeper")
    t.start()
    t.join()
    return out


class _Load:
    """Keeps the system dispatching no-op activities at full speed from two caller threads."""

    def __init__(self, system: ActorSystem, burst: int = 500) -> None:
        self.system = system
        self.burst = burst
        self.stop = threading.Event()
        self.completed = 0
        self.threads = [threading.Thread(target=self._run, name=f"bench-load-{i}") for i in range(2)]

    def _run(self) -> None:
        start = self.system.start_activity
        while not self.stop.is_set():
            handles = [start(acts.noop, i, start_to_close_timeout=timedelta(seconds=60)) for i in range(self.burst)]
            for h in handles:
                h.result()
            self.completed += len(handles)

    def __enter__(self) -> "_Load":
        for t in self.threads:
            t.start()
        time.sleep(0.3)  # reach steady state
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def bench_timer(sizes: Sizes) -> List[Metric]:
    pending = sizes.timer_pending
    rng = random.Random(7)
    dm_add, dm_cancel, heap_add, heap_cancel, actor_add = [], [], [], [], []
    for _ in range(sizes.reps):
        a, c = _ops_per_call(DeadlineMap(), pending, sizes.timer_ops, rng)
        dm_add.append(a)
        dm_cancel.append(c)
        a, c = _ops_per_call(_HeapTimers(), pending, sizes.timer_ops, rng)
        heap_add.append(a)
        heap_cancel.append(c)
    for _ in range(max(1, sizes.reps - 2)):
        actor_add.append(_actor_batch_add(pending))

    reps = max(2, sizes.reps - 2)
    count, interval = sizes.timer_probes, sizes.timer_probe_interval
    rows: Dict[str, List[float]] = collections.defaultdict(list)
    load_rates = []
    system = ActorSystem(activities=[acts.noop], workers=2)
    probes = _Probes(system)

    def sample(window: str) -> None:
        """One window of probes on the system's timer, then one for the reference thread."""
        for tag, sampler in (("", lambda: probes.run(count, interval)),
                             ("ref_", lambda: _reference_sleeper(count, interval))):
            late = [x * 1e3 for x in sampler()]
            rows[tag + window + "50"].append(percentile(late, 50))
            rows[tag + window + "99"].append(percentile(late, 99))
            rows[tag + window + "max"].append(max(late) if late else float("nan"))

    with system:
        probes.fill(pending)
        for _ in range(reps):
            sample("idle")
        with _Load(system) as load:
            t0, c0 = time.perf_counter(), load.completed
            for _ in range(reps):
                sample("load")
            load_rates.append((load.completed - c0) / (time.perf_counter() - t0))
            # Diagnostic: the same under load with the cyclic GC paused for the window, to show how
            # much of the tail is the interpreter's full collections (not something the runtime
            # does or should change for its host program).
            gc.disable()
            try:
                sample("nogc")
            finally:
                gc.enable()
    ref = "Event.wait thread"
    pnote = f"{count} probes {interval * 1e3:g} ms apart per repetition, {pending} other deadlines pending"
    lnote = pnote + f"; load: ~{load_rates[0]:,.0f} no-op activities/s completing meanwhile"
    return [
        Metric("timer", f"add, {pending} pending (DeadlineMap)", "us", "lower", dm_add, heap_add,
               "heapq + dict", target="<= 10 us", check=value_at_most(10, "us"),
               notes=f"mean of {sizes.timer_ops} adds (thread CPU time)"),
        Metric("timer", f"cancel, {pending} pending (DeadlineMap)", "us", "lower", dm_cancel, heap_cancel,
               "heapq lazy cancel", target="<= 10 us", check=value_at_most(10, "us"),
               notes=f"mean of {sizes.timer_ops} cancels (thread CPU time)"),
        Metric("timer", f"add via TimerActor, {pending} in one batch", "us", "lower", actor_add, dm_add,
               "DeadlineMap.add direct", notes="tell + apply, amortised per add"),
        Metric("timer", "lateness p50, idle", "ms", "lower", rows["idle50"], rows["ref_idle50"], ref, notes=pnote),
        Metric("timer", "lateness p99, idle", "ms", "lower", rows["idle99"], rows["ref_idle99"], ref,
               target="<= 1 ms", check=value_at_most(1.0, "ms"), notes=pnote),
        Metric("timer", "lateness max, idle", "ms", "lower", rows["idlemax"], rows["ref_idlemax"], ref, notes=pnote),
        Metric("timer", "lateness p50, full dispatch load", "ms", "lower", rows["load50"], rows["ref_load50"], ref,
               notes=lnote),
        Metric("timer", "lateness p99, full dispatch load", "ms", "lower", rows["load99"], rows["ref_load99"], ref,
               target="<= 10 ms", check=value_at_most(10.0, "ms"), notes=lnote),
        Metric("timer", "lateness max, full dispatch load", "ms", "lower", rows["loadmax"], rows["ref_loadmax"], ref,
               notes=lnote),
        Metric("timer", "lateness p99, full dispatch load, cyclic GC paused (diagnostic)", "ms", "lower",
               rows["nogc99"], rows["ref_nogc99"], ref, notes=lnote + "; gc.disable() for one window"),
    ]

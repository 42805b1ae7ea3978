"""Profile the parent process on the hot paths (see docs/performance.md).

1. Sampled, every thread of the parent, with py-spy (``pip install py-spy``):

       py-spy record --threads --gil --rate 1000 --format raw -o /tmp/rt.txt -- \\
           python benchmarks/profile_hotpath.py roundtrip --seconds 15 --threads-out /tmp/rt.threads.json
       python benchmarks/profile_hotpath.py report /tmp/rt.txt --threads /tmp/rt.threads.json

   ``--gil`` keeps only samples of the thread holding the GIL, i.e. where the parent's one
   usable core goes; ``roundtrip`` keeps one no-op in flight, ``throughput`` submits bursts;
   ``--journal PATH [--journal-sync full]`` runs either on a journaled system (D8).

2. ``timeline``: one no-op in flight, the median time between consecutive stages of its path.
3. ``cpu``: thread CPU time of each parent component alone (caller, supervisor, reader).
4. ``memory``: tracemalloc bytes per execution parked in backoff, by allocating line.
5. ``processcpu``: CPU per round trip of the parent and of the worker processes (``/proc``),
   next to ProcessPoolExecutor's, and the round trip p50/p99 with the two interleaved every 100
   calls (finer than the runner's interleaving, for A/B comparisons of two trees).
6. ``gcpause``: the timer's firing lateness under full dispatch load, with the cyclic GC's
   pauses per generation recorded meanwhile (``--freeze`` calls ``gc.freeze()`` first).
7. ``journal [--journal-sync full]``: one no-op in flight on a journaled system (D8): commits per
   round trip, rows per commit, thread CPU per SQL statement kind and per ``_write``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import threading
import time
from datetime import timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

STC = timedelta(seconds=60)


def _workload(mode: str, seconds: float, threads_out: str | None, journal: str | None = None,
              journal_sync: str = "normal") -> None:
    from actorflow import ActorSystem

    import bench_activities as acts

    options = {} if journal is None else {"journal": journal, "journal_sync": journal_sync,
                                          "retention": timedelta(minutes=1)}
    with ActorSystem(activities=[acts.noop], workers=2, **options) as system:
        for i in range(500):
            system.start_activity(acts.noop, i, start_to_close_timeout=STC).result()
        if threads_out:
            with open(threads_out, "w") as f:
                json.dump({str(t.native_id): t.name for t in threading.enumerate()}, f)
        deadline = time.monotonic() + seconds
        n = 0
        t0 = time.perf_counter()
        while time.monotonic() < deadline:
            if mode == "roundtrip":
                for i in range(200):
                    system.start_activity(acts.noop, i, start_to_close_timeout=STC).result()
                n += 200
            else:
                handles = [system.start_activity(acts.noop, i, start_to_close_timeout=STC) for i in range(5000)]
                for h in handles:
                    h.result()
                n += 5000
        elapsed = time.perf_counter() - t0
    print(json.dumps({"mode": mode, "executions": n, "seconds": elapsed, "us_per_execution": elapsed / n * 1e6}))


# -- timeline ---------------------------------------------------------------------------------


def _timeline(n: int, use_async: bool) -> None:
    """One no-op in flight; timestamps at each stage of the parent's path (monkeypatched here,
    in this process only) and inside the activity (perf_counter is CLOCK_MONOTONIC, shared by
    all processes on Linux). Prints the median time spent between consecutive stages."""
    import multiprocessing.connection
    import statistics

    import actorflow.supervisor as sup_mod
    import actorflow.system as sys_mod
    import actorflow.worker as worker_mod
    from actorflow import ActorSystem
    from actorflow._messages import NewExecution, WorkerReports

    import bench_activities as acts

    clock = time.perf_counter
    marks: dict = {}

    orig_receive = sup_mod.SupervisorActor.on_receive

    def on_receive(self, message):
        kind = type(message)
        if kind is NewExecution:
            marks.setdefault("supervisor got NewExecution", clock())
        elif kind is WorkerReports:
            marks.setdefault("supervisor got WorkerReports", clock())
        return orig_receive(self, message)

    orig_send = worker_mod.WorkerPool._send

    def send(self, worker, messages):
        marks.setdefault("pipe write start", clock())
        try:
            return orig_send(self, worker, messages)
        finally:
            marks.setdefault("pipe write done", clock())

    orig_wait = multiprocessing.connection.wait

    def wait(*a, **k):
        ready = orig_wait(*a, **k)
        marks.setdefault("reader woke", clock())
        return ready

    import selectors

    orig_select = selectors.DefaultSelector.select

    def select(self, timeout=None):
        ready = orig_select(self, timeout)
        marks.setdefault("reader woke", clock())
        return ready

    selectors.DefaultSelector.select = select  # in case the reader keeps a selector of its own
    orig_route = sys_mod.ActorSystem._route_reports

    def route(self, reports, dispatches):
        marks.setdefault("reader tells supervisor", clock())
        return orig_route(self, reports, dispatches)

    orig_inline = sup_mod.SupervisorActor.handle_inline

    def inline(self, message, **kw):  # handled on the reader's or the caller's thread
        kind = type(message)
        if kind is NewExecution:
            marks.setdefault("supervisor got NewExecution", clock())
        elif kind is WorkerReports:
            marks.setdefault("supervisor got WorkerReports", clock())
        return orig_inline(self, message, **kw)

    sup_mod.SupervisorActor.handle_inline = inline
    orig_settle = sup_mod._settle

    def settle(future, **kw):
        marks.setdefault("supervisor settles future", clock())
        return orig_settle(future, **kw)

    sup_mod.SupervisorActor.on_receive = on_receive
    worker_mod.WorkerPool._send = send
    multiprocessing.connection.wait = wait
    sys_mod.ActorSystem._route_reports = route
    sup_mod._settle = settle
    gaps = collections.defaultdict(list)
    totals = []
    paths: collections.Counter = collections.Counter()
    fn = acts.stamp_async if use_async else acts.stamp
    with ActorSystem(activities=[acts.stamp, acts.stamp_async], workers=2) as system:
        for i in range(n + 200):
            time.sleep(0.0005)  # let every thread go back to sleep, as between real calls
            marks.clear()
            t0 = clock()
            marks["start_activity called"] = t0
            h = system.start_activity(fn, start_to_close_timeout=STC)
            marks["start_activity returned"] = clock()
            in_child = h.result()
            marks["caller has result"] = clock()
            marks["activity runs (child)"] = in_child
            if i < 200:
                continue
            # Stages in the order they happened: handled inline or by the supervisor's thread.
            stages = tuple(sorted(marks, key=marks.__getitem__))
            paths[stages] += 1
            for a, b in zip(stages, stages[1:]):
                gaps[(stages, f"{a} -> {b}")].append((marks[b] - marks[a]) * 1e6)
            totals.append((marks["caller has result"] - t0) * 1e6)
    print(f"{'async' if use_async else 'sync'} activity, {len(totals)} round trips; "
          f"median total {statistics.median(totals):.1f} us")
    for stages, count in paths.most_common(2):
        print(f"path taken by {count} round trips, median us per stage:")
        for a, b in zip(stages, stages[1:]):
            print(f"  {statistics.median(gaps[(stages, f'{a} -> {b}')]):8.1f}  {a} -> {b}")


# -- cpu: deterministic CPU per execution, per component ------------------------------------------


def _cpu(n: int) -> None:
    """CPU each parent component spends per no-op execution, measured single-threaded (no GIL
    contention, no thread wake-ups; CPU time of the measuring thread, so a loaded machine's
    preemption does not count): the caller's start_activity with a stub supervisor, the
    supervisor's two messages with a stub pool/timer, and the reader's per-wake-up work on a real
    pipe. What this misses is the cost of the thread hops themselves (see ``timeline``)."""
    import concurrent.futures
    import multiprocessing
    import multiprocessing.connection
    import pickle

    import pykka

    from actorflow import ActorSystem
    from actorflow._messages import COMPLETED, NewExecution, WorkerReports
    from actorflow.supervisor import SupervisorActor

    import bench_activities as acts

    clock = time.thread_time

    def per_op(fn, count=n, repeat=5):
        best = float("inf")
        for _ in range(repeat):
            t0 = clock()
            fn(count)
            best = min(best, (clock() - t0) / count)
        return best * 1e6

    results = {}

    # 1. caller: start_activity into a stub supervisor that keeps the records.
    class StubRef:
        def __init__(self):
            self.items = []

        def tell(self, message):
            self.items.append(message)

    system = ActorSystem(activities=[acts.noop], workers=1, supervisors=1)
    system._state = "running"
    stub = StubRef()
    system._supervisors = [stub]

    class BusyActor:  # the supervisor looks busy, so start_activity tells instead of handling inline
        def handle_inline(self, message, *, may_write):
            return False

    system._supervisor_actors = [BusyActor()]

    def start_many(count):
        start = system.start_activity
        for i in range(count):
            start(acts.noop, i, start_to_close_timeout=STC)
        stub.items.clear()

    results["caller: start_activity (validate, pickle args, record, Future, handle, tell)"] = per_op(start_many)

    def futures_only(count):
        for _ in range(count):
            concurrent.futures.Future()

    results["  of which concurrent.futures.Future() (Condition + RLock)"] = per_op(futures_only)

    def pickles_only(count):
        from actorflow import _serde
        for i in range(count):
            _serde.dumps((i,))

    results["  of which _serde.dumps(args)"] = per_op(pickles_only)

    class Sink(pykka.ThreadingActor):
        def on_receive(self, message):
            return None

    sink = Sink.start()

    def tells(count):
        for i in range(count):
            sink.tell(i)
        sink.ask(None)

    results["  of which pykka tell (enqueue; the actor drains meanwhile)"] = per_op(tells)
    sink.stop()

    # 2. supervisor: NewExecution + WorkerReports(COMPLETED) with a stub pool and timer.
    class StubWorker:
        pid = 1

    worker = StubWorker()

    class StubPool:
        def submit(self, key, shard):
            return worker, system._clock.now()

        def claim(self, w, key):
            return True

        def send(self, w, messages):
            pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)  # the real send pickles
            return True

        def worker_of(self, key):
            return worker

        def release_and_next(self, key):
            return None

        def withdraw(self, key):
            return True

        def release(self, key):
            pass

    class StubTimer:
        class actor_inbox:  # the supervisor hands timer operations to the inbox's put_ops
            @staticmethod
            def put_ops(ops):
                pass

    actor = SupervisorActor(StubPool(), StubTimer(), system._clock, 5.0)
    result_bytes = pickle.dumps(None)

    def supervise(count):
        start = system.start_activity
        records = []
        for i in range(count):
            start(acts.noop, i, start_to_close_timeout=STC)
        records = [m.record for m in stub.items]
        stub.items.clear()
        t0 = clock()
        for r in records:
            actor.handle_inline(NewExecution(r), may_write=True)
            actor.handle_inline(WorkerReports([(COMPLETED, r.exec_id, 1, result_bytes)], ()), may_write=False)
        return clock() - t0

    times = []
    for _ in range(5):
        times.append(supervise(n) / n * 1e6)
    results["supervisor: NewExecution + WorkerReports (machine, history, RUN pickle, settle)"] = min(times)

    # 3. reader: one wake-up that brings one COMPLETED report, on real pipes (as _read_loop does).
    a, b = multiprocessing.Pipe()
    c, d = multiprocessing.Pipe()
    r, w = os.pipe()
    proc_sentinels = [os.pipe()[0], os.pipe()[0]]
    batch = pickle.dumps([(COMPLETED, 2, 1, result_bytes)], protocol=pickle.HIGHEST_PROTOCOL)
    lock = threading.Lock()
    changed = threading.Condition(lock)
    sink2 = StubRef()

    def reader(count):
        for _ in range(count):
            b.send_bytes(batch)
            with lock:
                waitables = {r: 1, a: 2, c: 3, proc_sentinels[0]: 4, proc_sentinels[1]: 5}
            ready = multiprocessing.connection.wait(list(waitables))
            with lock:
                pass
            for conn in ready:
                while conn.poll():
                    msgs = pickle.loads(conn.recv_bytes())
                    with lock:
                        reports = {}
                        for m in msgs:
                            reports.setdefault(m[1] % 2, []).append(m)
            for shard, reps in reports.items():
                sink2.tell(WorkerReports(reps, ()))
            with changed:
                changed.notify_all()
            sink2.items.clear()

    results["reader: wait() + poll/recv/unpickle + route per wake-up"] = per_op(reader)

    def waits(count):
        objs = [r, a, c, *proc_sentinels]
        b.send_bytes(batch)
        for _ in range(count):
            multiprocessing.connection.wait(objs)
        a.recv_bytes()

    results["  of which multiprocessing.connection.wait(5 objects)"] = per_op(waits)

    def polls(count):
        for _ in range(count):
            c.poll()

    results["  of which one Connection.poll() (builds a selector each call)"] = per_op(polls)
    for k, v in results.items():
        print(f"  {v:8.2f} us  {k}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "cpu.json"), "w") as f:
        json.dump(results, f, indent=2)


# -- memory: what one execution in backoff keeps alive -------------------------------------------


def _memory(n: int) -> None:
    """tracemalloc difference between an idle system and one with ``n`` executions in backoff
    (their handles held by the caller), grouped by the line that allocated."""
    import gc
    import tracemalloc

    from actorflow import ActorSystem

    import bench_activities as acts

    with ActorSystem(activities=[acts.fail_then_succeed, acts.noop], workers=2) as system:
        for i in range(200):
            system.start_activity(acts.noop, i, start_to_close_timeout=STC).result()
        gc.collect()
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
        due = time.time() + 3600
        handles = [system.start_activity(acts.fail_then_succeed, due, start_to_close_timeout=STC)
                   for _ in range(n)]
        while system.statistics().retrying < n:
            time.sleep(0.05)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = after.compare_to(before, "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"{n} executions in backoff: {total / n:,.0f} bytes each traced by tracemalloc "
              f"({total / 2**20:,.1f} MB); by allocating line:")
        for stat in stats[:30]:
            frame = stat.traceback[0]
            where = f"{os.path.relpath(frame.filename, os.path.dirname(HERE)) if 'actorflow' in frame.filename else os.path.basename(frame.filename)}:{frame.lineno}"
            print(f"  {stat.size_diff / n:8.0f} B/exec  {stat.count_diff / n:5.2f} blocks/exec  {where}")
        for h in handles:
            h.cancel()


# -- processcpu: CPU per round trip, per process ----------------------------------------------


def _process_cpu(n: int) -> None:
    import multiprocessing

    from actorflow import ActorSystem

    import bench_activities as acts
    from _common import percentile, ppe
    from bench_latency import _af_roundtrips, _ppe_roundtrips

    def cpu(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def measure(run) -> tuple:
        children = [p.pid for p in multiprocessing.active_children()]
        before = {p: cpu(p) for p in children}
        own, t0 = cpu(os.getpid()), time.perf_counter()
        run(n)
        wall, own = time.perf_counter() - t0, cpu(os.getpid()) - own
        kids = sum(cpu(p) - before[p] for p in children)
        return own / n * 1e6, kids / n * 1e6, wall / n * 1e6

    with ActorSystem(activities=[acts.noop, acts.noop_async], workers=2) as system, ppe(2) as pool:
        for fn in (acts.noop, acts.noop_async):
            _af_roundtrips(system, fn, 300)
        _ppe_roundtrips(pool, 300)
        rows = {
            "sync def": measure(lambda k: _af_roundtrips(system, acts.noop, k)),
            "async def": measure(lambda k: _af_roundtrips(system, acts.noop_async, k)),
            "PPE": measure(lambda k: _ppe_roundtrips(pool, k)),
        }
        lat: dict = {"sync def": [], "async def": [], "PPE": []}
        for _ in range(max(1, n // 100)):
            lat["sync def"] += _af_roundtrips(system, acts.noop, 100)
            lat["PPE"] += _ppe_roundtrips(pool, 100)
            lat["async def"] += _af_roundtrips(system, acts.noop_async, 100)
    print(f"{n} round trips each; CPU us per round trip (parent / workers), wall us per round trip;")
    print("then p50 / p99 with the three interleaved every 100 calls, and the ratio to PPE")
    ref50, ref99 = percentile(lat["PPE"], 50), percentile(lat["PPE"], 99)
    for name, (own, kids, wall) in rows.items():
        p50, p99 = percentile(lat[name], 50), percentile(lat[name], 99)
        print(f"  {name:10s} parent {own:6.0f}  workers {kids:6.0f}  wall {wall:6.0f}   "
              f"p50 {p50 * 1e6:6.0f} ({p50 / ref50:.2f}x)  p99 {p99 * 1e6:6.0f} ({p99 / ref99:.2f}x)")


# -- gcpause: timer lateness under load next to the GC's pauses ---------------------------------


def _gc_pause(freeze: bool) -> None:
    import gc

    from actorflow import ActorSystem

    import bench_activities as acts
    from _common import percentile
    from bench_timer import _Load, _Probes

    pauses: dict = {0: [], 1: [], 2: []}
    started: dict = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        else:
            pauses[info["generation"]].append((time.perf_counter() - started["t"]) * 1e3)

    system = ActorSystem(activities=[acts.noop], workers=2)
    probes = _Probes(system)
    with system:
        probes.fill(100_000)
        t0 = time.perf_counter()
        gc.collect()
        full = (time.perf_counter() - t0) * 1e3
        if freeze:
            gc.freeze()
        gc.callbacks.append(on_gc)
        try:
            with _Load(system):
                late = [x * 1e3 for x in probes.run(1000, 0.002)]
        finally:
            gc.callbacks.remove(on_gc)
            gc.unfreeze()
    print(f"tracked objects {len(gc.get_objects())}; one full collection with 100000 timers pending: {full:.1f} ms"
          f"{'; gc.freeze() before the load' if freeze else ''}")
    print(f"lateness under load: p50 {percentile(late, 50):.2f} ms, p99 {percentile(late, 99):.2f} ms, "
          f"max {max(late):.2f} ms")
    for generation, values in pauses.items():
        print(f"  gen {generation}: {len(values)} collections, longest {max(values, default=0):.1f} ms, "
              f"total {sum(values):.0f} ms")


# -- journal: what the SQLite journal's commits cost per round trip (D8) ---------------------------


class _TimedConnection:
    """Stands in for the journal's connection inside ``_write``: thread CPU per statement kind."""

    def __init__(self, db, cost, count) -> None:
        self._db, self._cost, self._count = db, cost, count

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def _timed(self, method, sql, *args):
        word = sql.split()[0]
        key = word if word in ("BEGIN", "COMMIT", "ROLLBACK") else " ".join(sql.split()[:3])
        c0 = time.thread_time()
        try:
            return method(sql, *args)
        finally:
            self._cost[key] += time.thread_time() - c0
            self._count[key] += 1

    def execute(self, sql, *args):
        return self._timed(self._db.execute, sql, *args)

    def executemany(self, sql, rows):
        return self._timed(self._db.executemany, sql, rows)


def _journal_cost(n: int, sync: str) -> None:
    """One no-op in flight on a journaled system: commits per round trip, rows per commit, and
    the thread CPU of each statement kind and of ``_write`` as a whole (encoding included)."""
    import collections
    import tempfile

    from actorflow import ActorSystem
    from actorflow.journal import sqlite as journal_sqlite

    import bench_activities as acts

    cost: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    original = journal_sqlite.SqliteJournal._write

    def write(self, new, updates, history):
        c0 = time.thread_time()
        real, self._db = self._db, _TimedConnection(self._db, cost, count)
        try:
            return original(self, new, updates, history)
        finally:
            self._db = real
            cost["_write (all)"] += time.thread_time() - c0
            count["_write (all)"] += 1
            count["rows: new"] += len(new)
            count["rows: updates"] += len(updates)
            count["rows: history"] += len(history)

    journal_sqlite.SqliteJournal._write = write
    with tempfile.TemporaryDirectory() as tmp:
        with ActorSystem(activities=[acts.noop], workers=2, journal=os.path.join(tmp, "j.db"),
                         journal_sync=sync, retention=timedelta(minutes=1)) as system:
            for i in range(300):
                system.start_activity(acts.noop, i, start_to_close_timeout=STC).result()
            cost.clear()
            count.clear()
            lat = []
            for i in range(n):
                t0 = time.perf_counter()
                system.start_activity(acts.noop, i, start_to_close_timeout=STC).result()
                lat.append(time.perf_counter() - t0)
    journal_sqlite.SqliteJournal._write = original
    lat.sort()
    print(f"journal_sync={sync}: {n} round trips, p50 {lat[n // 2] * 1e6:.0f} us")
    print(f"{'':34s} {'per round trip':>14s} {'CPU us/rt':>10s} {'CPU us/call':>12s}")
    for key in sorted(cost, key=cost.get, reverse=True):
        print(f"{key:34s} {count[key] / n:14.2f} {cost[key] / n * 1e6:10.1f} {cost[key] / count[key] * 1e6:12.1f}")
    for key in ("rows: new", "rows: updates", "rows: history"):
        print(f"{key:34s} {count[key] / n:14.2f}")


# -- report -------------------------------------------------------------------------------------

def _frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file.py)'."""
    if " (" not in frame:
        return frame
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].split('/')[-1]})"


def _report(path: str, threads_path: str | None, top: int = 25) -> None:
    """Per thread: its share of the GIL-holding samples, and the functions on its stacks
    (inclusive: a function counts once per sample it appears in). Import-time samples are
    dropped, so the numbers describe the steady state."""
    names = {}
    if threads_path and os.path.exists(threads_path):
        with open(threads_path) as f:
            names = json.load(f)
    by_thread = collections.Counter()
    inclusive = collections.defaultdict(collections.Counter)
    leaf = collections.defaultdict(collections.Counter)
    total = dropped = 0
    with open(path) as f:
        for line in f:
            stack_text, _, count = line.rstrip("\n").rpartition(" ")
            if not stack_text:
                continue
            count = int(count)
            frames = stack_text.split(";")
            if any("_find_and_load" in fr or "_teardown" in fr or "ActorSystem.start " in fr for fr in frames):
                dropped += count
                continue
            m = re.search(r"thread \((\w+)\)", frames[0])
            tname = names.get(str(int(m.group(1), 0)), frames[0]) if m else frames[0]
            total += count
            by_thread[tname] += count
            seen = set()
            for fr in frames[1:]:
                name = _frame_name(fr)
                if name not in seen:
                    seen.add(name)
                    inclusive[tname][name] += count
            if len(frames) > 1:
                leaf[tname][frames[-1].split("/")[-1]] += count
    print(f"samples: {total} (dropped {dropped} from imports, start-up and teardown)")
    for tname, c in by_thread.most_common():
        print(f"\n== {tname}: {c / total:.1%} of samples")
        for name, cc in inclusive[tname].most_common(top):
            if name.startswith(("Thread.", "Actor._actor_loop", "<module>", "main (profile_hotpath")):
                continue
            print(f"   {cc / total:6.1%}  {name}")
        print("   -- self time (leaf lines):")
        for name, cc in leaf[tname].most_common(8):
            print(f"   {cc / total:6.1%}  {name}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["roundtrip", "throughput", "report", "timeline", "cpu", "memory",
                                    "processcpu", "gcpause", "journal"])
    p.add_argument("--freeze", action="store_true", help="gcpause: gc.freeze() before the load")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--async", dest="use_async", action="store_true")
    p.add_argument("path", nargs="?")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--threads-out")
    p.add_argument("--threads")
    p.add_argument("--journal", help="roundtrip/throughput: on a journaled system (D8), this file")
    p.add_argument("--journal-sync", default="normal", choices=["normal", "full"])
    args = p.parse_args()
    if args.mode == "report":
        _report(args.path, args.threads)
    elif args.mode == "memory":
        _memory(args.n)
    elif args.mode == "cpu":
        _cpu(min(args.n, 20000))
    elif args.mode == "timeline":
        _timeline(args.n, args.use_async)
    elif args.mode == "processcpu":
        _process_cpu(args.n)
    elif args.mode == "gcpause":
        _gc_pause(args.freeze)
    elif args.mode == "journal":
        _journal_cost(args.n, args.journal_sync)
    else:
        _workload(args.mode, args.seconds, args.threads_out, args.journal, args.journal_sync)


if __name__ == "__main__":
    main()

"""Durable executions (D8): actorflow journaled (``normal``, ``full``) against in-memory, and peers.

Everything runs in one ``run.py`` invocation, so the rows compare figures measured on the same
machine state:

- round trip: sequential ``start_activity(noop).result()`` on three systems open side by side
  (in-memory, journal ``normal``, journal ``full``), interleaved per repetition;
- throughput: ``n`` no-ops started at once, first start to last result, same three systems;
- recovery: a journal holding ``n`` open executions (left open by a shutdown, D8) is copied
  fresh for each repetition; timed from ``ActorSystem(journal=copy)`` through ``start()`` until
  ``statistics()`` counts all ``n`` as open (pending + running + retrying), i.e. every one has
  been rebuilt from its record and handed to its supervisor. The reference builds the same state
  from scratch: a new in-memory system that starts the ``n`` executions itself;
- peers (huey with SqliteHuey, DBOS on SQLite, Celery with Redis), each a script in
  ``benchmarks/peers/`` run in its own venv (``benchmarks/peers/.venv``, made on first use), shown
  against actorflow journaled ``normal`` from this run.

The activity ``park`` holds its worker slot for an hour, so the executions queued behind it stay
open while the journal is built and while a recovered system counts them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from typing import Any, Dict, List, Optional

from actorflow import ActorSystem

import bench_activities as acts
from bench_latency import _af_burst, _af_roundtrips
from _common import (
    BenchmarkPartialFailure,
    Metric,
    Sizes,
    percentile,
    ratio_at_least,
    ratio_at_most,
    value_at_most,
)

__all__ = ["bench_durable", "ensure_peers_venv", "PEERS"]

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_DIR = os.path.join(HERE, "peers")
PEERS_VENV = os.path.join(PEERS_DIR, ".venv")
PEER_PACKAGES = ("huey", "dbos", "celery", "redis", "packaging")  # kombu's redis transport needs packaging
PEERS = ("huey", "dbos", "celery")
STC = timedelta(seconds=60)
PARK_STC = timedelta(hours=2)
DBOS_MAX_BURST = 2000  # DBOS on SQLite does ~100 no-op workflows/s here: 20,000 would take minutes per repetition
MODES = ("memory", "normal", "full")
BURST_THREADS = 8  # callers starting at once in the concurrent-burst rows


# -- actorflow: round trip and throughput -------------------------------------------------------


def _systems(tmp: str) -> Dict[str, ActorSystem]:
    """Three systems, unstarted: in-memory and journaled with each sync mode."""
    return {
        "memory": ActorSystem(activities=[acts.noop], workers=2),
        "normal": ActorSystem(activities=[acts.noop], workers=2, journal=os.path.join(tmp, "rt-normal.db"),
                              journal_sync="normal", retention=timedelta(minutes=1)),
        "full": ActorSystem(activities=[acts.noop], workers=2, journal=os.path.join(tmp, "rt-full.db"),
                            journal_sync="full", retention=timedelta(minutes=1)),
    }


def _roundtrips(system: ActorSystem, n: int) -> List[float]:
    return _af_roundtrips(system, acts.noop, n)


def _burst(system: ActorSystem, n: int) -> float:
    return _af_burst(system, acts.noop, n)[0]


def _burst_threads(system: ActorSystem, n: int, threads: int) -> float:
    """``n`` no-ops started at once by ``threads`` callers (journaled starts share commits)."""
    handles: List[List[Any]] = [[] for _ in range(threads)]
    go = threading.Barrier(threads + 1)

    def run(k: int, count: int) -> None:
        start = system.start_activity
        fn = acts.noop
        mine = handles[k]
        go.wait()
        for i in range(count):
            mine.append(start(fn, i, start_to_close_timeout=STC))

    shares = [n // threads + (1 if k < n % threads else 0) for k in range(threads)]
    callers = [threading.Thread(target=run, args=(k, share)) for k, share in enumerate(shares)]
    for c in callers:
        c.start()
    go.wait()
    t0 = time.perf_counter()
    for c in callers:
        c.join()
    for mine in handles:
        for h in mine:
            h.result()
    return n / (time.perf_counter() - t0)


def _hot_path(sizes: Sizes, tmp: str) -> Dict[str, Dict[str, List[float]]]:
    """p50/p99 round trip (us) and burst throughput (/s) per mode, interleaved per repetition."""
    n, burst = sizes.durable_roundtrip_calls, sizes.durable_throughput_n
    out = {mode: {"p50": [], "p99": [], "rate": [], "rate_threads": []} for mode in MODES}
    systems = _systems(tmp)
    started: List[ActorSystem] = []
    try:
        for mode in MODES:
            systems[mode].start()
            started.append(systems[mode])
        for mode in MODES:  # warm up: imports, caches, thread pools, the journal's statements
            _roundtrips(systems[mode], min(n, 300))
            _burst(systems[mode], min(burst, 2000))
        for _ in range(sizes.reps):
            for mode in MODES:
                lat = _roundtrips(systems[mode], n)
                out[mode]["p50"].append(percentile(lat, 50) * 1e6)
                out[mode]["p99"].append(percentile(lat, 99) * 1e6)
            for mode in MODES:
                out[mode]["rate"].append(_burst(systems[mode], burst))
            for mode in MODES:
                out[mode]["rate_threads"].append(_burst_threads(systems[mode], burst, BURST_THREADS))
    finally:
        for system in started:
            system.shutdown()
    return out


# -- actorflow: recovery ------------------------------------------------------------------------


def _parked_system(journal: Optional[str]) -> ActorSystem:
    """Two workers, one slot each, both held by ``park``: whatever else starts stays queued."""
    return ActorSystem(activities=[acts.park], workers=2, max_concurrent_activities=1,
                       stop_grace=timedelta(0), journal=journal)


def _open_count(system: ActorSystem) -> int:
    stats = system.statistics()
    return stats.pending + stats.running + stats.retrying


def _wait_open(system: ActorSystem, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _open_count(system) < n:
        if time.monotonic() > deadline:
            message = f"only {_open_count(system)} of {n} executions open after {timeout:.0f} s"
            raise RuntimeError(message)
        time.sleep(0.002)


def _start_parked(system: ActorSystem, n: int, threads: int) -> None:
    """Start ``n`` parked executions from ``threads`` callers (journaled starts share commits)."""
    errors: List[BaseException] = []

    def run(count: int) -> None:
        try:
            start = system.start_activity
            for i in range(count):
                start(acts.park, i, start_to_close_timeout=PARK_STC)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    shares = [n // threads + (1 if k < n % threads else 0) for k in range(threads)]
    workers = [threading.Thread(target=run, args=(share,)) for share in shares]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]


def _build_open_journal(path: str, n: int) -> float:
    """A journal holding ``n`` open executions, left by a journaled shutdown (D8). Seconds taken."""
    t0 = time.perf_counter()
    with _parked_system(path) as system:
        _start_parked(system, n, threads=4)
        _wait_open(system, n, timeout=120)
    return time.perf_counter() - t0


def _recover_once(master: str, copy: str, n: int) -> Dict[str, float]:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(copy + suffix):
            os.remove(copy + suffix)
    shutil.copyfile(master, copy)
    t0 = time.perf_counter()
    system = _parked_system(copy)
    try:
        system.start()
        t_started = time.perf_counter()
        _wait_open(system, n, timeout=300)
        t_open = time.perf_counter()
    finally:
        t_stop = time.perf_counter()
        system.shutdown()
    return {"recover": t_open - t0, "start_returned": t_started - t0, "shutdown": time.perf_counter() - t_stop}


def _resubmit_once(n: int) -> float:
    """The reference: the same ``n`` open executions, started from scratch in memory."""
    t0 = time.perf_counter()
    system = _parked_system(None)
    try:
        system.start()
        _start_parked(system, n, threads=1)
        _wait_open(system, n, timeout=300)
        return time.perf_counter() - t0
    finally:
        system.shutdown()


def _recovery(sizes: Sizes, tmp: str) -> Metric:
    n = sizes.durable_recovery_n
    master = os.path.join(tmp, "open.db")
    build_s = _build_open_journal(master, n)
    size_mb = os.path.getsize(master) / 1e6
    af, ref, start_returned, shutdowns = [], [], [], []
    for _ in range(sizes.reps):  # interleaved with the reference
        rep = _recover_once(master, os.path.join(tmp, "recover.db"), n)
        af.append(rep["recover"])
        start_returned.append(rep["start_returned"])
        shutdowns.append(rep["shutdown"])
        ref.append(_resubmit_once(n))
    return Metric(
        "durable", f"recovery of {n:,} open executions (construct, start, all open)", "s", "lower",
        af, ref, "in-memory re-start of all", target="<= 5 s for 100,000", check=value_at_most(5.0, "s"),
        notes=(f"recovery: journal of {size_mb:.0f} MB built in {build_s:.0f} s by starting {n:,} parked "
               "executions and leaving the with block; copied fresh per repetition; timed until "
               "statistics() counts all as pending+running+retrying (not until they complete); "
               "the reference starts the same executions on a new in-memory system"),
        extra={"start_returned_s": start_returned, "journaled_shutdown_with_open_s": shutdowns,
               "journal_mb": size_mb, "build_s": build_s},
    )


# -- peers --------------------------------------------------------------------------------------


def _venv_python() -> str:
    return os.path.join(PEERS_VENV, "bin", "python")


def ensure_peers_venv() -> str:
    """``benchmarks/peers/.venv`` with the peers installed (made on first use); its python."""
    python = _venv_python()
    probe = "import " + ", ".join(PEER_PACKAGES)
    if os.path.exists(python) and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return python
    print(f"[bench] durable: installing {', '.join(PEER_PACKAGES)} into {PEERS_VENV} ...", file=sys.stderr,
          flush=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", PEERS_VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def _ensure_redis_server() -> None:
    """Celery's peer runs Debian's redis-server; install it when missing and we may."""
    if shutil.which("redis-server"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        message = "redis-server is missing: install it (apt-get install -y redis-server) for the Celery peer"
        raise RuntimeError(message)
    print("[bench] durable: apt-get install -y redis-server ...", file=sys.stderr, flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, capture_output=True)


def _run_peer(python: str, peer: str, sizes: Sizes, tmp: str) -> Dict[str, Any]:
    folder = tempfile.mkdtemp(prefix=f"{peer}-", dir=tmp)
    burst = sizes.durable_throughput_n if peer != "dbos" else min(sizes.durable_throughput_n, DBOS_MAX_BURST)
    cmd = [python, os.path.join(PEERS_DIR, f"{peer}_bench.py"), "--tmp", folder,
           "--roundtrip-calls", str(sizes.durable_roundtrip_calls), "--throughput-n", str(burst),
           "--reps", str(sizes.durable_peer_reps), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env, cwd=PEERS_DIR)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        message = f"peer {peer} exited with code {proc.returncode}:\n{proc.stderr[-3000:]}"
        raise RuntimeError(message)
    result = json.loads(lines[-1])
    result["throughput_n"] = burst
    return result


def _peer_metrics(peer: Dict[str, Any], hot: Dict[str, Dict[str, List[float]]]) -> List[Metric]:
    name = f"{peer['peer']} {peer['version']}"
    judged = peer["peer"] in ("huey", "dbos")  # issue 11: ahead of huey and DBOS on both
    note = f"peer {peer['peer']}: {peer['settings']}; throughput burst {peer['throughput_n']:,}"
    normal = hot["normal"]
    return [
        Metric("durable", f"vs {peer['peer']}: round trip p50, journaled normal", "us", "lower",
               normal["p50"], peer["roundtrip_p50_us"], name,
               target="<= 1.0x (ahead)" if judged else None, check=ratio_at_most(1.0) if judged else None,
               notes=note),
        Metric("durable", f"vs {peer['peer']}: round trip p99, journaled normal", "us", "lower",
               normal["p99"], peer["roundtrip_p99_us"], name, notes=note),
        Metric("durable", f"vs {peer['peer']}: throughput, journaled normal", "/s", "higher",
               normal["rate"], peer["throughput_per_s"], name,
               target=">= 1.0x (ahead)" if judged else None, check=ratio_at_least(1.0) if judged else None,
               notes=note),
    ]


def _peers(sizes: Sizes, tmp: str, hot: Dict[str, Dict[str, List[float]]]) -> tuple:
    metrics: List[Metric] = []
    errors: List[str] = []
    try:
        python = ensure_peers_venv()
    except (OSError, subprocess.SubprocessError) as exc:
        return metrics, [f"peers venv: {exc}"]
    for peer in PEERS:
        print(f"[bench] durable: peer {peer} ...", file=sys.stderr, flush=True)
        try:
            if peer == "celery":
                _ensure_redis_server()
            metrics += _peer_metrics(_run_peer(python, peer, sizes, tmp), hot)
        except (OSError, RuntimeError, subprocess.SubprocessError, ValueError) as exc:
            errors.append(f"peer {peer}: {exc}")
    return metrics, errors


# -- the benchmark ------------------------------------------------------------------------------


def _hot_metrics(sizes: Sizes, hot: Dict[str, Dict[str, List[float]]], peers_note: str) -> List[Metric]:
    n, burst = sizes.durable_roundtrip_calls, sizes.durable_throughput_n
    rt_note = f"{n} sequential calls per repetition, {sizes.reps} repetitions, 3 systems open side by side; {peers_note}"
    tp_note = f"{burst:,} no-ops started at once, 2 workers, first start to last result; {peers_note}"
    mem = hot["memory"]
    rows = []
    for mode in ("normal", "full"):
        j = hot[mode]
        target = mode == "normal"  # issue 11 sets the targets for the default sync mode
        rows += [
            Metric("durable", f"no-op round trip p50, journal {mode}", "us", "lower", j["p50"], mem["p50"],
                   "in-memory", target="<= 1.3x in-memory" if target else None,
                   check=ratio_at_most(1.3) if target else None, notes=rt_note),
            Metric("durable", f"no-op round trip p99, journal {mode}", "us", "lower", j["p99"], mem["p99"],
                   "in-memory", notes=rt_note),
            Metric("durable", f"no-op throughput, {burst:,} at once, journal {mode}", "/s", "higher", j["rate"],
                   mem["rate"], "in-memory", target=">= 0.7x in-memory" if target else None,
                   check=ratio_at_least(0.7) if target else None, notes=tp_note),
            Metric("durable", f"no-op throughput, {burst:,} at once from {BURST_THREADS} threads, journal {mode}",
                   "/s", "higher", j["rate_threads"], mem["rate_threads"], "in-memory",
                   notes=f"{burst:,} no-ops started by {BURST_THREADS} threads at once (concurrent starts share "
                         "commits), 2 workers"),
        ]
    return rows


def bench_durable(sizes: Sizes) -> List[Metric]:
    """Journaled vs in-memory round trip and throughput, recovery of open executions, and peers."""
    tmp = tempfile.mkdtemp(prefix="actorflow-bench-durable-")
    try:
        hot = _hot_path(sizes, tmp)
        peers_note = "peers run" if sizes.peers else "peers skipped (--quick without --peers)"
        metrics = _hot_metrics(sizes, hot, peers_note)
        metrics.append(_recovery(sizes, tmp))
        if not sizes.peers:
            return metrics
        peer_metrics, errors = _peers(sizes, tmp, hot)
        metrics += peer_metrics
        if errors:
            message = "durable: some peers failed; actorflow rows kept:\n" + "\n".join(errors)
            raise BenchmarkPartialFailure(message, metrics)
        return metrics
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


"""Scale: many executions waiting in retry backoff at once.

Each side runs in a fresh interpreter (this file as a script), so resident-memory deltas are not
blurred by memory that earlier benchmarks freed but the allocator kept.

actorflow side: ``n`` executions of ``fail_then_succeed``; attempt 1 fails at once asking to be
retried at the same wall-clock instant ``due``, so all ``n`` sit in BACKOFF together (memory and
threads are measured then), and then all become due at once (drain = ``due`` to the last result).

ProcessPoolExecutor side: both workers are blocked until ``due``, ``n`` no-op tasks are submitted
and wait in the executor (memory and threads measured then), then drain from ``due``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _common import Metric, Sizes, os_thread_count, settle_memory, value_at_most  # noqa: E402

STC = timedelta(seconds=600)


def _actorflow_side(n: int) -> Dict[str, Any]:
    from actorflow import ActorSystem

    import bench_activities as acts

    with ActorSystem(activities=[acts.fail_then_succeed, acts.noop], workers=2) as system:
        for i in range(200):
            system.start_activity(acts.noop, i, start_to_close_timeout=STC).result()
        # Calibrate: how fast do first attempts fail? (sets how far ahead ``due`` must be)
        m = max(20, min(n // 10, 2000))
        t0 = time.time()
        handles = [system.start_activity(acts.fail_then_succeed, t0 + 3600, start_to_close_timeout=STC)
                   for _ in range(m)]
        while system.statistics().retrying < m:
            time.sleep(0.01)
        per_failure = (time.time() - t0) / m
        for h in handles:
            h.cancel()
        for h in handles:
            h.exception()
        del handles

        rss0 = settle_memory()
        threads0, py_threads0 = os_thread_count(), threading.active_count()
        t_submit = time.time()
        due = t_submit + per_failure * n * 1.5 + (0.5 if n < 1000 else 2.0)
        handles = [system.start_activity(acts.fail_then_succeed, due, start_to_close_timeout=STC)
                   for _ in range(n)]
        submit_s = time.time() - t_submit
        max_threads = threads0
        while True:
            max_threads = max(max_threads, os_thread_count())
            if system.statistics().retrying >= n or time.time() >= due:
                break
            time.sleep(0.05)
        parked_at = time.time()
        stats = system.statistics()
        rss1 = settle_memory()
        threads1, py_threads1 = os_thread_count(), threading.active_count()
        max_threads = max(max_threads, threads1)
        for h in handles:
            h.result()
        t_end = time.time()
        max_threads = max(max_threads, os_thread_count())
    return {
        "n": n,
        "per_failure_us": per_failure * 1e6,
        "submit_s": submit_s,
        "all_parked_before_due": stats.retrying >= n and parked_at < due,
        "retrying_at_measure": stats.retrying,
        "park_s": parked_at - t_submit,
        "extra_rss_mb": (rss1 - rss0) / 2**20,
        "per_execution_kb": (rss1 - rss0) / n / 1024,
        "threads_before": threads0,
        "threads_parked": threads1,
        "threads_max": max_threads,
        "py_threads_before": py_threads0,
        "py_threads_parked": py_threads1,
        "drain_s": t_end - due,
    }


def _ppe_side(n: int) -> Dict[str, Any]:
    import bench_activities as acts
    from _common import ppe

    with ppe(2) as pool:
        for i in range(200):
            pool.submit(acts.plain_noop, i).result()
        rss0 = settle_memory()
        threads0 = os_thread_count()
        t_submit = time.time()
        due = t_submit + 0.3 + n * 20e-6 * 3 + (0.5 if n < 1000 else 2.0)
        blockers = [pool.submit(acts.plain_sleep_until, due) for _ in range(2)]
        time.sleep(0.3)  # both workers now sleep
        futures = [pool.submit(acts.plain_noop, i) for i in range(n)]
        submit_s = time.time() - t_submit
        rss1 = settle_memory()
        threads1 = os_thread_count()
        parked_before_due = time.time() < due
        for f in blockers:
            f.result()
        for f in futures:
            f.result()
        t_end = time.time()
    return {
        "n": n,
        "submit_s": submit_s,
        "all_parked_before_due": parked_before_due,
        "extra_rss_mb": (rss1 - rss0) / 2**20,
        "per_execution_kb": (rss1 - rss0) / n / 1024,
        "threads_before": threads0,
        "threads_parked": threads1,
        "threads_max": max(threads0, threads1),
        "drain_s": t_end - due,
    }


def _run_side(side: str, n: int) -> Dict[str, Any]:
    timeout = 60 + n * 0.01  # the side dumps its threads' stacks and exits a little before this
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), side, str(n), str(timeout - 10)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"scale benchmark ({side}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_scale(sizes: Sizes) -> List[Metric]:
    n = sizes.scale_n
    reps = 1  # each side costs a fresh interpreter and, at full size, about a minute
    af: List[Dict[str, Any]] = []
    pp: List[Dict[str, Any]] = []
    for _ in range(reps):
        af.append(_run_side("actorflow", n))
        pp.append(_run_side("ppe", n))

    def col(rows, key):
        return [r[key] for r in rows]

    def threads_constant(m: Metric) -> str:
        grew = max(r["threads_max"] - r["threads_before"] for r in af)
        return "met" if grew == 0 else f"MISSED (+{grew} threads)"

    note = (f"n={n}; first attempts failed at {af[0]['per_failure_us']:.0f} us each; "
            f"all parked before due: {all(r['all_parked_before_due'] for r in af)}")
    budget_mb = 500.0 * n / 100_000
    return [
        Metric("scale", f"extra memory, {n} executions in backoff", "MB", "lower", col(af, "extra_rss_mb"),
               col(pp, "extra_rss_mb"), f"PPE, {n} pending tasks",
               target=f"<= {budget_mb:g} MB", check=value_at_most(budget_mb, "MB"), notes=note,
               extra={"actorflow": af, "ppe": pp}),
        Metric("scale", "memory per execution in backoff", "KB", "lower", col(af, "per_execution_kb"),
               col(pp, "per_execution_kb"), "PPE, per pending task", notes=note),
        Metric("scale", f"OS threads, peak with {n} in backoff", "threads", "lower", col(af, "threads_max"),
               col(af, "threads_before"), "same system idle", target="constant", check=threads_constant,
               notes=note),
        Metric("scale", f"drain {n} retries due at the same instant", "s", "lower", col(af, "drain_s"),
               col(pp, "drain_s"), f"PPE, {n} pending tasks released at once", notes=note),
    ]


if __name__ == "__main__":
    import faulthandler

    side, count = sys.argv[1], int(sys.argv[2])
    if len(sys.argv) > 3:
        faulthandler.dump_traceback_later(float(sys.argv[3]), exit=True)  # a hang shows its stacks
    result = _actorflow_side(count) if side == "actorflow" else _ppe_side(count)
    print(json.dumps(result))

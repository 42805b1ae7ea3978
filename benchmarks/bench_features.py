"""Heartbeat cost, cancellation latency and crash recovery."""

from __future__ import annotations

import concurrent.futures
import os
import random
import signal
import tempfile
import time
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import List

import pykka

from actorflow import ActivityCancellationType, ActorSystem, RetryPolicy

import bench_activities as acts
from _common import Metric, Sizes, percentile, ppe, value_at_most, wait_until

STC = timedelta(seconds=60)


def bench_heartbeat(sizes: Sizes) -> List[Metric]:
    """A throttled ``activity.heartbeat()`` call inside a running activity."""
    n = sizes.heartbeat_calls
    hb, hb_async, empty, empty_async = [], [], [], []
    with ActorSystem(activities=[acts.heartbeat_cost, acts.heartbeat_cost_async], workers=2) as system:
        system.start_activity(acts.heartbeat_cost, 100, start_to_close_timeout=STC).result()
        for _ in range(sizes.reps):
            a, b = system.start_activity(acts.heartbeat_cost, n, start_to_close_timeout=STC).result()
            hb.append(a * 1e6)
            empty.append(b * 1e6)
            a, b = system.start_activity(acts.heartbeat_cost_async, n, start_to_close_timeout=STC).result()
            hb_async.append(a * 1e6)
            empty_async.append(b * 1e6)
    note = f"mean of {n} calls per repetition, thread CPU time (first heartbeat sent, the rest throttled)"
    return [
        Metric("heartbeat", "throttled heartbeat() call (sync def)", "us", "lower", hb, empty,
               "empty f(*details) call", target="<= 5 us", check=value_at_most(5.0, "us"), notes=note),
        Metric("heartbeat", "throttled heartbeat() call (async def)", "us", "lower", hb_async, empty_async,
               "empty f(*details) call", notes=note),
    ]


class _Settler(pykka.ThreadingActor):
    """One-hop floor: a ``tell`` whose handler settles a Future (what TRY_CANCEL needs at least)."""

    use_daemon_thread = True

    def on_receive(self, message):
        message.set_result(None)


def bench_cancel(sizes: Sizes) -> List[Metric]:
    """``handle.cancel()`` until the handle resolves (TRY_CANCEL), and until a heartbeating
    activity sees it (measured inside the activity, WAIT_CANCELLATION_COMPLETED so it can report)."""
    throttle = timedelta(milliseconds=10)
    k = sizes.cancel_samples
    try50, try99, floor50, floor99, see50, see99, rt50, rt99 = ([] for _ in range(8))
    settler = _Settler.start()
    try:
        with ActorSystem(activities=[acts.heartbeat_until_cancelled], workers=2,
                         default_heartbeat_throttle_interval=throttle) as system, ppe(2) as pool:
            for _ in range(20):
                pool.submit(acts.plain_noop).result()
            for _ in range(sizes.reps):
                tries, seens, floors, rts = [], [], [], []
                for _ in range(k):
                    h = system.start_activity(acts.heartbeat_until_cancelled, start_to_close_timeout=STC)
                    time.sleep(random.uniform(0.02, 0.04))
                    t0 = time.perf_counter()
                    h.cancel()
                    h.exception(10)
                    tries.append((time.perf_counter() - t0) * 1e3)

                    h = system.start_activity(acts.heartbeat_until_cancelled, start_to_close_timeout=STC,
                                              cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
                    time.sleep(random.uniform(0.02, 0.04))
                    t0 = time.time()
                    h.cancel()
                    seens.append((h.result(10) - t0) * 1e3)

                    f = concurrent.futures.Future()
                    t0 = time.perf_counter()
                    settler.tell(f)
                    f.result(10)
                    floors.append((time.perf_counter() - t0) * 1e3)

                    t0 = time.perf_counter()
                    pool.submit(acts.plain_noop).result()
                    rts.append((time.perf_counter() - t0) * 1e3)
                for dst, src in ((try50, tries), (see50, seens), (floor50, floors), (rt50, rts)):
                    dst.append(percentile(src, 50))
                for dst, src in ((try99, tries), (see99, seens), (floor99, floors), (rt99, rts)):
                    dst.append(percentile(src, 99))
    finally:
        settler.stop()
    note = f"{k} cancels per repetition"
    snote = note + f"; heartbeat throttle {throttle.total_seconds() * 1e3:g} ms, so expect ~throttle/2 + a round trip"
    return [
        Metric("cancel", "cancel() -> handle resolved p50 (TRY_CANCEL)", "ms", "lower", try50, floor50,
               "pykka tell -> Future set", notes=note),
        Metric("cancel", "cancel() -> handle resolved p99 (TRY_CANCEL)", "ms", "lower", try99, floor99,
               "pykka tell -> Future set", target="<= 5 ms", check=value_at_most(5.0, "ms"), notes=note),
        Metric("cancel", "cancel() -> heartbeating activity sees it p50", "ms", "lower", see50, rt50,
               "PPE no-op round trip", notes=snote),
        Metric("cancel", "cancel() -> heartbeating activity sees it p99", "ms", "lower", see99, rt99,
               "PPE no-op round trip", notes=snote),
    ]


def _read_pid(path: str, timeout: float = 30.0) -> int:
    if not wait_until(lambda: os.path.exists(path), timeout, 0.001):
        raise RuntimeError(f"no pid written to {path}")
    with open(path) as f:
        return int(f.read())


def bench_crash(sizes: Sizes) -> List[Metric]:
    """SIGKILL of the worker running attempt 1 until attempt 2 starts (retry initial_interval 1 ms);
    reference: SIGKILL of a PPE worker until the caller's future raises BrokenProcessPool."""
    kills = sizes.crash_kills
    af, pp = [], []
    policy = RetryPolicy(initial_interval=timedelta(milliseconds=1), maximum_attempts=3)
    with tempfile.TemporaryDirectory(prefix="actorflow-bench-") as tmp:
        with ActorSystem(activities=[acts.pid_then_block], workers=2) as system:
            for i in range(kills):
                pid_file = os.path.join(tmp, f"af-{i}")
                h = system.start_activity(acts.pid_then_block, pid_file, start_to_close_timeout=STC,
                                          retry_policy=policy)
                pid = _read_pid(pid_file)
                t0 = time.time()
                os.kill(pid, signal.SIGKILL)
                af.append((h.result(30) - t0) * 1e3)
                wait_until(lambda: system._pool.statistics().workers_ready == 2, 30)  # replacement is up
        for i in range(kills):
            pid_file = os.path.join(tmp, f"ppe-{i}")
            with ppe(2) as pool:
                pool.submit(acts.plain_noop).result()
                f = pool.submit(acts.plain_pid_then_block, pid_file)
                pid = _read_pid(pid_file)
                t0 = time.time()
                os.kill(pid, signal.SIGKILL)
                try:
                    f.result(30)
                except BrokenProcessPool:
                    pass
                pp.append((time.time() - t0) * 1e3)
    note = f"{kills} kills; samples are per kill; retry initial_interval 1 ms"
    return [
        Metric("crash", "SIGKILL -> retry attempt started p50", "ms", "lower", [percentile(af, 50)],
               [percentile(pp, 50)], "PPE: SIGKILL -> BrokenProcessPool", notes=note,
               extra={"actorflow_ms": af, "ppe_ms": pp}),
        Metric("crash", f"SIGKILL -> retry attempt started p99 (of {kills})", "ms", "lower", [percentile(af, 99)],
               [percentile(pp, 99)], "PPE: SIGKILL -> BrokenProcessPool", target="<= 100 ms",
               check=value_at_most(100.0, "ms"), notes=note),
    ]

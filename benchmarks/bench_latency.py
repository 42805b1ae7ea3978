"""Round trip, throughput and start-up, each against ProcessPoolExecutor in the same run."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import List

from actorflow import ActorSystem

import bench_activities as acts
from _common import Metric, Sizes, percentile, ppe, ratio_at_least, ratio_at_most, value_at_most

STC = timedelta(seconds=60)


def _af_roundtrips(system: ActorSystem, fn, n: int) -> List[float]:
    out = []
    start = system.start_activity
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        start(fn, i, start_to_close_timeout=STC).result()
        out.append(clock() - t0)
    return out


def _ppe_roundtrips(pool, n: int) -> List[float]:
    out = []
    submit = pool.submit
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        submit(acts.plain_noop, i).result()
        out.append(clock() - t0)
    return out


def bench_roundtrip(sizes: Sizes) -> List[Metric]:
    """No-op activity, one in flight: p50 and p99 per repetition (sync and async activity)."""
    n = sizes.roundtrip_calls
    af50, af99, afa50, afa99, pp50, pp99 = [], [], [], [], [], []
    with ActorSystem(activities=[acts.noop, acts.noop_async], workers=2) as system, ppe(2) as pool:
        _af_roundtrips(system, acts.noop, min(n, 300))  # warm up: imports, caches, thread pools
        _af_roundtrips(system, acts.noop_async, min(n, 300))
        _ppe_roundtrips(pool, min(n, 300))
        for _ in range(sizes.reps):  # interleaved, so drifting machine load hits both alike
            lat = _af_roundtrips(system, acts.noop, n)
            af50.append(percentile(lat, 50) * 1e6)
            af99.append(percentile(lat, 99) * 1e6)
            lat = _ppe_roundtrips(pool, n)
            pp50.append(percentile(lat, 50) * 1e6)
            pp99.append(percentile(lat, 99) * 1e6)
            lat = _af_roundtrips(system, acts.noop_async, n)
            afa50.append(percentile(lat, 50) * 1e6)
            afa99.append(percentile(lat, 99) * 1e6)
    note = f"{n} sequential calls per repetition, {sizes.reps} repetitions"
    return [
        Metric("roundtrip", "no-op round trip p50 (sync def)", "us", "lower", af50, pp50, "PPE",
               target="<= 1.0x PPE (never > 1.5x)", check=ratio_at_most(1.0, 1.5), notes=note),
        Metric("roundtrip", "no-op round trip p99 (sync def)", "us", "lower", af99, pp99, "PPE", notes=note),
        Metric("roundtrip", "no-op round trip p50 (async def)", "us", "lower", afa50, pp50, "PPE", notes=note),
        Metric("roundtrip", "no-op round trip p99 (async def)", "us", "lower", afa99, pp99, "PPE", notes=note),
    ]


def _af_burst(system: ActorSystem, fn, n: int) -> tuple:
    start = system.start_activity
    t0 = time.perf_counter()
    handles = [start(fn, i, start_to_close_timeout=STC) for i in range(n)]
    t1 = time.perf_counter()
    for h in handles:
        h.result()
    t2 = time.perf_counter()
    return n / (t2 - t0), t1 - t0


def _ppe_burst(pool, n: int) -> tuple:
    submit = pool.submit
    t0 = time.perf_counter()
    futures = [submit(acts.plain_noop, i) for i in range(n)]
    t1 = time.perf_counter()
    for f in futures:
        f.result()
    t2 = time.perf_counter()
    return n / (t2 - t0), t1 - t0


def bench_throughput(sizes: Sizes) -> List[Metric]:
    """``n`` no-op activities submitted at once to 2 worker processes; first submit to last result."""
    n = sizes.throughput_n
    af, afa, pp, af_sub, pp_sub = [], [], [], [], []
    with ActorSystem(activities=[acts.noop, acts.noop_async], workers=2) as system, ppe(2) as pool:
        _af_burst(system, acts.noop, min(n, 2000))
        _ppe_burst(pool, min(n, 2000))
        for _ in range(sizes.reps):  # interleaved; the ratio swings most on a busy machine
            rate, sub = _af_burst(system, acts.noop, n)
            af.append(rate)
            af_sub.append(sub / n * 1e6)
            rate, sub = _ppe_burst(pool, n)
            pp.append(rate)
            pp_sub.append(sub / n * 1e6)
            afa.append(_af_burst(system, acts.noop_async, n)[0])
    note = f"{n} submitted at once, 2 workers"
    return [
        Metric("throughput", f"no-op throughput, {n} at once (sync def)", "/s", "higher", af, pp, "PPE",
               target=">= 1.5x PPE (never < 0.5x)", check=ratio_at_least(1.5, 0.5), notes=note),
        Metric("throughput", f"no-op throughput, {n} at once (async def)", "/s", "higher", afa, pp, "PPE",
               notes=note),
        Metric("throughput", "submit call (start_activity / submit) during the burst", "us", "lower",
               af_sub, pp_sub, "PPE", notes="caller-side cost per call, incl. contention with the runtime"),
    ]


def bench_startup(sizes: Sizes) -> List[Metric]:
    """``ActorSystem(workers=2)`` entered and the first result back, vs a fresh PPE(2)."""
    af, pp, af_stop, pp_stop = [], [], [], []
    for _ in range(sizes.startup_reps):
        t0 = time.perf_counter()
        system = ActorSystem(activities=[acts.noop], workers=2)
        with system:
            system.start_activity(acts.noop, 1, start_to_close_timeout=STC).result()
            t1 = time.perf_counter()
        af.append(t1 - t0)
        af_stop.append(time.perf_counter() - t1)
        t0 = time.perf_counter()
        pool = ppe(2)
        with pool:
            pool.submit(acts.plain_noop, 1).result()
            t1 = time.perf_counter()
        pp.append(t1 - t0)
        pp_stop.append(time.perf_counter() - t1)
    note = f"{sizes.startup_reps} repetitions, spawned workers on both sides"
    return [
        Metric("startup", "start-up: construct, enter, first result", "s", "lower", af, pp, "PPE",
               target="<= 0.5 s", check=value_at_most(0.5, "s"), notes=note),
        Metric("startup", "shutdown: leaving the with block", "s", "lower", af_stop, pp_stop, "PPE", notes=note),
    ]

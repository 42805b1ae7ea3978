"""What every peer script shares: its arguments, the measurements' shape, and the JSON it prints.

Peer scripts run in the peers' own virtual environment (``benchmarks/peers/.venv``, made by
``bench_durable.ensure_peers_venv``), never in the project's: only the standard library here.
Each prints one JSON object on its last stdout line:

    {"peer": ..., "version": ..., "roundtrip_p50_us": [...], "roundtrip_p99_us": [...],
     "throughput_per_s": [...], "settings": "...", "notes": "..."}

with one value per repetition, so the runner can give medians and spread like its own rows.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

__all__ = ["parse_args", "percentile", "measure", "emit", "free_port", "wait_until"]


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--roundtrip-calls", type=int, default=2000, help="sequential calls per repetition")
    p.add_argument("--throughput-n", type=int, default=20_000, help="no-ops submitted at once")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each measurement")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--tmp", required=True, help="a private folder for the peer's files (removed by the caller)")
    return p.parse_args()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, as benchmarks/_common.py computes it."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def measure(args: argparse.Namespace, call_one: Callable[[int], Any],
            burst: Callable[[int], None]) -> Dict[str, List[float]]:
    """Warm up, then interleave ``reps`` round-trip series and bursts.

    ``call_one(i)`` submits one no-op and waits for its result; ``burst(n)`` submits ``n`` at
    once and waits for every result.
    """
    for i in range(min(args.roundtrip_calls, 200)):
        call_one(i)
    burst(min(args.throughput_n, 1000))
    p50, p99, rate = [], [], []
    clock = time.perf_counter
    for _ in range(args.reps):
        lat = []
        for i in range(args.roundtrip_calls):
            t0 = clock()
            call_one(i)
            lat.append(clock() - t0)
        p50.append(percentile(lat, 50) * 1e6)
        p99.append(percentile(lat, 99) * 1e6)
        t0 = clock()
        burst(args.throughput_n)
        rate.append(args.throughput_n / (clock() - t0))
    return {"roundtrip_p50_us": p50, "roundtrip_p99_us": p99, "throughput_per_s": rate}


def emit(peer: str, version: str, results: Dict[str, List[float]], settings: str) -> None:
    print(json.dumps({"peer": peer, "version": version, "settings": settings, **results}))
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    message = f"timed out after {timeout:.0f} s waiting for {what}"
    raise TimeoutError(message)

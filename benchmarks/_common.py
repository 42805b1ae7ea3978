"""Shared helpers: sizes, statistics, result rows, process probes.

Every benchmark returns a list of ``Metric`` rows. A row holds the actorflow samples (one per
repetition) and the samples of a *reference* measured in the same process run (usually
``concurrent.futures.ProcessPoolExecutor``), so the report can give medians with their spread
and the ratio of the two medians, never a lone absolute number.
"""

from __future__ import annotations

import gc
import multiprocessing
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence


@dataclass
class Sizes:
    """How big each benchmark is; ``quick`` is for CI (seconds, numbers not judged)."""

    quick: bool
    reps: int
    roundtrip_calls: int
    throughput_n: int
    startup_reps: int
    timer_pending: int
    timer_ops: int
    timer_probes: int
    timer_probe_interval: float
    scale_n: int
    heartbeat_calls: int
    cancel_samples: int
    crash_kills: int
    durable_roundtrip_calls: int = 2000
    durable_throughput_n: int = 20_000
    durable_recovery_n: int = 100_000
    durable_peer_reps: int = 3
    peers: bool = True  # run the durable benchmark's peers (huey, DBOS, Celery) in their own venv

    @classmethod
    def full(cls) -> "Sizes":
        return cls(quick=False, reps=5, roundtrip_calls=2000, throughput_n=20_000, startup_reps=5,
                   timer_pending=100_000, timer_ops=20_000, timer_probes=1000, timer_probe_interval=0.002,
                   scale_n=100_000, heartbeat_calls=200_000, cancel_samples=60, crash_kills=20)

    @classmethod
    def small(cls) -> "Sizes":
        return cls(quick=True, reps=2, roundtrip_calls=50, throughput_n=300, startup_reps=1,
                   timer_pending=2000, timer_ops=500, timer_probes=30, timer_probe_interval=0.002,
                   scale_n=200, heartbeat_calls=2000, cancel_samples=3, crash_kills=1,
                   durable_roundtrip_calls=50, durable_throughput_n=300, durable_recovery_n=500,
                   durable_peer_reps=1, peers=False)


class BenchmarkPartialFailure(Exception):
    """A benchmark that measured some rows and failed at others: the runner keeps ``metrics``
    and reports the failure (exit code 1), instead of losing every row."""

    def __init__(self, message: str, metrics: List["Metric"]) -> None:
        super().__init__(message)
        self.metrics = metrics


@dataclass
class Metric:
    """One line of the report."""

    benchmark: str
    metric: str
    unit: str  # "us", "ms", "s", "/s", "MB", "KB", "threads", "ns"
    better: str  # "lower" | "higher"
    actorflow: List[float]
    reference: List[float]
    reference_name: str
    target: Optional[str] = None  # human text, e.g. "<= 1.0x PPE (never > 1.5x)"
    check: Optional[Callable[["Metric"], Optional[str]]] = None  # -> "met" | "MISSED ..." | None
    notes: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def af_median(self) -> float:
        return statistics.median(self.actorflow) if self.actorflow else float("nan")

    @property
    def ref_median(self) -> float:
        return statistics.median(self.reference) if self.reference else float("nan")

    @property
    def ratio(self) -> Optional[float]:
        if not self.actorflow or not self.reference or self.ref_median == 0:
            return None
        return self.af_median / self.ref_median

    def status(self) -> Optional[str]:
        """"met", "MISSED (...)" or None when there is no target."""
        return None if self.check is None else self.check(self)

    def as_json(self, judged: bool) -> Dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "metric": self.metric,
            "unit": self.unit,
            "better": self.better,
            "actorflow": _summary(self.actorflow),
            "reference_name": self.reference_name,
            "reference": _summary(self.reference),
            "ratio": self.ratio,
            "target": self.target,
            "target_status": self.status() if judged else None,
            "notes": self.notes,
            "extra": self.extra,
        }


def _summary(samples: Sequence[float]) -> Dict[str, Any]:
    if not samples:
        return {"median": None, "min": None, "max": None, "samples": []}
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": list(samples)}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


# -- process probes -------------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def os_thread_count() -> int:
    """Kernel threads of this process (Linux), which also counts threads Python did not start."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return threading.active_count()


def settle_memory() -> int:
    gc.collect()
    gc.collect()
    return rss_bytes()


def ppe(workers: int = 2) -> ProcessPoolExecutor:
    """The reference pool: spawned children, like actorflow's (fork is unsafe once threads run)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def fmt_value(value: Optional[float], unit: str) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    if unit in ("/s",):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# -- target checks ----------------------------------------------------------------------------


def ratio_at_most(goal: float, hard: Optional[float] = None) -> Callable[[Metric], Optional[str]]:
    def check(m: Metric) -> Optional[str]:
        r = m.ratio
        if r is None:
            return None
        if r <= goal:
            return "met"
        if hard is not None and r > hard:
            return f"MISSED hard limit ({r:.2f}x > {hard}x)"
        return f"MISSED ({r:.2f}x > {goal}x)"
    return check


def ratio_at_least(goal: float, hard: Optional[float] = None) -> Callable[[Metric], Optional[str]]:
    def check(m: Metric) -> Optional[str]:
        r = m.ratio
        if r is None:
            return None
        if r >= goal:
            return "met"
        if hard is not None and r < hard:
            return f"MISSED hard limit ({r:.2f}x < {hard}x)"
        return f"MISSED ({r:.2f}x < {goal}x)"
    return check


def value_at_most(goal: float, unit: str, of: str = "median") -> Callable[[Metric], Optional[str]]:
    """The actorflow median (or max over repetitions, ``of="max"``) is at most ``goal``."""
    def check(m: Metric) -> Optional[str]:
        if not m.actorflow:
            return None
        v = m.af_median if of == "median" else max(m.actorflow)
        if v <= goal:
            return "met"
        return f"MISSED ({fmt_value(v, unit)} {unit} > {fmt_value(goal, unit)} {unit})"
    return check

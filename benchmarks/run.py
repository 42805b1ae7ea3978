"""actorflow benchmarks, each side by side with a reference measured in the same run.

    python benchmarks/run.py                 # everything (several minutes on 2 cores)
    python benchmarks/run.py --quick         # tiny sizes, a few seconds; CI runs it, numbers not judged
    python benchmarks/run.py --only roundtrip --only throughput
    python benchmarks/run.py --reps 9        # more repetitions
    python benchmarks/run.py --only durable  # journaled vs in-memory, recovery, and the peers

The durable benchmark's peers (huey, DBOS, Celery+Redis) run in their own venv,
``benchmarks/peers/.venv``, made on first use; ``--quick`` skips them unless ``--peers`` is given.

Writes ``benchmarks/results/<timestamp>.json`` and ``.md`` (plus ``latest.json`` / ``latest.md``)
and prints the Markdown table. Every row gives the actorflow median over repetitions with its
spread (min-max), the reference's, and the ratio of the medians; see docs/performance.md.

This file is re-imported by every worker of the reference ProcessPoolExecutor (spawn, as
``__mp_main__``; actorflow's workers never run it), so it imports only the standard library at
module level.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

BENCHMARKS = {
    # name: (module, function)
    "roundtrip": ("bench_latency", "bench_roundtrip"),
    "throughput": ("bench_latency", "bench_throughput"),
    "startup": ("bench_latency", "bench_startup"),
    "timer": ("bench_timer", "bench_timer"),
    "scale": ("bench_scale", "bench_scale"),
    "heartbeat": ("bench_features", "bench_heartbeat"),
    "cancel": ("bench_features", "bench_cancel"),
    "crash": ("bench_features", "bench_crash"),
    "durable": ("bench_durable", "bench_durable"),
}


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes for CI: checks the runner works, judges nothing")
    p.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                   help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    p.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5, quick 2)")
    p.add_argument("--peers", action="store_true",
                   help="with --quick, run the durable benchmark's peers too (a full run always does)")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for the JSON and Markdown")
    p.add_argument("--watchdog", type=float, default=None,
                   help="dump every thread's stack and exit if the run takes longer (default 120 s quick, 3 h full)")
    return p.parse_args(argv)


def _cell(values, unit):
    from _common import fmt_value

    if not values:
        return "n/a"
    med = sorted(values)[len(values) // 2] if len(values) % 2 else \
        (sorted(values)[len(values) // 2 - 1] + sorted(values)[len(values) // 2]) / 2
    if len(values) == 1:
        return fmt_value(med, unit)
    return f"{fmt_value(med, unit)} [{fmt_value(min(values), unit)}–{fmt_value(max(values), unit)}]"


def markdown(metrics, meta) -> str:
    judged = not meta["quick"]
    lines = [
        f"actorflow benchmarks — {meta['timestamp']} — revision {meta['revision']} — {meta['machine']}"
        + (" — QUICK (sizes tiny, targets not judged)" if meta["quick"] else ""),
        "",
        "Median over repetitions [min–max]; ratio = actorflow median / reference median "
        "(for /s higher is better, otherwise lower is better).",
        "",
        "| benchmark | metric | unit | actorflow | reference | ref. value | ratio | target | status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in metrics:
        ratio = m.ratio
        status = (m.status() or "") if judged else ("(quick)" if m.target else "")
        lines.append(
            f"| {m.benchmark} | {m.metric} | {m.unit} | {_cell(m.actorflow, m.unit)} | {m.reference_name} | "
            f"{_cell(m.reference, m.unit)} | {'n/a' if ratio is None else f'{ratio:.2f}x'} | {m.target or ''} | "
            f"{status} |"
        )
    notes = sorted({(m.benchmark, m.notes) for m in metrics if m.notes})
    if notes:
        lines += ["", "Notes:"]
        lines += [f"- {b}: {n}" for b, n in notes]
    return "\n".join(lines) + "\n"


def _git_revision() -> str:
    """The commit measured, and whether actorflow/ had uncommitted changes (read-only git)."""
    import subprocess

    try:
        root = os.path.dirname(HERE)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "actorflow"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{head}{' + uncommitted changes in actorflow/' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> int:
    args = _parse(argv if argv is not None else sys.argv[1:])
    if HERE not in sys.path:
        sys.path.insert(0, HERE)  # spawned workers inherit sys.path, so they can import the activities
    import faulthandler
    import importlib

    from _common import BenchmarkPartialFailure, Sizes

    faulthandler.dump_traceback_later(args.watchdog or (120.0 if args.quick else 3 * 3600.0), exit=True)

    sizes = Sizes.small() if args.quick else Sizes.full()
    if args.reps is not None:
        sizes.reps = max(1, args.reps)
    if args.peers:
        sizes.peers = True
    names = args.only or list(BENCHMARKS)
    load_start = os.getloadavg()[0]
    metrics, errors, durations = [], {}, {}
    for name in names:
        module, function = BENCHMARKS[name]
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            metrics += getattr(importlib.import_module(module), function)(sizes)
        except BenchmarkPartialFailure as exc:  # rows measured before the failure are kept
            metrics += exc.metrics
            errors[name] = str(exc)
            print(f"[bench] {name} FAILED in part:\n{errors[name]}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - report the rest, fail at the end
            import traceback

            errors[name] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            print(f"[bench] {name} FAILED:\n{errors[name]}", file=sys.stderr, flush=True)
        durations[name] = time.perf_counter() - t0
        print(f"[bench] {name} done in {durations[name]:.1f} s", file=sys.stderr, flush=True)

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    meta = {
        "timestamp": stamp,
        "quick": args.quick,
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"load avg {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end",
        "python": sys.version,
        "revision": _git_revision(),
        "argv": sys.argv,
        "sizes": vars(sizes),
        "durations_s": durations,
        "errors": errors,
    }
    table = markdown(metrics, meta)
    os.makedirs(args.out, exist_ok=True)
    doc = {"meta": meta, "metrics": [m.as_json(judged=not args.quick) for m in metrics]}
    for base in (stamp + ("-quick" if args.quick else ""), "latest-quick" if args.quick else "latest"):
        with open(os.path.join(args.out, base + ".json"), "w") as f:
            json.dump(doc, f, indent=2, default=str)
        with open(os.path.join(args.out, base + ".md"), "w") as f:
            f.write(table)
    print(table)
    faulthandler.cancel_dump_traceback_later()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``actorflow`` command (also ``python -m actorflow``).

Subcommands:
    demo    run a multi-process workload and watch what the runtime does (see actorflow/_demo.py)
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

__all__ = ["main"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorflow",
        description="actorflow: Temporal's activity semantics in one Python program, no server.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a few hundred activities over several worker processes and watch them",
        description=(
            "Runs a few hundred activities over several worker processes: most succeed, some fail "
            "and are retried, some resume from their last heartbeat after a failure or a worker "
            "crash, one hits each timeout, one is cancelled. Exits with status 1 if any outcome "
            "differs from what the rules predict."
        ),
    )
    demo.add_argument("--activities", type=_positive, default=300, metavar="N",
                      help="number of activity executions (default: 300)")
    demo.add_argument("--workers", type=_positive, default=4, metavar="N",
                      help="worker processes (default: 4)")
    demo.add_argument("--view", choices=("auto", "live", "plain"), default="auto",
                      help="live terminal view, plain lines, or auto: live on a terminal (default)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the workload mix (default: 7)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``actorflow`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "demo":
        parser.print_help()
        return 2
    from ._demo import minimum_activities, run_demo

    least = minimum_activities(args.workers)
    if args.activities < least:
        parser.error(f"--activities must be at least {least} with --workers {args.workers}")
    result = run_demo(activities=args.activities, workers=args.workers, view=args.view, seed=args.seed)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""DBOS peer (SQLite system database): a one-step workflow as the no-op, round trip and throughput.

Run by benchmarks/bench_durable.py in the peers' venv; prints one JSON line (see _peer_common).

DBOS runs workflows on a thread pool inside the program that starts them (``DBOS.start_workflow``),
not in worker processes: ``--workers`` sets that pool's size (``max_executor_threads``). Each
workflow checkpoints its start, its step's output and its outcome in the SQLite file (DBOS's own
SQLite settings), so a no-op here is the smallest durable unit of work DBOS has.
"""

from __future__ import annotations

import logging
import os

from dbos import DBOS, DBOSConfig


@DBOS.step()
def noop_step(x):
    return x


@DBOS.workflow()
def noop_workflow(x):
    return noop_step(x)


def main() -> None:
    from importlib.metadata import version

    from _peer_common import emit, measure, parse_args

    args = parse_args(__doc__.split("\n\n")[0])
    config: DBOSConfig = {
        "name": "actorflow-bench",
        "system_database_url": "sqlite:///" + os.path.join(args.tmp, "dbos.sqlite"),
        "max_executor_threads": int(os.environ.get("AF_DBOS_THREADS", max(args.workers, 2) * 4)),
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    try:
        def call_one(i: int) -> None:
            DBOS.start_workflow(noop_workflow, i).get_result()

        def burst(n: int) -> None:
            handles = [DBOS.start_workflow(noop_workflow, i) for i in range(n)]
            for h in handles:
                h.get_result()

        results = measure(args, call_one, burst)
    finally:
        DBOS.destroy()
    emit("dbos", version("dbos"), results,
         f"SQLite system database, DBOS.start_workflow of a one-step workflow, "
         f"max_executor_threads={config['max_executor_threads']} (in-process threads, no worker processes)")


if __name__ == "__main__":
    main()

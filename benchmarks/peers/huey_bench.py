"""huey (SqliteHuey) peer: no-op round trip and throughput with a 2-process consumer.

Run by benchmarks/bench_durable.py in the peers' venv; prints one JSON line (see _peer_common).

Polling is tuned for latency, in huey's favour: the consumer polls the queue every 1 ms
(``-d 0.001 -m 0.001 -b 1``; its defaults back off from 0.1 s to 10 s when idle) and the client
polls for a result every 0.2 ms (``Result.get(blocking=True)`` starts at 50 ms).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
POLL = 0.0002


def _consumer(workers: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "huey.bin.huey_consumer", "huey_tasks.huey", "-w", str(workers),
           "-k", "process", "-d", "0.001", "-m", "0.001", "-b", "1.0", "-n", "-q", "-C"]
    return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(result) -> object:
    while True:
        value = result.get(preserve=False)
        if value is not None:
            return value
        time.sleep(POLL)


def main() -> None:
    from _peer_common import emit, measure, parse_args

    args = parse_args(__doc__.split("\n\n")[0])
    os.environ["AF_PEER_HUEY_DB"] = os.path.join(args.tmp, "huey.db")
    import huey

    import huey_tasks

    consumer = _consumer(args.workers)
    try:
        def call_one(i: int) -> None:
            _wait(huey_tasks.noop(i + 1))  # +1: huey's "no result yet" is None

        def burst(n: int) -> None:
            results = [huey_tasks.noop(i + 1) for i in range(n)]
            for r in results:
                _wait(r)

        results = measure(args, call_one, burst)
    finally:
        consumer.send_signal(signal.SIGINT)  # huey's graceful stop
        try:
            consumer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()
    emit("huey", huey.__version__,
         results, f"SqliteHuey (WAL, synchronous=FULL default), consumer -w {args.workers} -k process, "
                  "queue polled every 1 ms, results polled every 0.2 ms")


if __name__ == "__main__":
    main()

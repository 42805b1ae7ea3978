"""Celery peer with Redis as broker and result backend: no-op round trip and throughput.

Run by benchmarks/bench_durable.py in the peers' venv; prints one JSON line (see _peer_common).

Starts its own ``redis-server`` (Debian's package: ``apt-get install -y redis-server``) on a free
loopback port with its files in ``--tmp``, append-only file on and fsync every second (Redis's
usual durable setting), and a ``celery worker`` with ``--concurrency`` prefork processes; both are
stopped at the end. Celery's defaults otherwise (acks before the task runs, prefetch 4).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _redis(tmp: str, port: int) -> subprocess.Popen:
    server = shutil.which("redis-server")
    if server is None:
        message = ("redis-server not found: the Celery peer needs Debian's redis-server "
                   "(apt-get install -y redis-server)")
        raise RuntimeError(message)
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", "",
           "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
           "--loglevel", "warning"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _worker(workers: int, env: dict, log_path: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "-c", str(workers),
           "-P", "prefork", "--without-gossip", "--without-mingle", "--without-heartbeat",
           "-l", "WARNING"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    from _peer_common import emit, free_port, measure, parse_args, wait_until

    args = parse_args(__doc__.split("\n\n")[0])
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["AF_PEER_REDIS_URL"] = url
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    redis_proc = _redis(args.tmp, port)
    worker = None
    try:
        import celery
        import redis

        client = redis.Redis.from_url(url)

        def redis_up() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_until(redis_up, 20, f"redis-server on port {port}")
        worker_log = os.path.join(args.tmp, "celery-worker.log")
        worker = _worker(args.workers, env, worker_log)
        import celery_tasks

        first = celery_tasks.noop.delay(0)
        wait_until(lambda: first.ready() or worker.poll() is not None, 60, "the Celery worker")
        if worker.poll() is not None:
            with open(worker_log, errors="replace") as f:
                message = f"the Celery worker exited with code {worker.returncode}:\n{f.read()[-2000:]}"
            raise RuntimeError(message)

        def call_one(i: int) -> None:
            celery_tasks.noop.delay(i).get(timeout=60)

        def burst(n: int) -> None:
            results = [celery_tasks.noop.delay(i) for i in range(n)]
            for r in results:
                r.get(timeout=600)

        results = measure(args, call_one, burst)
        client.close()
    finally:
        if worker is not None:
            _stop(worker, signal.SIGTERM)  # Celery's warm shutdown
        _stop(redis_proc, signal.SIGTERM)
    emit("celery", celery.__version__, results,
         f"Celery prefork -c {args.workers}, Redis broker and result backend "
         "(appendonly yes, appendfsync everysec), JSON serializer")


if __name__ == "__main__":
    main()

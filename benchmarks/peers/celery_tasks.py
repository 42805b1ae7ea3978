"""The Celery side's app and task: imported by the benchmark script and by the worker process
(Celery names a task after its module, so both must import it under this name)."""

from __future__ import annotations

import os

from celery import Celery

__all__ = ["app", "noop"]

_url = os.environ["AF_PEER_REDIS_URL"]
app = Celery("actorflow_bench", broker=_url, backend=_url)
# Celery's default JSON serializer (a worker running as root refuses pickle).
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task
def noop(x=None):
    return x

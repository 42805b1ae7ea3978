"""The huey side's task module: imported by the benchmark script and by the consumer process
(huey names a task after its module, so both must import it under this name)."""

from __future__ import annotations

import os

from huey import SqliteHuey

__all__ = ["huey", "noop"]

# A durable SQLite file in the caller's temporary folder; huey's defaults otherwise (WAL, and
# SQLite's default synchronous=FULL since huey sets no pragma unless fsync= is given).
huey = SqliteHuey("actorflow-bench", filename=os.environ["AF_PEER_HUEY_DB"])


@huey.task()
def noop(x=None):
    return x

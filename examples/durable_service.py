"""A service that is killed mid-work and resumes on restart (API.md D8).

    python examples/durable_service.py

plays both parts: it starts the service (this file with ``--serve``) as a child process, lets it
take 12 jobs and work on them for a moment, SIGKILLs it as an OOM killer or a failed deploy
would, and starts it again on the same journal file. The new service finds every job in the
journal: the ones that had completed are not run again, the ones that were running are retried
from their last heartbeat, the ones still waiting are run. Each job reports how it got there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

from actorflow import ActorSystem, RetryPolicy, activity

JOBS = [f"invoice-{n:02d}" for n in range(12)]
PAGES = 10


@activity.defn
def render(job: str) -> dict:
    """Renders ``PAGES`` pages; the heartbeat records the last page done, so a retry resumes."""
    info = activity.info()
    first = info.heartbeat_details[0] + 1 if info.heartbeat_details else 0
    for page in range(first, PAGES):
        time.sleep(0.05)  # the work of one page
        activity.heartbeat(page)
    return {"job": job, "attempt": info.attempt, "resumed_from": first, "service": os.getppid()}


def serve(journal: str, take_jobs: bool) -> None:
    """The service: one ActorSystem on a journal; new jobs are started by id."""
    with ActorSystem([render], workers=2, max_concurrent_activities=2, journal=journal) as system:
        if take_jobs:
            for job in JOBS:
                system.start_activity(render, job, activity_id=job,
                                      start_to_close_timeout=timedelta(minutes=5),
                                      heartbeat_timeout=timedelta(milliseconds=500),
                                      retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)))
            print("service: took", len(JOBS), "jobs", flush=True)
            time.sleep(600)  # keeps working until it is killed
        for job in JOBS:  # after a restart: every job by its id, whatever state it was left in
            result = system.get_activity_handle(job).result(timeout=60)
            if result["service"] != os.getpid():
                how = "completed before the kill; its result came from the journal, it did not run again"
            elif result["attempt"] == 1:
                how = "was waiting for a slot; ran after the restart"
            else:
                how = f"was running at the kill; attempt {result['attempt']} resumed from page {result['resumed_from']}"
            print(f"service: {job}: {how}", flush=True)
        print(f"service: all {len(JOBS)} jobs done", flush=True)


def main() -> None:
    folder = tempfile.mkdtemp(prefix="actorflow-durable-")
    journal = os.path.join(folder, "jobs.db")
    service = subprocess.Popen([sys.executable, __file__, "--serve", journal, "take"], stdout=subprocess.PIPE, text=True)
    print(service.stdout.readline().strip())
    time.sleep(1.0)  # mid-work: some jobs done, some running, most waiting for a slot
    service.send_signal(signal.SIGKILL)
    service.wait()
    service.stdout.close()
    print(f"killed the service (pid {service.pid}) with SIGKILL; its journal: {journal}")
    restarted = subprocess.run([sys.executable, __file__, "--serve", journal, "resume"], stdout=subprocess.PIPE,
                               text=True, timeout=120)
    print(restarted.stdout, end="")
    if restarted.returncode != 0:
        raise SystemExit(restarted.returncode)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], take_jobs=sys.argv[3] == "take")
    else:
        main()

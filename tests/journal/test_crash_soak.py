"""D8 crash soak: 2,000 executions of mixed kinds, the owning program SIGKILLed at three random
moments and restarted each time; at the end every execution is closed as the rules predict, none
is lost, and none ran again after its completion was committed (the side log says so).

Seeded: ``ACTORFLOW_SOAK_SEED`` picks the plan and the kill moments (printed on failure).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from actorflow import ActorSystem
from tests.journal import soak

ROOT = Path(__file__).resolve().parents[2]
EXECUTIONS = 2000
KILLS = 3


def run_owner(journal: str, side_log: str, seed: int, start: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.journal.soak", journal, side_log, str(seed), str(EXECUTIONS),
         "start" if start else "resume"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def open_executions(journal: str) -> int:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM executions WHERE close_time IS NULL").fetchone()[0]
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_D8_crash_soak_three_SIGKILLs_lose_nothing_and_rerun_no_committed_completion(tmp_path: Path):
    seed = int(os.environ.get("ACTORFLOW_SOAK_SEED", "20261204"))
    rng = random.Random(seed)
    journal, side_log = str(tmp_path / "soak.db"), str(tmp_path / "runs.log")
    kills = []
    for phase in range(KILLS):
        owner = run_owner(journal, side_log, seed, start=phase == 0)
        try:
            assert owner.stdout.readline().strip() == "STARTED", f"seed {seed}: owner {phase} failed to start"
            moment = rng.uniform(0.2, 8.0)  # after the plan is committed: mid-work, at random
            time.sleep(moment)
            owner.send_signal(signal.SIGKILL)
        finally:
            owner.kill()
            owner.wait(30)
            owner.stdout.close()
        kills.append((round(moment, 2), open_executions(journal)))
    plan = soak.plan(seed, EXECUTIONS)
    outcomes = {}
    with ActorSystem(list(soak.ACTIVITIES.values()), workers=2, max_concurrent_activities=soak.SLOTS_PER_WORKER,
                     journal=journal) as system:
        for activity_id, kind in plan:
            if kind == "cancel":
                system.get_activity_handle(activity_id).cancel()
        for activity_id, kind in plan:
            outcomes[activity_id] = soak.observed(system.get_activity_handle(activity_id), timeout=120)
    context = f"seed {seed}, kills (s after start, executions open) {kills}"
    assert sum(1 for _, still_open in kills if still_open > 0) >= 2, f"{context}: the kills missed the work"
    wrong = {aid: (kind, outcomes[aid][0]) for aid, kind in plan if outcomes[aid][0] != soak.expected(kind)}
    assert not wrong, f"{context}: {len(wrong)} executions ended otherwise than predicted: {list(wrong.items())[:10]}"
    # no completion that was committed ran again: the completing run is each id's last start
    with open(side_log) as f:
        starts = [line.split() for line in f]
    last_start = {activity_id: nonce for _, activity_id, nonce in starts}
    for activity_id, kind in plan:
        summary, value = outcomes[activity_id]
        if summary == "completed":
            assert last_start[activity_id] == value, \
                f"{context}: {activity_id} ({kind}) ran again after its completion was committed"
    runs = Counter(activity_id for _, activity_id, _ in starts)
    assert set(runs) <= {aid for aid, _ in plan} and all(runs[aid] >= 1 for aid, kind in plan if kind != "cancel")
    print(f"crash soak: {context}; {sum(runs.values())} attempts for {len(plan)} executions")

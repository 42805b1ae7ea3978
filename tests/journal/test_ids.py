"""D9: activity ids, their conflict and reuse policies, and get_activity_handle, in both modes
(without a journal, and on a real SQLite journal)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

import pytest

from actorflow import ActorSystem
from actorflow.common import ActivityIDConflictPolicy, ActivityIDReusePolicy
from actorflow.exceptions import ActivityAlreadyStartedError, ActivityError, ActivityNotFoundError
from tests.journal import activities as acts

MINUTE = timedelta(minutes=1)
ALLOW_FAILED_ONLY = ActivityIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY


@pytest.fixture(params=["memory", "sqlite"])
def system(request, tmp_path: Path) -> Iterator[ActorSystem]:
    journal = str(tmp_path / "j.db") if request.param == "sqlite" else None
    with ActorSystem(acts.ALL, workers=1, journal=journal, stop_grace=timedelta(milliseconds=300)) as system:
        yield system


@pytest.fixture
def side(tmp_path: Path) -> str:
    return str(tmp_path / "runs.txt")


def test_D9_an_open_id_fails_by_default_and_use_existing_returns_the_open_run(system, side):
    first = system.start_activity(acts.block, args=[side, 30.0], activity_id="job", start_to_close_timeout=MINUTE)
    with pytest.raises(ActivityAlreadyStartedError) as info:
        system.start_activity(acts.add, args=[side, 1, 2], activity_id="job", start_to_close_timeout=MINUTE)
    assert (info.value.activity_id, info.value.activity_type) == ("job", "block")
    assert info.value.run_id and "USE_EXISTING" in str(info.value)
    same = system.start_activity(acts.add, args=[side, 1, 2], activity_id="job", start_to_close_timeout=MINUTE,
                                 id_conflict_policy=ActivityIDConflictPolicy.USE_EXISTING)
    assert same.activity_type == "block"  # a handle to the open execution; nothing started
    assert same.cancel() and isinstance(first.exception(30), ActivityError)
    assert not any(line.startswith("add:") for line in acts.runs(side))


@pytest.mark.parametrize("policy, after_success, after_failure", [
    (ActivityIDReusePolicy.ALLOW_DUPLICATE, True, True),
    (ALLOW_FAILED_ONLY, False, True),
    (ActivityIDReusePolicy.REJECT_DUPLICATE, False, False),
])
def test_D9_reuse_policies_over_closed_retained_runs(system, side, policy, after_success, after_failure):
    assert system.start_activity(acts.add, args=[side, 1, 1], activity_id="ok",
                                 start_to_close_timeout=MINUTE).result(30) == 2
    with pytest.raises(ActivityError):
        system.start_activity(acts.fail, args=[side], activity_id="bad", start_to_close_timeout=MINUTE).result(30)

    def again(activity_id: str) -> bool:
        try:
            handle = system.start_activity(acts.add, args=[side, 2, 2], activity_id=activity_id,
                                           start_to_close_timeout=MINUTE, id_reuse_policy=policy)
        except ActivityAlreadyStartedError as exc:
            assert exc.activity_id == activity_id and policy.name in str(exc)
            return False
        assert handle.result(30) == 4
        return True

    assert again("ok") is after_success
    assert again("bad") is after_failure
    # get_activity_handle refers to the latest run
    assert system.get_activity_handle("ok").result(30) == (4 if after_success else 2)


def test_D9_get_activity_handle_of_open_closed_and_unknown_ids(system, side):
    handle = system.start_activity(acts.block, args=[side, 30.0], activity_id="open", start_to_close_timeout=MINUTE)
    other = system.get_activity_handle("open")
    assert other.activity_id == "open" and not other.done()
    assert other.cancel()
    assert isinstance(handle.exception(30), ActivityError) and isinstance(other.exception(30), ActivityError)
    with pytest.raises(ActivityNotFoundError, match="'missing'"):
        system.get_activity_handle("missing")
    with pytest.raises(TypeError):
        system.get_activity_handle("")


def test_D9_generated_ids_never_collide_with_explicit_ones(system, side):
    system.start_activity(acts.block, args=[side, 30.0], activity_id="2", start_to_close_timeout=MINUTE)
    handles = [system.start_activity(acts.add, args=[side, i, 0], start_to_close_timeout=MINUTE) for i in range(4)]
    ids = [h.activity_id for h in handles]
    assert "2" not in ids and len(set(ids)) == 4
    assert [h.result(30) for h in handles] == [0, 1, 2, 3]
    system.get_activity_handle("2").cancel()


def test_D9_bad_policies_are_type_errors(system, side):
    with pytest.raises(TypeError, match="id_reuse_policy"):
        system.start_activity(acts.add, args=[side, 1, 1], start_to_close_timeout=MINUTE, id_reuse_policy="never")
    with pytest.raises(TypeError, match="id_conflict_policy"):
        system.start_activity(acts.add, args=[side, 1, 1], start_to_close_timeout=MINUTE, id_conflict_policy=1)


def test_D9_retention_applies_without_a_journal_too(tmp_path: Path):
    side = str(tmp_path / "runs.txt")
    with ActorSystem(acts.ALL, workers=1, retention=timedelta(milliseconds=300)) as system:
        system.start_activity(acts.add, args=[side, 1, 1], activity_id="short", start_to_close_timeout=MINUTE).result(30)
        assert system.get_activity_handle("short").result() == 2
        import time

        time.sleep(0.5)
        with pytest.raises(ActivityNotFoundError):
            system.get_activity_handle("short")
        system.start_activity(acts.add, args=[side, 1, 1], activity_id="short", start_to_close_timeout=MINUTE,
                              id_reuse_policy=ActivityIDReusePolicy.REJECT_DUPLICATE).result(30)

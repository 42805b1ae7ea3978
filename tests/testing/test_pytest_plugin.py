"""The pytest plugin (``actorflow.pytest_plugin``, entry point ``pytest11``): its fixtures give
started systems, are configurable, tear everything down, and catch leaks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from actorflow import ActorSystem, RetryPolicy
from actorflow.testing import ActivityEnvironment, VirtualClock
from tests.testing import activities as acts


# Module-level overrides: every fixture system of this module registers these, with these options.
@pytest.fixture
def actorflow_activities() -> Any:
    return [acts.fail_until]


@pytest.fixture
def actorflow_system_options() -> Dict[str, Any]:
    return {"max_concurrent_activities": 3}


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert any(ep.value == "actorflow.pytest_plugin" for ep in entry_points(group="pytest11"))
    assert pytestconfig.pluginmanager.has_plugin("actorflow")


def test_activity_environment_fixture(actorflow_activity_environment: ActivityEnvironment) -> None:
    assert actorflow_activity_environment.run(lambda x: x * 2, 21) == 42


@pytest.mark.slow
def test_actorflow_system_is_started_and_configured(actorflow_system: ActorSystem, tmp_path: Path) -> None:
    assert actorflow_system.running
    assert actorflow_system.statistics().workers == 1  # the plugin's default
    handle = actorflow_system.start_activity(  # registered: startable by name
        "fail_until", args=[str(tmp_path / "j"), 0], start_to_close_timeout=timedelta(seconds=10))
    assert handle.result(timeout=30) == 1


@pytest.mark.slow
def test_time_skipping_system_uses_the_clock_fixture(
    actorflow_time_skipping_system: ActorSystem, actorflow_clock: VirtualClock, tmp_path: Path
) -> None:
    handle = actorflow_time_skipping_system.start_activity(
        "fail_until", args=[str(tmp_path / "j"), 1], start_to_close_timeout=timedelta(seconds=10),
        retry_policy=RetryPolicy(initial_interval=timedelta(hours=2)))
    assert handle.result(timeout=30) == 2
    assert actorflow_clock.now() >= 7200 and actorflow_clock.skips >= 1


@pytest.mark.slow
def test_factory_makes_several_systems_with_their_own_options(
    actorflow_system_factory: Callable[..., ActorSystem], tmp_path: Path
) -> None:
    plain = actorflow_system_factory([acts.fail_until], workers=2)
    skipping = actorflow_system_factory(time_skipping=True)
    assert plain.statistics().workers == 2 and skipping.statistics().workers == 1
    handle = skipping.start_activity(acts.fail_until, args=[str(tmp_path / "j"), 1],
                                     start_to_close_timeout=timedelta(seconds=10),
                                     retry_policy=RetryPolicy(initial_interval=timedelta(days=1)))
    assert handle.result(timeout=30) == 2
    assert acts.read(str(tmp_path / "j"))[1]["scheduled"] >= 86400


def _run_pytest(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_generated.py"
    test_file.write_text(textwrap.dedent(source), encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_leaks_fail_the_test_with_a_clear_message(tmp_path: Path) -> None:
    """A test that leaves an actorflow thread and a worker-like process behind errors at teardown;
    the leaked process is killed. A failing test still has its system torn down cleanly."""
    done = _run_pytest(tmp_path, """
        import multiprocessing, threading, time
        import actorflow.pytest_plugin as plugin

        plugin.LEAK_GRACE = 0.5

        def test_leaky(actorflow_system_factory):
            actorflow_system_factory()
            threading.Thread(target=time.sleep, args=(3,), name="actorflow-leaked", daemon=True).start()
            ctx = multiprocessing.get_context("spawn")
            ctx.Process(target=time.sleep, args=(60,), name="actorflow-worker-leaked", daemon=True).start()

        def test_failing_test_is_still_torn_down(actorflow_system):
            assert actorflow_system.running
            assert False, "the test itself fails"

        def test_clean(actorflow_system):
            assert actorflow_system.running
    """)
    out = done.stdout
    assert done.returncode == 1, out
    assert "1 failed, 2 passed, 1 error" in out, out  # test_leaky passes, then errors at teardown
    assert "ERROR at teardown of test_leaky" in out, out
    assert "actorflow: still alive" in out, out
    assert "actorflow-worker-leaked" in out and "threads actorflow-leaked" in out, out
    assert "(now killed)" in out
    assert "the test itself fails" in out

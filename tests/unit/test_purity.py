"""Layering and public-surface checks (STYLE.md 2.1, 2.5, 2.8, 2.9), by reading the source with ``ast``."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Dict, List, Set

import pytest

import actorflow

PACKAGE_DIR = Path(actorflow.__file__).parent
MODULE_FILES = sorted(PACKAGE_DIR.rglob("*.py"))
PURE_CORE = ["_execution", "_retry"]
FORBIDDEN_IN_CORE = {"pykka", "multiprocessing", "threading", "time", "logging"}
PURE_DEPENDENCIES = {"_retry", "exceptions", "common"}  # what the core may import from actorflow
PUBLIC_MODULES = sorted(
    m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]) if not m.name.startswith("_")
)
# The API.md surface users see; no pykka type may appear in any of its signatures.
API_MODULES = [
    "actorflow",
    "actorflow.activity",
    "actorflow.workflow",
    "actorflow.common",
    "actorflow.exceptions",
    "actorflow.handle",
    "actorflow.system",
    "actorflow.testing",
]


def imports_of(path: Path) -> Dict[str, Set[str]]:
    """Top-level names imported anywhere in ``path``: {"absolute": {...}, "relative": {...}}."""
    absolute: Set[str] = set()
    relative: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            absolute.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                absolute.add(node.module.split(".")[0])
            elif node.module:
                relative.add(node.module.split(".")[0])
            else:
                relative.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            if node.args and isinstance(node.args[0], ast.Constant):
                absolute.add(str(node.args[0].value).split(".")[0])
    return {"absolute": absolute, "relative": relative}


def test_the_imports_parser_sees_all_import_forms(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import time\nimport os.path as p\nfrom threading import Lock\n"
        "def f():\n    import logging\n    from . import _retry\n    from .exceptions import X\n"
        "    __import__('pykka')\n"
    )
    assert imports_of(source) == {
        "absolute": {"time", "os", "threading", "logging", "pykka"},
        "relative": {"_retry", "exceptions"},
    }


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_imports_no_io(module):
    """STYLE.md 2.1: _execution and _retry import none of pykka, multiprocessing, threading, time, logging."""
    found = imports_of(PACKAGE_DIR / f"{module}.py")
    assert found["absolute"] & FORBIDDEN_IN_CORE == set()
    assert found["relative"] <= PURE_DEPENDENCIES, found["relative"]


@pytest.mark.parametrize("module", sorted(PURE_DEPENDENCIES))
def test_what_the_core_imports_is_pure_too(module):
    """The actorflow modules the core depends on do not pull I/O in directly either."""
    found = imports_of(PACKAGE_DIR / f"{module}.py")
    assert found["absolute"] & FORBIDDEN_IN_CORE == set()
    assert found["relative"] <= PURE_DEPENDENCIES


def test_only_clock_imports_time():
    """STYLE.md 2.5: clock.py is the only module of actorflow/ that imports ``time``."""
    importers = [
        p.relative_to(PACKAGE_DIR).as_posix() for p in MODULE_FILES if "time" in imports_of(p)["absolute"]
    ]
    assert importers == ["clock.py"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_declares_all_and_every_name_exists(name):
    """STYLE.md 2.9: every public module has __all__, without duplicates, and each name exists."""
    module = importlib.import_module(f"actorflow.{name}")
    assert isinstance(getattr(module, "__all__", None), list), f"actorflow.{name} has no __all__ list"
    assert len(set(module.__all__)) == len(module.__all__)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


@pytest.mark.parametrize("name", ["_execution", "_retry", "_messages", "_serde"])
def test_private_modules_with_all_only_list_existing_names(name):
    module = importlib.import_module(f"actorflow.{name}")
    assert [n for n in module.__all__ if not hasattr(module, n)] == []


def test_package_all():
    """STYLE.md 2.8/2.9: actorflow.__all__ names exist; the builtin-shadowing errors stay out of it."""
    assert [n for n in actorflow.__all__ if not hasattr(actorflow, n)] == []
    assert {
        "ActorSystem",
        "ActivityHandle",
        "ActivityCancellationType",
        "RetryPolicy",
        "ApplicationError",
        "ActivityError",
        "activity",
        "workflow",
        "common",
        "exceptions",
    } <= set(actorflow.__all__)
    assert not {"TimeoutError", "CancelledError"} & set(actorflow.__all__)
    namespace: dict = {}
    exec("from actorflow import *", namespace)
    assert "TimeoutError" not in namespace and "CancelledError" not in namespace


def test_api_md_import_surface():
    """API.md "Import surface": each module exports the names it lists."""
    surface = {
        "activity": [
            "defn",
            "heartbeat",
            "info",
            "Info",
            "is_cancelled",
            "wait_for_cancelled",
            "wait_for_cancelled_sync",
            "logger",
        ],
        "workflow": ["execute_activity", "start_activity", "ActivityCancellationType"],
        "common": ["RetryPolicy"],
        "exceptions": [
            "ActorflowError",
            "FailureError",
            "ApplicationError",
            "ActivityError",
            "CancelledError",
            "TimeoutError",
            "TimeoutType",
            "RetryState",
        ],
        "testing": ["ActivityEnvironment", "VirtualClock"],
    }
    for module_name, names in surface.items():
        module = importlib.import_module(f"actorflow.{module_name}")
        assert [n for n in names if n not in module.__all__] == [], module_name


def _signatures(obj: object) -> List[str]:
    """The signatures of a callable, or of a class and its public methods and properties."""
    texts: List[str] = []
    targets = [obj]
    if inspect.isclass(obj):
        for attr, value in vars(obj).items():
            if attr.startswith("_") and attr != "__init__":
                continue
            if isinstance(value, property):
                value = value.fget
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            targets.append(value)
    for target in targets:
        if callable(target):
            try:
                texts.append(str(inspect.signature(target)))
            except (TypeError, ValueError):
                pass
    return texts


@pytest.mark.parametrize("module_name", API_MODULES)
def test_no_public_signature_mentions_pykka(module_name):
    """STYLE.md 2.9: users never see an ActorRef, a pykka.Future or pykka.Timeout in a signature."""
    module = importlib.import_module(module_name)
    offenders = [
        f"{module_name}.{name}{text}"
        for name in module.__all__
        for text in _signatures(getattr(module, name))
        if "pykka" in text.lower()
    ]
    assert offenders == []
    assert any(_signatures(getattr(module, name)) for name in module.__all__)  # the check saw something


def test_the_signature_check_would_catch_pykka():
    class Leaky:
        def ref(self) -> "pykka.ActorRef":  # noqa: F821
            ...

    assert any("pykka" in text for text in _signatures(Leaky))

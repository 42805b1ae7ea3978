"""Every ```python block of README.md and docs/*.md runs (docs/testing.md is tested on its own).

Each block is a complete program: it is written to a file of its own and run in a fresh
interpreter, as a user would run it (a guard-less block included: workers never run the main
module). A fragment that cannot run is fenced as ``text``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
TESTED_ELSEWHERE = {"testing.md"}  # tests/testing/test_docs_testing.py


def documents() -> List[Path]:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in TESTED_ELSEWHERE)
    return [ROOT / "README.md", *docs]


def blocks() -> List[Tuple[str, int, str]]:
    found = []
    for doc in documents():
        for index, source in enumerate(BLOCK.findall(doc.read_text(encoding="utf-8"))):
            found.append((doc.relative_to(ROOT).as_posix(), index, source))
    return found


def test_the_front_door_documents_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in documents()}
    for name in ("README.md", "docs/concepts.md", "docs/porting-from-temporal.md", "docs/architecture.md",
                 "docs/failure-modes.md"):
        assert name in names


def test_readme_commands_match_ci() -> None:
    """The README's test command is the one .ci/run runs; the demo command is there verbatim."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    setup = "python3 -m venv .venv && . .venv/bin/activate && "
    assert setup + "pip install -e '.[demo]' && python -m actorflow demo" in readme
    assert setup + "pip install -e '.[test]' && python -m pytest" in readme
    assert "pip install -e '.[test]' && python -m pytest" in ci


def test_relative_links_resolve() -> None:
    for doc in documents():
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


@pytest.mark.slow
@pytest.mark.parametrize("doc,index,source", blocks(), ids=[f"{d}[{i}]" for d, i, _ in blocks()])
def test_python_block_runs(doc: str, index: int, source: str, tmp_path: Path) -> None:
    path = tmp_path / f"block_{index}.py"
    path.write_text(source, encoding="utf-8")
    done = subprocess.run([sys.executable, "-W", "error", str(path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{doc} block {index} failed:\n{done.stdout}\n{done.stderr}"

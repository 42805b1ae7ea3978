"""Every ```python block of docs/testing.md runs, each as its own file in a fresh interpreter:
blocks that define ``test_*`` functions under pytest (so the plugin's fixtures come from its
``pytest11`` entry point, as for a user), the others as scripts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> List[str]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_page_has_examples_of_all_three_ways() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 4
    text = "\n".join(blocks)
    for name in ("ActivityEnvironment", "actorflow_system", "actorflow_time_skipping_system",
                 "VirtualClock("):
        assert name in text


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_docs_example_runs(index: int, tmp_path: Path) -> None:
    source = python_blocks()[index]
    is_test_module = re.search(r"^def test_", source, re.M) is not None
    path = tmp_path / (f"test_docs_example_{index}.py" if is_test_module else f"docs_example_{index}.py")
    path.write_text(source, encoding="utf-8")
    if is_test_module:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", str(path)]
    else:
        command = [sys.executable, "-W", "error", str(path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"docs/testing.md block {index} failed:\n{done.stdout}\n{done.stderr}"
    if is_test_module:
        assert re.search(r"\d+ passed", done.stdout) and "skipped" not in done.stdout, done.stdout

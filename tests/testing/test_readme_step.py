"""The README's tutorial step "Test your controller" runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from kernel.core.settings import PROJECT_ROOT
from tests.examples.test_docs import blocks
from tests.testing.userproject import run_pytest


def test_the_readme_test_passes_under_pytest(tmp_path: Path) -> None:
    readme = blocks(PROJECT_ROOT / "README.md")
    hello = next(b for b in readme if b.kind == "file"
                 and b.argument == "catalog/controller/hello.py")
    test = next(b for b in readme if b.kind == "not run" and "test_readme_step" in b.argument)
    project = tmp_path / "project"
    (project / "catalog/controller").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "catalog/controller/hello.py").write_text(hello.text)
    (project / "tests/test_hello.py").write_text(test.text)
    result = run_pytest(project, "tests/test_hello.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b2 passed\b", result.stdout), result.stdout

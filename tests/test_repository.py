"""Promises about the repository itself, checked on every run."""

from __future__ import annotations

import subprocess

from kernel.core.settings import PROJECT_ROOT


def test_no_merge_conflict_markers_are_committed() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    marked = []
    for name in tracked:
        path = PROJECT_ROOT / name
        if not path.is_file():
            continue
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            continue
        marked += [f"{name}:{n}" for n, line in enumerate(lines, 1)
                   if line.startswith(("<<<<<<< ", ">>>>>>> "))]
    assert marked == []

"""Where a KernKoa project is: the folder holding ``catalog/`` or ``config.py``."""

from __future__ import annotations

import os
from pathlib import Path

from .settings import ENV_PREFIX
from .settings import PROJECT_ROOT


def find_project(start: Path, environ: dict[str, str] | None = None) -> Path:
    """The project around ``start``: ``KERNKOA_PATH`` when set, else ``start`` or the
    nearest folder above it holding ``catalog/`` or ``config.py``, else the kernel's
    own project (:data:`~kernel.core.settings.PROJECT_ROOT`)."""
    environ = dict(os.environ) if environ is None else environ
    given = environ.get(f"{ENV_PREFIX}PATH", "")
    if given:
        return Path(given).resolve()
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "catalog").is_dir() or (folder / "config.py").is_file():
            return folder
    return PROJECT_ROOT

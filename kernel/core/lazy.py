"""Modules imported on first use, so a process that never uses them never pays for them.

SQLAlchemy and the Celery stack cost about 14 MiB and 15 MiB of resident memory
per worker process, and a few hundred milliseconds of start-up (see
bench/RESULTS.md); most requests use neither.
"""

from __future__ import annotations

import importlib
import threading
import types
import typing as t

_lock = threading.Lock()


class LazyModule:
    """Stands for the module ``name``; imports it at the first attribute access.

    Only that first access imports; later ones are plain attribute reads.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: types.ModuleType | None = None

    def _load(self) -> types.ModuleType:
        with _lock:
            if self._module is None:
                self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attribute: str) -> t.Any:
        module = self._module if self._module is not None else self._load()
        return getattr(module, attribute)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r}, {state}>"

"""KernKoa: drop a controller into ``catalog/controller/`` and call it by URL.

``create_app`` and ``methods`` are imported on first use: importing a part of
the package (the client, the test kit's pytest plugin, which pytest loads in
every run) does not import Flask and the app factory with it.
"""

from __future__ import annotations

import importlib
import typing as t

from .core.version import __version__ as __version__

if t.TYPE_CHECKING:
    from .app import create_app as create_app
    from .catalog.exposure import methods as methods

#: The package's names served on first use, by the module holding each.
_LAZY = {"create_app": "kernel.app", "methods": "kernel.catalog.exposure"}

__all__ = ["__version__", "create_app", "methods"]


def __getattr__(name: str) -> t.Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kernel' has no attribute {name!r}")

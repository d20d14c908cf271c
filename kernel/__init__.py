"""KernKoa: drop a controller into ``catalog/controller/`` and call it by URL."""

from __future__ import annotations

from .app import create_app as create_app
from .catalog.exposure import methods as methods
from .core.version import __version__ as __version__

"""KernKoa: drop a controller into ``catalog/controller/`` and call it by URL."""

from __future__ import annotations

# Set before the imports below: modules they load read it.
__version__ = "0.1.0"

from .app import create_app as create_app  # noqa: E402
from .catalog.exposure import methods as methods  # noqa: E402

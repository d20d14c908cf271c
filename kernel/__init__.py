"""KernKoa: drop a controller into ``catalog/controller/`` and call it by URL."""

from __future__ import annotations

from .app import create_app as create_app
from .exposure import methods as methods

__version__ = "0.1.0"

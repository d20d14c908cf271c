"""Catalogs a test writes for itself: :class:`ControllerTree` (the ``tree`` fixture)."""

from __future__ import annotations

import textwrap
from pathlib import Path


class ControllerTree:
    """A throw-away catalog: ``tree.write("shop/cart.py", source)`` adds a controller."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.controllers = root / "controller"
        self.controllers.mkdir(parents=True, exist_ok=True)

    def write(self, relative: str, source: str) -> Path:
        """Write a controller file (dedented) under ``controller/``; return its path."""
        path = self.controllers / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

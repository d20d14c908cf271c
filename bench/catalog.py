"""Benchmark catalogs: ``n`` controller files, each with the methods the plain app has."""

from __future__ import annotations

from pathlib import Path

#: The controller every file holds; ``plain_app`` answers the same values.
CONTROLLER = '''\
from kernkoa import *


class Bench:
    def hello(self):
        return "hello world!!."

    def greet(self, a: str, b: str, c: str):
        return a + "-" + b + "-" + c

    def echo(self, a: int, b: str, c: bool):
        return {"a": a, "b": b, "c": c}

    def add(self, x: list[float], y: list[float]):
        return {"response": [a + b for a, b in zip(x, y)]}

    def ping_celery(self, task):
        return "pong"
'''


def module_path(index: int) -> str:
    """The URL path of controller file number ``index`` (without class and method)."""
    return f"/bench/m{index:04d}"


def write_catalog(root: Path, files: int) -> Path:
    """Write a catalog of ``files`` controller files under ``root``; return ``root``."""
    folder = root / "controller" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        (folder / f"m{index:04d}.py").write_text(CONTROLLER)
    return root

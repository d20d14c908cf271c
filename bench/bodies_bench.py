"""Part 6: what a hostile body costs the server against a plain body of the same size.

For each hostile shape of ``bench/body_shapes.py`` (built to make a scanner
backtrack: escape runs, unterminated strings, brackets by the million,
separators without fields, boundaries that never complete), the µs of one
whole request in one process (the WSGI app called as uWSGI calls it, the body
read, checked and parsed, the answer built), next to a plain body of the same
kind and size (JSON records, one long form field, one file part), batches
alternated; each case names the statuses of both answers (hostile vs plain).
Sizes: 24 KB (issue 13's attack) and ``MAX_CONTENT_LENGTH``.
Target: a hostile body costs at most 2× the plain one.

The case named "worst found" is the JSON shape on which the depth scanner did
the most counted work per byte (:class:`kernel.web.jsondepth.ScanWork`), the
measure the hostile suite checks.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from kernel.web.jsondepth import ScanWork
from kernel.web.jsondepth import json_depth_exceeds

from .body_shapes import HOSTILE
from .body_shapes import PLAIN
from .body_shapes import Shape
from .config import RunConfig
from .inprocess import WSGIApp
from .inprocess import environ
from .stats import Comparison

#: The catalog method every body is sent to: it takes any field.
CONTROLLER = '''\
class Take:
    def any(self, params):
        return {"fields": len(params or {})}
'''

PATH = "/bodies/Take/any"

#: Sizes of the full run: issue 13's 24 KB, and the default body limit.
SIZES = (24 * 1024, 16 * 1024 * 1024)

#: Sizes of the smoke run (``make test``): the same code, small bodies.
SMOKE_SIZES = (24 * 1024, 256 * 1024)


def app(work: Path, limit: int) -> WSGIApp:
    """A KernKoa app on a catalog of the one method above."""
    from kernel import create_app

    controllers = work / "catalog" / "controller"
    controllers.mkdir(parents=True, exist_ok=True)
    (controllers / "bodies.py").write_text(CONTROLLER)
    return t.cast(WSGIApp, create_app({"CATALOG": str(work / "catalog"), "VAR": str(work / "var"),
                                       "MAX_CONTENT_LENGTH": limit}))


def sender(kernkoa: WSGIApp, shape: Shape, size: int) -> t.Callable[[], int]:
    """One request carrying ``shape`` at ``size`` bytes (the body built once); it
    returns the status of the answer."""
    body = shape.build(size)
    env = environ(PATH, "", "POST", body)
    env["CONTENT_TYPE"] = shape.content_type
    statuses: list[int] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: t.Any = None) -> None:
        statuses.append(int(status.split()[0]))

    def send() -> int:
        fresh = dict(env)
        fresh["wsgi.input"] = io.BytesIO(body)
        result = kernkoa(fresh, start_response)
        try:
            b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if statuses[-1] >= 500:
            raise RuntimeError(f"{shape.name}: answered {statuses[-1]}")
        return statuses[-1]
    return send


def least_us(send: t.Callable[[], int], requests: int) -> float:
    """µs per request over one batch."""
    started = time.perf_counter()
    for _ in range(requests):
        send()
    return (time.perf_counter() - started) / requests * 1e6


def worst_json_shape(size: int) -> Shape:
    """The JSON shape on which the depth scanner counts the most work per byte."""
    def work_per_byte(shape: Shape) -> float:
        work = ScanWork()
        body = shape.build(size)
        json_depth_exceeds(body, 64, work)
        return work.total / len(body)
    return max((shape for shape in HOSTILE if shape.kind == "json"), key=work_per_byte)


def label(size: int) -> str:
    """``24 KB``, ``16 MiB``."""
    return f"{size // (1024 * 1024)} MiB" if size >= 1024 * 1024 else f"{size // 1024} KB"


def run(config: RunConfig) -> list[Comparison]:
    """Each hostile shape against the plain one of its kind, at each size."""
    smoke = config.rounds <= 1
    sizes = SMOKE_SIZES if smoke else SIZES
    kernkoa = app(config.work / "bodies", max(sizes))
    results = []
    for size in sizes:
        worst = worst_json_shape(size)
        # Fewer requests per batch for large bodies: each takes milliseconds.
        requests = 1 if size > 1024 * 1024 else (5 if smoke else 40)
        for shape in HOSTILE:
            plain, hostile = sender(kernkoa, PLAIN[shape.kind], size), sender(kernkoa, shape, size)
            # Warm-up (the first parse of each kind), and the statuses, named in the case.
            answered = f"{hostile()} vs {plain()}"
            name = (f"6. {shape.name}, {label(size)}, {answered}"
                    + (" (worst found)" if shape is worst else ""))
            comparison = Comparison(name, "hostile", "plain", higher_is_better=False, unit="us")
            for _ in range(max(1, config.rounds)):
                comparison.add("plain", least_us(plain, requests))
                comparison.add("hostile", least_us(hostile, requests))
            results.append(comparison)
    return results


def main() -> int:
    """``python -m bench.bodies_bench``: the full run of this part alone."""
    with tempfile.TemporaryDirectory() as folder:
        for comparison in run(RunConfig(work=Path(folder))):
            print(comparison.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""In one process, no server: microseconds per request, and a profile of the hot path.

Each request is a fresh WSGI environ passed to the app object, as uWSGI does,
so the figures are the Python cost alone. ``python -m bench.inprocess
--profile`` prints a cProfile of KernKoa's hot path for each request kind.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .dispatch_bench import BODY
from .dispatch_bench import QUERY
from .stats import Comparison

WSGIApp = t.Callable[[dict[str, t.Any], t.Callable[..., t.Any]], t.Iterable[bytes]]

#: (name, method, plain path, catalog path, query, JSON body)
KINDS = [
    ("GET, no params", "GET", "/hello", "Bench/hello", "", None),
    ("GET, 3 query params", "GET", "/greet", "Bench/greet", QUERY, None),
    ("POST, JSON body", "POST", "/echo", "Bench/echo", "", BODY),
]


def environ(path: str, query: str = "", method: str = "GET",
            body: bytes = b"") -> dict[str, t.Any]:
    """A WSGI environ like the one uWSGI's HTTP socket builds."""
    env: dict[str, t.Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "REQUEST_URI": path + (f"?{query}" if query else ""), "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/json"
    return env


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: t.Any = None) -> None:
    if not status.startswith("200"):
        raise RuntimeError(f"benchmark request answered {status}")


def caller(app: WSGIApp, env: dict[str, t.Any], body: bytes) -> t.Callable[[], bytes]:
    """A function sending one request to ``app`` and returning the body."""
    def call() -> bytes:
        fresh = dict(env)
        fresh["wsgi.input"] = io.BytesIO(body)
        result = app(fresh, _start_response)
        try:
            return b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    return call


def per_request_us(call: t.Callable[[], bytes], requests: int) -> float:
    """Microseconds per request over a batch of ``requests`` requests."""
    started = time.perf_counter()
    for _ in range(requests):
        call()
    return (time.perf_counter() - started) / requests * 1e6


def paired_minimum(a: t.Callable[[], bytes], b: t.Callable[[], bytes], requests: int,
                   batches: int) -> tuple[float, float]:
    """Least µs per request of each of ``a`` and ``b``, batches run alternately.

    The least is the figure other processes on the machine disturbed least.
    """
    best_a = best_b = float("inf")
    for _ in range(batches):
        best_a = min(best_a, per_request_us(a, requests))
        best_b = min(best_b, per_request_us(b, requests))
    return best_a, best_b


def apps(work: Path) -> tuple[WSGIApp, WSGIApp]:
    """The plain Flask app and a KernKoa app on a one-file benchmark catalog."""
    from kernel import create_app

    from .plain_app import app as plain
    catalog = write_catalog(work / "catalog-1", 1)
    kernkoa = create_app({"CATALOG": str(catalog), "VAR": str(work / "var")})
    return plain, kernkoa


def calls(work: Path) -> list[tuple[str, t.Callable[[], bytes], t.Callable[[], bytes]]]:
    """For each request kind: its name, the plain call and the KernKoa call (same answer)."""
    plain, kernkoa = apps(work)
    found = []
    for name, method, plain_path, rest, query, body in KINDS:
        data = json.dumps(body).encode() if body is not None else b""
        a = caller(plain, environ(plain_path, query, method, data), data)
        b = caller(kernkoa, environ(f"{module_path(0)}/{rest}", query, method, data), data)
        if a() != b():
            raise RuntimeError(f"{name}: the two apps answer differently: {a()!r} {b()!r}")
        found.append((name, a, b))
    return found


def run(config: RunConfig) -> list[Comparison]:
    """Microseconds per request, KernKoa vs plain, measured alternately."""
    requests, batches = (100, 2) if config.rounds <= 1 else (500, 20)
    results = []
    for name, plain, kernkoa in calls(config.work / "inprocess"):
        comparison = Comparison(f"in-process {name}", "kernkoa", "plain",
                                higher_is_better=False, unit="us")
        for _ in range(config.rounds):
            plain_us, kernkoa_us = paired_minimum(plain, kernkoa, requests, batches)
            comparison.add("plain", plain_us)
            comparison.add("kernkoa", kernkoa_us)
        results.append(comparison)
    return results


def profile(requests: int = 20000, top: int = 25) -> None:
    """Print a cProfile of KernKoa's hot path for each request kind."""
    with tempfile.TemporaryDirectory() as folder:
        for name, _, kernkoa in calls(Path(folder)):
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(requests):
                kernkoa()
            profiler.disable()
            print(f"=== {name}: {requests} requests ===")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.inprocess [--profile]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("--profile", action="store_true", help="print a cProfile instead")
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.requests)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        for comparison in run(RunConfig(work=Path(folder))):
            print(comparison.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())

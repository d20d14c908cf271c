"""Where the time of a ``_celery`` trigger and of ``/status/<id>`` goes, in one process.

No server: each app is called as uWSGI calls it, on a throw-away local
redis-server, KernKoa's against the hand-written Flask + Celery routes of
:mod:`bench.plain_tasks` (``apply_async``, ``AsyncResult(id).state``)::

    python -m bench.tasks_profile                 # µs per request, batches alternated
    python -m bench.tasks_profile --profile       # cProfile of KernKoa's two requests
    python -m bench.tasks_profile --instructions  # callgrind's instructions per request

The status requests read a task whose SUCCESS is stored; the triggers publish to
a queue nobody consumes. Instruction counts (the web process's, not Redis's)
do not move with the machine's load: each is the difference between a process
sending ``n`` requests and one sending none, after the same warm-up.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

from .catalog import write_catalog
from .inprocess import environ
from .inprocess import paired_minimum
from .servers import ROOT
from .servers import redis_server
from .tasks_bench import TRIGGER

#: The request kinds: a trigger, and ``/status`` of a task that succeeded.
KINDS = ("trigger", "status")

#: Requests every counted process sends first (connections, caches, scripts).
WARMUP = 200

_COLLECTED = re.compile(r"Collected : (\d+)")

Call = t.Callable[[], bytes]


def _accepting(status: str, headers: list[tuple[str, str]], exc_info: t.Any = None) -> None:
    if status[:3] not in ("200", "202"):
        raise RuntimeError(f"benchmark request answered {status}")


def _caller(app: t.Any, env: dict[str, t.Any]) -> Call:
    def call() -> bytes:
        fresh = dict(env, **{"wsgi.input": io.BytesIO(b"")})
        result = app(fresh, _accepting)
        try:
            return b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
    return call


def calls(work: Path, url: str) -> dict[str, tuple[Call, Call]]:
    """For each kind: the KernKoa call and the plain call, on ``url``'s databases 0 and 1."""
    os.environ["BENCH_REDIS_URL"] = url[:-1] + "1"
    from kernel import create_app
    from kernel.tasks.celeryapp import get_celery

    from . import plain_tasks
    catalog = write_catalog(work / "catalog-1", 1)
    kernkoa = create_app({"CATALOG": str(catalog), "VAR": str(work / "var"),
                          "BROKER_URL": url[:-1] + "0"})
    json_post = dict(environ(TRIGGER, method="POST"), HTTP_ACCEPT="application/json")
    kk_trigger = _caller(kernkoa, json_post)
    plain_trigger = _caller(plain_tasks.app, dict(environ("/trigger", method="POST")))
    kk_id = json.loads(kk_trigger())["id"]
    get_celery(kernkoa).backend.store_result(kk_id, "pong", "SUCCESS")
    plain_id = json.loads(plain_trigger())["id"]
    plain_tasks.celery.backend.store_result(plain_id, "pong", "SUCCESS")
    return {
        "trigger": (kk_trigger, plain_trigger),
        "status": (_caller(kernkoa, environ(f"/status/{kk_id}")),
                   _caller(plain_tasks.app, environ(f"/state/{plain_id}"))),
    }


def timings(work: Path, url: str, requests: int = 300, batches: int = 10) -> None:
    """Print µs per request of each kind, KernKoa vs plain (least of alternated batches)."""
    for name, (kernkoa, plain) in calls(work, url).items():
        kk_us, plain_us = paired_minimum(kernkoa, plain, requests, batches)
        print(f"{name}: kernkoa {kk_us:.0f} µs, plain {plain_us:.0f} µs, "
              f"ratio {plain_us / kk_us:.2f}")


def profile(work: Path, url: str, requests: int = 2000, top: int = 30) -> None:
    """Print a cProfile (cumulative) of KernKoa's side of each kind."""
    for name, (kernkoa, _) in calls(work, url).items():
        for _ in range(WARMUP):
            kernkoa()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(requests):
            kernkoa()
        profiler.disable()
        print(f"== {name}: {requests} requests")
        stats = pstats.Stats(profiler).sort_stats("cumulative")
        stats.print_stats(top)
        print(f"== {name}: the kernel's own functions")
        stats.print_stats("/kernel/", top)


def _count_in_process(work: Path, url: str, name: str, side: int, requests: int) -> None:
    call = calls(work, url)[name][side]
    for _ in range(WARMUP + requests):
        call()


def count(work: Path, url: str, name: str, side: int, requests: int) -> int:
    """Instructions of one process: warm-up, then ``requests`` of ``name`` on ``side``."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, "-m", "bench.tasks_profile", "--count", name, str(side),
               str(requests), str(work), url]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # set and dict layouts repeat
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def instructions(work: Path, url: str, requests: int = 200) -> None:
    """Print instructions per request of each kind, KernKoa vs plain."""
    for name in KINDS:
        per = []
        for side in (0, 1):
            per.append((count(work / f"{name}-{side}-n", url, name, side, requests)
                        - count(work / f"{name}-{side}-0", url, name, side, 0)) / requests)
        print(f"{name}: kernkoa {per[0]:,.0f} instructions, plain {per[1]:,.0f}, "
              f"kernkoa/plain {per[0] / per[1]:.2f}")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.tasks_profile [--profile | --instructions]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true", help="print a cProfile")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per request with callgrind")
    parser.add_argument("--count", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count:
        name, side, requests, work, url = args.count
        _count_in_process(Path(work), url, name, int(side), int(requests))
        return 0
    with tempfile.TemporaryDirectory(prefix="kernkoa-tasks-profile-") as folder:
        work = Path(folder)
        with redis_server(work / "logs") as url:
            if args.profile:
                profile(work, url)
            elif args.instructions:
                instructions(work, url)
            else:
                timings(work, url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

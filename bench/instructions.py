"""Instructions per request, counted by valgrind: the Python cost without the noise.

Wall-clock figures on a shared machine move by 10-30 % from run to run; the
number of instructions a request executes does not (callgrind counts the same
total for the same program and input, whatever else the machine runs). Each
count is the difference between two runs of one process, with ``n`` requests
and with none after the same warm-up, so start-up and imports cancel out.
Kernel time (the ``stat`` system call, the socket) is not counted.

``python -m bench.run --only instructions`` prints, for each request kind,
KernKoa's instructions per request against plain Flask's (the in-process
requests of :mod:`bench.inprocess`, same apps, same answers).

Part 2 (1,000 files vs 1) by hand: the counted process with ``--files 1000``
loads every file, then spreads its requests over all of them, each request
another module, as part 2's wrk script does; count it with ``n`` requests and
with none under ``valgrind --tool=callgrind`` (``--cache-sim=yes`` for cache
misses). Loading 1,000 files costs billions of instructions that vary a little
between runs, so send a few thousand requests for the difference to hold.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .inprocess import KINDS
from .inprocess import caller
from .inprocess import environ
from .servers import ROOT
from .stats import Comparison

#: Requests every counted process sends first (loads the controller, fills caches).
WARMUP = 300

_COLLECTED = re.compile(r"Collected : (\d+)")


def count(side: str, kind: int, requests: int, work: Path) -> int:
    """Instructions one process executes: warm-up, then ``requests`` of ``kind`` on ``side``."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, "-m", "bench.instructions", side, str(kind), str(requests),
               str(work)]
    # A fixed hash seed: set and dict layouts, hence instruction counts, repeat.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def run(config: RunConfig) -> list[Comparison]:
    """KernKoa's instructions per request vs plain Flask's, for each request kind."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed (make bench installs it)")
    # Counts repeat exactly, so one round is the figure; a smoke run (one
    # round, as bench.inprocess reads it) counts a few requests of one kind.
    smoke = config.rounds <= 1
    requests = 20 if smoke else 1000
    work = config.work / "instructions"
    kinds = list(enumerate(KINDS))[:1] if smoke else list(enumerate(KINDS))
    # The runs are single-threaded: as many at once as there are cores.
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        counts = {(index, side, n): pool.submit(count, side, index, n, work / f"{side}-{index}-{n}")
                  for index, _ in kinds for side in ("plain", "kernkoa") for n in (0, requests)}
        results = []
        for index, (name, *_) in kinds:
            comparison = Comparison(f"1. {name}, instructions per request", "kernkoa",
                                    "plain", higher_is_better=False, unit="instr")
            for side in ("plain", "kernkoa"):
                # Both runs share start-up and warm-up: the difference is the requests.
                measured = counts[index, side, requests].result() - counts[index, side, 0].result()
                comparison.add(side, measured / requests)
            results.append(comparison)
    return results


def _serve(side: str, kind: int, requests: int, work: Path, files: int = 1) -> None:
    """The counted process: build one side's app, warm up, send ``requests`` requests
    (KernKoa on ``files`` controller files: every one loaded first, then one
    after the other)."""
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as folder:
        name, method, plain_path, rest, query, body = KINDS[kind]
        data = json.dumps(body).encode() if body is not None else b""
        if side == "plain":
            from .plain_app import app as plain

            call = caller(plain, environ(plain_path, query, method, data), data)
        else:
            from kernel import create_app

            catalog = write_catalog(Path(folder) / "catalog", files)
            kernkoa = create_app({"CATALOG": str(catalog), "VAR": str(Path(folder) / "var")})
            calls = [caller(kernkoa, environ(f"{module_path(n)}/{rest}", query, method, data),
                            data) for n in range(files)]
            for each in calls[1:]:
                each()  # loads the file: start-up, not a request
            call = calls[0] if files == 1 else _rotating(calls)
        for _ in range(WARMUP + requests):
            call()


def _rotating(calls: list[t.Callable[[], bytes]]) -> t.Callable[[], bytes]:
    """One call that sends each request of ``calls`` in turn."""
    turn = itertools.cycle(calls)

    def call() -> bytes:
        return next(turn)()
    return call


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.instructions SIDE KIND REQUESTS WORK``: one counted process."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("side", choices=["plain", "kernkoa"])
    parser.add_argument("kind", type=int)
    parser.add_argument("requests", type=int)
    parser.add_argument("work", type=Path)
    parser.add_argument("--files", type=int, default=1,
                        help="controller files in KernKoa's catalog (part 2: 1000)")
    args = parser.parse_args(argv)
    _serve(args.side, args.kind, args.requests, args.work, args.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())

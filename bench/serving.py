"""Part 7: latency and steadiness under steady load through the shipped nginx and uWSGI.

``setup.sh --no-systemd`` installs KernKoa into the scratch folder as a user would,
with the shipped settings (``kernkoa_uwsgi.ini``'s processes, threads, harakiri and
recycling, the private nginx ``setup.sh`` writes) and the embedded broker. wrk then
asks nginx for a controller page over kept-alive connections, two per uWSGI worker
so the workers are never idle, for ``config.steady`` seconds; ``steady.lua`` counts
the answers of every wall-clock second. Figures: the 99th percentile latency against
the median (target p99 <= 5 x p50), and the slowest whole second against the median
second (target >= 0.5: no second with fewer than half the median requests).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import typing as t
from dataclasses import dataclass
from pathlib import Path

from .config import RunConfig
from .servers import ROOT
from .servers import free_port
from .servers import wait_for_http
from .stats import Comparison
from .wrk import WrkError

#: The shipped controller page wrk asks for.
PAGE = "/fasthelloworld/fastHelloClass/fastHelloWorld"

#: The wrk script counting answers per second.
SCRIPT = Path(__file__).with_name("steady.lua")

#: wrk connections per uWSGI worker process.
CONNECTIONS_PER_WORKER = 2


@dataclass(frozen=True)
class SteadyRun:
    """What one wrk run through nginx measured."""

    p50_ms: float
    p99_ms: float
    requests: int
    #: Answers of every whole second (the partial first and last left out).
    per_second: list[int]


def _setup(prefix: Path, *args: str) -> None:
    """Run setup.sh for ``prefix`` with the shipped defaults (no KERNKOA_* of ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNKOA_")}
    done = subprocess.run(["bash", str(ROOT / "setup.sh"), "--prefix", str(prefix), *args],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"setup.sh {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


@contextlib.contextmanager
def installed(work: Path) -> t.Iterator[tuple[str, int]]:
    """An install made by ``setup.sh --no-systemd``: its base URL and uWSGI's process count."""
    prefix = work / "kk"  # short: the uWSGI socket's path in it has 102 bytes at most
    port = free_port()
    try:
        _setup(prefix, "--port", str(port), "--no-systemd")
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + PAGE)
        env = dict(line.split("=", 1) for line in
                   (prefix / "etc/kernkoa.env").read_text().splitlines() if line)
        yield base, int(env["KERNKOA_PROCESSES"])
    finally:
        if prefix.exists():
            _setup(prefix, "--stop")


def steady_run(base: str, seconds: float, connections: int) -> SteadyRun:
    """wrk with ``steady.lua`` against ``base``; fail on any error or non-200 answer."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "-s", str(SCRIPT), base + PAGE]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    line = next((row for row in done.stdout.splitlines() if row.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stdout}{done.stderr}")
    result = json.loads(line.removeprefix("RESULT "))
    if result["socket_errors"] or set(result["statuses"]) != {"200"}:
        raise WrkError(f"errors through nginx: {result['socket_errors']} socket errors, "
                       f"statuses {result['statuses']}")
    seconds_seen = sorted(result["per_second"].items(), key=lambda item: int(item[0]))
    return SteadyRun(p50_ms=result["p50"] / 1000, p99_ms=result["p99"] / 1000,
                     requests=result["requests"],
                     per_second=[count for _, count in seconds_seen[1:-1]])


def run(config: RunConfig) -> list[Comparison]:
    """Measure part 7; return the latency and the steadiness comparisons."""
    latency = Comparison("7. p99 vs p50, steady load through nginx", "p99", "p50",
                         higher_is_better=False, unit="ms")
    steadiness = Comparison("7. slowest second vs median second", "slowest", "median")
    with installed(config.work / "srv") as (base, processes):
        connections = CONNECTIONS_PER_WORKER * processes
        if config.warmup > 0:
            # Every worker loads the controller before the figures count.
            steady_run(base, config.warmup, connections)
        found = steady_run(base, config.steady, connections)
    latency.add("p99", found.p99_ms)
    latency.add("p50", found.p50_ms)
    if found.per_second:
        steadiness.add("slowest", min(found.per_second))
        steadiness.add("median", statistics.median(found.per_second))
    return [latency, steadiness]

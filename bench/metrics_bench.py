"""Part 8: what METRICS costs a controller GET, on against off, side by side.

Three uWSGI servers on the same one-file catalog and settings (threads enabled,
as shipped: the thread that writes the batched counts runs): METRICS off,
METRICS off again (the same server twice: the noise floor, against which "off
costs nothing" is read, since off installs no hook at all), and METRICS on
(every request counted, timed and held in flight in the multiprocess files).
Each round drives them in turn with wrk (A B C A B C ...). Targets: on at
least 0.95 of off; off against off at 1.0 within the noise.

The same GET is also timed in this process, no server: an app with METRICS on
against one with it off, batches alternated, the least µs per request of each
(what other processes on the machine disturbed least).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .inprocess import caller
from .inprocess import environ
from .inprocess import paired_minimum
from .servers import uwsgi
from .stats import Comparison
from .wrk import Load
from .wrk import run_wrk
from .wrk import run_wrk_counted

#: The three sides: name and METRICS.
SIDES = {"off": "false", "off-again": "false", "on": "true"}


def run(config: RunConfig) -> list[Comparison]:
    """Measure part 8; return the throughput and worker-CPU comparisons."""
    work = config.work / "metrics"
    catalog = write_catalog(work / "catalog", 1)
    path = f"{module_path(0)}/Bench/hello"
    load = Load("metrics-get", (path,), "GET", None)
    on = Comparison("13. GET, METRICS on vs off", "on", "off")
    noise = Comparison("13. GET, METRICS off vs off", "off-again", "off")
    cpu = Comparison("13. GET, METRICS on vs off, worker CPU per request", "on", "off",
                     higher_is_better=False, unit="us")
    with contextlib.ExitStack() as stack:
        servers = {side: stack.enter_context(uwsgi(
            f"metrics-{side}", "kernkoa", path, work / "logs", config.processes,
            env={"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": str(work / f"var-{side}"),
                 "KERNKOA_METRICS": metrics}, enable_threads=True))
            for side, metrics in SIDES.items()}
        for server in servers.values() if config.warmup > 0 else ():
            run_wrk(server.base, load, work / "wrk", config.warmup, config.connections)
        for _ in range(config.rounds):
            for side, server in servers.items():
                used = server.worker_cpu_seconds()
                rps, answered = run_wrk_counted(server.base, load, work / "wrk",
                                                config.duration, config.connections)
                used = server.worker_cpu_seconds() - used
                for comparison in (on, noise, cpu):
                    comparison.add(side, rps if comparison is not cpu
                                   else used / max(answered, 1) * 1e6)
    return [on, noise, cpu, in_process(config, catalog, path)]


def in_process(config: RunConfig, catalog: Path, path: str) -> Comparison:
    """µs per GET in this process, METRICS on vs off."""
    from kernel import create_app

    requests, batches = (100, 2) if config.rounds <= 1 else (500, 20)
    calls = {side: caller(create_app({"CATALOG": str(catalog), "METRICS": metrics,
                                      "VAR": str(config.work / "metrics" / f"var-in-{side}")}),
                          environ(path), b"")
             for side, metrics in (("off", False), ("on", True))}
    comparison = Comparison("13. GET in one process, METRICS on vs off", "on", "off",
                            higher_is_better=False, unit="us")
    for _ in range(config.rounds):
        on_us, off_us = paired_minimum(calls["on"], calls["off"], requests, batches)
        comparison.add("on", on_us)
        comparison.add("off", off_us)
    return comparison

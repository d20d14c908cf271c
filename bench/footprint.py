"""Part 5: start-up time and resident memory per worker, KernKoa vs the plain Flask app.

Start-up is the time from spawning uWSGI to the first 200 answer (KernKoa
builds its app and loads the controller on that first request). Memory is
each worker's resident set size after a warm-up load.
"""

from __future__ import annotations

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .servers import uwsgi
from .stats import Comparison
from .wrk import Load
from .wrk import run_wrk


def run(config: RunConfig) -> list[Comparison]:
    """Measure part 5; return the start-up and memory comparisons."""
    work = config.work / "footprint"
    catalog = write_catalog(work / "catalog-1", 1)
    startup = Comparison("5. start-up to first 200", "kernkoa", "plain",
                         higher_is_better=False, unit="ms")
    memory = Comparison("5. RSS per worker", "kernkoa", "plain",
                        higher_is_better=False, unit="MiB")
    sides = {
        "plain": ("bench.plain_app", "/hello", {}),
        "kernkoa": ("kernkoa", f"{module_path(0)}/Bench/hello",
                    {"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": f"{work}/var"}),
    }
    for _ in range(config.rounds):
        for side, (module, path, env) in sides.items():
            with uwsgi(side, module, path, work / "logs", config.processes, env=env) as server:
                startup.add(side, server.startup * 1000)
                # RSS after serving, not just after start-up.
                run_wrk(server.base, Load(f"warm-{side}", (path,)), work / "wrk",
                        max(config.warmup, 1.0), config.connections)
                rss = server.worker_rss_kib()
                memory.add(side, max(rss) / 1024)
    return [startup, memory]

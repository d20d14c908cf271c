"""Part 9: a catalog method vs a hand-written Flask route, both behind nginx.

The production shape (:mod:`bench.proxied`): nginx in front, the uwsgi protocol
over a unix socket, clients kept alive, so no TCP connect per request dilutes
the difference as in parts 1 and 2. Two servers, the plain Flask app and
KernKoa on a catalog of one file, driven in turn each round (A B A B ...).
"""

from __future__ import annotations

import contextlib

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .dispatch_bench import KINDS
from .proxied import behind_nginx
from .stats import Comparison
from .wrk import Load
from .wrk import run_wrk
from .wrk import run_wrk_counted


def run(config: RunConfig) -> list[Comparison]:
    """Measure part 9; return requests/s and worker CPU per request, per kind of request."""
    work = config.work / "nginx"
    catalog = write_catalog(work / "catalog-1", 1)
    scripts = work / "wrk"
    sides = {
        "plain": [Load(f"nginx-plain{i}", (plain,), method, body)
                  for i, (_, method, plain, _, body) in enumerate(KINDS)],
        "kernkoa": [Load(f"nginx-one{i}", (f"{module_path(0)}/{rest}",), method, body)
                    for i, (_, method, _, rest, body) in enumerate(KINDS)],
    }
    rates = [Comparison(f"9. {name}, behind nginx", "kernkoa", "plain") for name, *_ in KINDS]
    cpu = [Comparison(f"9. {name}, behind nginx, worker CPU per request", "kernkoa", "plain",
                      higher_is_better=False, unit="us") for name, *_ in KINDS]
    with contextlib.ExitStack() as stack:
        servers = {
            "plain": stack.enter_context(behind_nginx(
                "plain", "bench.plain_app", "/hello", work / "plain", config.processes)),
            "kernkoa": stack.enter_context(behind_nginx(
                "kernkoa", "kernkoa", f"{module_path(0)}/Bench/hello", work / "kernkoa",
                config.processes,
                env={"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": f"{work}/var"})),
        }
        for side, server in servers.items():
            for load in sides[side] if config.warmup > 0 else ():
                run_wrk(server.base, load, scripts, config.warmup, config.connections,
                        kept_alive=True)
        for _ in range(config.rounds):
            for index in range(len(KINDS)):
                for side, server in servers.items():
                    used = server.worker_cpu_seconds()
                    rps, answered = run_wrk_counted(server.base, sides[side][index], scripts,
                                                    config.duration, config.connections,
                                                    kept_alive=True)
                    used = server.worker_cpu_seconds() - used
                    rates[index].add(side, rps)
                    cpu[index].add(side, used / max(answered, 1) * 1e6)
    return rates + cpu

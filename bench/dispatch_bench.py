"""Parts 1 and 2: a catalog method vs a hand-written Flask route, and 1,000 files vs 1.

Three uWSGI servers run at once with the same settings: the plain Flask app,
KernKoa on a catalog of one controller file, and KernKoa on a catalog of
``files`` controller files. Each round drives each of them in turn with wrk
(A B C A B C ...), so slow drifts of the machine hit every side alike.
"""

from __future__ import annotations

import contextlib

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .servers import uwsgi
from .stats import Comparison
from .wrk import Load
from .wrk import run_wrk
from .wrk import run_wrk_counted

#: Query and JSON fields of the parameterised requests.
QUERY = "a=x&b=y&c=z"
BODY = {"a": 7, "b": "text", "c": True}

#: (name, method, plain path, catalog method and query, JSON body)
KINDS = [
    ("GET, no params", "GET", "/hello", "Bench/hello", None),
    ("GET, 3 query params", "GET", f"/greet?{QUERY}", f"Bench/greet?{QUERY}", None),
    ("POST, JSON body", "POST", "/echo", "Bench/echo", BODY),
]


def run(config: RunConfig) -> list[Comparison]:
    """Measure parts 1 and 2; return one comparison per case."""
    work = config.work / "dispatch"
    small = write_catalog(work / "catalog-1", 1)
    large = write_catalog(work / "catalog-many", config.files)
    logs = work / "logs"
    scripts = work / "wrk"
    sides = {
        "plain": [Load(f"plain{i}", (plain,), method, body)
                  for i, (_, method, plain, _, body) in enumerate(KINDS)],
        "kernkoa": [Load(f"one{i}", (f"{module_path(0)}/{rest}",), method, body)
                    for i, (_, method, _, rest, body) in enumerate(KINDS)],
        f"kernkoa@{config.files}": [
            Load(f"many{i}", tuple(f"{module_path(n)}/{rest}" for n in range(config.files)),
                 method, body)
            for i, (_, method, _, rest, body) in enumerate(KINDS)],
    }
    part1 = [Comparison(f"1. {name}", "kernkoa", "plain") for name, *_ in KINDS]
    # CPU time the workers spent per answered request: what the server's own
    # code costs, barely moved by other processes competing for the cores.
    cpu = [Comparison(f"1. {name}, worker CPU per request", "kernkoa", "plain",
                      higher_is_better=False, unit="us") for name, *_ in KINDS]
    part2 = [Comparison(f"2. {name} ({config.files} vs 1 files)", f"kernkoa@{config.files}",
                        "kernkoa") for name, *_ in KINDS]
    with contextlib.ExitStack() as stack:
        servers = {
            "plain": stack.enter_context(uwsgi("plain", "bench.plain_app", "/hello", logs,
                                               config.processes)),
            "kernkoa": stack.enter_context(uwsgi(
                "kernkoa-1", "kernkoa", f"{module_path(0)}/Bench/hello", logs,
                config.processes, env=_env(small, work))),
            f"kernkoa@{config.files}": stack.enter_context(uwsgi(
                "kernkoa-many", "kernkoa", f"{module_path(0)}/Bench/hello", logs,
                config.processes, env=_env(large, work))),
        }
        # Warm-up: every worker builds its app and loads every controller file.
        for side, server in servers.items():
            for load in sides[side] if config.warmup > 0 else ():
                run_wrk(server.base, load, scripts, config.warmup, config.connections)
        for _ in range(config.rounds):
            for index in range(len(KINDS)):
                for side, server in servers.items():
                    used = server.worker_cpu_seconds()
                    rps, answered = run_wrk_counted(server.base, sides[side][index], scripts,
                                                    config.duration, config.connections)
                    used = server.worker_cpu_seconds() - used
                    part1[index].add(side, rps)
                    part2[index].add(side, rps)
                    cpu[index].add(side, used / max(answered, 1) * 1e6)
    return part1 + cpu + part2


def _env(catalog: object, work: object) -> dict[str, str]:
    # Production-like settings: reloading stays on (one stat per request).
    return {"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": f"{work}/var"}

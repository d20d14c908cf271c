"""Part 10: a soak, KernKoa behind nginx under load for a minute and more.

KernKoa runs behind nginx (:mod:`bench.proxied`) on a catalog of ``files``
controller files; wrk asks, over kept-alive connections, for the three kinds of
request of part 1 in turn, each rotating over every file (so every module,
binder and cache entry is in use). After a warm-up of a fifth as many requests,
each worker's resident memory is read; then the load runs for ``steady`` seconds,
and on until at least ``soak_requests`` were answered; then memory is read
again. Any error (a socket error, a closed connection, an answer other than
2xx) fails the run. Targets: no error, and no worker grown by more than 1 MiB.
"""

from __future__ import annotations

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .dispatch_bench import KINDS
from .proxied import behind_nginx
from .stats import Comparison
from .wrk import Load
from .wrk import run_wrk_counted

#: Requests answered before the first memory reading, per request of the soak.
WARMUP_SHARE = 0.2

#: Seconds of each wrk run (each kind of request in turn).
STEP = 10.0


def _serve(base: str, loads: list[Load], config: RunConfig, seconds: float,
           at_least: int) -> int:
    """Drive ``loads`` in turn for ``seconds`` at least, then until ``at_least``
    answers; how many were answered. Any error raises :class:`bench.wrk.WrkError`.

    Every wrk run starts at the first path of its load's rotation, so each lasts
    :data:`STEP` seconds (a tenth of the steady time in a smoke run): a short one
    would never reach the last files of the catalog.
    """
    answered = 0
    spent = 0.0
    scripts = config.work / "soak" / "wrk"
    step = max(1.0, min(STEP, config.steady / 10))
    while spent < seconds or answered < at_least:
        for load in loads:
            answered += run_wrk_counted(base, load, scripts, step, config.connections,
                                        kept_alive=True)[1]
            spent += step
    return answered


def run(config: RunConfig) -> list[Comparison]:
    """Measure part 10; return the memory comparison and the requests answered."""
    work = config.work / "soak"
    catalog = write_catalog(work / "catalog", config.files)
    loads = [Load(f"soak{i}", tuple(f"{module_path(n)}/{rest}" for n in range(config.files)),
                  method, body)
             for i, (_, method, _, rest, body) in enumerate(KINDS)]
    memory = Comparison("10. soak, RSS of the most grown worker", "after", "before",
                        higher_is_better=False, unit="MiB")
    second_half = Comparison("10. soak, RSS of that worker, end vs halfway", "after",
                             "halfway", higher_is_better=False, unit="MiB")
    answered = Comparison("10. soak, requests answered without error", "soak", "warm-up",
                          unit="req")
    with behind_nginx("kernkoa", "kernkoa", f"{module_path(0)}/Bench/hello", work / "server",
                      config.processes,
                      env={"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": f"{work}/var"}
                      ) as server:
        warm = _serve(server.base, loads, config, 0,
                      round(config.soak_requests * WARMUP_SHARE))
        before = dict(zip(server.worker_pids(), server.worker_rss_kib(), strict=True))
        # Read halfway too: a leak grows in both halves, a cache filling up in the first.
        soaked = _serve(server.base, loads, config, config.steady / 2, config.soak_requests // 2)
        halfway = dict(zip(server.worker_pids(), server.worker_rss_kib(), strict=True))
        soaked += _serve(server.base, loads, config, config.steady / 2,
                         config.soak_requests - soaked)
        after = dict(zip(server.worker_pids(), server.worker_rss_kib(), strict=True))
    if not set(before) == set(halfway) == set(after):
        raise RuntimeError(f"uWSGI replaced workers during the soak: {before} -> {after}")
    grown = max(before, key=lambda pid: after[pid] - before[pid])
    memory.add("after", after[grown] / 1024)
    memory.add("before", before[grown] / 1024)
    memory.add("halfway", halfway[grown] / 1024)
    second_half.add("after", after[grown] / 1024)
    second_half.add("halfway", halfway[grown] / 1024)
    answered.add("soak", soaked)
    answered.add("warm-up", warm)
    return [memory, second_half, answered]

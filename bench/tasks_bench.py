"""Parts 3 and 4: ``_celery`` triggers and ``/status`` vs hand-written Celery routes.

Part 4 runs first, with one worker per side (prefork, one child, same flags):
the round trip of a trivial task, KernKoa's trigger then ``/status`` until
SUCCESS vs raw ``apply_async().get()``, on Redis, and KernKoa's trip on the
embedded default broker. KernKoa's client is measured three ways, trip by
trip in turn (:data:`CLIENTS`). The workers are then stopped, and part 3
drives the triggers (queues emptied after each run) and the status routes (on
tasks that succeeded in part 4) with wrk.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
import typing as t
import urllib.request
from pathlib import Path

import redis

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .servers import BIN
from .servers import celery_worker
from .servers import redis_server
from .servers import uwsgi
from .stats import Comparison
from .wrk import Load
from .wrk import run_wrk

TRIGGER = f"{module_path(0)}/Bench/ping_celery"
WORKER_FLAGS = ["--without-mingle", "--without-gossip", "--without-heartbeat",
                "--pool=prefork", "--concurrency=1", "--loglevel=INFO"]  # "ready" is an INFO line

#: Embedded round-trip target, in ms.
EMBEDDED_TARGET_MS = 250.0

#: Seconds between two polls of /status, and the longest a trip may take.
POLL_INTERVAL = 0.002
TRIP_TIMEOUT = 15.0


def _post(url: str, headers: dict[str, str] | None = None) -> dict[str, t.Any]:
    request = urllib.request.Request(url, data=b"", method="POST",
                                     headers={"Accept": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return t.cast(dict[str, t.Any], json.loads(response.read()))


def _get(url: str) -> dict[str, t.Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return t.cast(dict[str, t.Any], json.loads(response.read()))


#: How KernKoa's client follows a task: poll ``/status`` every
#: :data:`POLL_INTERVAL`, ask once with ``?wait=`` (a long poll), or send the
#: trigger with ``Prefer: wait=`` (the result comes with the trigger's answer).
CLIENTS = ("polling", "?wait=", "Prefer: wait")


def kernkoa_trip(base: str, client: str = "polling") -> tuple[float, str]:
    """Trigger the trivial task and follow it to SUCCESS; return (ms, task id)."""
    started = time.perf_counter()
    prefer = {"Prefer": f"wait={round(TRIP_TIMEOUT)}"} if client == "Prefer: wait" else {}
    answer = _post(base + TRIGGER, prefer)
    task_id = answer["id"]
    url = f"{base}/status/{task_id}" + (f"?wait={TRIP_TIMEOUT}" if client == "?wait=" else "")
    deadline = time.monotonic() + TRIP_TIMEOUT
    while answer["status"] != "SUCCESS" and _get(url)["status"] != "SUCCESS":
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} not done within {TRIP_TIMEOUT} s")
        time.sleep(POLL_INTERVAL)
    return (time.perf_counter() - started) * 1000, task_id


def _kernkoa_env(catalog: Path, var: Path, broker: str = "") -> dict[str, str]:
    return {"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": str(var),
            "KERNKOA_BROKER_URL": broker}


def run(config: RunConfig) -> list[Comparison]:
    """Measure parts 3 and 4."""
    work = config.work / "tasks"
    catalog = write_catalog(work / "catalog-1", 1)
    logs = work / "logs"
    results = _redis_parts(config, work, catalog, logs)
    results.extend(_embedded_trips(config, work, catalog, logs))
    return results


def _redis_parts(config: RunConfig, work: Path, catalog: Path,
                 logs: Path) -> list[Comparison]:
    trips = _trip_comparisons("Redis", "raw celery")
    trigger = Comparison("3. trigger vs apply_async route", "kernkoa", "plain")
    status = Comparison("3. /status vs AsyncResult.state", "kernkoa", "plain")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server(logs))
        kk_url, plain_url = url[:-1] + "0", url[:-1] + "1"
        kk_env = _kernkoa_env(catalog, work / "var-redis", kk_url)
        plain_env = {"BENCH_REDIS_URL": plain_url}
        kk = stack.enter_context(uwsgi("kernkoa-tasks", "kernkoa",
                                       f"{module_path(0)}/Bench/hello", logs,
                                       config.processes, env=kk_env))
        plain = stack.enter_context(uwsgi("plain-tasks", "bench.plain_tasks", "/hello", logs,
                                          config.processes, env=plain_env))
        workers = contextlib.ExitStack()
        with workers:
            workers.enter_context(celery_worker(
                "kernkoa-worker", [str(BIN / "kernkoa"), "worker", *WORKER_FLAGS], logs,
                env=kk_env))
            workers.enter_context(celery_worker(
                "plain-worker", [str(BIN / "celery"), "-A", "bench.plain_tasks:celery", "worker",
                                 *WORKER_FLAGS], logs, env=plain_env))
            from .plain_tasks import make_celery
            client = make_celery(plain_url)
            try:
                ping = client.tasks["bench.ping"]
                kk_id, plain_id = _round_trips(config, trips, kk.base, ping)
            finally:
                client.close()
        loads = {
            "trigger": (Load("kk-trigger", (TRIGGER,), "POST"),
                        Load("plain-trigger", ("/trigger",), "POST")),
            "status": (Load("kk-status", (f"/status/{kk_id}",)),
                       Load("plain-status", (f"/state/{plain_id}",))),
        }
        queues = {"kernkoa": redis.Redis.from_url(kk_url), "plain": redis.Redis.from_url(plain_url)}
        scripts = work / "wrk"
        for kind in loads.values() if config.warmup > 0 else ():
            run_wrk(kk.base, kind[0], scripts, config.warmup, config.connections)
            run_wrk(plain.base, kind[1], scripts, config.warmup, config.connections)
        _drain(queues)
        for _ in range(config.rounds):
            for name, comparison in (("trigger", trigger), ("status", status)):
                kk_load, plain_load = loads[name]
                comparison.add("kernkoa", run_wrk(kk.base, kk_load, scripts, config.duration,
                                                  config.connections))
                _drain(queues)
                comparison.add("plain", run_wrk(plain.base, plain_load, scripts,
                                                config.duration, config.connections))
                _drain(queues)
        for connection in queues.values():
            connection.close()
    return [trigger, status, *trips.values()]


def _drain(queues: dict[str, redis.Redis]) -> None:
    # Nobody consumes the queue in part 3: empty it so Redis does not grow.
    for connection in queues.values():
        connection.delete("celery")


def _trip_comparisons(where: str, baseline: str) -> dict[str, Comparison]:
    return {client: Comparison(f"4. task round trip, {where}, {client}", "kernkoa", baseline,
                               higher_is_better=False, unit="ms") for client in CLIENTS}


def _measure_trips(config: RunConfig, base: str, trips: dict[str, Comparison],
                   baseline: t.Callable[[], float]) -> str:
    """Trips of every client and of the baseline in turn, medians per round;
    return the id of a task that succeeded."""
    for _ in range(3):  # warm-up: connections, pools, first loads
        for client in CLIENTS:
            kernkoa_trip(base, client)
        baseline()
    task_id = ""
    for _ in range(config.rounds):
        ours: dict[str, list[float]] = {client: [] for client in CLIENTS}
        theirs = []
        for _ in range(config.trips):
            for client in CLIENTS:
                ms, task_id = kernkoa_trip(base, client)
                ours[client].append(ms)
            theirs.append(baseline())
        for client, comparison in trips.items():
            comparison.add("kernkoa", statistics.median(ours[client]))
            comparison.add(comparison.baseline, statistics.median(theirs))
    return task_id


def _round_trips(config: RunConfig, trips: dict[str, Comparison], base: str,
                 ping: t.Any) -> tuple[str, str]:
    """Measure the Redis trips; return a succeeded task id of each side, for part 3."""
    done: list[str] = []

    def raw_trip() -> float:
        started = time.perf_counter()
        result = ping.apply_async()
        result.get(timeout=TRIP_TIMEOUT)
        done.append(result.id)
        return (time.perf_counter() - started) * 1000

    kk_id = _measure_trips(config, base, trips, raw_trip)
    return kk_id, done[-1]


def _embedded_trips(config: RunConfig, work: Path, catalog: Path,
                    logs: Path) -> list[Comparison]:
    trips = _trip_comparisons("embedded", "target")
    env = _kernkoa_env(catalog, work / "var-embedded")
    with contextlib.ExitStack() as stack:
        kk = stack.enter_context(uwsgi("kernkoa-embedded", "kernkoa",
                                       f"{module_path(0)}/Bench/hello", logs,
                                       config.processes, env=env))
        stack.enter_context(celery_worker(
            "embedded-worker", [str(BIN / "kernkoa"), "worker", *WORKER_FLAGS], logs, env=env))
        _measure_trips(config, kk.base, trips, lambda: EMBEDDED_TARGET_MS)
    return list(trips.values())

"""Parts 3 and 4: ``_celery`` triggers and ``/status`` vs hand-written Celery routes.

Part 4 runs first, with one worker per side (prefork, one child, same flags):
the round trip of a trivial task, KernKoa's trigger then ``/status`` until
SUCCESS vs raw ``apply_async().get()``, on Redis, and KernKoa's trip on the
embedded default broker. KernKoa's client is measured two ways, trip by trip
in turn: polling every 2 ms, and one long poll (``?wait=``). The workers are
then stopped, and part 3 drives the triggers (queues emptied after each run)
and the status routes (on tasks that succeeded in part 4) with wrk.
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


def _post(url: str) -> dict[str, t.Any]:
    request = urllib.request.Request(url, data=b"", method="POST",
                                     headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return t.cast(dict[str, t.Any], json.loads(response.read()))


def _get(url: str) -> dict[str, t.Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return t.cast(dict[str, t.Any], json.loads(response.read()))


def kernkoa_trip(base: str, long_poll: bool = False) -> tuple[float, str]:
    """Trigger the trivial task, then poll ``/status`` to SUCCESS; return (ms, task id).

    Polls every :data:`POLL_INTERVAL`, or with ``long_poll`` asks once with
    ``?wait=`` (the server answers when the task is done).
    """
    started = time.perf_counter()
    task_id = _post(base + TRIGGER)["id"]
    url = f"{base}/status/{task_id}" + (f"?wait={TRIP_TIMEOUT}" if long_poll else "")
    deadline = time.monotonic() + TRIP_TIMEOUT
    while _get(url)["status"] != "SUCCESS":
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
    trip = Comparison("4. task round trip, Redis, polling", "kernkoa", "raw celery",
                      higher_is_better=False, unit="ms")
    long_trip = Comparison("4. task round trip, Redis, ?wait=", "kernkoa", "raw celery",
                           higher_is_better=False, unit="ms")
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
                kk_id, plain_id = _round_trips(config, trip, long_trip, kk.base, ping)
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
    return [trigger, status, trip, long_trip]


def _drain(queues: dict[str, redis.Redis]) -> None:
    # Nobody consumes the queue in part 3: empty it so Redis does not grow.
    for connection in queues.values():
        connection.delete("celery")


def _round_trips(config: RunConfig, trip: Comparison, long_trip: Comparison, base: str,
                 ping: t.Any) -> tuple[str, str]:
    """Measure the trips (polling, long poll, raw in turn); return a succeeded
    task id of each side, for part 3."""
    for _ in range(3):  # warm-up: connections, pools, first loads
        kk_id = kernkoa_trip(base)[1]
        kernkoa_trip(base, long_poll=True)
        plain_id = ping.apply_async().get(timeout=TRIP_TIMEOUT) and ""
    for _ in range(config.rounds):
        polled, waited, raw = [], [], []
        for _ in range(config.trips):
            ms, kk_id = kernkoa_trip(base)
            polled.append(ms)
            waited.append(kernkoa_trip(base, long_poll=True)[0])
            started = time.perf_counter()
            result = ping.apply_async()
            result.get(timeout=TRIP_TIMEOUT)
            raw.append((time.perf_counter() - started) * 1000)
            plain_id = result.id
        for comparison, ours in ((trip, polled), (long_trip, waited)):
            comparison.add("kernkoa", statistics.median(ours))
            comparison.add("raw celery", statistics.median(raw))
    return kk_id, plain_id


def _embedded_trips(config: RunConfig, work: Path, catalog: Path,
                    logs: Path) -> list[Comparison]:
    trip = Comparison("4. task round trip, embedded, polling", "kernkoa", "target",
                      higher_is_better=False, unit="ms")
    long_trip = Comparison("4. task round trip, embedded, ?wait=", "kernkoa", "target",
                           higher_is_better=False, unit="ms")
    env = _kernkoa_env(catalog, work / "var-embedded")
    with contextlib.ExitStack() as stack:
        kk = stack.enter_context(uwsgi("kernkoa-embedded", "kernkoa",
                                       f"{module_path(0)}/Bench/hello", logs,
                                       config.processes, env=env))
        stack.enter_context(celery_worker(
            "embedded-worker", [str(BIN / "kernkoa"), "worker", *WORKER_FLAGS], logs, env=env))
        for _ in range(3):
            kernkoa_trip(kk.base)
            kernkoa_trip(kk.base, long_poll=True)
        for _ in range(config.rounds):
            polled, waited = [], []
            for _ in range(config.trips):
                polled.append(kernkoa_trip(kk.base)[0])
                waited.append(kernkoa_trip(kk.base, long_poll=True)[0])
            for comparison, ours in ((trip, polled), (long_trip, waited)):
                comparison.add("kernkoa", statistics.median(ours))
                comparison.add("target", EMBEDDED_TARGET_MS)
    return [trip, long_trip]

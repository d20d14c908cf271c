"""Part 12: tasks drained per second by one worker of 2 processes, KernKoa vs plain Celery.

Each round, for each side in turn: with no worker running, wrk sends triggers
for ``duration`` seconds (KernKoa's ``_celery`` route, the plain app's
``apply_async`` route), which fills the side's queue on Redis; then one worker
starts (prefork, 2 processes, the same flags both sides) and drains it. The
figure is the messages queued over the time from the first one taken to the
last one acknowledged (the queue and the unacknowledged table both empty),
so the worker's start-up does not count. KernKoa's worker runs the catalog
method with its guarantees on (late acknowledgement, prefetch 1, the STARTED
record, leases); the plain one Celery's defaults. Target: >= 0.95.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import redis

from kernel.tasks.leases import INFLIGHT_KEY

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .servers import BIN
from .servers import ROOT
from .servers import children
from .servers import cpu_seconds
from .servers import redis_server
from .servers import stop
from .servers import uwsgi
from .stats import Comparison
from .wrk import Load
from .wrk import run_wrk_counted

TRIGGER = f"{module_path(0)}/Bench/ping_celery"
# The bench's tasks set no priority: on Redis they all wait in the plain queue key (priority 0).
QUEUE = "celery"
FLAGS = ["--without-mingle", "--without-gossip", "--without-heartbeat", "--pool=prefork",
         "--concurrency=2", "--loglevel=INFO"]

#: The longest one drain may take.
DRAIN_TIMEOUT = 600.0


class Watch:
    """Tells how many of the tasks sent are not done yet, on a Redis broker, and
    counts the Redis commands it sent to tell (to take them out of a count)."""

    def __init__(self, client: t.Any) -> None:
        self.client = client
        #: Commands sent by :meth:`held` so far.
        self.commands = 0

    def held(self) -> int:
        """Messages on Celery's default queue, or taken by a worker and not acknowledged."""
        keys = self.client.smembers(INFLIGHT_KEY)
        in_flight = sum(self.client.llen(key) for key in keys)
        self.commands += 3 + len(keys)
        return int(self.client.llen(QUEUE) + self.client.hlen("unacked") + in_flight)


@dataclass(frozen=True)
class Drain:
    """What one worker draining a filled queue measured."""

    #: Tasks per second, from the first message taken to the last acknowledged.
    rate: float
    #: CPU time of the worker (main process and pool processes) per task, in µs.
    cpu_us: float
    #: Redis commands per task (``INFO stats``), whoever sent them.
    commands: float


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children."""
    return sum(cpu_seconds(p) for p in (pid, *children(pid)))


def _drain(client: t.Any, command: list[str], log: Path, env: dict[str, str]) -> Drain:
    """Start a worker on the filled queue; what draining it took."""
    queued = int(client.llen(QUEUE))
    if not queued:
        raise RuntimeError("nothing queued to drain")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        # Not bench.servers.celery_worker, which waits for "ready": the queue is
        # watched from the start, so the first message taken is seen at once.
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                                   stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while client.llen(QUEUE) == queued:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker took nothing: {log.read_text()[-2000:]}")
            time.sleep(0.001)
        started = time.monotonic()
        cpu = _tree_cpu(process.pid)
        watch = Watch(client)
        commands = client.info("stats")["total_commands_processed"]
        while watch.held():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{watch.held()} of {queued} tasks left: "
                                   f"{log.read_text()[-2000:]}")
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        cpu = _tree_cpu(process.pid) - cpu
        # Less the watch's own commands and the first INFO.
        commands = (client.info("stats")["total_commands_processed"] - commands
                    - watch.commands - 1)
        return Drain(queued / elapsed, cpu * 1e6 / queued, commands / queued)
    finally:
        stop(process)


def run(config: RunConfig) -> list[Comparison]:
    """Measure part 12; return the drain comparison."""
    work = config.work / "drain"
    catalog = write_catalog(work / "catalog-1", 1)
    logs = work / "logs"
    scripts = work / "wrk"
    drained = Comparison("12. tasks drained by one worker of 2 processes", "kernkoa", "plain",
                         unit="task/s")
    cpu = Comparison("12. worker CPU per task drained", "kernkoa", "plain",
                     higher_is_better=False, unit="us")
    commands = Comparison("12. Redis commands per task drained", "kernkoa", "plain",
                          higher_is_better=False, unit="")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server(logs))
        urls = {"kernkoa": url[:-1] + "0", "plain": url[:-1] + "1"}
        envs = {"kernkoa": {"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": f"{work}/var",
                            "KERNKOA_BROKER_URL": urls["kernkoa"],
                            "KERNKOA_RESULT_BACKEND": urls["kernkoa"]},
                "plain": {"BENCH_REDIS_URL": urls["plain"]}}
        bases = {
            "kernkoa": stack.enter_context(uwsgi("kernkoa-drain", "kernkoa",
                                                 f"{module_path(0)}/Bench/hello", logs,
                                                 config.processes, env=envs["kernkoa"])).base,
            "plain": stack.enter_context(uwsgi("plain-drain", "bench.plain_tasks", "/hello",
                                               logs, config.processes,
                                               env=envs["plain"])).base,
        }
        loads = {"kernkoa": Load("drain-kk", (TRIGGER,), "POST"),
                 "plain": Load("drain-plain", ("/trigger",), "POST")}
        workers = {"kernkoa": [str(BIN / "kernkoa"), "worker", *FLAGS],
                    "plain": [str(BIN / "celery"), "-A", "bench.plain_tasks:celery", "worker",
                              *FLAGS]}
        clients = {side: stack.enter_context(contextlib.closing(redis.Redis.from_url(u)))
                   for side, u in urls.items()}
        # Each server imports Celery and connects on its first trigger: not in the figures.
        for side, base in bases.items():
            run_wrk_counted(base, loads[side], scripts, max(config.warmup, 1.0),
                            config.connections)
            clients[side].delete(QUEUE)
        for _ in range(config.rounds):
            for side in ("kernkoa", "plain"):
                run_wrk_counted(bases[side], loads[side], scripts, config.duration,
                                config.connections)
                found = _drain(clients[side], workers[side], logs / f"{side}-worker.log",
                               envs[side])
                drained.add(side, found.rate)
                cpu.add(side, found.cpu_us)
                commands.add(side, found.commands)
    return [drained, cpu, commands]



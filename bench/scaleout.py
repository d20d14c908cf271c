"""Part 8: scale-out, two ``setup.sh`` nodes on one Redis behind one nginx balancer.

:func:`bench.cluster.cluster` installs the nodes. Then, side by side round by
round, wrk asks for a controller page (kept-alive connections) through a
balancer over node A alone and through one over both nodes: requests per second
with one node and with two.

How far one Redis goes: through the balancer over both nodes, wrk sends
``_celery`` triggers while both nodes' workers drain the queue, and then reads
``/status/<id>`` of a finished task. For each, the rate held here, the
redis-server's CPU time per request (its ``/proc`` times over the run; a
trigger's figure includes the worker's commands for that task, its delivery,
lease and result) and the commands it ran per request (``INFO stats``). One Redis
is one thread: ``1 s / CPU per request`` is the rate at which it would be busy
all the time, the ceiling of a deployment whatever its number of nodes.
"""

from __future__ import annotations

import time
import typing as t

import redis

from .catalog import CONTROLLER
from .cluster import HELLO
from .cluster import Balancer
from .cluster import Cluster
from .cluster import cluster
from .config import RunConfig
from .drain_bench import Watch
from .servers import cpu_seconds
from .stats import Comparison
from .tasks_bench import kernkoa_trip
from .wrk import Load
from .wrk import run_wrk
from .wrk import run_wrk_counted

#: The benchmark controller, deployed to both nodes' catalogs.
CONTROLLER_FILE = "controller/bench/m0000.py"
TRIGGER = "/bench/m0000/Bench/ping_celery"


def _node_rates(config: RunConfig, running: Cluster) -> Comparison:
    """Requests per second through a balancer over two nodes vs over one."""
    rates = Comparison("8. GET through nginx, 2 nodes vs 1", "2 nodes", "1 node")
    one = Balancer(config.work / "balancer-1", running.nodes[:1])
    try:
        load = Load("hello-balanced", (HELLO,))
        bases = {"1 node": one.base, "2 nodes": running.balancer.base}
        scripts = config.work / "scripts"
        if config.warmup > 0:
            for base in bases.values():
                run_wrk(base, load, scripts, config.warmup, config.connections,
                        kept_alive=True)
        for _ in range(config.rounds):
            for side, base in bases.items():
                rates.add(side, run_wrk(base, load, scripts, config.duration,
                                        config.connections, kept_alive=True))
    finally:
        one.stop()
    return rates


def _redis_cost(running: Cluster, client: t.Any,
                run: t.Callable[[Watch], int]) -> tuple[float, float, float]:
    """Run ``run`` (which returns how many requests it made); the requests per
    second, redis-server's CPU µs per request and its commands per request."""
    process = running.redis.process
    if process is None:
        raise RuntimeError("redis-server is not running")
    watch = Watch(client)
    commands = client.info("stats")["total_commands_processed"]
    cpu = cpu_seconds(process.pid)
    started = time.monotonic()
    count = run(watch)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(process.pid) - cpu
    # Less the watch's own commands and the first INFO.
    commands = (client.info("stats")["total_commands_processed"] - commands
                - watch.commands - 1)
    return count / elapsed, cpu * 1e6 / count, commands / count


def _drained(watch: Watch, timeout: float = 300.0) -> None:
    """Wait until every task sent so far has been run and acknowledged."""
    deadline = time.monotonic() + timeout
    while watch.held():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{watch.held()} tasks not done")
        time.sleep(0.05)


def _redis_reach(config: RunConfig, running: Cluster) -> list[Comparison]:
    """Tasks per second and /status reads per second on one Redis, and its CPU per each."""
    client = redis.Redis.from_url(running.redis.url)
    base = running.balancer.base
    scripts = config.work / "scripts"
    # The ratio is the share of one Redis core the rate used.
    tasks = Comparison("8. tasks through 2 nodes vs one Redis's ceiling", "held",
                       "Redis ceiling", unit="task/s")
    reads = Comparison("8. /status reads vs one Redis's ceiling", "held", "Redis ceiling",
                       unit="read/s")
    per_command = Comparison("8. Redis commands per request", "per task", "per read",
                             higher_is_better=False, unit="")
    trigger = Load("trigger-balanced", (TRIGGER,), method="POST")

    def triggered_and_drained(watch: Watch) -> int:
        answered = run_wrk_counted(base, trigger, scripts, config.duration,
                                   config.connections, kept_alive=True)[1]
        _drained(watch)
        return answered

    # One finished task to read; its id signed by the shared key, any node answers.
    task_id = kernkoa_trip(base, "Prefer: wait")[1]
    status = Load("status-balanced", (f"/status/{task_id}",))

    def read(watch: Watch) -> int:
        return run_wrk_counted(base, status, scripts, config.duration, config.connections,
                               kept_alive=True)[1]

    for _ in range(config.rounds):
        rate, cpu, commands = _redis_cost(running, client, triggered_and_drained)
        tasks.add("held", rate)
        tasks.add("Redis ceiling", 1e6 / cpu)
        per_command.add("per task", commands)
        rate, cpu, commands = _redis_cost(running, client, read)
        reads.add("held", rate)
        reads.add("Redis ceiling", 1e6 / cpu)
        per_command.add("per read", commands)
    return [tasks, reads, per_command]


def measure(config: RunConfig, running: Cluster) -> list[Comparison]:
    """Measure part 8 on running nodes; return its comparisons."""
    for node in running.nodes:
        node.deploy(CONTROLLER_FILE, CONTROLLER)
    return [_node_rates(config, running), *_redis_reach(config, running)]


def run(config: RunConfig) -> list[Comparison]:
    """Install two nodes, measure part 8 on them; return its comparisons."""
    with cluster(config.work / "sc", count=2, processes=config.processes) as running:
        return measure(config, running)

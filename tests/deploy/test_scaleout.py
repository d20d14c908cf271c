"""Two nodes, for real: two ``setup.sh --no-systemd`` installs sharing one redis-server
and one secret key, behind one nginx balancing over both (:mod:`bench.cluster`).

The tests share the nodes and run in file order: the last one stops node A in
the middle of a run of tasks.
"""

from __future__ import annotations

import http.client
import json
import time
import typing as t
import urllib.parse
from pathlib import Path
from unittest.mock import ANY

import pytest

from bench import scaleout
from bench.cluster import Cluster
from bench.cluster import Node
from bench.cluster import cluster
from bench.config import RunConfig
from kernel.tasks.leases import WORKERS_KEY
from tests.support.processes import pid_alive
from tests.support.redis_server import RedisServer
from tests.support.steady_load import SteadyLoad

pytestmark = [pytest.mark.uwsgi, pytest.mark.nginx, pytest.mark.redis]

#: The probe controller deployed to both nodes' catalogs.
PROBE = '''
import os
import time

from kernkoa import *

VERSION = {version}


class probe:
    def whoami(self):
        return {{"home": os.environ["KERNKOA_HOME"], "version": VERSION}}

    def work_celery(self, task, n: int, steps: int):
        for step in range(steps):
            task.progress(step + 1, steps)
            time.sleep(0.2)
        return {{"n": n, "home": os.environ["KERNKOA_HOME"], "version": VERSION}}
'''

PROBE_FILE = "controller/scaletest/probe.py"
WHOAMI = "/scaletest/probe/probe/whoami"


def request(base: str, path: str, method: str = "GET") -> tuple[int, t.Any]:
    """One request to ``base`` (a node or the balancer); the status and decoded JSON."""
    address = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def trigger(base: str, n: int, steps: int) -> str:
    """Start a probe task through ``base``; its id."""
    status, body = request(base, f"/scaletest/probe/probe/work_celery?n={n}&steps={steps}",
                           "POST")
    assert status == 202, body
    return t.cast(str, body["id"])


def wait_done(base: str, task_id: str, timeout: float = 90.0) -> dict[str, t.Any]:
    """Poll ``/status/<id>`` through ``base`` until the task is final; its status body."""
    deadline = time.monotonic() + timeout
    body: t.Any = None
    while time.monotonic() < deadline:
        status, body = request(base, f"/status/{task_id}")
        assert status == 200, body
        if body["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return t.cast(dict[str, t.Any], body)
        time.sleep(0.1)
    raise TimeoutError(f"task {task_id} not done through {base}: {body}")


def deploy(nodes: list[Node], version: int) -> None:
    """The same probe file into every node's catalog."""
    for node in nodes:
        node.deploy(PROBE_FILE, PROBE.format(version=version))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Cluster]:
    """Two nodes, one Redis, one balancer; all stopped afterwards."""
    with cluster(tmp_path_factory.mktemp("scale"), count=2, processes=2,
                 redis_factory=RedisServer) as running:
        deploy(running.nodes, 1)
        yield running


def test_each_node_is_its_own_install(nodes: Cluster) -> None:
    a, b = nodes.nodes
    assert (a.catalog / PROBE_FILE).is_file() and (b.catalog / PROBE_FILE).is_file()
    assert a.pid("kernkoa_uwsgi") != b.pid("kernkoa_uwsgi")
    # Each worker has its own node name in the records every worker keeps in Redis.
    client = t.cast(RedisServer, nodes.redis).client()
    deadline = time.monotonic() + 60
    while len(client.smembers(WORKERS_KEY)) < 2:
        assert time.monotonic() < deadline, client.smembers(WORKERS_KEY)
        time.sleep(0.2)
    names = {name.decode() for name in client.smembers(WORKERS_KEY)}
    assert {name.split("@")[0] for name in names} == {
        f"kernkoa-{a.pid('worker')}", f"kernkoa-{b.pid('worker')}"}


def test_the_balancer_reaches_both_nodes(nodes: Cluster) -> None:
    homes = {request(nodes.balancer.base, WHOAMI)[1]["home"] for _ in range(40)}
    assert homes == {str(node.prefix) for node in nodes.nodes}


def test_a_task_triggered_through_a_is_followed_through_b(nodes: Cluster) -> None:
    a, b = nodes.nodes
    task_id = trigger(a.base, 7, 2)
    assert wait_done(b.base, task_id) == {
        "status": "SUCCESS", "data": {"n": 7, "home": ANY, "version": 1}, "request_id": ANY}
    # And through the balancer, whichever node answers.
    assert wait_done(nodes.balancer.base, task_id)["status"] == "SUCCESS"


def test_a_catalog_change_deployed_to_both_is_served_without_restart(nodes: Cluster) -> None:
    masters = [node.pid("kernkoa_uwsgi") for node in nodes.nodes]
    deploy(nodes.nodes, 2)
    for node in nodes.nodes:
        for _ in range(10):
            status, body = request(node.base, WHOAMI)
            assert (status, body) == (200, {"home": str(node.prefix), "version": 2})
    homes = set()
    for _ in range(40):
        status, body = request(nodes.balancer.base, WHOAMI)
        assert (status, body["version"]) == (200, 2)
        homes.add(body["home"])
    assert len(homes) == 2
    # The workers run the new code too.
    task_id = trigger(nodes.balancer.base, 1, 1)
    assert wait_done(nodes.balancer.base, task_id)["data"]["version"] == 2
    assert [node.pid("kernkoa_uwsgi") for node in nodes.nodes] == masters


def test_the_scale_out_benchmark_runs_at_a_tiny_size(nodes: Cluster, tmp_path: Path) -> None:
    # Part 8 of bench.run, which --smoke leaves out since it installs nodes of its own.
    found = scaleout.measure(RunConfig.smoke(tmp_path), nodes)
    assert len(found) == 4
    for comparison in found:
        assert comparison.ratios(), comparison.case
        assert all(value > 0 for side in comparison.samples.values() for value in side)


def test_node_a_stopped_mid_run_loses_nothing(nodes: Cluster) -> None:
    a, b = nodes.nodes
    task_ids = [trigger(a.base, n, 8) for n in range(8)]
    deadline = time.monotonic() + 60
    while not any(request(b.base, f"/status/{task_id}")[1]["status"] == "PROGRESS"
                  for task_id in task_ids):
        assert time.monotonic() < deadline, "no task started"
        time.sleep(0.05)
    a_pids = [pid for pid in (a.pid("kernkoa_uwsgi"), a.pid("worker"), a.pid("nginx")) if pid]
    # Clients of the balancer keep being answered while node A goes away.
    with SteadyLoad(nodes.balancer.port, WHOAMI, clients=4) as load:
        a.stop()
    assert not any(pid_alive(pid) for pid in a_pids)
    assert load.failures == []
    results = [wait_done(b.base, task_id) for task_id in task_ids]
    assert [(r["status"], r["data"]["n"]) for r in results] == [
        ("SUCCESS", n) for n in range(8)]
    # Through the balancer too, now served by node B alone.
    assert all(wait_done(nodes.balancer.base, task_id)["status"] == "SUCCESS"
               for task_id in task_ids)

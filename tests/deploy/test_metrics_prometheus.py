"""A real Prometheus scrapes a real uWSGI server (2 processes, lazy apps, as shipped)
and a real Redis worker's metrics port every second; its own query API must count
every request and every task exactly once, whichever process served it."""

from __future__ import annotations

import json
import os
import time
import typing as t
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.processes import clean_environ
from tests.support.processes import free_port
from tests.support.processes import pid_alive
from tests.support.prometheus import Prometheus
from tests.support.prometheus import prometheus_server
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server
from tests.support.tasks import Stack
from tests.support.tasks import Worker
from tests.support.tasks import final
from tests.support.tasks import trigger
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

pytestmark = [pytest.mark.uwsgi, pytest.mark.redis]

#: Requests of one round wait (bounded) until both arrived: a busy process cannot
#: take the second, so each round is served by both processes.
HIT = """
import os
import time
from pathlib import Path

ARRIVALS = Path({arrivals!r})


class M:
    def hit(self, round: str):
        folder = ARRIVALS / round
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 10
        while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return {{"pid": os.getpid()}}
"""

ROUNDS = 6  # N = 12 requests
TASKS = 5  # M


class Live(t.NamedTuple):
    server: LiveServer
    prometheus: Prometheus
    var: Path
    worker: Worker


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Live]:
    """Redis, a worker serving metrics, uWSGI with METRICS on, Prometheus scraping both."""
    folder = tmp_path_factory.mktemp("metrics-live")
    catalog = write_catalog(folder / "catalog")
    (catalog / "controller" / "m.py").write_text(HIT.format(arrivals=str(folder / "arrivals")))
    var = folder / "var"
    stale = var / "metrics" / "web" / "counter_999999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by an earlier start")
    redis = RedisServer(folder / "redis")
    redis.start()
    stack = Stack(folder)
    env = clean_environ(CATALOG=str(catalog), BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                        VAR=str(var), METRICS="true")
    worker_port = free_port()
    try:
        worker = stack.worker(env, "--concurrency=2", "--metrics-port", str(worker_port))
        with uwsgi_server(folder, env, "--lazy-apps", "--enable-threads") as server:
            assert not stale.exists()  # the master's start emptied the folder
            web = server.base.removeprefix("http://")
            jobs = {"web": (web, "/_kernkoa/metrics"),
                    "worker": (f"127.0.0.1:{worker_port}", "/metrics")}
            with prometheus_server(folder / "prometheus", jobs) as prometheus:
                yield Live(server, prometheus, var, worker)
    finally:
        stack.close()
        redis.stop()


def get_json(url: str) -> t.Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_prometheus_counts_every_request_of_both_processes_once(live: Live) -> None:
    pids: set[int] = set()
    with ThreadPoolExecutor(2) as pool:
        for number in range(ROUNDS):
            url = f"{live.server.base}/m/M/hit?round={number}"
            answers = [pool.submit(get_json, url) for _ in range(2)]
            pids |= {answer.result(timeout=60)["pid"] for answer in answers}
    assert len(pids) == 2, pids
    live.prometheus.wait_for_value(
        'sum(kernkoa_http_requests_total{job="web",route="/m/M/hit",method="GET",status="200"})',
        2 * ROUNDS)
    live.prometheus.wait_for_value(
        'sum(kernkoa_http_request_duration_seconds_count{job="web",route="/m/M/hit"})',
        2 * ROUNDS)
    # Every hit waited for its partner: none is in the fastest bucket.
    assert live.prometheus.value(
        'sum(kernkoa_http_request_duration_seconds_bucket{route="/m/M/hit",le="+Inf"})'
    ) == 2 * ROUNDS
    # Nothing is left in flight but scrapes (a slow one may still run when the next comes).
    assert live.prometheus.value('kernkoa_http_requests_in_flight{job="web"}') in (1, 2)


def test_prometheus_counts_every_task_sent_and_run_once(live: Live) -> None:
    route = "/jobs/jobs/count_celery"
    ids = [trigger(live.server, route, n=1, delay=0.0) for _ in range(TASKS)]
    for task_id in ids:
        assert wait_status(live.server, task_id, final, timeout=60)["status"] == "SUCCESS"
    prometheus = live.prometheus
    prometheus.wait_for_value(f'sum(kernkoa_tasks_sent_total{{job="web",route="{route}"}})',
                              TASKS)
    prometheus.wait_for_value(
        f'sum(kernkoa_tasks_finished_total{{job="worker",route="{route}",state="SUCCESS"}})',
        TASKS)
    prometheus.wait_for_value(
        f'sum(kernkoa_task_duration_seconds_count{{job="worker",route="{route}"}})', TASKS)
    prometheus.wait_for_value('kernkoa_broker_up{job="web"}', 1)
    prometheus.wait_for_value('kernkoa_queue_length{job="web",queue="celery"}', 0)
    assert prometheus.value('min(up)') == 1
    # Each side wrote into its own folder: the worker's processes (its session) none
    # into the web server's, though METRICS is on in its environment too.
    web_pids = {int(path.stem.rsplit("_", 1)[1]) for path in
                (live.var / "metrics" / "web").glob("*.db")}
    worker_pids = {int(path.stem.rsplit("_", 1)[1]) for path in
                   (live.var / "metrics").glob("worker-*/*.db")}
    assert web_pids and worker_pids and not web_pids & worker_pids
    assert all(os.getsid(pid) == live.worker.process.pid for pid in worker_pids if pid_alive(pid))


def test_a_failing_task_is_counted_as_a_failure(live: Live) -> None:
    task_id = trigger(live.server, "/jobs/jobs/fail_celery")
    assert wait_status(live.server, task_id, final, timeout=60)["status"] == "FAILURE"
    live.prometheus.wait_for_value(
        'sum(kernkoa_tasks_finished_total{route="/jobs/jobs/fail_celery",state="FAILURE"})', 1)


def test_a_cancelled_task_is_counted_as_revoked(live: Live) -> None:
    note = live.var.parent / "cancelled.txt"
    task_id = trigger(live.server, "/jobs/jobs/run_celery", note=str(note), seconds=60)
    wait_status(live.server, task_id, lambda body: body["status"] == "PROGRESS", timeout=60)
    assert live.server.request(f"/status/{task_id}", "DELETE")[0] == 200
    wait_for(lambda: "end" in note.read_text(), timeout=30, what="the task to stop")
    live.prometheus.wait_for_value(
        'sum(kernkoa_tasks_finished_total{route="/jobs/jobs/run_celery",state="REVOKED"})', 1)


def test_an_edited_controller_is_counted_once_per_process_that_reloads_it(live: Live) -> None:
    reloads = 'sum(kernkoa_controller_reloads_total{job="web",file="controller/jobs.py"})'
    before = live.prometheus.value(reloads) or 0
    path = live.var.parent / "catalog" / "controller" / "jobs.py"
    path.write_text(path.read_text() + "\n# edited\n")  # a new size: a new signature
    for _ in range(4):
        assert live.server.request("/jobs/jobs/hello")[0] == 200
    deadline = time.monotonic() + 60
    now = before
    while now == before and time.monotonic() < deadline:
        time.sleep(0.5)
        now = live.prometheus.value(reloads) or 0
    assert before < now <= before + 2  # each of the two processes reloads it once at most

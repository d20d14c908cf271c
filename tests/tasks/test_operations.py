"""Tasks as Celery's own tools see them, on real parts: redis-server, a kernkoa worker
with task events on (``-E``), a kernkoa server and a real Flower (from PyPI).

- Flower, ``celery inspect`` and the worker's log name each task by its route.
- A task's progress reaches Flower as the state ``PROGRESS``, then its final state.
- A rate limit on one route holds while another route runs freely.
- ``/_kernkoa/tasks`` in headless Chromium follows a running task's progress live.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kernel.core.settings import PROJECT_ROOT
from tests.support.chromium import screenshot
from tests.support.processes import BIN
from tests.support.processes import clean_environ
from tests.support.processes import free_port
from tests.support.processes import stop
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import trigger
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

pytestmark = pytest.mark.redis

OPS = '''
import os
import time

from kernkoa import *


def _note(path):
    with open(path, "a") as handle:
        handle.write("%f\\n" % time.time())


class Ops:
    def gated_celery(self, task, gate: str, limit: float = 60.0):
        """Reports one more step every 0.3 s until the test's gate file exists."""
        end = time.monotonic() + limit
        step = 0
        while not os.path.exists(gate) and time.monotonic() < end:
            step += 1
            task.progress(step, 1000, "step %d" % step)
            time.sleep(0.3)
        return {"steps": step}

    @task_options(rate_limit="2/s")
    def limited_celery(self, task, note: str):
        _note(note)
        return "limited"

    def free_celery(self, task, note: str):
        _note(note)
        return "free"

    @task_options(expires=1)
    def expiring_celery(self, task, note: str):
        _note(note)
        return "ran"
'''

GATED = "/ops/Ops/gated_celery"


class Ops(t.NamedTuple):
    server: LiveServer
    redis: RedisServer
    worker_log: Path
    flower: str
    folder: Path


def start_flower(folder: Path, broker: str) -> tuple[subprocess.Popen[bytes], str]:
    """A Flower on a free loopback port, reading the events of ``broker``."""
    port = free_port()
    log = open(folder / "flower.log", "wb")
    env = {**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"}
    process = subprocess.Popen(
        [str(BIN / "celery"), "--broker", broker, "flower", f"--port={port}",
         "--address=127.0.0.1", "--persistent=False"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((folder / "flower.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(base + "/healthcheck", timeout=2) as answer:
                if answer.status == 200:
                    return process, base
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop(process)
    raise TimeoutError("flower did not answer")


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Ops]:
    """Redis, a worker sending task events (2 processes), a server and Flower."""
    folder = tmp_path_factory.mktemp("operations")
    redis = RedisServer(folder / "redis")
    redis.start()
    catalog = write_catalog(folder / "catalog")
    (catalog / "controller" / "ops.py").write_text(OPS)
    stack = Stack(folder)
    flower: subprocess.Popen[bytes] | None = None
    env = clean_environ(CATALOG=str(catalog), BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                        VAR=str(folder / "var"), PROGRESS_INTERVAL="0", WORKER_HEARTBEAT="1")
    try:
        flower, flower_url = start_flower(folder, redis.url)
        worker = stack.worker(env, "--concurrency=2", "-E")
        yield Ops(stack.server(env), redis, worker.log, flower_url, folder)
    finally:
        stack.close()
        if flower is not None:
            stop(flower)
        redis.stop()


def flower_task(ops: Ops, task_id: str) -> dict[str, t.Any] | None:
    """Flower's ``/api/task/info/<id>``, or ``None`` while it has not seen the task."""
    try:
        with urllib.request.urlopen(f"{ops.flower}/api/task/info/{task_id}",
                                    timeout=10) as answer:
            return t.cast(dict[str, t.Any], json.loads(answer.read()))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def test_flower_shows_the_route_and_progress_then_the_final_state(ops: Ops) -> None:
    gate = ops.folder / "gate-flower"
    task_id = trigger(ops.server, GATED, gate=str(gate))
    seen: dict[str, t.Any] = {}

    def in_progress() -> bool:
        seen["task"] = flower_task(ops, task_id)
        return bool(seen["task"]) and seen["task"]["state"] == "PROGRESS"

    wait_for(in_progress, 60, "Flower to show the task in PROGRESS")
    task = seen["task"]
    assert task["name"] == GATED
    progress = json.loads(task["result"])
    assert progress["total"] == 1000 and progress["message"].startswith("step ")

    # Flower's task list names it by route too.
    with urllib.request.urlopen(f"{ops.flower}/api/tasks?taskname={GATED}",
                                timeout=10) as answer:
        listed = json.loads(answer.read())
    assert task_id in listed and listed[task_id]["name"] == GATED

    gate.write_text("go")
    wait_for(lambda: (flower_task(ops, task_id) or {}).get("state") == "SUCCESS", 60,
             "Flower to show the task's SUCCESS")
    assert wait_status(ops.server, task_id, final)["status"] == "SUCCESS"


def test_worker_log_and_celery_inspect_name_tasks_by_route(ops: Ops) -> None:
    gate = ops.folder / "gate-inspect"
    task_id = trigger(ops.server, GATED, gate=str(gate))
    try:
        wait_for(lambda: f"Task {GATED}[{task_id}] received" in ops.worker_log.read_text(),
                 30, "the worker to log the task by its route")
        answer = subprocess.run(
            [str(BIN / "celery"), "--broker", ops.redis.url, "inspect", "active",
             "--json", "--timeout=10"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0, answer.stderr
        active = [task for tasks in json.loads(answer.stdout).values() for task in tasks]
        mine = [task for task in active if task["id"] == task_id]
        assert mine and mine[0]["name"] == GATED, active
    finally:
        gate.write_text("go")
    wait_status(ops.server, task_id, final)
    # Logged by the worker once its pool process reports back (after the result is stored).
    wait_for(lambda: f"Task {GATED}[{task_id}] succeeded" in ops.worker_log.read_text(),
             30, "the worker to log the task's success by its route")


def _times(path: Path) -> list[float]:
    return sorted(float(line) for line in path.read_text().split())


def test_a_rate_limited_route_holds_while_another_runs_freely(ops: Ops) -> None:
    limited_note, free_note = ops.folder / "limited.txt", ops.folder / "free.txt"
    count = 8
    ids = [trigger(ops.server, "/ops/Ops/limited_celery", note=str(limited_note))
           for _ in range(count)]
    ids += [trigger(ops.server, "/ops/Ops/free_celery", note=str(free_note))
            for _ in range(count)]
    for task_id in ids:
        assert wait_status(ops.server, task_id, final, timeout=90)["status"] == "SUCCESS"
    limited, free = _times(limited_note), _times(free_note)
    assert len(limited) == len(free) == count
    # 2 per second, a bucket of one: 8 starts take at least 3.5 s (loose: 2.5 s), and
    # no second window holds more than 3 of them (loose: 4).
    assert limited[-1] - limited[0] >= 2.5, limited
    assert max(sum(1 for x in limited if start <= x < start + 1.0) for start in limited) <= 4
    # The free route, triggered after, is not held behind them.
    assert free[-1] < limited[-1], (free, limited)


def test_a_task_past_its_route_s_expiry_is_dropped_unstarted(ops: Ops) -> None:
    gates = [ops.folder / f"gate-busy-{n}" for n in range(2)]
    busy = [trigger(ops.server, GATED, gate=str(gate)) for gate in gates]
    note = ops.folder / "expiring.txt"
    try:
        for task_id in busy:  # both worker processes taken
            wait_status(ops.server, task_id, lambda body: body["status"] == "PROGRESS")
        expiring = trigger(ops.server, "/ops/Ops/expiring_celery", note=str(note))
        time.sleep(2.5)  # past its expiry, still queued behind the busy ones
    finally:
        for gate in gates:
            gate.write_text("go")
    assert wait_status(ops.server, expiring, final)["status"] == "REVOKED"
    assert not note.exists()
    # Another task of the same route sent to a free worker runs.
    ran = trigger(ops.server, "/ops/Ops/expiring_celery", note=str(note))
    assert wait_status(ops.server, ran, final)["status"] == "SUCCESS"


def _rows(page: t.Any) -> list[str]:
    return t.cast(list[str], page.eval_on_selector_all(
        "#recent tr td:last-child a", "links => links.map(a => a.href.split('/').pop())"))


def test_tasks_page_follows_progress_live_and_matches_its_json(ops: Ops, page: t.Any) -> None:
    gate = ops.folder / "gate-page"
    page.goto(f"{ops.server.base}/_kernkoa/tasks")
    page.locator("#tasks[data-transport=events]").wait_for(state="attached")
    task_id = trigger(ops.server, GATED, gate=str(gate))
    try:
        row = page.locator("#recent tr", has=page.locator(f"a[href$='{task_id}']"))
        row.locator("td.state-PROGRESS").wait_for()
        first = row.locator("td.progress").inner_text()
        # The same row, without a reload: its progress moves on.
        page.wait_for_function(
            "([id, first]) => { const a = document.querySelector(`#recent a[href$='${id}']`);"
            " return a && a.closest('tr').querySelector('td.progress').textContent !== first; }",
            arg=[task_id, first])
        assert row.locator("td").first.inner_text() == GATED
        assert page.locator("#workers tr").count() >= 1
        screenshot(page, "tasks-page.png")
        code, headers, body = ops.server.request("/_kernkoa/tasks?format=json")
        assert code == 200 and headers["Content-Type"] == "application/json"
        data = json.loads(body)
        listed = [task["id"] for task in data["tasks"]]
        assert task_id in listed
        mine = data["tasks"][listed.index(task_id)]
        assert mine["route"] == GATED and mine["state"] == "PROGRESS"
        assert mine["started"] and mine["duration"] is not None
        assert data["counts"][GATED]["PROGRESS"] >= 1
        assert data["queues"]["celery"]["workers"] == 1
        # Accept: application/json is the same JSON; the page lists the same tasks.
        code, _, body = ops.server.request("/_kernkoa/tasks",
                                           headers={"Accept": "application/json"})
        assert code == 200 and [task["id"] for task in json.loads(body)["tasks"]] == listed
        page.wait_for_function("n => document.querySelectorAll('#recent tr').length === n",
                               arg=len(listed))
        assert _rows(page) == listed
    finally:
        gate.write_text("go")
    row.locator("td.state-SUCCESS").wait_for()
    assert row.locator("td.progress").inner_text() == "100 %"


def test_status_page_shows_route_start_and_running_time(ops: Ops, page: t.Any) -> None:
    gate = ops.folder / "gate-status"
    task_id = trigger(ops.server, GATED, gate=str(gate))
    try:
        wait_status(ops.server, task_id, lambda body: body["status"] == "PROGRESS")
        page.goto(f"{ops.server.base}/status/{task_id}")
        assert page.locator("#route").inner_text() == GATED
        started = float(page.locator("#started").get_attribute("data-started"))
        assert abs(time.time() - started) < 120
        assert page.locator("#started").inner_text() not in ("", "–")
        first = page.locator("#elapsed").inner_text()
        page.wait_for_function("first => document.querySelector('#elapsed').textContent"
                               " !== first", arg=first)
    finally:
        gate.write_text("go")
    page.locator("#state.state-SUCCESS").wait_for()


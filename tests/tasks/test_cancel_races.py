"""A cancellation against a worker that is finishing, on a real redis-server with a
real worker and server: the cancellation is stored in the task's result key, and
no later write of the worker replaces it (the task reads REVOKED for good), or
the task finished first and reads SUCCESS for good."""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import signal
import time
import typing as t
from pathlib import Path
from unittest.mock import ANY

import pytest

from tests.support.processes import clean_environ
from tests.support.redis_server import Monitor
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import status_of
from tests.support.tasks import trigger
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

pytestmark = [
    pytest.mark.redis,
    # Celery's Redis backend stores results with SETEX, which redis-py 8 calls deprecated.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

RACES_CONTROLLER = '''
import os
import time


def _note(path, text):
    with open(path, "a") as handle:
        handle.write(text + "\\n")


class races:
    def stubborn_celery(self, task, note: str):
        """Ignores a cancellation, the revoke's signal included, and returns
        once told to: a worker finishing after the cancellation."""
        _note(note, "start")
        end = time.monotonic() + 30
        while True:
            try:
                if time.monotonic() > end or os.path.exists(note + ".go"):
                    break
                time.sleep(0.02)
            except BaseException:
                _note(note, "signalled")
        _note(note, "end")
        return "finished anyway"

    def quick_celery(self, task, n: int = 0):
        time.sleep(n / 1000)
        return n

    def noted_celery(self, task, note: str):
        _note(note, "ran")
        return "ran"
'''


class Live(t.NamedTuple):
    server: LiveServer
    redis: RedisServer
    folder: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Live]:
    """Redis, one worker of two processes and a server."""
    folder = tmp_path_factory.mktemp("cancel-races")
    redis = RedisServer(folder / "redis")
    redis.start()
    stack = Stack(folder)
    catalog = write_catalog(folder / "catalog")
    (catalog / "controller" / "races.py").write_text(RACES_CONTROLLER)
    env = clean_environ(CATALOG=str(catalog), BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                        VAR=str(folder / "var"), PROGRESS_INTERVAL="0")
    try:
        stack.worker(env, "--concurrency=2")
        yield Live(stack.server(env), redis, folder)
    finally:
        stack.close()
        redis.stop()


def _stored(live: Live, task_id: str) -> str:
    raw = live.redis.client().get(f"celery-task-meta-{task_id}")
    return str(json.loads(raw)["status"]) if raw else "(nothing)"


def _delete(live: Live, task_id: str) -> tuple[int, dict[str, t.Any]]:
    code, _, body = live.server.request(f"/status/{task_id}", "DELETE")
    return code, json.loads(body)


def test_a_worker_finishing_after_the_cancellation_never_replaces_it(
        live: Live, tmp_path: Path) -> None:
    note = tmp_path / "stubborn.txt"
    task_id = trigger(live.server, "/races/races/stubborn_celery", note=str(note))
    wait_for(lambda: note.exists() and "start" in note.read_text(), what="the task to start")
    assert _delete(live, task_id) == (200, {"status": "REVOKED"})
    assert _stored(live, task_id) == "REVOKED"  # in Celery's own key
    # The revoke's signal reached the task, which went on: it will try to store SUCCESS.
    wait_for(lambda: "signalled" in note.read_text(), what="the revoke's signal")
    monitor = Monitor(live.redis)
    try:
        (tmp_path / "stubborn.txt.go").touch()
        # The worker tries to store SUCCESS (the script sees REVOKED and writes nothing).
        wait_for(lambda: any(c.startswith("EVALSHA ") and task_id in c and '"SUCCESS"' in c
                             for c in list(monitor.commands)),
                 timeout=30, what="the worker's SUCCESS write")
    finally:
        commands = monitor.stop()
    assert "end" in note.read_text()
    assert not [c for c in commands if c.startswith("SET ") and task_id in c], commands
    for _ in range(3):
        assert status_of(live.server, task_id) == (200, {"status": "REVOKED", "request_id": ANY})
        assert _stored(live, task_id) == "REVOKED"
        time.sleep(0.2)


def test_a_task_that_finished_first_cannot_be_cancelled(live: Live) -> None:
    task_id = trigger(live.server, "/races/races/quick_celery", n=1)
    assert wait_status(live.server, task_id, final) == {"status": "SUCCESS", "data": 1,
                                                         "request_id": ANY}
    code, body = _delete(live, task_id)
    assert (code, body["error"]["code"]) == (409, "conflict")
    assert status_of(live.server, task_id) == (200, {"status": "SUCCESS", "data": 1,
                                                   "request_id": ANY})


def test_cancellations_racing_the_end_of_tasks_never_flip_back(live: Live) -> None:
    rng = random.Random(19)
    cancelled: dict[str, int] = {}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        def trigger_then_cancel(n: int) -> tuple[str, int]:
            task_id = trigger(live.server, "/races/races/quick_celery", n=n)
            time.sleep(rng.uniform(0, 0.05))
            code, body = _delete(live, task_id)
            assert code in (200, 409), body
            return task_id, code

        for task_id, code in pool.map(trigger_then_cancel, [rng.randrange(0, 30)
                                                             for _ in range(24)]):
            cancelled[task_id] = code
    expected = {task_id: "REVOKED" if code == 200 else "SUCCESS"
                for task_id, code in cancelled.items()}
    for task_id in expected:
        wait_status(live.server, task_id, final)
    # Every task is left to its worker for a while: nothing changes any more.
    for _ in range(3):
        bodies = {task_id: status_of(live.server, task_id)[1] for task_id in expected}
        seen = {task_id: body["status"] for task_id, body in bodies.items()}
        assert seen == expected, bodies
        assert {task_id: _stored(live, task_id) for task_id in expected} == expected
        time.sleep(0.5)


def test_a_cancellation_recorded_by_the_previous_kernel_is_honoured(
        live: Live, tmp_path: Path) -> None:
    """A signed id cancelled by the kernel before this one (a record beside the
    result, which ``/status`` no longer reads): its worker never runs it, and
    folds the record into the result key."""
    holders = [tmp_path / f"hold-{i}.txt" for i in range(2)]
    held = [trigger(live.server, "/races/races/stubborn_celery", note=str(h)) for h in holders]
    for holder in holders:  # both pool processes are busy: the next task waits
        wait_for(lambda h=holder: h.exists(), what="the pool to be busy")
    note = tmp_path / "queued.txt"
    task_id = trigger(live.server, "/races/races/noted_celery", note=str(note))
    live.redis.client().set(f"kernkoa-revoked-{task_id}", json.dumps({"revoked": True}))
    assert status_of(live.server, task_id) == (200, {"status": "PENDING"})
    for holder in holders:
        (tmp_path / f"{holder.name}.go").touch()
    for other in held:
        wait_status(live.server, other, final)
    wait_status(live.server, task_id, final)
    assert status_of(live.server, task_id) == (200, {"status": "REVOKED", "request_id": ANY})
    assert _stored(live, task_id) == "REVOKED"
    # A later task is run, once the queue drains: the cancelled one never was.
    done = trigger(live.server, "/races/races/quick_celery", n=0)
    wait_status(live.server, done, final)
    assert not note.exists()


def test_a_signal_meant_for_another_task_runs_the_task_again(
        live: Live, tmp_path: Path) -> None:
    """A cancellation signals the pool process that ran the cancelled task, which
    may have moved on to the next one: that one is run again, not failed."""
    note = tmp_path / "hit.txt"
    task_id = trigger(live.server, "/jobs/jobs/run_celery", note=str(note), seconds=1.5)
    wait_for(lambda: note.exists() and "start" in note.read_text(), what="the task to start")
    pid = int(note.read_text().split()[1])
    os.kill(pid, signal.SIGUSR1)  # what Celery's revoke(terminate=True) sends
    assert wait_status(live.server, task_id, final) == {"status": "SUCCESS", "data": "done",
                                                         "request_id": ANY}
    assert note.read_text().count("start") == 2

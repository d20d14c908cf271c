"""Signed task ids over a real redis-server: what ``/status`` sends it (watched with
``MONITOR``), and two app instances (two nodes) sharing one Redis, with and
without the same secret key."""

from __future__ import annotations

import base64
import json
import time
import typing as t

import pytest
from celery.exceptions import Ignore
from flask import Flask

from kernel.catalog.access import OPEN
from kernel.tasks import ids
from kernel.tasks.celeryapp import get_celery
from kernel.tasks.ids import new_task_id
from kernel.tasks.recent import TRIGGER_HEADER
from kernel.tasks.run import TASK_NAME
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error
from tests.support.redis_server import Monitor
from tests.support.redis_server import RedisServer
from tests.support.tasks import run_queued

pytestmark = [
    pytest.mark.redis,
    # Celery's Redis backend stores results with SETEX, which redis-py 8 calls deprecated.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

CONTROLLER = """
class jobs:
    def work_celery(self, task, n: int = 1):
        return n
"""

SECRET = "the nodes' shared secret key, long and random enough"
def _node(tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer,
          secret: str) -> Flask:
    tree.write("jobs.py", CONTROLLER)
    return make_app(BROKER_URL=redis.url, RESULT_BACKEND=redis.url, secretKey=secret)


def _started(app: Flask) -> str:
    answer = app.test_client().post("/jobs/jobs/work_celery?n=2")
    assert answer.status_code == 202, answer.data
    task_id: str = answer.get_json()["id"]
    return task_id


def test_status_sends_redis_nothing_for_ids_it_did_not_sign(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = _node(tree, make_app, redis, SECRET)
    task_id = _started(app)
    client = app.test_client()
    # Warm: the result store's connection is open before the watch begins.
    assert client.get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    payload, stamp, mac = task_id.split(".")
    forged = {
        "forged": f"{payload}.{stamp}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}",
        "truncated": task_id[:-2],
        "another key": new_task_id(("another key",), "/jobs/jobs/work_celery", OPEN),
    }
    monitor = Monitor(redis)
    for bad in forged.values():
        assert_error(client.get(f"/status/{bad}"), 404, "not_found")
    now = time.time()
    monkeypatch.setattr(ids.time, "time", lambda: now + 2 * 86400)  # past RESULT_EXPIRES
    assert_error(client.get(f"/status/{task_id}"), 404, "not_found")
    monkeypatch.undo()
    assert monitor.stop() == []
    # The genuine id: one command, one GET of one key, Celery's own.
    assert _status_commands(redis, client, task_id) == {"status": "PENDING"}


def _status_commands(redis: RedisServer, client: t.Any, task_id: str) -> dict[str, t.Any]:
    """``GET /status/<id>``'s body, once checked that Redis saw exactly one
    ``GET`` of the task's result key, as Celery's ``AsyncResult(id).state`` sends."""
    monitor = Monitor(redis)
    body: dict[str, t.Any] = client.get(f"/status/{task_id}").get_json()
    commands = monitor.stop()
    assert commands == [f"GET celery-task-meta-{task_id}"], commands
    return body


def test_status_is_one_get_whatever_the_task_did(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    app = _node(tree, make_app, redis, SECRET)
    client = app.test_client()
    celery = get_celery(app)
    done, failed, cancelled = _started(app), _started(app), _started(app)
    client.delete(f"/status/{_started(app)}")  # warm: the script is loaded in Redis
    celery.backend.store_result(done, {"n": 2}, "SUCCESS")
    celery.backend.store_result(failed, ValueError("boom"), "FAILURE")
    monitor = Monitor(redis)
    assert client.delete(f"/status/{cancelled}").get_json() == {"status": "REVOKED"}
    # The cancellation: the view's read, then one script on the result key (MONITOR
    # shows the commands it runs too), then Celery's revoke broadcast.
    commands = monitor.stop()
    assert commands[0] == f"GET celery-task-meta-{cancelled}", commands
    assert commands[1].startswith("EVALSHA "), commands
    assert len([c for c in commands if c.startswith("EVALSHA ")]) == 1, commands
    assert not [c for c in commands if "kernkoa-revoked-" in c], commands
    client.get(f"/status/{done}")  # warm
    assert _status_commands(redis, client, done) == {"status": "SUCCESS", "data": {"n": 2}}
    assert _status_commands(redis, client, failed)["status"] == "FAILURE"
    assert _status_commands(redis, client, cancelled) == {"status": "REVOKED"}


def test_the_trigger_is_the_publish_alone(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    app = _node(tree, make_app, redis, SECRET)
    _started(app)  # warm
    monitor = Monitor(redis)
    task_id = _started(app)
    commands = monitor.stop()
    assert not [c for c in commands if "kernkoa-task-" in c], commands
    # The publish is all (the recent-tasks index is written by the worker): one LPUSH,
    # under the signed id (what Flower and celery inspect show), then the queue's bell
    # rung (kernel.tasks.redisbroker), in the same round trip.
    assert len(commands) == 2 and commands[0].startswith("LPUSH celery "), commands
    assert task_id in commands[0]
    assert commands[1] == "LPUSH kernkoa-bell|celery 1", commands


def test_a_task_started_on_one_node_reads_on_another_that_shares_the_secret(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    first = _node(tree, make_app, redis, SECRET)
    second = _node(tree, make_app, redis, SECRET)
    stranger = _node(tree, make_app, redis, "a node with a secret key of its own, long")
    task_id = _started(first)
    assert second.test_client().get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    assert_error(stranger.test_client().get(f"/status/{task_id}"), 404, "not_found")
    # A cancellation through the second node is seen by the first.
    assert second.test_client().delete(f"/status/{task_id}").get_json() == {"status": "REVOKED"}
    assert first.test_client().get(f"/status/{task_id}").get_json() == {"status": "REVOKED"}


def _taken(app: Flask, redis: RedisServer, task_id: str) -> list[str]:
    """What Redis saw while the worker's own code took and ran the queued ``task_id``."""
    store = redis.client()
    [message] = [json.loads(raw) for raw in store.lrange("celery", 0, -1)
                 if task_id.encode() in raw]
    monitor = Monitor(redis)
    try:
        run_queued(app, [message])
    finally:
        commands = monitor.stop()
    return commands


def test_taking_a_task_is_one_script_with_its_recent_tasks_record(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    app = _node(tree, make_app, redis, SECRET)
    client = app.test_client()
    _taken(app, redis, _started(app))  # warm: the script is loaded in Redis
    task_id = _started(app)
    commands = _taken(app, redis, task_id)
    # Before the method runs: one script, which stores STARTED (checking for a
    # cancellation) and writes the record and its place in the index (the
    # script's own commands follow it in MONITOR's list). After it, with no
    # result stored (Celery's tracer stores it; not called here), the record's
    # end alone, once the task is over.
    scripts = [c for c in commands if c.startswith("EVALSHA ")]
    assert len(scripts) == 2, commands
    assert f"celery-task-meta-{task_id}" in scripts[0], scripts
    assert f"kernkoa-recent-{task_id}" in scripts[0], scripts
    assert f"kernkoa-recent-{task_id}" in scripts[1], scripts
    assert "celery-task-meta-" not in scripts[1], scripts
    [task] = [t for t in client.get("/_kernkoa/tasks?format=json").get_json()["tasks"]
              if t["id"] == task_id]
    assert task["state"] == "STARTED" and task["worker"] == "w1@test"
    assert task["created"] <= task["started"] <= task["finished"]
    # A task cancelled while queued: listed, as never started, in the same one script.
    cancelled = _started(app)
    assert client.delete(f"/status/{cancelled}").get_json() == {"status": "REVOKED"}
    with pytest.raises(Ignore):
        _taken(app, redis, cancelled)
    [task] = [t for t in client.get("/_kernkoa/tasks?format=json").get_json()["tasks"]
              if t["id"] == cancelled]
    assert task["state"] == "REVOKED" and task["started"] is None and task["created"]


def test_a_broken_index_costs_the_record_never_the_start(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    app = _node(tree, make_app, redis, SECRET)
    redis.client().set("kernkoa-recent", "not a sorted set")
    task_id = _started(app)
    _taken(app, redis, task_id)
    assert app.test_client().get(f"/status/{task_id}").get_json()["status"] == "STARTED"


def _run_by_celery(app: Flask, redis: RedisServer, task_id: str) -> list[str]:
    """What Redis saw while Celery's tracer ran the queued ``task_id`` and stored its
    result, as on a worker."""
    celery = get_celery(app)
    celery.conf.task_store_eager_result = True
    [message] = [json.loads(raw) for raw in redis.client().lrange("celery", 0, -1)
                 if task_id.encode() in raw]
    _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    monitor = Monitor(redis)
    celery.tasks[TASK_NAME].apply(
        kwargs=kwargs, task_id=task_id,
        headers={TRIGGER_HEADER: message["headers"].get(TRIGGER_HEADER)})
    return monitor.stop()


def test_a_broken_record_costs_the_record_never_the_result(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    app = _node(tree, make_app, redis, SECRET)
    task_id = _started(app)
    redis.client().set(f"kernkoa-recent-{task_id}", "not a hash")
    _run_by_celery(app, redis, task_id)
    assert app.test_client().get(f"/status/{task_id}").get_json()["status"] == "SUCCESS"


def test_a_task_run_by_celery_is_two_scripts_its_result_with_the_records_end(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    app = _node(tree, make_app, redis, SECRET)

    def run(task_id: str) -> list[str]:
        return _run_by_celery(app, redis, task_id)

    run(_started(app))  # warm: the scripts are loaded in Redis
    task_id = _started(app)
    commands = run(task_id)
    # The start (STARTED and the record), then the result with the record's end;
    # no read of the stored state before the result (the script keeps a SUCCESS).
    scripts = [c for c in commands if c.startswith("EVALSHA ")]
    assert len(scripts) == 2, commands
    assert f"celery-task-meta-{task_id}" in scripts[1], scripts
    assert f"kernkoa-recent-{task_id}" in scripts[1], scripts
    # Each script reads the state once (MONITOR lists a script's commands after
    # it); Celery's own read before the result would be a third.
    assert commands.count(f"GET celery-task-meta-{task_id}") == 2, commands
    [row] = [r for r in app.test_client().get("/_kernkoa/tasks?format=json").get_json()["tasks"]
             if r["id"] == task_id]
    assert row["state"] == "SUCCESS" and row["started"] <= row["finished"]

"""Signed task ids over a real redis-server: what ``/status`` sends it (watched with
``MONITOR``), and two app instances (two nodes) sharing one Redis, with and
without the same secret key."""

from __future__ import annotations

import threading
import time
import typing as t

import pytest
from flask import Flask

from kernel.catalog.access import OPEN
from kernel.tasks import ids
from kernel.tasks.ids import new_task_id
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error
from tests.support.redis_server import RedisServer

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
#: What the test sends Redis to mark the end of what it watched.
SENTINEL = "kernkoa-test-sentinel"


class Monitor:
    """The commands Redis runs while it is watched (``MONITOR``), up to a sentinel."""

    def __init__(self, server: RedisServer) -> None:
        # Connected before the watch, so its handshake is not among the commands.
        self._sentinel = server.client()
        self._sentinel.ping()
        self.commands: list[str] = []
        self._monitor = server.client().monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while True:
            command = self._monitor.next_command()["command"]
            if SENTINEL in command:
                return
            self.commands.append(command)

    def stop(self) -> list[str]:
        """Send the sentinel; every command seen before it."""
        self._sentinel.echo(SENTINEL)
        self._thread.join(timeout=10)
        self._monitor.__exit__()
        return self.commands


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
    # The genuine id: one command, one MGET (the cancellation record, Celery's meta).
    monitor = Monitor(redis)
    assert client.get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    commands = monitor.stop()
    assert len(commands) == 1 and commands[0].startswith("MGET "), commands
    assert "kernkoa-task-" not in commands[0]  # no issued marker read


def test_the_trigger_is_the_publish_alone(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    app = _node(tree, make_app, redis, SECRET)
    _started(app)  # warm
    monitor = Monitor(redis)
    task_id = _started(app)
    commands = monitor.stop()
    assert not [c for c in commands if "kernkoa-task-" in c], commands
    # The publish is all (the recent-tasks index is written by the worker): one LPUSH,
    # under the signed id (what Flower and celery inspect show).
    assert len(commands) == 1 and commands[0].startswith("LPUSH "), commands
    assert task_id in commands[0]


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

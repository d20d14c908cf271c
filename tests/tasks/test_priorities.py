"""Priorities on the Redis and embedded brokers: real workers take the highest
priority first, then in arrival order, and a message put back (a dead worker's,
a fetch never read) goes back to its own level; messages queued by a kernel of
before priorities, or with a priority that is no number, are taken at level 0."""

from __future__ import annotations

import json
import os
import signal
import time
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from kombu import Connection

from kernel.tasks.celeryapp import REDIS_TRANSPORT
from kernel.tasks.celeryapp import get_celery
from kernel.tasks.priorities import bell_key
from kernel.tasks.priorities import level_key
from kernel.tasks.priorities import level_keys
from kernel.tasks.priorities import priority_of
from tests.support.catalogs import ControllerTree
from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.tasks import Stack
from tests.support.tasks import wait_for

CONTROLLER = """
import os
import time

from kernkoa import *


def _note(path, text):
    with open(path, "a") as handle:
        handle.write(text + "\\n")


class prio:
    def plain_celery(self, task, note: str, tag: str):
        _note(note, tag)

    @task_options(priority=0)
    def low_celery(self, task, note: str, tag: str):
        _note(note, tag)

    @task_options(priority=5)
    def mid_celery(self, task, note: str, tag: str):
        _note(note, tag)

    @task_options(priority=9)
    def high_celery(self, task, note: str, tag: str):
        _note(note, tag)

    @task_options(priority=7)
    def slow_celery(self, task, note: str, seconds: float):
        _note(note, "start %d" % os.getpid())
        time.sleep(seconds)
        _note(note, "end")
"""

#: Triggered in this order with no worker running: (route's method, tag).
MIXED = [("plain", "a1"), ("low", "b1"), ("high", "h1"), ("mid", "m1"), ("plain", "a2"),
         ("high", "h2"), ("mid", "m2"), ("low", "b2")]

#: The order one worker (one process, prefetch 1) runs them in: 9, then 5, then 0
#: (no priority is 0), each level oldest first.
RUN_ORDER = ["h1", "h2", "m1", "m2", "a1", "b1", "a2", "b2"]

#: Short heartbeats, so a dead worker's tasks come back within seconds.
FAST_LEASES = {"WORKER_HEARTBEAT": "0.3", "WORKER_LEASE": "1.5"}

WORKER = ("--concurrency=1", "--prefetch-multiplier=1")


def _start(app: Flask, method: str, **fields: t.Any) -> str:
    answer = app.test_client().post(f"/prio/prio/{method}_celery", json=fields)
    assert answer.status_code == 202, answer.data
    return str(answer.get_json()["id"])


def _trigger_mixed(app: Flask, note: Path) -> dict[str, str]:
    return {tag: _start(app, method, note=str(note), tag=tag) for method, tag in MIXED}


def _lines(note: Path) -> list[str]:
    return note.read_text().splitlines() if note.exists() else []


def _starts(note: Path) -> int:
    return sum(1 for line in _lines(note) if line.startswith("start"))


def _levels(client: t.Any) -> dict[int, int]:
    """How many messages each level of ``celery`` holds, the empty ones left out."""
    return {level: client.llen(key) for level, key in zip(range(9, -1, -1), level_keys("celery"),
                                                          strict=True) if client.exists(key)}


def _status(app: Flask, task_id: str) -> str:
    return str(app.test_client().get(f"/status/{task_id}").get_json()["status"])


def _ids_in(client: t.Any, key: str) -> list[str]:
    """The task ids of the messages in a Redis list, oldest first."""
    return [json.loads(raw)["headers"]["id"] for raw in reversed(client.lrange(key, 0, -1))]


def _queue_length(app: Flask) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    response = app.test_client().get("/_kernkoa/metrics")
    assert response.status_code == 200, response.data
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == "kernkoa_queue_length" and sample.labels == {"queue": "celery"}:
                return float(sample.value)
    raise AssertionError("no kernkoa_queue_length for celery")


@pytest.mark.parametrize(("properties", "level"), [
    ({"priority": 7}, 7), ({"priority": "7"}, 7), ({"priority": 42}, 9), ({"priority": -3}, 0),
    ({"priority": "high"}, 0), ({"priority": None}, 0), ({"priority": [9]}, 0),
    ({"priority": float("inf")}, 0), ({"priority": float("nan")}, 0), ({}, 0),
])
def test_a_priority_that_is_no_number_is_the_default_level(
        properties: dict[str, t.Any], level: int) -> None:
    assert priority_of({"properties": properties}) == level
    assert priority_of({"body": "no properties"}) == 0
    assert priority_of("not a message") == 0


@pytest.mark.redis
def test_redis_runs_the_highest_priority_first_then_in_arrival_order(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer,
        stack: Stack, tmp_path: Path) -> None:
    tree.write("prio.py", CONTROLLER)
    app = make_app(BROKER_URL=redis.url, RESULT_BACKEND=redis.url, METRICS=True)
    note = tmp_path / "order.txt"
    ids = _trigger_mixed(app, note)
    client = redis.client()
    # Each message is in the list of its route's priority (@task_options), level 0 the
    # plain queue key; every push rang the bell.
    assert _ids_in(client, level_key("celery", 9)) == [ids["h1"], ids["h2"]]
    assert _ids_in(client, level_key("celery", 5)) == [ids["m1"], ids["m2"]]
    assert _ids_in(client, "celery") == [ids[tag] for tag in ("a1", "b1", "a2", "b2")]
    assert client.llen(bell_key("celery")) == len(MIXED)
    # The queue's length counts every level.
    assert _queue_length(app) == len(MIXED)
    health = app.test_client().get("/_kernkoa/health/tasks").get_json()
    assert health["error"]["queues"]["celery"]["waiting"] == len(MIXED)

    env = clean_environ(CATALOG=str(tree.root), BROKER_URL=redis.url, RESULT_BACKEND=redis.url)
    stack.worker(env, *WORKER)
    wait_for(lambda: len(_lines(note)) == len(MIXED), what="every task to run")
    assert _lines(note) == RUN_ORDER
    wait_for(lambda: {_status(app, task_id) for task_id in ids.values()} == {"SUCCESS"},
             what="every status to be stored")
    # Drained: no level left, and the fetch that found them empty deleted the bell.
    wait_for(lambda: not client.exists(bell_key("celery")), what="the bell to be deleted")
    assert _levels(client) == {}
    assert _queue_length(app) == 0


@pytest.mark.redis
def test_redis_messages_of_the_single_list_of_before_are_still_taken(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer,
        stack: Stack, tmp_path: Path) -> None:
    tree.write("prio.py", CONTROLLER)
    app = make_app(BROKER_URL=redis.url, RESULT_BACKEND=redis.url)
    note = tmp_path / "order.txt"
    client = redis.client()
    # What a kernel of before priorities left in the plain key: a priority-9 message
    # among the others, and no bell.
    before = [_start(app, "high", note=str(note), tag="old-high"),
              _start(app, "plain", note=str(note), tag="old-plain")]
    client.lmove(level_key("celery", 9), "celery", "RIGHT", "RIGHT")
    client.delete(bell_key("celery"))
    assert _levels(client) == {0: 2}
    late = _start(app, "plain", note=str(note), tag="old-late")
    held = client.lmove("celery", "held", "LEFT", "LEFT")  # pushed later, by a kernel of before
    client.delete(bell_key("celery"))
    env = clean_environ(CATALOG=str(tree.root), BROKER_URL=redis.url, RESULT_BACKEND=redis.url)
    stack.worker(env, *WORKER)
    wait_for(lambda: _lines(note) == ["old-high", "old-plain"], what="the old messages to run")
    # Idle, the worker waits on the bell; a push that rings none (a producer of
    # before) is found when the wait times out.
    wait_for(lambda: any(c.get("cmd") == "blmove" for c in client.client_list()),
             what="the worker to wait on the bell")
    assert not client.exists(bell_key("celery"))
    client.lpush("celery", held)
    wait_for(lambda: _lines(note) == ["old-high", "old-plain", "old-late"],
             what="the push without a bell to be taken")
    wait_for(lambda: {_status(app, task_id) for task_id in [*before, late]} == {"SUCCESS"},
             what="every status to be stored")


@pytest.mark.redis
def test_redis_a_message_put_back_goes_to_its_own_level_and_rings_the_bell(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer,
        stack: Stack, tmp_path: Path) -> None:
    tree.write("prio.py", CONTROLLER)
    app = make_app(BROKER_URL=redis.url, RESULT_BACKEND=redis.url)
    env = clean_environ(CATALOG=str(tree.root), BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                        TASK_SOFT_TIME_LIMIT="0", TASK_TIME_LIMIT="0", **FAST_LEASES)
    client = redis.client()
    slow = tmp_path / "slow.txt"
    doomed = stack.worker(env, *WORKER)
    killed = _start(app, "slow", note=str(slow), seconds=1.5)
    wait_for(lambda: _starts(slow) == 1, what="the task to start")
    doomed.kill_all()  # mid-task: its message is unacknowledged
    # A message a worker fetched and never read (killed between the fetch's move and
    # its reply), in the in-flight list of a holder that is gone; and one with a
    # priority that is no number, unacknowledged by a worker that is gone.
    note = tmp_path / "order.txt"
    unread = _start(app, "mid", note=str(note), tag="unread")
    orphan = "kernkoa-inflight|gone-host-1|celery"
    client.lmove(level_key("celery", 5), orphan, "RIGHT", "LEFT")
    client.sadd("kernkoa-inflight", orphan)
    garbled = _start(app, "high", note=str(note), tag="garbled")
    message = json.loads(client.rpop(level_key("celery", 9)))
    message["properties"]["priority"] = "urgent"
    client.hset("unacked", "garbled-tag", json.dumps([message, "", "celery"]))
    client.zadd("unacked_index", {"garbled-tag": time.time() - 60})
    client.delete(bell_key("celery"))
    assert _levels(client) == {}
    # A worker of another queue sweeps: each goes back to its level, with a bell.
    stack.worker(env, *WORKER, "-Q", "side")
    wait_for(lambda: client.llen(level_key("celery", 7)) == 1, timeout=40,
             what="the dead worker's task to be requeued")
    wait_for(lambda: client.llen(level_key("celery", 5)) == 1 and client.llen("celery") == 1,
             timeout=40, what="the orphans to be put back")
    assert _ids_in(client, level_key("celery", 7)) == [killed]
    assert _ids_in(client, level_key("celery", 5)) == [unread]
    assert _ids_in(client, "celery") == [garbled]  # the default level
    assert client.exists(bell_key("celery"))
    stack.worker(env, *WORKER)
    wait_for(lambda: _lines(note) == ["unread", "garbled"], what="the put-back tasks to run")
    wait_for(lambda: _status(app, killed) == "SUCCESS", timeout=40,
             what="the killed task to finish")
    assert _starts(slow) == 2
    assert {_status(app, task_id) for task_id in (unread, garbled)} == {"SUCCESS"}


@pytest.mark.redis
def test_redis_a_worker_killed_while_it_waits_on_the_bell_takes_nothing_with_it(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer,
        stack: Stack, tmp_path: Path) -> None:
    tree.write("prio.py", CONTROLLER)
    app = make_app(BROKER_URL=redis.url, RESULT_BACKEND=redis.url)
    env = clean_environ(CATALOG=str(tree.root), BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                        **FAST_LEASES)
    client = redis.client()
    doomed = stack.worker(env, *WORKER)
    wait_for(lambda: any(c.get("cmd") == "blmove" for c in client.client_list()),
             what="the worker to wait on the bell")
    os.killpg(doomed.process.pid, signal.SIGSTOP)
    note = tmp_path / "order.txt"
    task_id = _start(app, "high", note=str(note), tag="woken")
    # The bell's reply waits in the frozen worker's socket; the message stays queued.
    assert _ids_in(client, level_key("celery", 9)) == [task_id]
    os.killpg(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(10)
    assert _ids_in(client, level_key("celery", 9)) == [task_id]
    stack.worker(env, *WORKER)
    wait_for(lambda: _lines(note) == ["woken"], what="the task to run")


def test_embedded_runs_the_highest_priority_first_then_in_arrival_order(
        tree: ControllerTree, make_app: t.Callable[..., Flask], stack: Stack,
        tmp_path: Path) -> None:
    tree.write("prio.py", CONTROLLER)
    var = tmp_path / "var"
    app = make_app(VAR=str(var), METRICS=True)
    note = tmp_path / "order.txt"
    ids = _trigger_mixed(app, note)
    queue = var / "celery" / "queue"
    names = {json.loads(path.read_text())["headers"]["id"]: path.name
             for path in queue.glob("*.msg")}
    assert {names[ids[tag]][:2] for tag in ("h1", "h2")} == {"0-"}
    assert {names[ids[tag]][:2] for tag in ("m1", "m2")} == {"4-"}
    assert {names[ids[tag]][:2] for tag in ("a1", "a2", "b1", "b2")} == {"9-"}
    # A file named by a kernel of before priorities (kombu's name) is at the default
    # level, before the newer files of that level.
    old = queue / names[ids["a2"]]
    old.rename(queue / f"{round(time.monotonic() * 1000)}_{old.name.split('_', 1)[1]}")
    assert _queue_length(app) == len(MIXED)
    env = clean_environ(CATALOG=str(tree.root), VAR=str(var))
    stack.worker(env, *WORKER)
    wait_for(lambda: len(_lines(note)) == len(MIXED), what="every task to run")
    assert _lines(note) == ["h1", "h2", "m1", "m2", "a2", "a1", "b1", "b2"]
    wait_for(lambda: {_status(app, task_id) for task_id in ids.values()} == {"SUCCESS"},
             what="every status to be stored")


def test_embedded_a_task_of_a_killed_worker_goes_back_to_its_level(
        tree: ControllerTree, make_app: t.Callable[..., Flask], stack: Stack,
        tmp_path: Path) -> None:
    tree.write("prio.py", CONTROLLER)
    var = tmp_path / "var"
    app = make_app(VAR=str(var))
    env = clean_environ(CATALOG=str(tree.root), VAR=str(var), TASK_SOFT_TIME_LIMIT="0",
                        TASK_TIME_LIMIT="0", **FAST_LEASES)
    slow = tmp_path / "slow.txt"
    doomed = stack.worker(env, *WORKER)
    killed = _start(app, "slow", note=str(slow), seconds=1.5)
    wait_for(lambda: _starts(slow) == 1, what="the task to start")
    doomed.kill_all()
    queue = var / "celery" / "queue"
    note = tmp_path / "order.txt"
    later = _start(app, "high", note=str(note), tag="high")  # 9: before the 7 put back
    stack.worker(env, *WORKER, "-Q", "side")  # sweeps, takes nothing of celery
    wait_for(lambda: len(list(queue.glob("2-*.celery.msg"))) == 1, timeout=40,
             what="the dead worker's task to be put back at level 7")
    (back,) = queue.glob("2-*.celery.msg")
    assert back.name.startswith("2-00000000000000000000_")  # the front of its level
    assert json.loads(back.read_text())["headers"]["id"] == killed
    stack.worker(env, *WORKER)
    wait_for(lambda: _status(app, killed) == "SUCCESS" and _status(app, later) == "SUCCESS",
             timeout=40, what="both tasks to finish")
    assert _lines(note) == ["high"]


def test_embedded_a_message_with_a_priority_that_is_no_number_is_taken_at_level_0(
        make_app: t.Callable[..., Flask], tree: ControllerTree, tmp_path: Path) -> None:
    tree.write("prio.py", CONTROLLER)
    app = make_app(VAR=str(tmp_path / "var"))
    celery = get_celery(app)
    with celery.connection_for_write() as connection:
        channel = connection.default_channel
        for priority in ("urgent", None, 9, 3):
            channel._put("celery", {"body": str(priority), "properties": {"priority": priority}})
        channel._put("celery", {"body": "none"})
        taken = [channel._get("celery")["body"] for _ in range(5)]
    assert taken == ["9", "3", "urgent", "None", "none"]


@pytest.mark.redis
def test_redis_a_priority_steps_option_cannot_hide_levels_from_size_and_purge(
        redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # kombu copies priority_steps from the transport options; with fewer lists
    # there, the length and the purge would miss messages of the other levels.
    with Connection(redis.url, transport=REDIS_TRANSPORT,
                    transport_options={"priority_steps": [0]}) as connection:
        channel = connection.default_channel
        assert channel.priority_steps == list(range(10))
        assert "ignoring the priority_steps transport option" in caplog.text
        client = redis.client()
        client.lpush(level_key("celery", 0), "{}")
        client.lpush(level_key("celery", 9), "{}")
        assert channel._size("celery") == 2
        assert channel._purge("celery") == 2
        assert _levels(client) == {}

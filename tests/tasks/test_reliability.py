"""Workers killed mid-task and Redis going away: nothing lost, nothing hangs."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest.mock import ANY

import pytest
from kombu import Connection

from kernel.tasks.celeryapp import REDIS_TRANSPORT
from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import status_of
from tests.support.tasks import trigger
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

#: Every test here runs a redis-server.
pytestmark = pytest.mark.redis


#: Short heartbeats, so a dead worker's tasks come back within seconds (the
#: visibility timeout stays at its default: a week without a time limit).
FAST_LEASES = {"WORKER_HEARTBEAT": "0.3", "WORKER_LEASE": "1.5"}


@pytest.fixture
def env(tmp_path: Path, redis: RedisServer) -> dict[str, str]:
    return clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")),
                         BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                         VAR=str(tmp_path / "var"), TASK_SOFT_TIME_LIMIT="0",
                         TASK_TIME_LIMIT="0", **FAST_LEASES)


def _starts(note: Path) -> list[int]:
    if not note.exists():
        return []
    return [int(line.split()[1]) for line in note.read_text().splitlines()
            if line.startswith("start")]


def test_pool_child_killed_mid_task_is_run_again(
        stack: Stack, env: dict[str, str], tmp_path: Path) -> None:
    stack.worker(env, "--concurrency=1")
    server = stack.server(env)
    note = tmp_path / "child.txt"
    task_id = trigger(server, "/jobs/jobs/run_celery", note=str(note), seconds=1.5)
    wait_for(lambda: len(_starts(note)) == 1, what="the task to start")
    os.kill(_starts(note)[0], signal.SIGKILL)
    body = wait_status(server, task_id, final, timeout=60)
    assert body == {"status": "SUCCESS", "data": "done", "request_id": ANY}
    assert len(_starts(note)) == 2


#: Seconds within which a dead worker's task is requeued (the documented
#: WORKER_LEASE + WORKER_HEARTBEAT), with room for a loaded machine.
REQUEUE_BOUND = float(FAST_LEASES["WORKER_LEASE"]) + float(FAST_LEASES["WORKER_HEARTBEAT"]) + 20


def test_worker_main_process_killed_mid_task_is_requeued_within_the_lease(
        stack: Stack, env: dict[str, str], tmp_path: Path) -> None:
    # The task read STARTED until VISIBILITY_TIMEOUT (two hours by default).
    first = stack.worker(env, "--concurrency=1")
    server = stack.server(env)
    note = tmp_path / "main.txt"
    task_id = trigger(server, "/jobs/jobs/run_celery", note=str(note), seconds=1.5)
    wait_for(lambda: len(_starts(note)) == 1, what="the task to start")
    # The main process and its pool at once: a pool process whose parent died
    # may otherwise still finish the task (and store its result) before it exits.
    first.kill_all()
    stack.worker(env, "--concurrency=1")  # in its place, as a supervisor would
    wait_for(lambda: len(_starts(note)) == 2, timeout=REQUEUE_BOUND,
             what="the task to be requeued")
    body = wait_status(server, task_id, final, timeout=60)
    assert body == {"status": "SUCCESS", "data": "done", "request_id": ANY}


def test_no_task_lost_out_of_50_when_a_worker_dies(
        stack: Stack, env: dict[str, str], tmp_path: Path) -> None:
    doomed = stack.worker(env, "--concurrency=2")
    stack.worker(env, "--concurrency=2")
    server = stack.server(env)
    ids = [trigger(server, "/jobs/jobs/run_celery", note=str(tmp_path / f"n{i}.txt"),
                   seconds=0.3) for i in range(50)]
    wait_for(lambda: sum(1 for i in range(50) if (tmp_path / f"n{i}.txt").exists()) >= 10,
             what="ten tasks to start")
    doomed.kill_all()
    stack.worker(env, "--concurrency=2")
    bodies = [wait_status(server, task_id, final, timeout=90) for task_id in ids]
    assert [b["status"] for b in bodies] == ["SUCCESS"] * 50


def test_redis_stopped_gives_503_then_recovers(
        stack: Stack, env: dict[str, str], redis: RedisServer) -> None:
    stack.worker(env, "--concurrency=1")
    server = stack.server(env)
    task_id = trigger(server, "/jobs/jobs/count_celery", n=1)
    assert wait_status(server, task_id, final)["status"] == "SUCCESS"

    redis.stop()
    code, _, body = server.request("/jobs/jobs/count_celery", "POST")
    assert code == 503, body
    assert b'"broker_unavailable"' in body
    assert status_of(server, task_id)[0] == 503
    assert server.request("/jobs/jobs/hello")[:1] == (200,)

    redis.start()

    def accepted() -> bool:
        return server.request("/jobs/jobs/count_celery", "POST")[0] == 202

    wait_for(accepted, timeout=30, what="triggers to work again")
    task_id = trigger(server, "/jobs/jobs/count_celery", n=1)
    deadline = time.monotonic() + 60
    assert wait_status(server, task_id, final, timeout=deadline - time.monotonic()
                       )["status"] == "SUCCESS"


@pytest.fixture
def persistent_redis(tmp_path: Path) -> t.Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis-aof", persistent=True)
    server.start()
    yield server
    server.stop()


def test_redis_restart_with_a_task_in_flight_keeps_the_worker_and_the_task(
        stack: Stack, tmp_path: Path, persistent_redis: RedisServer) -> None:
    # Redis restarted under a worker that holds a task while its channel waits
    # in BRPOP (a free pool slot) killed the worker (see kernel/tasks/redisbroker.py);
    # the task's progress and result writes during the outage failed it.
    env = clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")),
                        BROKER_URL=persistent_redis.url, RESULT_BACKEND=persistent_redis.url,
                        VAR=str(tmp_path / "var"), TASK_SOFT_TIME_LIMIT="0",
                        TASK_TIME_LIMIT="0")
    worker = stack.worker(env, "--concurrency=2")
    server = stack.server(env)
    note = tmp_path / "restart.txt"
    task_id = trigger(server, "/jobs/jobs/run_celery", note=str(note), seconds=2)
    wait_for(lambda: len(_starts(note)) == 1, what="the task to start")
    persistent_redis.stop()
    # The running task reports progress while Redis is away.
    wait_for(lambda: b"cannot check whether task" in worker.log.read_bytes(),
             what="the task to meet the outage")
    persistent_redis.start()
    wait_for(lambda: status_of(server, task_id)[0] == 200, what="/status to answer again")
    assert wait_status(server, task_id, final, timeout=60) == {
        "status": "SUCCESS", "data": "done", "request_id": ANY}
    assert len(_starts(note)) == 1
    later = trigger(server, "/jobs/jobs/count_celery", n=1)
    assert wait_status(server, later, final, timeout=60)["status"] == "SUCCESS"
    assert worker.process.poll() is None, worker.log.read_text()[-3000:]


#: A uWSGI log line of a trigger: the pid of the process that answered it.
TRIGGERED_BY = re.compile(r"\[pid: (\d+)\|.*POST /jobs/jobs/count_celery")


@pytest.mark.uwsgi
def test_redis_down_under_uwsgi_keeps_both_processes_serving(
        tmp_path: Path, env: dict[str, str], redis: RedisServer) -> None:
    settings = {k: v for k, v in env.items() if k.startswith("KERNKOA_")}
    with uwsgi_server(tmp_path, settings, "--lazy-apps") as server:
        assert server.log is not None
        # Both processes trigger once while Redis is up: a process's first trigger
        # imports Celery (seconds on a loaded machine), which is not what the
        # timeouts below measure. uWSGI's log names the process of each request.
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(2) as pool:
            while len(set(TRIGGERED_BY.findall(server.log.read_text()))) < 2:
                assert time.monotonic() < deadline, "one process never took a trigger"
                for code, _, body in pool.map(
                        lambda _: server.request("/jobs/jobs/count_celery", "POST"), range(2)):
                    # A 500 was seen here once on a loaded machine: show what it said.
                    assert code == 202, (body, server.log.read_text()[-3000:])
        redis.stop()
        # Triggers keep failing, fast, in both processes; other routes never notice.
        for _ in range(30):
            code, _, body = server.request("/jobs/jobs/count_celery", "POST", timeout=3)
            assert code == 503, body
            assert b'"broker_unavailable"' in body
            assert server.request("/jobs/jobs/hello", timeout=3)[:1] == (200,)
        redis.start()

        def accepted() -> bool:
            return server.request("/jobs/jobs/count_celery", "POST", timeout=3)[0] == 202

        wait_for(accepted, timeout=30, what="triggers to work again")


def _task_health(server: LiveServer) -> tuple[int, dict[str, t.Any]]:
    code, _, body = server.request("/_kernkoa/health/tasks")
    return code, json.loads(body)


def test_task_health_sees_frozen_workers(stack: Stack, env: dict[str, str]) -> None:
    worker = stack.worker(env, "--concurrency=1", "-Q", "celery,side")
    server = stack.server(env)
    wait_for(lambda: _task_health(server)[0] == 200, what="the worker's first heartbeat")
    code, _, body = server.request("/_kernkoa/health")
    assert code == 200 and json.loads(body)["workers"]["queues"] == {"celery": 1, "side": 1}

    os.killpg(worker.process.pid, signal.SIGSTOP)  # the main process and its pool
    try:
        wait_for(lambda: _task_health(server)[0] == 503, timeout=REQUEUE_BOUND,
                 what="health to see the worker frozen")
        error = _task_health(server)[1]["error"]
        assert error["code"] == "degraded" and error["failed"] == ["celery", "side"]
        assert server.request("/_kernkoa/health")[0] == 200
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    wait_for(lambda: _task_health(server)[0] == 200, timeout=REQUEUE_BOUND,
             what="health to see the worker back")


def test_a_message_taken_by_a_worker_killed_before_reading_it_is_requeued(
        stack: Stack, env: dict[str, str], redis: RedisServer) -> None:
    # kombu's BRPOP took the message out of Redis when it sent it: a worker
    # killed before it read the reply lost the task (celery/celery#1392). Here an
    # idle worker waits on the queue's bell, which takes nothing; the fetch script
    # moves a message into the worker's in-flight list (put back from there when the
    # worker is gone: tests/tasks/test_priorities.py).
    doomed = stack.worker(env, "--concurrency=1")
    server = stack.server(env)
    client = redis.client()
    wait_for(lambda: any(c.get("cmd") == "blmove" for c in client.client_list()),
             what="the worker to wait on the bell")
    os.killpg(doomed.process.pid, signal.SIGSTOP)  # the bell's reply waits unread
    task_id = trigger(server, "/jobs/jobs/count_celery", n=1)
    assert client.llen("celery") == 1
    os.killpg(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(10)
    assert client.llen("celery") == 1
    stack.worker(env, "--concurrency=1")
    assert wait_status(server, task_id, final, timeout=REQUEUE_BOUND + 30)["status"] == "SUCCESS"


@pytest.mark.redis
def test_the_channel_keeps_one_client_of_its_pool_and_makes_one_for_a_new_pool(
        redis: RedisServer) -> None:
    with Connection(redis.url, transport=REDIS_TRANSPORT) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
        channel._put("celery", {"body": "one"})
        # kombu drops its pools when a connection is lost: the next client is the new pool's.
        channel._disconnect_pools()
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
        channel._put("celery", {"body": "two"})
        assert [json.loads(m)["body"] for m in redis.client().lrange("celery", 0, -1)] \
            == ["two", "one"]
        # The channel's own client (its fetch and bell waits) is kombu's, apart.
        assert channel.client is not third

"""RabbitMQ as the broker (results in Redis): the same trigger, worker and status.

RabbitMQ is a heavy server to start per test run, so this uses one already
listening on 127.0.0.1:5672 (guest/guest), with a queue of its own that it
deletes afterwards, and is skipped, with the reason printed, where there is none.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from unittest.mock import ANY

import pytest
from kombu import Connection

from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import trigger
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

#: Every test here uses the RabbitMQ server (skipped where none answers).
pytestmark = pytest.mark.rabbitmq

RABBITMQ = ("127.0.0.1", 5672)


def rabbitmq_answers() -> bool:
    """Whether something accepts connections on RabbitMQ's port."""
    try:
        with socket.create_connection(RABBITMQ, timeout=1):
            return True
    except OSError:
        return False


def test_a_task_runs_through_rabbitmq(tmp_path: Path, redis: RedisServer) -> None:
    if not rabbitmq_answers():
        pytest.skip("no RabbitMQ listens on 127.0.0.1:5672 (guest/guest)")
    # A queue name of its own, so tasks of other runs on the same server never mix in.
    queue = f"kernkoa_test_{uuid.uuid4().hex[:8]}"
    catalog = write_catalog(tmp_path / "catalog")
    (catalog / "controller" / "rabbit.py").write_text(
        "from kernkoa import *\n\n\n"
        "class rabbit:\n"
        f"    @task_options(queue={queue!r})\n"
        "    def double_celery(self, task, n: int):\n"
        "        task.progress(1, 1)\n"
        "        return n * 2\n"
    )
    broker = "amqp://guest:guest@127.0.0.1:5672//"
    env = clean_environ(CATALOG=str(catalog), BROKER_URL=broker,
                        RESULT_BACKEND=redis.url, VAR=str(tmp_path / "var"))
    stack = Stack(tmp_path)
    try:
        stack.worker(env, "--concurrency=1", "-Q", queue)
        server = stack.server(env)
        task_id = trigger(server, "/rabbit/rabbit/double_celery", n=21)
        assert wait_status(server, task_id, final) == {"status": "SUCCESS", "data": 42,
                                                       "request_id": ANY}
    finally:
        stack.close()
        with Connection(broker, connect_timeout=5) as connection:
            connection.default_channel.queue_delete(queue)

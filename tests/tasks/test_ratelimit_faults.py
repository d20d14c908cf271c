"""Messages held for a route's rate limit when things go wrong, on real parts
(redis-server, ``kernkoa worker`` processes, ``kernkoa serve``): a held task that is
cancelled never runs; a worker stopped warm, or killed, gives its held messages back
and each runs once on the next worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import trigger
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

pytestmark = pytest.mark.redis

SLOW = '''
from kernkoa import *


class Slow:
    @task_options(rate_limit="12/m")
    def once_celery(self, task, note: str, name: str):
        with open(note, "a") as handle:
            handle.write(name + "\\n")
        return name
'''

ROUTE = "/slow/Slow/once_celery"


def _runs(note: Path) -> list[str]:
    return note.read_text().split() if note.exists() else []


def _held(server: LiveServer) -> int:
    """Tasks the live workers hold, as the tasks page reports them."""
    code, _, body = server.request("/_kernkoa/tasks?format=json")
    assert code == 200, body
    return sum(worker["held"] for worker in json.loads(body)["workers"])


def test_held_messages_survive_a_warm_stop_and_a_kill_and_a_cancel_holds(
        tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    catalog = write_catalog(tmp_path / "catalog")
    (catalog / "controller" / "slow.py").write_text(SLOW)
    env = clean_environ(CATALOG=str(catalog), BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                        VAR=str(tmp_path / "var"), WORKER_HEARTBEAT="0.5", WORKER_LEASE="3")
    note = tmp_path / "runs.txt"
    stack = Stack(tmp_path)
    try:
        server = stack.server(env)
        worker = stack.worker(env, "--concurrency=1")
        # One token every 5 s: the first runs, the next two wait in the worker.
        ids = {name: trigger(server, ROUTE, note=str(note), name=name)
               for name in ("a", "b", "c")}
        assert wait_status(server, ids["a"], final, timeout=60)["status"] == "SUCCESS"
        wait_for(lambda: _held(server) >= 1, timeout=30, what="a held task")
        # Cancelled while held: it never runs, whoever takes it.
        assert server.request(f"/status/{ids['b']}", "DELETE")[0] == 200
        worker.stop()  # warm: SIGTERM
        worker = stack.worker(env, "--concurrency=1")
        assert wait_status(server, ids["c"], final, timeout=60)["status"] == "SUCCESS"
        assert wait_status(server, ids["b"], final, timeout=60)["status"] == "REVOKED"
        # Held again, then the worker dies with them (SIGKILL, pool included).
        ids |= {name: trigger(server, ROUTE, note=str(note), name=name) for name in ("d", "e")}
        wait_for(lambda: _held(server) >= 1, timeout=30, what="a held task")
        worker.kill_all()
        stack.worker(env, "--concurrency=1")
        for name in ("d", "e"):
            assert wait_status(server, ids[name], final, timeout=60)["status"] == "SUCCESS"
        assert sorted(_runs(note)) == ["a", "c", "d", "e"]  # each once, the cancelled never
    finally:
        stack.close()
        redis.stop()

"""Idempotent triggers on real parts: uWSGI (two processes, threads) with a kernkoa
worker, on Redis and on the embedded store. Each started task notes itself in a file,
so "one task" is counted where the work happens."""

from __future__ import annotations

import concurrent.futures
import json
import typing as t
import uuid
from pathlib import Path

import pytest

from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

#: Both brokers are driven through uWSGI.
pytestmark = pytest.mark.uwsgi


def _post(server: LiveServer, key: str, note: Path, seconds: float = 0.2,
          ) -> tuple[int, dict[str, str], dict[str, t.Any]]:
    status, headers, body = server.request(
        "/jobs/jobs/run_celery", "POST",
        json.dumps({"note": str(note), "seconds": seconds}).encode(),
        {"Content-Type": "application/json", "Idempotency-Key": key}, timeout=60)
    return status, headers, json.loads(body)


def _starts(note: Path) -> int:
    return note.read_text().count("start") if note.exists() else 0


def _exactly_one_task(server: LiveServer, tmp_path: Path) -> None:
    """Sequential retries, then 50 concurrent triggers with one key: one task each."""
    note = tmp_path / "sequential.txt"
    key = str(uuid.uuid4())
    answers = [_post(server, key, note) for _ in range(3)]
    assert [a[0] for a in answers] == [202, 202, 202]
    assert len({a[2]["id"] for a in answers}) == 1
    assert wait_status(server, answers[0][2]["id"], final)["status"] == "SUCCESS"
    # Done, the task is still what the key answers; Prefer: wait gets its status body.
    status, _, body = server.request(
        "/jobs/jobs/run_celery", "POST",
        json.dumps({"note": str(note), "seconds": 0.2}).encode(),
        {"Content-Type": "application/json", "Idempotency-Key": key, "Prefer": "wait=5"})
    done = json.loads(body)
    assert status == 200 and done["id"] == answers[0][2]["id"] and done["status"] == "SUCCESS"
    # Different fields under the key: refused, nothing started.
    status, _, refused = _post(server, key, note, seconds=0.3)
    assert status == 422 and refused["error"]["code"] == "idempotency_key_reused"

    crowd = tmp_path / "concurrent.txt"
    crowd_key = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: _post(server, crowd_key, crowd), range(50)))
    assert {r[0] for r in results} == {202}
    ids = {r[2]["id"] for r in results}
    assert len(ids) == 1
    assert sum(r[1].get("Idempotent-Replayed") == "true" for r in results) == 49
    assert wait_status(server, ids.pop(), final)["status"] == "SUCCESS"
    # Any second task would have been queued before the first finished.
    wait_for(lambda: _starts(crowd) >= 1, what="the task's note")
    assert _starts(note) == 1 and _starts(crowd) == 1


@pytest.mark.redis
def test_one_task_per_key_on_redis(stack: Stack, redis: RedisServer, tmp_path: Path) -> None:
    env = clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")),
                        BROKER_URL=redis.url, RESULT_BACKEND=redis.url, VAR=str(tmp_path / "var"))
    stack.worker(env, "--concurrency=2")
    with uwsgi_server(tmp_path, env, "--enable-threads", "--threads", "8") as server:
        _exactly_one_task(server, tmp_path)


def test_one_task_per_key_on_the_embedded_store(stack: Stack, tmp_path: Path) -> None:
    env = clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")),
                        VAR=str(tmp_path / "var"))
    stack.worker(env, "--concurrency=2")
    with uwsgi_server(tmp_path, env, "--enable-threads", "--threads", "8") as server:
        _exactly_one_task(server, tmp_path)
    claims = list((tmp_path / "var" / "celery" / "idempotency").glob("[0-9a-f]*"))
    assert len(claims) == 2

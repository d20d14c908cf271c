"""/_kernkoa/health with the embedded broker, a real Redis, and a Redis that is gone."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask

from tests.support.catalogs import ControllerTree
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer


def test_healthy_with_the_embedded_broker(tree: ControllerTree,
                                          make_app: t.Callable[..., Flask]) -> None:
    response = make_app().test_client().get("/_kernkoa/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["broker"] == "embedded"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "web": True, "broker": True, "result_store": True}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthy_with_redis_then_503_when_it_is_gone(redis: RedisServer, tree: ControllerTree,
                                                     make_app: t.Callable[..., Flask]) -> None:
    client = make_app(BROKER_URL=redis.url, BROKER_COOLDOWN=0.0).test_client()
    healthy = client.get("/_kernkoa/health")
    assert healthy.status_code == 200, healthy.get_json()
    assert healthy.get_json()["broker"] == "redis"
    redis.stop()
    failing = client.get("/_kernkoa/health")
    assert failing.status_code == 503
    error = failing.get_json()["error"]
    assert error["code"] == "unhealthy"
    assert error["failed"] == ["broker", "result_store"]
    assert "broker" in error["message"]
    assert error["checks"]["web"]["ok"] is True


def test_503_when_nothing_listens(tree: ControllerTree,
                                  make_app: t.Callable[..., Flask]) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    response = make_app(BROKER_URL=url).test_client().get("/_kernkoa/health")
    assert response.status_code == 503
    assert response.get_json()["error"]["failed"] == ["broker", "result_store"]
    assert b"s3cret" not in response.data


def test_health_is_on_without_the_pages_and_can_be_off(
    tree: ControllerTree, make_app: t.Callable[..., Flask]
) -> None:
    assert make_app(PAGES=False).test_client().get("/_kernkoa/health").status_code == 200
    assert make_app(HEALTH=False).test_client().get("/_kernkoa/health").status_code == 404


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_on_a_real_server(serve: t.Callable[..., LiveServer], method: str) -> None:
    server = serve()
    status, headers, _ = server.request("/_kernkoa/health", method)
    assert status == 200
    assert headers["Content-Type"] == "application/json"


def test_task_health_names_the_queues_no_worker_consumes(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("jobs.py", """
        from kernkoa import *

        class jobs:
            def plain_celery(self, task):
                return 1

            @task_options(queue="long")
            def slow_celery(self, task):
                return 2
    """)
    client = make_app().test_client()
    assert client.post("/jobs/jobs/slow_celery").status_code == 202
    health = client.get("/_kernkoa/health")
    assert health.status_code == 200  # a web process serves without workers
    assert health.get_json()["workers"]["queues"] == {}
    tasks = client.get("/_kernkoa/health/tasks")
    assert tasks.status_code == 503
    error = tasks.get_json()["error"]
    assert error["code"] == "degraded" and error["failed"] == ["celery", "long"]
    assert error["queues"]["long"]["workers"] == 0
    assert error["queues"]["long"]["waiting"] == 1
    assert error["queues"]["long"]["oldest_seconds"] >= 0
    assert error["queues"]["celery"] == {"workers": 0, "waiting": 0, "oldest_seconds": None}
    assert tasks.headers["Cache-Control"] == "no-store"

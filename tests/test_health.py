"""/_kernkoa/health with the embedded broker, a real Redis, and a Redis that is gone."""

from __future__ import annotations

import typing as t

import pytest
from conftest import ControllerTree
from conftest import LiveServer
from conftest import free_port
from flask import Flask
from tasks_support import RedisServer


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

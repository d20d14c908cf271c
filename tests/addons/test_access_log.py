"""access_log add-on: one line per request (route, status, duration, request id,
identity) and per task, only when it is enabled."""

from __future__ import annotations

import logging
import re
import typing as t

import pytest
from flask import Flask

from kernel.web.addons import notify_task_finish
from kernel.web.addons import notify_task_start
from tests.support.auth import CONTROLLERS
from tests.support.auth import KEY
from tests.support.auth import bearer
from tests.support.auth import token
from tests.support.catalogs import ControllerTree
from tests.support.logs import json_log


def _access(lines: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return [line for line in lines if line["logger"] == "kernkoa.access"]


@pytest.fixture
def app(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> Flask:
    tree.write("shop.py", CONTROLLERS)
    return make_app(ADDONS=["access_log", "jwt_auth"], HMACKEY=KEY)


def test_one_json_line_per_request(app: Flask) -> None:
    client = app.test_client()
    with json_log() as log:
        ok = client.get("/shop/Reports/index?token=secret",
                        headers={**bearer(token(sub="alice", scope="reports")),
                                 "X-Request-Id": "acc-1"})
        missing = client.get("/shop/nothing/here/at/all")
        page = client.get("/_kernkoa/endpoints")
    assert ok.status_code == 200 and missing.status_code == 404 and page.status_code == 200
    first, second, third = _access(log.lines())
    assert first == {**first, "level": "INFO", "message": first["message"], "method": "GET",
                     "path": "/shop/Reports/index", "route": "/shop/Reports/index",
                     "status": 200, "identity": "alice", "request_id": "acc-1"}
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert "secret" not in str(first)
    assert second["route"] is None and second["status"] == 404
    assert second["identity"] is None
    assert second["request_id"] == missing.headers["X-Request-Id"]
    assert third["route"] == "/_kernkoa/endpoints"


def test_route_is_the_method_not_its_arguments(tree: ControllerTree,
                                               make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop/cart.py", """
        class Cart:
            def show(self, item=None):
                return {"item": item}
    """)
    client = make_app(ADDONS=["access_log"]).test_client()
    with json_log() as log:
        client.get("/shop/cart/Cart/show/3")
        client.get("/status/abc")
    shown, status = _access(log.lines())
    assert shown["path"] == "/shop/cart/Cart/show/3" and shown["route"] == "/shop/cart/Cart/show"
    assert status["route"] == "/status/<task_id>" and status["status"] == 404


def test_text_line(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "kernkoa.access"):
        app.test_client().get("/shop/Open", headers={"X-Request-Id": "txt-1"})
    [record] = [r for r in caplog.records if r.name == "kernkoa.access"]
    assert re.fullmatch(r"method=GET path=/shop/Open route=/shop/Open/index status=200 "
                        r"duration_ms=\d+\.\d identity=-", record.getMessage())
    assert record.request_id == "txt-1"  # type: ignore[attr-defined]


def test_odd_paths_stay_on_one_line(app: Flask) -> None:
    with json_log() as log:
        app.test_client().get("/no/such%0Apath here\u00e9")
    [line] = _access(log.lines())
    assert line["path"] == "/no/such%0Apath%20here%C3%A9" and line["status"] == 404


def test_no_access_line_without_the_addon(tree: ControllerTree,
                                          make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop.py", CONTROLLERS)
    client = make_app().test_client()
    with json_log() as log:
        response = client.get("/shop/Open")
    assert response.headers["X-Request-Id"] and not _access(log.lines())


def test_task_lines(app: Flask) -> None:
    with json_log() as log, app.app_context():
        notify_task_start("task-1", "/shop/Reports/build_celery", retries=1)
        notify_task_finish("task-1", "/shop/Reports/build_celery", "FAILURE", 0.25,
                           error=ValueError("x"), retries=1)
    started, finished = _access(log.lines())
    assert started["task_id"] == "task-1" and started["state"] == "STARTED"
    assert started["route"] == "/shop/Reports/build_celery" and started["retries"] == 1
    assert finished == {**finished, "task_id": "task-1", "state": "FAILURE",
                        "duration_ms": 250.0, "retries": 1, "error": "ValueError"}

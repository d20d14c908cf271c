"""TRUSTED_HOSTS: a Host header the site does not answer to is a 400 envelope, and never
reaches a URL the kernel builds (config.url, a task's status URL, Location, redirects)."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
from flask import Flask

from kernel.auth.users import UserStore
from kernel.web.state import state_of
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

CONTROLLER = """
from kernkoa import *

class site:
    def here(self):
        return {"url": config.url}

    def work_celery(self, task):
        return "done"
"""

#: What ``setup.sh --server-name shop.example`` writes (see its write_env).
TRUSTED = ["shop.example", "localhost", "127.0.0.1"]

HTML = "text/html,application/xhtml+xml,*/*;q=0.8"


@pytest.fixture
def make(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> t.Callable[..., Flask]:
    tree.write("site.py", CONTROLLER)
    return make_app


def test_empty_setting_accepts_any_host(make: t.Callable[..., Flask]) -> None:
    client = make().test_client()
    response = client.get("/site/site/here", headers={"Host": "anything.example"})
    assert response.get_json() == {"url": "http://anything.example/"}


@pytest.mark.parametrize("host", ["shop.example", "shop.example:8443", "localhost:5000",
                                  "127.0.0.1", "127.0.0.1:80"])
def test_trusted_host_with_or_without_a_port(make: t.Callable[..., Flask], host: str) -> None:
    client = make(TRUSTED_HOSTS=TRUSTED).test_client()
    response = client.get("/site/site/here", headers={"Host": host})
    assert response.status_code == 200
    assert response.get_json() == {"url": f"http://{host.removesuffix(':80')}/"}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "shop.example.evil",
                                  "xshop.example", "shop.example@evil.example", "[::2]:80"])
@pytest.mark.parametrize("request_args", [
    ("GET", "/site/site/here", {}),                      # the catch-all shortcut's path
    ("POST", "/site/site/work_celery", {}),              # 202 with Location
    ("POST", "/site/site/work_celery", {"Accept": HTML}),  # 303 to the status page
    ("GET", "/status/0123456789abcdef0123456789abcdef", {}),
    ("GET", "/_kernkoa/info", {}),
    ("GET", "/nowhere/at/all", {}),
])
def test_forged_host_is_a_400_envelope(make: t.Callable[..., Flask], host: str,
                                       request_args: tuple[str, str, dict[str, str]]) -> None:
    method, path, headers = request_args
    app = make(TRUSTED_HOSTS=TRUSTED)
    response = app.test_client().open(path, method=method, headers={"Host": host, **headers})
    assert_error(response, 400, "bad_request")
    assert "Location" not in response.headers


def test_forged_host_queues_no_task(make: t.Callable[..., Flask]) -> None:
    app = make(TRUSTED_HOSTS=TRUSTED)
    client = app.test_client()
    refused = client.post("/site/site/work_celery", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    accepted = client.post("/site/site/work_celery", headers={"Host": "shop.example"})
    assert accepted.status_code == 202
    assert accepted.headers["Location"].startswith("http://shop.example/status/")
    queue = state_of(app).settings.VAR / "celery" / "queue"
    assert len(list(queue.iterdir())) == 1, "the refused request queued a task"


def test_forged_host_is_refused_before_the_auth_decision(make: t.Callable[..., Flask],
                                                         tmp_path: Path) -> None:
    """A closed site answers a forged Host with its 400, not a 401, and never
    authenticates the request (a Basic password would cost a hash)."""
    UserStore(tmp_path / "var" / "users.json").add("user", "a long enough password", [])
    app = make(TRUSTED_HOSTS=TRUSTED, ADDONS=["basic_auth"], AUTH_DEFAULT="required")
    layer = state_of(app).auth
    calls: list[object] = []
    basic = layer.schemes["basic"]
    original = basic.authenticate
    basic.authenticate = lambda req: calls.append(req) or original(req)
    try:
        response = app.test_client().get(
            "/site/site/here", headers={"Host": "evil.example",
                                        "Authorization": "Basic dXNlcjpwYXNz"})
    finally:
        basic.authenticate = original
    assert_error(response, 400, "bad_request")
    assert calls == []

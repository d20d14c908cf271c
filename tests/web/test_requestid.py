"""Request ids: kept when sane, replaced otherwise, echoed on every response, on every
log line of the request, and readable by controllers."""

from __future__ import annotations

import logging
import re
import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from kernel.core.logs import REQUEST_ID
from kernel.web.requestid import SANE_ID
from kernel.web.requestid import checked_request_id
from kernel.web.requestid import settle_request_id
from tests.support.auth import CONTROLLERS
from tests.support.auth import KEY
from tests.support.catalogs import ControllerTree
from tests.support.logs import json_log

FRESH = re.compile(r"[0-9a-f]{32}")

#: Values a client or proxy may send that must never be kept (nor echoed, nor logged).
HOSTILE = ["", " ", "a b", "a" * 129, 'x"y', "<script>", "id;rm", "req:1", "caf\u00e9",
           "a\tb", '{"level":"CRITICAL"}', "a\nb", "a\r\nX-Evil: 1", "abc\n", "\x00",
           "abc\x1b[31m", "%0A", "\u2028"]

CATALOG = """
import logging

from flask import g, make_response, request
from kernkoa import *

log = logging.getLogger("catalog.ids")


class ids:
    def show(self):
        log.warning("in the controller")
        return {"g": g.request_id, "request": request.request_id}

    def boom(self):
        log.warning("about to fail")
        raise RuntimeError("boom")

    def post(self):
        return {"size": len(request.get_data())}

    def own(self):
        response = make_response("mine")
        response.headers["X-Request-Id"] = "set-by-the-view"
        return response
"""


@pytest.fixture
def client(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> FlaskClient:
    tree.write("ids.py", CATALOG)
    return make_app(MAX_CONTENT_LENGTH=100).test_client()


def _send(client: FlaskClient, path: str, incoming: str, method: str = "GET",
          **kwargs: t.Any) -> t.Any:
    # Through the WSGI environ, as a server hands it over: Werkzeug's client
    # would refuse a header holding a newline before it is sent.
    return client.open(path, method=method, environ_overrides={"HTTP_X_REQUEST_ID": incoming},
                       **kwargs)


@pytest.mark.parametrize("incoming", ["abc-123", "req.1_2", "A", "a" * 128,
                                      "01J9Z3K4-trace.span_7"])
def test_a_sane_id_is_kept(client: FlaskClient, incoming: str) -> None:
    response = client.get("/ids/ids/show", headers={"X-Request-Id": incoming})
    assert response.headers["X-Request-Id"] == incoming
    assert response.get_json() == {"g": incoming, "request": incoming}


@pytest.mark.parametrize("incoming", HOSTILE)
def test_any_other_value_is_replaced_never_echoed(client: FlaskClient, incoming: str) -> None:
    response = _send(client, "/ids/ids/show", incoming)
    given = response.headers["X-Request-Id"]
    assert FRESH.fullmatch(given) and given != incoming
    assert response.get_json() == {"g": given, "request": given}


def test_without_a_header_each_request_gets_its_own(client: FlaskClient) -> None:
    seen = {client.get("/ids/ids/show").headers["X-Request-Id"] for _ in range(20)}
    assert len(seen) == 20 and all(FRESH.fullmatch(rid) for rid in seen)


@pytest.mark.parametrize(("method", "path", "status", "body"), [
    ("GET", "/no/such/route", 404, None),
    ("GET", "/ids/ids/nothing", 404, None),
    ("GET", "/status/not-a-task", 404, None),
    ("GET", "/images/missing.png", 404, None),
    ("DELETE", "/ids/ids/show", 405, None),
    ("POST", "/ids/ids/post", 413, b"x" * 1000),
    ("GET", "/ids/ids/boom", 500, None),
    ("GET", "/_kernkoa/endpoints", 200, None),
    ("GET", "/_kernkoa/openapi.json", 200, None),
    ("OPTIONS", "/ids/ids/show", 204, None),
])
def test_every_answer_carries_it(client: FlaskClient, method: str, path: str, status: int,
                                 body: bytes | None) -> None:
    response = client.open(path, method=method, data=body,
                           headers={"X-Request-Id": "every-1"})
    assert response.status_code == status
    assert response.headers["X-Request-Id"] == "every-1"
    hostile = _send(client, path, "bad id", method=method, data=body)
    assert hostile.status_code == status and FRESH.fullmatch(hostile.headers["X-Request-Id"])


def test_the_kernel_id_replaces_one_a_view_set(client: FlaskClient) -> None:
    response = client.get("/ids/ids/own", headers={"X-Request-Id": "kernel-1"})
    assert response.data == b"mine"
    assert response.headers.getlist("X-Request-Id") == ["kernel-1"]


def test_a_refused_login_carries_it_too(tree: ControllerTree,
                                        make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop.py", CONTROLLERS)
    client = make_app(ADDONS=["jwt_auth"], HMACKEY=KEY, AUTH_DEFAULT="required").test_client()
    response = client.get("/shop/Reports", headers={"X-Request-Id": "login-1",
                                                    "Authorization": "Bearer nonsense"})
    assert response.status_code == 401 and response.headers["X-Request-Id"] == "login-1"


def test_every_log_line_of_the_request_names_it(client: FlaskClient) -> None:
    with json_log() as log:
        client.get("/ids/ids/show", headers={"X-Request-Id": "logged-1"})
        failed = _send(client, "/ids/ids/boom", "not sane!")
    assert REQUEST_ID.get() is None  # unbound once the request is over
    lines = log.lines()
    shown = [line for line in lines if line["message"] == "in the controller"]
    assert [line["request_id"] for line in shown] == ["logged-1"]
    given = failed.headers["X-Request-Id"]
    of_failure = [line for line in lines if line.get("request_id") == given]
    # The controller's own line and Flask's traceback of the 500.
    assert [line["message"] for line in of_failure][0] == "about to fail"
    assert any("RuntimeError: boom" in line.get("exc_info", "") for line in of_failure)
    assert not any("not sane!" in str(line) for line in lines)


def test_the_id_rules() -> None:
    assert SANE_ID.pattern == r"[A-Za-z0-9._-]{1,128}+"
    assert checked_request_id("ok-1") == "ok-1"
    for bad in (None, 42, "", "a" * 129, "a\n"):
        assert checked_request_id(bad) is None
    assert settle_request_id("ok-1") == "ok-1"
    assert FRESH.fullmatch(settle_request_id("not ok"))
    assert FRESH.fullmatch(settle_request_id(None))


def test_logs_outside_a_request_have_no_id(caplog: pytest.LogCaptureFixture) -> None:
    with json_log() as log:
        logging.getLogger("kernkoa.test").info("no request here")
    [line] = [line for line in log.lines() if line["message"] == "no request here"]
    assert "request_id" not in line


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(incoming=st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9._-]{1,130}", fullmatch=True))
def test_whatever_comes_the_answer_is_a_sane_id(client: FlaskClient, incoming: str) -> None:
    # A WSGI environ holds latin-1 text: what a server hands over of any header bytes.
    raw = incoming.encode("utf-8").decode("latin-1")
    given = _send(client, "/ids/ids/show", raw).headers["X-Request-Id"]
    assert SANE_ID.fullmatch(given)
    assert given == raw if SANE_ID.fullmatch(raw) else FRESH.fullmatch(given)

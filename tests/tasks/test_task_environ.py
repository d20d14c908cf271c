"""The worker's rebuilt request (``kernel/tasks/environ.py``): the environ written
directly is the one Flask's ``test_request_context`` builds, and a method sees the
same ``request``, ``url_for`` and request id through either."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask import g
from flask import request
from flask import url_for
from flask.testing import EnvironBuilder

from kernel.tasks.environ import request_context_args
from kernel.tasks.environ import task_environ

ROUTE = "/shop/Jobs/plain_celery"


def _snapshot(**changes: t.Any) -> dict[str, t.Any]:
    snapshot: dict[str, t.Any] = {
        "path": ROUTE, "query_string": "", "method": "POST",
        "root_url": "http://127.0.0.1:8000/",
        "headers": [["Accept", "application/json"], ["User-Agent", "curl/8"]],
        "request_id": "req-1",
    }
    snapshot.update(changes)
    return snapshot


#: Snapshots the direct environ takes (the usual shapes).
DIRECT = {
    "no body": _snapshot(),
    "json body": _snapshot(json={"a": [1, 2], "b": "é\u2028", "c": None}),
    "json null": _snapshot(json=None),
    "form body": _snapshot(form=[["a", "1"], ["b", "x y&z=é/?"], ["a", "3"]]),
    "empty form": _snapshot(form=[]),
    "query": _snapshot(query_string="a=1&b=%C3%A9&c=x+y", method="GET"),
    "raw query": _snapshot(query_string="a=é"),
    "script root, https, port": _snapshot(root_url="https://api.example.com:8443/app/"),
    "https, no port": _snapshot(root_url="https://example.com/"),
    "http, no port": _snapshot(root_url="http://localhost/"),
    "repeated headers": _snapshot(headers=[["Accept", "a/b"], ["accept", "c/d"],
                                           ["X-Requested-With", "x"]]),
    "a request id in the headers too": _snapshot(headers=[["X-Request-Id", "spoofed"]]),
    "no request id": _snapshot(request_id=None),
    "odd but plain path": _snapshot(path="/a/B/c_celery;v=1:x@y!$&'()*+,="),
}

#: Snapshots left to the builder (quoting, host normalising, body or host headers).
BUILDER = {
    "a path to quote": _snapshot(path="/a/B/é c"),
    "a percent in the path": _snapshot(path="/a/B/%41"),
    "a question mark in the path": _snapshot(path="/a/B/c?"),
    "a double slash": _snapshot(path="//a/B/c"),
    "upper-case host": _snapshot(root_url="http://Example.com/"),
    "a host with a user": _snapshot(root_url="http://u@example.com/"),
    "an IPv6 host": _snapshot(root_url="http://[::1]:8000/"),
    "a port with a leading zero": _snapshot(root_url="http://h:080/"),
    "a port too large": _snapshot(root_url="http://h:70000/"),
    "a unicode host": _snapshot(root_url="http://bücher.example/"),
    "a script root to quote": _snapshot(root_url="http://h/a b/"),
    "a content type header": _snapshot(headers=[["Content-Type", "text/plain"]]),
    # The builder lets a Host header replace the root URL's host.
    "a host header": _snapshot(headers=[["Host", "other.example"]]),
}


@pytest.fixture
def app() -> Flask:
    return Flask(__name__)


def _comparable(environ: dict[str, t.Any]) -> dict[str, t.Any]:
    return {**environ, "wsgi.input": environ["wsgi.input"].read()}


@pytest.mark.parametrize("name", list(DIRECT))
def test_the_direct_environ_is_the_builders(app: Flask, name: str) -> None:
    args = request_context_args(DIRECT[name], ROUTE)
    direct = task_environ(args, app.json.dumps)
    assert direct is not None, "the usual shape takes the direct way"
    built = EnvironBuilder(app, **args).get_environ()
    assert _comparable(direct) == _comparable(built)


@pytest.mark.parametrize("name", list(BUILDER))
def test_other_shapes_are_left_to_the_builder(app: Flask, name: str) -> None:
    assert task_environ(request_context_args(BUILDER[name], ROUTE), app.json.dumps) is None


def test_a_method_sees_the_same_request_either_way(make_app: t.Callable[..., Flask]) -> None:
    app = make_app()
    snapshot = _snapshot(root_url="https://api.example.com:8443/app/", query_string="q=1",
                         json={"n": 2})
    args = request_context_args(snapshot, ROUTE)
    seen = []
    environ = task_environ(args, app.json.dumps)
    assert environ is not None
    for context in (app.request_context(environ), app.test_request_context(**args)):
        with context:
            seen.append((request.url, request.get_json(), request.args.to_dict(),
                         request.headers.get("Accept"), g.request_id,
                         url_for("static_pdfs", filename="x.pdf", _external=True)))
    assert seen[0] == seen[1]
    assert seen[0][0] == f"https://api.example.com:8443/app{ROUTE}?q=1"
    assert seen[0][4] == "req-1"

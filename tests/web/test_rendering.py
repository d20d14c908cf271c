"""Return values to responses: the table of the README's "Return values" section."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

RETURNS = """
from kernkoa import *
from werkzeug.wrappers import Response as WerkzeugResponse


class R:
    def text(self):
        return "<b>hi</b>"

    def mapping(self):
        return {"a": 1, "b": [True, None]}

    def sequence(self):
        return [1, "two"]

    def integer(self):
        return 42

    def real(self):
        return 1.5

    def boolean(self):
        return False

    def none(self):
        return None

    def raw(self):
        return b"\\x00\\x01"

    def stream(self):
        def chunks():
            yield "one,"
            yield "two"
        return chunks()

    def stream_uses_request(self):
        def chunks():
            yield request.args.get("q", "")
        return chunks()

    def created(self):
        return {"id": 1}, 201

    def with_headers(self):
        return "made", 201, {"X-Thing": "yes"}

    def headers_only(self):
        return "body", {"X-Thing": "h"}

    def flask_response(self):
        return Response("teapot", status=418, mimetype="text/plain")

    def werkzeug_response(self):
        return WerkzeugResponse("plain", mimetype="text/plain")

    def jsonified(self):
        return jsonify(ok=True)

    def redirected(self):
        return redirect("/elsewhere")

    def page(self):
        return render("page.html", name=request.args["name"])

    def unsupported(self):
        return object()

    def a_set(self):
        return {1, 2}

    def long_tuple(self):
        return "a", 200, {}, "extra"
"""


@pytest.fixture
def client(make_app: t.Callable[..., Flask], tree: ControllerTree,
           tmp_path: t.Any) -> FlaskClient:
    """A client of a catalog holding :data:`RETURNS` as ``/r``, with its own templates."""
    tree.write("r.py", RETURNS)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "page.html").write_text("<p>{{ name }}</p>")
    return make_app(TEMPLATES=str(templates)).test_client()


@pytest.mark.parametrize(
    ("method", "status", "mimetype", "body"),
    [
        ("text", 200, "text/html", b"<b>hi</b>"),
        ("raw", 200, "application/octet-stream", b"\x00\x01"),
        ("stream", 200, "text/html", b"one,two"),
        ("with_headers", 201, "text/html", b"made"),
        ("headers_only", 200, "text/html", b"body"),
        ("flask_response", 418, "text/plain", b"teapot"),
        ("werkzeug_response", 200, "text/plain", b"plain"),
    ],
)
def test_body_returns(client: FlaskClient, method: str, status: int, mimetype: str,
                      body: bytes) -> None:
    response = client.get(f"/r/R/{method}")
    assert response.status_code == status
    assert response.mimetype == mimetype
    assert response.data == body


def test_str_is_utf8_html(client: FlaskClient) -> None:
    assert client.get("/r/R/text").content_type == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("mapping", {"a": 1, "b": [True, None]}),
        ("sequence", [1, "two"]),
        ("integer", 42),
        ("real", 1.5),
        ("boolean", False),
        ("none", None),
        ("jsonified", {"ok": True}),
    ],
)
def test_json_returns(client: FlaskClient, method: str, value: t.Any) -> None:
    response = client.get(f"/r/R/{method}")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == value


def test_none_is_json_null(client: FlaskClient) -> None:
    assert client.get("/r/R/none").data.strip() == b"null"


def test_stream_is_streamed_with_the_request(client: FlaskClient) -> None:
    response = client.get("/r/R/stream", buffered=False)
    assert response.is_streamed
    assert b"".join(response.response) == b"one,two"  # type: ignore[arg-type]
    response.close()
    assert client.get("/r/R/stream_uses_request?q=ctx").data == b"ctx"


def test_tuple_status_and_headers(client: FlaskClient) -> None:
    response = client.get("/r/R/created")
    assert (response.status_code, response.get_json()) == (201, {"id": 1})
    response = client.get("/r/R/with_headers")
    assert response.headers["X-Thing"] == "yes"
    assert client.get("/r/R/headers_only").headers["X-Thing"] == "h"


def test_redirect_passes_through(client: FlaskClient) -> None:
    response = client.get("/r/R/redirected")
    assert response.status_code == 302
    assert response.headers["Location"] == "/elsewhere"


def test_render_autoescapes(client: FlaskClient) -> None:
    response = client.get("/r/R/page", query_string={"name": "<script>"})
    assert response.data == b"<p>&lt;script&gt;</p>"


@pytest.mark.parametrize("method", ["unsupported", "a_set", "long_tuple"])
def test_unsupported_values_are_a_500_envelope(client: FlaskClient, method: str) -> None:
    error = assert_error(client.get(f"/r/R/{method}"), 500, "internal_server_error")
    assert "detail" not in error


def test_unsupported_value_detail_in_debug(make_app: t.Callable[..., Flask],
                                           tree: ControllerTree) -> None:
    tree.write("r.py", RETURNS)
    error = assert_error(make_app(DEBUG=True).test_client().get("/r/R/unsupported"), 500)
    assert "object" in error["detail"]

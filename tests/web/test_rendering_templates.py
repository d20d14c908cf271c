"""Templates: ``render`` and ``stream_template`` from a controller, in-process and over HTTP."""

from __future__ import annotations

import http.client
import typing as t
from pathlib import Path

import pytest
from flask import Flask

if t.TYPE_CHECKING:
    from tests.support.catalogs import ControllerTree
    from tests.support.servers import LiveServer

ROWS = 3000

BIG = """<!doctype html><title>big</title><h1>{{ title }} {{ request.args.get("q", "") }}</h1>
<ul>{% for n in range(rows) %}<li>row {{ n }} {{ title }}</li>
{% endfor %}</ul><p>end</p>
"""

CONTROLLER = """
from kernkoa import *


class pages:
    def plain(self, title: str = "t"):
        return stream_template("big.html", rows=ROWS, title=title)

    def wrapped(self, title: str = "t"):
        return Response(stream_template("big.html", rows=ROWS, title=title),
                        mimetype="text/html")

    def rendered(self, title: str = "t"):
        return render("big.html", rows=ROWS, title=title)
""".replace("ROWS", str(ROWS))


@pytest.fixture
def templates(tmp_path: Path, tree: ControllerTree) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "big.html").write_text(BIG)
    tree.write("pages.py", CONTROLLER)
    return folder


def expected(title: str) -> bytes:
    escaped = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"row {ROWS - 1} {escaped}</li>".encode()


@pytest.mark.parametrize("method", ["plain", "wrapped"])
def test_stream_template_from_a_controller(make_app: t.Callable[..., Flask], templates: Path,
                                           method: str) -> None:
    app = make_app(TEMPLATES=str(templates))
    response = app.test_client().get(f"/pages/pages/{method}?title=<b>&q=from-request")
    assert response.status_code == 200
    assert "Content-Length" not in response.headers  # a stream, not one rendered string
    assert response.content_type == "text/html; charset=utf-8"
    body = response.get_data()
    assert body.count(b"<li>") == ROWS
    assert expected("<b>") in body and b"<b>" not in body  # autoescaped
    assert b"from-request</h1>" in body  # the request is still there while streaming
    assert body.rstrip().endswith(b"<p>end</p>")


def test_render_gives_the_same_page(make_app: t.Callable[..., Flask], templates: Path) -> None:
    client = make_app(TEMPLATES=str(templates)).test_client()
    rendered = client.get("/pages/pages/rendered?title=x")
    streamed = client.get("/pages/pages/plain?title=x")
    assert rendered.headers["Content-Length"] == str(len(rendered.get_data()))
    assert rendered.get_data() == streamed.get_data()


def test_streamed_over_http(serve: t.Callable[..., LiveServer], tree: ControllerTree,
                            templates: Path) -> None:
    # The index page the server is polled on must exist in this catalog.
    tree.write("index.py", "class index:\n    def index(self):\n        return 'ok'\n")
    server = serve(CATALOG=str(tree.root), TEMPLATES=str(templates))
    host, port = server.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/pages/pages/plain?title=live")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") is None  # sent as it is rendered
        first = response.read(100)
        assert first.startswith(b"<!doctype html>")
        rest = response.read()
    finally:
        connection.close()
    body = first + rest
    assert body.count(b"<li>") == ROWS and expected("live") in body

"""The real ``kernkoa serve`` process over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import typing as t
import urllib.parse
from pathlib import Path

import pytest

from tests.support.catalogs import ControllerTree
from tests.support.servers import LiveServer
from tests.support.shipped_catalog import FOLDERS

EXAMPLES = [
    ("/", b"KernKoa is working okay!."),
    ("/fasthelloworld/fastHelloClass/fastHelloWorld", b"hello world!!."),
    ("/fasthelloworld/fastHelloClass/fastHelloWorldWithParameters?hello=world&with=parameters",
     b"hello = world<br>with = parameters<br>"),
    ("/fasthelloworld/fastHelloClass/fastHelloWorldWithParameters", b"Hello World"),
    ("/examples/folderexmple/fastHelloClass/fastHelloWorld", b"hello world!!."),
    (FOLDERS + "/urllibrary/urlclass/urlmethod2?param1=1&param2=2&param3=3&param4=4",
     b"param1 = 1<br>param2 = 2<br>param3 = 3<br>param4 = 4<br>"),
]


def raw_request(server: LiveServer, path: str, method: str = "GET", body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send ``path`` byte for byte (no client-side normalisation); return status, headers, body."""
    netloc = urllib.parse.urlsplit(server.base).netloc
    connection = http.client.HTTPConnection(netloc, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def shipped(serve: t.Callable[..., LiveServer]) -> LiveServer:
    """``kernkoa serve`` on the shipped catalog."""
    return serve()


@pytest.mark.parametrize("headers", [{}, {"Content-Type": ""}, {"Content-Type": "text/plain"}])
def test_readme_examples(shipped: LiveServer, headers: dict[str, str]) -> None:
    for path, expected in EXAMPLES:
        status, response_headers, body = raw_request(shipped, path, headers=headers)
        assert status == 200, (path, body)
        assert response_headers["Content-Type"] == "text/html; charset=utf-8"
        assert expected in body


def test_post_form_and_json(shipped: LiveServer) -> None:
    path = FOLDERS + "/urllibrary/urlclass/urlmethod2"
    status, _, body = raw_request(shipped, path, "POST", b"a=1&b=2",
                                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body) == (200, b"a = 1<br>b = 2<br>")
    status, _, body = raw_request(shipped, path, "POST", b'{"j": "v"}',
                                  {"Content-Type": "application/json"})
    assert (status, body) == (200, b"j = v<br>")
    status, headers, body = raw_request(shipped, path, "POST", b"{",
                                        {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["error"]["status"] == 400


@pytest.mark.parametrize(
    "path",
    ["/nothing/x/y", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc/passwd",
     "/os/getcwd/format", "/sys/exit/x",
     "/fasthelloworld/fastHelloClass/__init__", "/fasthelloworld/Response/get_data"],
)
def test_404_envelope(shipped: LiveServer, path: str) -> None:
    status, headers, body = raw_request(shipped, path)
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == {
        "status": 404, "code": "not_found", "message": "No controller method answers this URL."}


def test_server_survives_sys_exit_attempts(shipped: LiveServer) -> None:
    raw_request(shipped, "/sys/exit/x")
    assert raw_request(shipped, "/")[0] == 200
    assert shipped.process.poll() is None


@pytest.mark.parametrize("verb", ["PUT", "DELETE"])
def test_405_with_allow(shipped: LiveServer, verb: str) -> None:
    status, headers, body = raw_request(shipped, "/fasthelloworld/fastHelloClass/fastHelloWorld",
                                        verb)
    assert status == 405
    assert set(headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_hot_reload_in_the_live_process(serve: t.Callable[..., LiveServer],
                                        tree: ControllerTree, tmp_path: Path) -> None:
    source = "class C:\n    def v(self):\n        return {version!r}\n"
    path = tree.write("live.py", source.format(version="one"))
    server = serve(CATALOG=str(tree.root))
    assert raw_request(server, "/live/C/v")[2] == b"one"
    path.write_text(source.format(version="two"))
    assert raw_request(server, "/live/C/v")[2] == b"two"
    draft = tmp_path / "draft.py"  # an editor's save: write aside, rename over
    draft.write_text(source.format(version="three"))
    draft.replace(path)
    assert raw_request(server, "/live/C/v")[2] == b"three"
    tree.write("added.py", source.format(version="added"))
    assert raw_request(server, "/added/C/v")[2] == b"added"
    path.unlink()
    assert raw_request(server, "/live/C/v")[0] == 404


def test_broken_file_in_the_live_process(serve: t.Callable[..., LiveServer],
                                         tree: ControllerTree) -> None:
    tree.write("good.py", "class C:\n    def v(self):\n        return 'good'\n")
    bad = tree.write("bad.py", "class C(\n")
    server = serve(CATALOG=str(tree.root))
    status, _, body = raw_request(server, "/bad/C/v")
    assert status == 500 and b"Traceback" not in body and b"SyntaxError" not in body
    assert raw_request(server, "/good/C/v")[2] == b"good"
    bad.write_text("class C:\n    def v(self):\n        return 'fixed'\n")
    assert raw_request(server, "/bad/C/v")[2] == b"fixed"

"""A chunked body past ``MAX_CONTENT_LENGTH`` is a 413 in every server, never a body cut short.

Real servers on 127.0.0.1: ``kernkoa serve`` (Werkzeug, which de-chunks the
body) and uWSGI's HTTP socket (which leaves the de-chunking to the app).
The production shape, nginx in front, is in ``tests/deploy/test_setup.py``. Each server
gets every content type the kernel reads, chunked, at sizes around the limit:
up to the limit the controller sees the whole body, past it the answer is the
413 envelope.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import typing as t
import urllib.parse
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.exceptions import RequestEntityTooLarge

from kernel.web.body import UwsgiChunks
from kernel.web.body import WholeBody
from kernel.web.body import WholeBodyRequest
from kernel.web.flaskapp import KernKoaFlask
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server

#: The body limit of the servers under test.
LIMIT = 64 * 1024

BODY = '''
import hashlib

from flask import request


class Body:
    def raw(self):
        data = request.get_data()
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def fields(self, **fields):
        return {name: len(value) for name, value in fields.items()}
'''

#: Sizes sent: under, at, just past and well past the limit.
SIZES = (LIMIT - 1, LIMIT, LIMIT + 1, 3 * LIMIT)

BOUNDARY = "kernkoa-test-boundary"


def sized_body(kind: str, size: int) -> tuple[str, bytes, str, dict[str, t.Any]]:
    """A body of ``kind`` of exactly ``size`` bytes: the path it goes to, the
    body, its content type and what the controller answers when it reads it whole."""
    if kind == "raw":
        data = bytes(i % 251 for i in range(size))
        return "/body/Body/raw", data, "application/octet-stream", {
            "bytes": size, "sha256": hashlib.sha256(data).hexdigest()}
    if kind == "json":
        fill = size - len(b'{"a": ""}')
        return "/body/Body/fields", b'{"a": "' + b"j" * fill + b'"}', "application/json", {
            "a": fill}
    if kind == "form":
        fill = size - len(b"a=")
        return "/body/Body/fields", b"a=" + b"f" * fill, "application/x-www-form-urlencoded", {
            "a": fill}
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    fill = size - len(head) - len(tail)
    return "/body/Body/fields", head + b"m" * fill + tail, (
        f"multipart/form-data; boundary={BOUNDARY}"), {"a": fill}


KINDS = ("raw", "json", "form", "multipart")


def send_chunked(base: str, path: str, body: bytes, content_type: str,
                 chunk: int = 8192, timeout: float = 30.0) -> tuple[int, dict[str, t.Any]]:
    """POST ``body`` with ``Transfer-Encoding: chunked``; the status and decoded JSON answer."""
    netloc = urllib.parse.urlsplit(base).netloc
    connection = http.client.HTTPConnection(netloc, timeout=timeout)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.putheader("Content-Type", content_type)
        connection.endheaders()
        for start in range(0, len(body), chunk):
            piece = body[start:start + chunk]
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def check_every_kind_and_size(base: str) -> list[tuple[str, int, int]]:
    """Send every kind at every size; check each answer; return (kind, size, status)."""
    seen = []
    for kind in KINDS:
        for size in SIZES:
            path, body, content_type, whole = sized_body(kind, size)
            assert len(body) == size
            status, answer = send_chunked(base, path, body, content_type)
            if size <= LIMIT:
                assert (status, answer) == (200, whole), (kind, size, answer)
            else:
                assert status == 413, (kind, size, answer)
                assert answer["error"]["status"] == 413 and answer["error"]["code"], answer
            seen.append((kind, size, status))
    return seen


def test_the_development_server_refuses_a_chunked_body_past_the_limit(
        serve: t.Callable[..., LiveServer], tree: ControllerTree) -> None:
    tree.write("body.py", BODY)
    server = serve(CATALOG=str(tree.root), MAX_CONTENT_LENGTH=str(LIMIT))
    seen = check_every_kind_and_size(server.base)
    assert len(seen) == len(KINDS) * len(SIZES)


@pytest.mark.uwsgi
def test_uwsgi_reads_a_chunked_body_whole_and_refuses_one_past_the_limit(
        tree: ControllerTree, tmp_path: Path) -> None:
    tree.write("body.py", BODY)
    env = {"KERNKOA_CATALOG": str(tree.root), "KERNKOA_MAX_CONTENT_LENGTH": str(LIMIT)}
    with uwsgi_server(tmp_path, env) as server:
        seen = check_every_kind_and_size(server.base)
        # A body with a Content-Length is read as before.
        octets = {"Content-Type": "application/octet-stream"}
        status, _, answer = server.request("/body/Body/raw", "POST", b"x" * 10, octets)
        assert status == 200 and json.loads(answer)["bytes"] == 10
        status, _, answer = server.request("/body/Body/raw", "POST", b"x" * (LIMIT + 1), octets)
        assert status == 413 and json.loads(answer)["error"]["status"] == 413
    assert len(seen) == len(KINDS) * len(SIZES)


def test_a_body_that_ends_at_the_limit_is_whole() -> None:
    exact = WholeBody(io.BytesIO(b"x" * 100), 100)
    assert exact.read() == b"x" * 100
    # Read piece by piece, as the multipart parser does: the end is not a 413.
    pieces = WholeBody(io.BytesIO(b"y" * 100), 100)
    assert b"".join(iter(lambda: pieces.read(30), b"")) == b"y" * 100
    assert WholeBody(io.BytesIO(b"z" * 10), 100).read() == b"z" * 10


def test_a_body_past_the_limit_is_refused_however_it_is_read() -> None:
    with pytest.raises(RequestEntityTooLarge):
        WholeBody(io.BytesIO(b"x" * 101), 100).read()
    pieces = WholeBody(io.BytesIO(b"y" * 101), 100)
    with pytest.raises(RequestEntityTooLarge):
        while pieces.read(30):
            pass


def test_uwsgi_chunks_are_read_as_one_stream() -> None:
    chunks = iter([b"ab", b"", b"cdef", b"g"])  # b"" is the end: "g" is never read
    stream = UwsgiChunks(lambda: next(chunks))
    assert stream.read(3) == b"ab"
    assert stream.read() == b""
    parts = iter([b"x" * 70_000, b"y" * 5, b""])
    assert len(io.BufferedReader(UwsgiChunks(lambda: next(parts))).read()) == 70_005


def test_a_chunked_body_the_server_cannot_hand_on_is_a_411(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("body.py", BODY)
    client = make_app().test_client()
    # Neither de-chunked (no wsgi.input_terminated) nor under uWSGI.
    response = client.post("/body/Body/raw", input_stream=io.BytesIO(b"5\r\nhello\r\n0\r\n\r\n"),
                           headers={"Transfer-Encoding": "chunked"})
    assert_error(response, 411)
    # De-chunked by the server, as Werkzeug's own does.
    response = client.post("/body/Body/raw", input_stream=io.BytesIO(b"hello"),
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.get_json()["bytes"] == 5


def test_the_body_limit_is_flasks_and_read_per_request() -> None:
    # The limit is read through the app, not its proxy: still the request's own
    # limit first, then the app's MAX_CONTENT_LENGTH as it is now, then none.
    app = KernKoaFlask("limits")
    environ = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(b"")}
    assert WholeBodyRequest(dict(environ)).max_content_length is None  # no app
    with app.app_context():
        req = WholeBodyRequest(dict(environ))
        app.config["MAX_CONTENT_LENGTH"] = 10
        assert req.max_content_length == 10
        app.config["MAX_CONTENT_LENGTH"] = 20
        assert req.max_content_length == 20
        req.max_content_length = 5
        assert req.max_content_length == 5
    assert req.max_content_length == 5

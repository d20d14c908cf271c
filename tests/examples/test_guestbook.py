"""The KernKoa guestbook (catalog/controller/message): safe SQL, escaped output,
validation before insert, no lock after a failure, no lost row under uWSGI."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import sqlite3
import typing as t
import urllib.parse
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kernel import create_app
from kernel.api.databases import dispose_all
from kernel.core.settings import PROJECT_ROOT
from tests.support.processes import stop
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server

INDEX = "/message/message/message/index"
INSERT = "/message/message/message/insert"

INJECTIONS = [
    "'); DROP TABLE messages; --",
    "bob', 'x', 'y'); DELETE FROM messages; --",
    "1' OR '1'='1",
    "select * from messages",
    "\"; UPDATE messages SET user = 'pwned'; --",
]


@pytest.fixture(autouse=True)
def _close_engines() -> t.Iterator[None]:
    yield
    dispose_all()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """Where the shipped ``maindb`` lives for this test (VAR is the test's own)."""
    return tmp_path / "var" / "maindb.sqlite3"


def rows(database: Path) -> list[tuple[t.Any, ...]]:
    """The guestbook's rows, read with plain sqlite3."""
    connection = sqlite3.connect(database)
    try:
        return connection.execute("SELECT user, message FROM messages ORDER BY id").fetchall()
    finally:
        connection.close()


def test_empty_guestbook_page(client: FlaskClient) -> None:
    response = client.get(INDEX)
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    assert b"No messages yet" in response.data
    assert b"<form" in response.data and b"fetch(" in response.data
    assert not re.search(rb"<(script|link)[^>]+(src|href)=", response.data)  # no CDN assets


def test_insert_then_list(client: FlaskClient, database: Path) -> None:
    response = client.post(INSERT, data={"user": "bob", "message": "hi"})
    assert response.status_code == 200
    assert response.get_json() == {"inserted": 1, "status": "OK"}
    assert rows(database) == [("bob", "hi")]
    page = client.get(INDEX).data
    assert b"<strong>bob</strong>" in page and b"hi" in page and b"1 message<" in page


def test_json_body_works_too(client: FlaskClient, database: Path) -> None:
    response = client.post(INSERT, json={"user": "ann", "message": "from JSON"})
    assert response.get_json() == {"inserted": 1, "status": "OK"}
    assert rows(database) == [("ann", "from JSON")]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_sql_injection_lands_as_plain_text(client: FlaskClient, database: Path,
                                           payload: str) -> None:
    client.post(INSERT, data={"user": "ok", "message": "before"})
    response = client.post(INSERT, data={"user": payload, "message": payload})
    assert response.get_json() == {"inserted": 1, "status": "OK"}
    assert rows(database) == [("ok", "before"), (payload, payload)]
    assert client.get(INDEX).status_code == 200


def test_output_is_escaped(client: FlaskClient) -> None:
    client.post(INSERT, data={"user": "<b>x</b>", "message": "<script>alert(1)</script>"})
    page = client.get(INDEX).data
    assert b"<script>alert(1)</script>" not in page
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert b"&lt;b&gt;x&lt;/b&gt;" in page


@pytest.mark.parametrize(("data", "bad"), [
    ({"user": "", "message": "hi"}, ["user"]),
    ({"user": "   ", "message": "hi"}, ["user"]),
    ({"user": "bob", "message": " \n "}, ["message"]),
    ({"user": "b" * 65, "message": "hi"}, ["user"]),
    ({"user": "bob", "message": "m" * 1001}, ["message"]),
    ({"user": "bob"}, ["message"]),
    ({}, ["user", "message"]),
])
def test_invalid_input_is_refused_before_insert(client: FlaskClient, database: Path,
                                                data: dict[str, str], bad: list[str]) -> None:
    client.get(INDEX)  # the table exists
    response = client.post(INSERT, data=data)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "unprocessable_entity"
    assert sorted(f["name"] for f in error["fields"]) == sorted(bad)
    assert rows(database) == []


def test_limits_are_inclusive(client: FlaskClient, database: Path) -> None:
    response = client.post(INSERT, data={"user": "u" * 64, "message": "m" * 1000})
    assert response.status_code == 200
    assert rows(database) == [("u" * 64, "m" * 1000)]


def test_insert_needs_post(client: FlaskClient, database: Path) -> None:
    response = client.get(INSERT + "?user=bob&message=hi")
    assert response.status_code == 405
    assert not database.exists() or rows(database) == []


def test_failing_statement_does_not_lock_the_next_request(
        tree: t.Any, tmp_path: Path, database: Path) -> None:
    # The shipped catalog, plus a controller whose transaction fails half-way.
    shutil.copytree(PROJECT_ROOT / "catalog", tree.root, dirs_exist_ok=True)
    tree.write("broken.py", """
        import sqlalchemy as sa

        from kernkoa import *

        class broken:
            def index(self):
                load.model("model_message", "message")  # the table exists
                with dbs["maindb"].transaction() as conn:
                    conn.execute(sa.text(
                        "INSERT INTO messages (user, message, date) VALUES ('half', 'way', 'x')"))
                    conn.execute(sa.text("INSERT INTO messages (user) VALUES ('no message')"))

            def single(self):
                return dbs["maindb"].query("INSERT INTO messages (user) VALUES (:u)", {"u": "x"})
    """)
    app: Flask = create_app({"CATALOG": str(tree.root)})
    client = app.test_client()
    assert client.get("/broken/broken").status_code == 500
    assert client.get("/broken/broken/single").status_code == 500
    # Another process that refuses to wait at all can write: no lock was left behind.
    other = sqlite3.connect(database, timeout=0)
    try:
        other.execute("INSERT INTO messages (user, message, date) VALUES ('other', 'p', 'd')")
        other.commit()
    finally:
        other.close()
    response = client.post(INSERT, data={"user": "bob", "message": "next request"})
    assert response.get_json() == {"inserted": 1, "status": "OK"}
    assert rows(database) == [("other", "p"), ("bob", "next request")]


# --- real uWSGI, two processes ------------------------------------------------------


@pytest.fixture
def uwsgi(tmp_path: Path) -> t.Iterator[tuple[LiveServer, Path]]:
    """uWSGI with 2 worker processes (no lazy-apps) and the access_log add-on."""
    env = {"KERNKOA_VAR": str(tmp_path / "var"), "KERNKOA_ADDONS": "access_log"}
    with uwsgi_server(tmp_path, env, "--listen", "64") as server:
        yield server, t.cast(Path, server.log)


@pytest.mark.uwsgi
def test_two_uwsgi_processes_lose_no_row(uwsgi: tuple[LiveServer, Path],
                                         database: Path) -> None:
    server, log_path = uwsgi
    total = 200

    def insert(n: int) -> tuple[int, bytes, str]:
        body = urllib.parse.urlencode({"user": f"user{n}", "message": f"message {n}"}).encode()
        status, headers, data = server.request(INSERT, "POST", body, {
            "Content-Type": "application/x-www-form-urlencoded", "X-Request-Id": f"req-{n}"})
        return status, data, headers.get("X-Request-Id", "")

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(insert, range(total)))
    for n, (status, data, rid) in enumerate(results):
        assert status == 200, data
        assert json.loads(data) == {"inserted": 1, "status": "OK"}
        assert rid == f"req-{n}"
    stored = rows(database)
    assert len(stored) == total
    assert sorted(stored) == sorted((f"user{n}", f"message {n}") for n in range(total))
    status, _, page = server.request(INDEX)
    assert status == 200 and f"{total} messages".encode() in page

    log = log_path.read_text()
    pids = set(re.findall(r"\[pid: (\d+)\|app: 0\|req: \d+/\d+\][^\n]*POST " + INSERT, log))
    assert len(pids) == 2, "both worker processes served inserts"
    assert log.count(f"route={INSERT} status=200") == total
    server_pids = pids

    stop(server.process, grace=30)
    for pid in server_pids:  # the workers went with the master
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)

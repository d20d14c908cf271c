"""Following one request into its task on real parts: uWSGI (2 processes) and a kernkoa
worker writing JSON logs, a real redis-server; and the embedded stack of ``kernkoa serve``
writing text logs. Every log file is parsed line by line."""

from __future__ import annotations

import html
import json
import re
import socket
import typing as t
from pathlib import Path

import pytest

from tests.support.logs import json_lines
from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server
from tests.support.tasks import Stack
from tests.support.tasks import Worker
from tests.support.tasks import final
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

pytestmark = [pytest.mark.redis, pytest.mark.uwsgi]

#: A task that prints, logs, and may fail.
TALK = '''
import logging

from flask import g
from kernkoa import *

log = logging.getLogger("catalog.talk")


class talk:
    def say_celery(self, task, word: str = "hello", fail: bool = False, chain: bool = False):
        print("the task says", word)
        log.warning("logged by the method")
        if fail:
            raise ValueError("asked to fail")
        if chain:
            return exeTask(self, "say_celery", {"word": "chained"})
        return {"word": word, "seen": g.request_id}
'''

FRESH = re.compile(r"[0-9a-f]{32}")


class Live(t.NamedTuple):
    server: LiveServer
    worker: Worker
    folder: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Live]:
    """redis-server, uWSGI with 2 processes and one worker, JSON logs, access_log on."""
    folder = tmp_path_factory.mktemp("request-ids")
    redis = RedisServer(folder / "redis")
    redis.start()
    catalog = write_catalog(folder / "catalog")
    (catalog / "controller" / "talk.py").write_text(TALK)
    settings = {"CATALOG": str(catalog), "BROKER_URL": redis.url, "RESULT_BACKEND": redis.url,
                "VAR": str(folder / "var"), "LOG_FORMAT": "json", "ADDONS": "access_log"}
    stack = Stack(folder)
    try:
        worker = stack.worker(clean_environ(**settings), "--concurrency=1")
        env = {f"KERNKOA_{name}": value for name, value in settings.items()}
        with uwsgi_server(folder, env) as server:
            yield Live(server, worker, folder)
    finally:
        stack.close()
        redis.stop()


def _post(server: LiveServer, path: str, fields: dict[str, t.Any],
          request_id: str | None) -> tuple[str, str]:
    headers = {"Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    status, answer_headers, body = server.request(path, "POST", json.dumps(fields).encode(),
                                                  headers)
    assert status == 202, body
    return json.loads(body)["id"], answer_headers["X-Request-Id"]


def _task_lines(lines: list[dict[str, t.Any]], task_id: str) -> list[dict[str, t.Any]]:
    return [line for line in lines if line.get("task_id") == task_id]


def test_one_request_id_from_the_web_log_to_the_status_page(live: Live) -> None:
    server = live.server
    task_id, echoed = _post(server, "/talk/talk/say_celery", {"word": "hi"}, "trace-42.a_b")
    assert echoed == "trace-42.a_b"
    body = wait_status(server, task_id, final)
    assert body == {"status": "SUCCESS", "data": {"word": "hi", "seen": "trace-42.a_b"},
                    "request_id": "trace-42.a_b"}

    # A poll is a request of its own: its id is echoed; the task's stays the trigger's.
    status, headers, polled = server.request(f"/status/{task_id}",
                                             headers={"X-Request-Id": "poll-1"})
    assert headers["X-Request-Id"] == "poll-1"
    assert json.loads(polled)["request_id"] == "trace-42.a_b"

    # The status page shows it, in its first HTML and for the script.
    status, _, page = server.request(f"/status/{task_id}", headers={"Accept": "text/html"})
    assert status == 200
    assert '<code id="request-id">trace-42.a_b</code>' in page.decode()
    initial = re.search(r'data-initial="([^"]*)"', page.decode())
    assert initial and json.loads(html.unescape(initial.group(1)))["request_id"] == "trace-42.a_b"

    # The web log: the trigger's access line, with its route and status.
    assert server.log is not None
    web = json_lines(server.log)
    [access] = [line for line in web if line.get("request_id") == "trace-42.a_b"
                and line["logger"] == "kernkoa.access"]
    assert access["route"] == "/talk/talk/say_celery" and access["status"] == 202
    assert access["method"] == "POST" and access["identity"] is None
    assert isinstance(access["duration_ms"], float)

    # The worker log: every line of the task names the request, the print() included.
    wait_for(lambda: any(line.get("state") == "SUCCESS"
                         for line in _task_lines(json_lines(live.worker.log), task_id)),
             what="the task's last line")
    of_task = _task_lines(json_lines(live.worker.log), task_id)
    assert {line["request_id"] for line in of_task} == {"trace-42.a_b"}
    messages = [line["message"] for line in of_task]
    printed = [line for line in of_task if line["message"] == "the task says hi"]
    assert printed and printed[0]["level"] == "INFO"
    assert printed[0]["logger"] == "kernkoa.tasks.print"
    assert "logged by the method" in messages
    assert any("succeeded" in message for message in messages)  # Celery's own line
    states = [(line["state"], line["retries"]) for line in of_task
              if line["logger"] == "kernkoa.access"]
    assert states == [("STARTED", 0), ("SUCCESS", 0)]
    assert not any(line["level"] == "WARNING" and line["logger"] == "celery.redirected"
                   for line in json_lines(live.worker.log))


def test_a_failure_and_a_task_started_by_a_task_keep_the_id(live: Live) -> None:
    server = live.server
    task_id, _ = _post(server, "/talk/talk/say_celery", {"fail": True}, "trace-fail")
    body = wait_status(server, task_id, final)
    assert body["status"] == "FAILURE" and body["request_id"] == "trace-fail"

    parent, _ = _post(server, "/talk/talk/say_celery", {"chain": True}, "trace-chain")
    started = wait_status(server, parent, final)
    assert started["status"] == "SUCCESS" and started["request_id"] == "trace-chain"
    child = wait_status(server, started["data"]["id"], final)
    assert child == {"status": "SUCCESS", "data": {"word": "chained", "seen": "trace-chain"},
                     "request_id": "trace-chain"}


def _raw_request(server: LiveServer, raw_header: bytes) -> tuple[int, dict[str, str]]:
    """Send a request whose X-Request-Id line is ``raw_header`` as it is, byte for byte."""
    host, port = server.base.removeprefix("http://").split(":")
    request = (b"POST /talk/talk/say_celery HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: 2\r\n"
               b"X-Request-Id: " + raw_header + b"\r\nConnection: close\r\n\r\n{}")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


HOSTILE = [b"a" * 129, b"two words", b"caf\xc3\xa9", b"", b"a\tb", b"x\x1b[31m",
           b'abc","level":"CRITICAL', b"id%0Ainjected", b"\xe2\x80\xa8line-separator",
           # An end of line ends the header: the id is "abc" (kept), the rest is
           # another header line, or a folded continuation the server refuses or joins.
           b"abc\r\n injected-fold", b"abc\r\nX-Injected: 1"]


def test_hostile_ids_are_replaced_never_echoed_never_break_a_line(live: Live) -> None:
    server = live.server
    assert server.log is not None
    given: list[str] = []
    for raw in HOSTILE:
        status, headers = _raw_request(server, raw)
        if status >= 400:
            # A header the server itself refuses never reaches the kernel.
            continue
        assert status == 202, (raw, status)
        rid = headers["x-request-id"]
        if raw.startswith(b"abc\r\n"):
            assert rid == "abc" or FRESH.fullmatch(rid), (raw, rid)
            continue
        assert FRESH.fullmatch(rid), (raw, rid)
        given.append(rid)
    assert len(given) >= len(HOSTILE) - 4  # only malformed HTTP may be refused
    for rid in given:
        wait_for(lambda rid=rid: any(line.get("request_id") == rid
                                     for line in json_lines(live.worker.log)),
                 what=f"the task of request {rid}")
    web = json_lines(server.log)
    worker = json_lines(live.worker.log)
    for rid in given:
        assert [line["status"] for line in web if line.get("request_id") == rid
                and line["logger"] == "kernkoa.access"] == [202]
    logged = server.log.read_text(errors="replace") + live.worker.log.read_text(errors="replace")
    for raw in HOSTILE:
        if len(raw) > 4:
            assert raw.decode("latin-1") not in logged
    assert "injected" not in logged.lower() and "CRITICAL" not in logged
    # Every context field is a sane id or absent.
    for line in web + worker:
        for field in ("request_id", "task_id"):
            assert field not in line or re.fullmatch(r"[A-Za-z0-9._-]{1,128}", line[field])


def test_embedded_stack_text_logs(stack: Stack, tmp_path: Path) -> None:
    """``kernkoa serve`` with its own worker (files under VAR, text logs): the same id in
    the status, on the worker's lines and the server's."""
    catalog = write_catalog(tmp_path / "catalog")
    (catalog / "controller" / "talk.py").write_text(TALK)
    env = clean_environ(CATALOG=str(catalog), VAR=str(tmp_path / "var"),
                        WORKER_CONCURRENCY="1", ADDONS="access_log")
    server = stack.server(env, with_worker=True)
    task_id, echoed = _post(server, "/talk/talk/say_celery", {"word": "text"}, "embedded-1")
    body = wait_status(server, task_id, final)
    assert body["status"] == "SUCCESS" and body["request_id"] == echoed == "embedded-1"
    [log] = tmp_path.glob("serve-*.log")

    def lines_of_task() -> list[str]:
        return [line for line in log.read_text().splitlines() if f"task_id={task_id}" in line]

    wait_for(lambda: any("state=SUCCESS" in line for line in lines_of_task()),
             what="the task's last line")
    of_task = lines_of_task()
    assert all(f"[request_id=embedded-1 task_id={task_id}]" in line for line in of_task)
    assert any(" INFO kernkoa.tasks.print: the task says text [" in line for line in of_task)
    assert any(" INFO kernkoa.access: method=POST path=/talk/talk/say_celery "
               "route=/talk/talk/say_celery status=202 " in line
               and line.endswith("[request_id=embedded-1]")
               for line in log.read_text().splitlines())

"""A task's request id in one process: in the message, in the rebuilt request, bound to
the worker's log context, stored with each state and shown in the status body."""

from __future__ import annotations

import base64
import json
import logging
import types
import typing as t
from pathlib import Path

import pytest
from celery import states
from flask import Flask

from kernel.core.logs import REQUEST_ID
from kernel.core.logs import TASK_ID
from kernel.core.logs import KernKoaLogHandler
from kernel.tasks.body import status_body
from kernel.tasks.celeryapp import celery_config
from kernel.tasks.celeryapp import get_celery
from kernel.tasks.environ import request_context_args
from kernel.tasks.environ import request_id_of
from kernel.tasks.run import TASK_NAME
from kernel.tasks.store import JobStore
from kernel.tasks.store import TaskRecord
from kernel.tasks.tasklogs import bind_log_context
from kernel.tasks.tasklogs import log_tasks_through_root
from kernel.tasks.tasklogs import unbind_log_context
from kernel.web.state import state_of
from tests.support.catalogs import ControllerTree

CONTROLLER = """
from flask import g, request
from kernkoa import *

class jobs:
    def work_celery(self, task, n: int = 1):
        return {"g": g.request_id, "header": request.headers.get("X-Request-Id")}

    def relay(self, params=None):
        return exeTask(self, "work_celery", {"n": 2})
"""

ISSUED = {"route": "/jobs/jobs/work_celery"}


@pytest.fixture
def app(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> Flask:
    tree.write("jobs.py", CONTROLLER)
    return make_app()


def _queued(var: Path) -> list[dict[str, t.Any]]:
    messages = [json.loads(p.read_text()) for p in var.rglob("*.msg")]
    return [json.loads(base64.b64decode(m["body"]))[1] for m in messages]


def test_the_message_carries_the_settled_id_never_the_raw_header(
        app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    sane = client.post("/jobs/jobs/work_celery", headers={"X-Request-Id": "trace-1"})
    hostile = client.post("/jobs/jobs/work_celery",
                          environ_overrides={"HTTP_X_REQUEST_ID": "bad\nid"})
    relayed = client.get("/jobs/jobs/relay", headers={"X-Request-Id": "relay-1"})
    assert sane.status_code == hostile.status_code == 202 and relayed.status_code == 200
    by_id = {kwargs["request"]["request_id"]: kwargs for kwargs in _queued(tmp_path / "var")}
    assert set(by_id) == {"trace-1", "relay-1", hostile.headers["X-Request-Id"]}
    for kwargs in by_id.values():
        headers = {name.lower() for name, _ in kwargs["request"]["headers"]}
        assert "x-request-id" not in headers
    assert "bad\nid" not in json.dumps(list(by_id.values()))


def test_the_rebuilt_request_has_the_same_id() -> None:
    snapshot = {"path": "/a/b/C/m_celery", "root_url": "http://h/", "query_string": "",
                "method": "POST", "headers": [["X-Request-Id", "stale"], ["Accept", "*/*"]],
                "request_id": "trace-2"}
    args = request_context_args(snapshot, "/a/b/C/m_celery")
    assert args["headers"] == [("Accept", "*/*"), ("X-Request-Id", "trace-2")]
    # A snapshot from before request ids keeps its headers as they were.
    old = {**snapshot, "request_id": None}
    assert request_context_args(old, "/x")["headers"] == [("X-Request-Id", "stale"),
                                                          ("Accept", "*/*")]
    assert request_id_of({"request_id": "a b"}) is None
    assert request_id_of(None) is None


def test_the_worker_binds_the_ids_around_the_run(app: Flask) -> None:
    task = types.SimpleNamespace(request=types.SimpleNamespace())
    sender = types.SimpleNamespace(name=TASK_NAME)
    kwargs = {"route": "/x", "request": {"request_id": "trace-3"}}
    bind_log_context(sender=sender, task_id="task-3", task=task, kwargs=kwargs)
    assert (TASK_ID.get(), REQUEST_ID.get()) == ("task-3", "trace-3")
    unbind_log_context(sender=sender, task=task)
    assert (TASK_ID.get(), REQUEST_ID.get()) == (None, None)
    # Another task, or a message with a bad id, binds nothing of it.
    bind_log_context(sender=types.SimpleNamespace(name="other"), task_id="t", task=task,
                     kwargs=kwargs)
    assert TASK_ID.get() is None
    bind_log_context(sender=sender, task_id="task-4", task=task,
                     kwargs={"request": {"request_id": "x\ny"}})
    assert (TASK_ID.get(), REQUEST_ID.get()) == ("task-4", None)
    unbind_log_context(sender=sender, task=task)
    unbind_log_context(sender=sender, task=task)  # twice: nothing left to undo
    assert TASK_ID.get() is None


def test_every_stored_state_keeps_the_id(app: Flask) -> None:
    """The result backend writes it into each state, read from the task's message,
    else from the running task's log context; other code stores none."""
    celery = get_celery(app)
    backend = celery.backend
    request = types.SimpleNamespace(kwargs={"request": {"request_id": "trace-5"}},
                                    group=None, parent_id=None, children=[])
    backend.store_result("t-1", {"current": 1}, "PROGRESS", request=request)
    assert backend.get_task_meta("t-1")["request_id"] == "trace-5"
    tokens = TASK_ID.set("t-2"), REQUEST_ID.set("trace-6")
    try:
        JobStore(celery).start("t-2", "host")
        backend.store_result("t-3", 42, states.SUCCESS)
    finally:
        TASK_ID.reset(tokens[0])
        REQUEST_ID.reset(tokens[1])
    assert backend.get_task_meta("t-2")["request_id"] == "trace-6"
    assert backend.get_task_meta("t-3")["request_id"] == "trace-6"
    backend.store_result("t-4", 1, states.SUCCESS)
    assert "request_id" not in backend.get_task_meta("t-4")


def test_status_body_shows_it_once_stored() -> None:
    def body(meta: dict[str, t.Any] | None, revoked: bool = False) -> dict[str, t.Any]:
        return status_body(TaskRecord(ISSUED, revoked, meta))

    assert body(None) == {"status": "PENDING"}
    assert body({"status": "STARTED", "request_id": "r-1"}) == {"status": "STARTED",
                                                                "request_id": "r-1"}
    done = {"status": "SUCCESS", "result": 3, "request_id": "r-1"}
    assert json.dumps(body(done)) == '{"status": "SUCCESS", "data": 3, "request_id": "r-1"}'
    assert body(done, revoked=True) == {"status": "REVOKED", "request_id": "r-1"}
    assert body({"status": "FAILURE", "result": {"exc_type": "E", "exc_message": ["m"]},
                 "request_id": "r-1"})["request_id"] == "r-1"
    # A stored value that is not a sane id is not shown.
    assert body({"status": "STARTED", "request_id": "<b>x</b>"}) == {"status": "STARTED"}


def test_print_is_info_and_task_logs_go_through_the_kernel_handler(app: Flask) -> None:
    config = celery_config(state_of(app).settings)
    assert config["worker_redirect_stdouts_level"] == "INFO"
    logger = logging.getLogger("test.tasklogs.celery.task")
    own = logging.StreamHandler()
    logger.handlers[:] = [own]
    logger.propagate = False
    root = logging.getLogger()
    kernel_handler = KernKoaLogHandler()
    saved = root.handlers[:]
    try:
        log_tasks_through_root(logger=logger)  # the root is not the kernel's: left alone
        assert logger.handlers == [own]
        root.handlers[:] = [kernel_handler]
        log_tasks_through_root(logger=logger)
        assert logger.handlers == [] and logger.propagate
    finally:
        root.handlers[:] = saved

"""Fast checks of long work in one process: embedded broker files, no worker."""

from __future__ import annotations

import base64
import json
import typing as t

import pytest
from flask import Flask

from kernel.cli.worker import worker_argv
from kernel.core.errors import TaskCancelled
from kernel.core.errors import TaskNotFound
from kernel.core.settings import Settings
from kernel.tasks.body import status_body
from kernel.tasks.celeryapp import visibility_timeout
from kernel.tasks.run import TaskHandle
from kernel.tasks.store import TaskRecord
from kernel.tasks.views import status_response
from tests.support.catalogs import ControllerTree

CONTROLLER = """
from kernkoa import *

class jobs:
    def work_celery(self, task, n: int, params=None):
        return n

    def trigger(self, params=None):
        return exeTask(self, "work_celery", {"n": 3})

    def relay(self, params=None):
        return exeTask(self, "work_celery", params)

    def text_for_int(self, params=None):
        return exeTask(self, "work_celery", {"n": "3"})

    def plain(self):
        return exeTask(self, "plain", None)
"""


@pytest.fixture
def app(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> Flask:
    tree.write("jobs.py", CONTROLLER)
    return make_app()


def test_trigger_answers_202_and_status_is_pending(app: Flask) -> None:
    client = app.test_client()
    response = client.post("/jobs/jobs/work_celery?n=2")
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "PENDING"
    assert response.headers["Location"] == body["status_url"]
    status = client.get(body["status_url"])
    assert status.get_json() == {"status": "PENDING"}
    assert status.headers["Cache-Control"] == "no-store"


def test_browser_is_redirected_to_the_status_page(app: Flask) -> None:
    client = app.test_client()
    html = "text/html,application/xhtml+xml,*/*;q=0.8"
    response = client.post("/jobs/jobs/work_celery?n=2", headers={"Accept": html})
    assert response.status_code == 303
    page = client.get(response.headers["Location"], headers={"Accept": html})
    assert page.content_type.startswith("text/html") and b"PENDING" in page.data
    forced = client.get(response.headers["Location"] + "?format=json", headers={"Accept": html})
    assert forced.get_json() == {"status": "PENDING"}


def test_bad_arguments_are_422_and_get_is_405(app: Flask) -> None:
    client = app.test_client()
    response = client.post("/jobs/jobs/work_celery?n=x")
    assert response.status_code == 422
    assert client.get("/jobs/jobs/work_celery?n=1").status_code == 405


def test_exetask_converts_fields_and_refuses_plain_methods(app: Flask) -> None:
    client = app.test_client()
    body = client.get("/jobs/jobs/trigger").get_json()
    assert body["type"] == "task"
    assert client.get(f"/status/{body['id']}").get_json() == {"status": "PENDING"}
    assert client.get("/jobs/jobs/plain").status_code == 404


def _queued_kwargs(var: t.Any) -> list[dict[str, t.Any]]:
    """The bound keyword arguments of every message in the embedded queue."""
    messages = [json.loads(p.read_text()) for p in var.rglob("*.msg")]
    return [json.loads(base64.b64decode(m["body"]))[1]["kwargs"] for m in messages]


def test_exetask_binds_named_fields_and_params_as_the_url_does(
        app: Flask, tmp_path: t.Any) -> None:
    """The README's example: a trigger passes its params to a method taking
    ``n: int`` and ``params``; both are bound, as a POST to the URL would."""
    client = app.test_client()
    assert client.get("/jobs/jobs/relay?n=4").get_json()["type"] == "task"
    assert client.post("/jobs/jobs/relay", json={"n": 5}).get_json()["type"] == "task"
    queued = sorted(_queued_kwargs(tmp_path / "var"), key=lambda kwargs: kwargs["n"])
    assert queued == [{"n": 4, "params": {"$kernkoa": "params"}},
                      {"n": 5, "params": {"$kernkoa": "params"}}]


@pytest.mark.parametrize(("url", "field"), [
    ("/jobs/jobs/relay", {"name": "n", "source": "request",
                          "message": "this field is required"}),
    ("/jobs/jobs/relay?n=x", {"name": "n", "source": "query",
                              "message": "expected an integer, got 'x'"}),
    ("/jobs/jobs/text_for_int", {"name": "n", "source": "json",
                                 "message": 'expected an integer, got "3"'}),
])
def test_exetask_checks_fields_before_queueing(app: Flask, tmp_path: t.Any, url: str,
                                               field: dict[str, str]) -> None:
    response = app.test_client().get(url)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == [field]
    assert _queued_kwargs(tmp_path / "var") == []


def test_delete_cancels_and_unknown_ids_are_404(app: Flask) -> None:
    client = app.test_client()
    task_id = client.post("/jobs/jobs/work_celery?n=2").get_json()["id"]
    assert client.delete(f"/status/{task_id}").get_json() == {"status": "REVOKED"}
    assert client.get(f"/status/{task_id}").get_json() == {"status": "REVOKED"}
    unknown = "5f0c8f53-7a43-4d59-9a8c-000000000000"
    for path in (f"/status/{unknown}", "/status/nope", "/status/" + task_id.upper()):
        response = client.get(path)
        assert response.status_code == 404
        assert json.loads(response.data)["error"]["code"] == "not_found"
    assert client.delete(f"/status/{unknown}").status_code == 404


def test_status_reads_the_task_record_once_per_request(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    # The auth layer reads it to decide access; the view answers from the same read.
    from kernel.tasks.store import JobStore

    client = app.test_client()
    task_id = client.post("/jobs/jobs/work_celery?n=2").get_json()["id"]
    reads: list[str] = []
    real_read = JobStore.read

    def counted(self: JobStore, read_id: str) -> TaskRecord:
        reads.append(read_id)
        return real_read(self, read_id)

    monkeypatch.setattr(JobStore, "read", counted)
    assert client.get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    assert reads == [task_id]
    assert client.delete(f"/status/{task_id}").get_json() == {"status": "REVOKED"}
    # A new request reads anew: the cancellation shows.
    assert client.get(f"/status/{task_id}").get_json() == {"status": "REVOKED"}
    assert reads == [task_id] * 3


ISSUED = {"route": "/a/b/c_celery", "created": 0}


@pytest.mark.parametrize(("meta", "body"), [
    (None, {"status": "PENDING"}),
    ({"status": "STARTED", "result": {"pid": 1}}, {"status": "STARTED"}),
    ({"status": "inProgress", "result": {"number": 3}},
     {"status": "inProgress", "state": {"number": 3}}),
    ({"status": "SUCCESS", "result": 10}, {"status": "SUCCESS", "data": 10}),
    ({"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["boom"]}},
     {"status": "FAILURE", "error": {"type": "ValueError", "message": "boom"}}),
    ({"status": "REVOKED", "result": None}, {"status": "REVOKED"}),
])
def test_status_table(meta: dict[str, t.Any] | None, body: dict[str, t.Any]) -> None:
    assert status_body(TaskRecord(ISSUED, False, meta)) == body


def test_status_json_keeps_kernkoa_bytes(make_app: t.Callable[..., Flask]) -> None:
    with make_app().test_request_context("/status/x"):
        response = status_response(status_body(TaskRecord(ISSUED, False,
                                                  {"status": "SUCCESS", "result": 10})))
    assert response.get_data() == b'{"status": "SUCCESS", "data": 10}'
    assert response.mimetype == "application/json"


def test_cancellation_wins_and_unissued_is_not_found() -> None:
    done = {"status": "SUCCESS", "result": 1}
    assert status_body(TaskRecord(ISSUED, True, done)) == {"status": "REVOKED"}
    with pytest.raises(TaskNotFound):
        status_body(TaskRecord(None, False, None))


class FakeTask:
    """Just enough of a bound Celery task for :class:`TaskHandle`."""

    class request:  # noqa: N801 - mimics Celery's attribute
        id = "t1"

    def __init__(self) -> None:
        self.writes: list[tuple[str | None, t.Any]] = []

    def update_state(self, state: str | None = None, meta: t.Any = None) -> None:
        self.writes.append((state, meta))


class FakeStore:
    revoked = False

    def is_revoked(self, task_id: str) -> bool:
        return self.revoked


def test_progress_is_throttled_but_the_last_report_is_kept() -> None:
    task, store = FakeTask(), FakeStore()
    handle = TaskHandle(task, store, interval=3600)  # type: ignore[arg-type]
    for i in range(1, 1001):
        handle.progress(i, 1000, "working")
    assert [meta["current"] for _, meta in task.writes] == [1, 1000]
    assert task.writes[-1] == ("PROGRESS", {"current": 1000, "total": 1000,
                                            "percent": 100.0, "message": "working"})
    handle.update_state(state="other", meta={"x": 1})
    assert task.writes[-1] == ("other", {"x": 1})


def test_a_cancelled_task_stops_at_its_next_report() -> None:
    task, store = FakeTask(), FakeStore()
    handle = TaskHandle(task, store, interval=0)  # type: ignore[arg-type]
    handle.progress(1)
    store.revoked = True
    with pytest.raises(TaskCancelled):
        handle.progress(2)
    assert len(task.writes) == 1


def _check_start(app: Flask) -> None:
    from kernel.tasks.celeryapp import get_celery
    from kernel.tasks.store import JobStore

    celery = get_celery(app)
    store = JobStore(celery, fail_fast=False)
    assert store.start("t-1", "worker@here") is False
    meta = store.read("t-1").meta
    assert meta is not None and meta["status"] == "STARTED"
    assert meta["result"]["hostname"] == "worker@here"
    # Celery's own reader sees the state it would have stored itself.
    assert celery.AsyncResult("t-1").state == "STARTED"
    store.mark_revoked("t-2")  # an old-form id: a record beside the result
    assert store.start("t-2", "worker@here") is True
    # A cancelled task never reads as started: the record is folded into the result.
    assert celery.AsyncResult("t-2").state == "REVOKED"
    _check_cancellation_in_the_result(celery, store)
    # A task delivered again after it succeeded (its worker died before the
    # acknowledgement) keeps showing its success while it runs again.
    celery.backend.store_result("t-3", 5, "SUCCESS")
    assert store.start("t-3", "worker@here") is False
    assert celery.AsyncResult("t-3").state == "SUCCESS"


def _check_cancellation_in_the_result(celery: t.Any, store: t.Any) -> None:
    from celery.exceptions import TaskRevokedError

    from kernel.tasks.store import REVOKED_PREFIX

    signed = "c2lnbmVk.AAAA.bWFj"  # the form of a signed id (checked at the edge only)
    assert store.mark_revoked(signed) is None
    assert store.backend.get(REVOKED_PREFIX + signed.encode()) is None  # no record of its own
    record = store.read(signed)
    assert record.revoked and record.meta["status"] == "REVOKED"
    with pytest.raises(TaskRevokedError):  # what a Celery client reads
        celery.AsyncResult(signed).get(timeout=5)
    assert store.start(signed, "worker@here") is True
    # No write of a worker replaces it: STARTED, progress, a retry, a failure, a result.
    for state, result in (("STARTED", {}), ("PROGRESS", {"current": 1}),
                          ("RETRY", ValueError("again")), ("FAILURE", ValueError("x")),
                          ("SUCCESS", 5)):
        celery.backend.store_result(signed, result, state)
        assert store.read(signed).meta["status"] == "REVOKED", state
    assert store.mark_revoked(signed) is None  # cancelling twice is no error
    # A task that finished first keeps its state: the cancellation says so.
    for state, result in (("SUCCESS", 5), ("FAILURE", ValueError("x"))):
        done = f"ZG9uZQ.AAAA.{state}"
        celery.backend.store_result(done, result, state)
        assert store.mark_revoked(done) == state
        assert store.read(done).meta["status"] == state
        assert not store.is_revoked(done)


def test_start_stores_started_and_tells_a_cancellation(
        make_app: t.Callable[..., Flask]) -> None:
    _check_start(make_app())


# Celery's Redis backend stores results with SETEX, which redis-py 8 calls deprecated.
@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
def test_start_on_redis_too(
        make_app: t.Callable[..., Flask], redis: t.Any) -> None:
    _check_start(make_app(BROKER_URL=redis.url, RESULT_EXPIRES=600))
    # It expires with the results.
    assert 0 < redis.client().ttl(b"celery-task-meta-t-1") <= 600


SENDER = """
from kernkoa import *

class send:
    def any_celery(self, task, **fields):
        return fields

    def odd(self, params=None):
        return exeTask(self, "any_celery", {"fine": 1, "odd": {1, 2}})

    def keys(self, params=None):
        return exeTask(self, "any_celery", {(1, 2): "tuple key"})
"""


def test_monitoring_sees_the_route_and_arguments_not_the_headers(
        tree: ControllerTree, make_app: t.Callable[..., Flask], tmp_path: t.Any) -> None:
    tree.write("send.py", SENDER)
    client = make_app().test_client()
    task_id = client.post("/send/send/any_celery?colour=red",
                          headers={"X-Secret-Looking": "s3cr3t"}).get_json()["id"]
    [message] = [json.loads(p.read_text()) for p in (tmp_path / "var").rglob("*.msg")]
    headers = message["headers"]
    assert headers["id"] == task_id
    shown = json.loads(headers["kwargsrepr"])
    assert shown == {"route": "/send/send/any_celery", "args": [],
                     "kwargs": {"colour": "red"}, "request": "POST /send/send/any_celery"}
    assert "s3cr3t" not in headers["kwargsrepr"]


def test_exetask_refuses_arguments_that_are_not_json(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("send.py", SENDER)
    response = make_app().test_client().get("/send/send/odd")
    assert response.status_code == 422
    assert [f["name"] for f in response.get_json()["error"]["fields"]] == ["odd"]
    # Each value alone is JSON, together they are not: the 422 still names something.
    response = make_app().test_client().get("/send/send/keys")
    assert response.status_code == 422
    assert [f["name"] for f in response.get_json()["error"]["fields"]] == ["params"]


@pytest.mark.parametrize(("accept", "page"), [
    (None, False), ("*/*", False), ("application/json", False),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
    ("TEXT/HTML", True), ("application/json, text/html;q=0.5", False),
])
def test_status_is_a_page_only_for_clients_preferring_html(
        app: Flask, accept: str | None, page: bool) -> None:
    client = app.test_client()
    task_id = client.post("/jobs/jobs/work_celery?n=1",
                          headers={"Accept": "application/json"}).get_json()["id"]
    response = client.get(f"/status/{task_id}", headers={"Accept": accept} if accept else {})
    assert response.mimetype == ("text/html" if page else "application/json")


def test_the_message_carries_only_the_allowed_headers(
        tree: ControllerTree, make_app: t.Callable[..., Flask], tmp_path: t.Any) -> None:
    from tests.support.tasks import SECRET_HEADERS

    tree.write("send.py", SENDER)
    client = make_app(TASK_HEADERS=["Accept", "X-Tenant"]).test_client()
    client.post("/send/send/any_celery",
                headers={**SECRET_HEADERS, "Accept": "application/json", "X-Tenant": "t1",
                         "User-Agent": "not-listed"})
    [raw] = [json.loads(p.read_text()) for p in (tmp_path / "var").rglob("*.msg")]
    assert raw["properties"]["body_encoding"] == "base64"
    _, kwargs, _ = json.loads(base64.b64decode(raw["body"]))
    assert kwargs["request"]["headers"] == [["Accept", "application/json"], ["X-Tenant", "t1"]]
    message = json.dumps(raw) + json.dumps(kwargs)
    for value in [*SECRET_HEADERS.values(), "not-listed"]:
        assert value not in message


def test_an_unreadable_wait_preference_still_answers_with_the_task_id(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    tree.write("send.py", SENDER)
    client = make_app(STATUS_WAIT_MAX=0.05).test_client()
    for prefer in ["wait=" + "9" * 5000, "wait=1e9", "wait=\x00", "wait"]:
        response = client.post("/send/send/any_celery", headers={"Prefer": prefer})
        assert response.status_code == 202, response.data
        assert client.get(f"/status/{response.get_json()['id']}").status_code == 200


@pytest.mark.parametrize(("settings", "expected"), [
    ({"TASK_TIME_LIMIT": 3660, "VISIBILITY_TIMEOUT": 0}, 7320),
    ({"TASK_TIME_LIMIT": 3660, "VISIBILITY_TIMEOUT": 60}, 3690),  # raised above the limit
    ({"TASK_TIME_LIMIT": 3660, "VISIBILITY_TIMEOUT": 9000}, 9000),
    ({"TASK_TIME_LIMIT": 0, "VISIBILITY_TIMEOUT": 0}, 7 * 24 * 3600),
])
def test_visibility_timeout_stays_above_the_hard_limit(
        settings: dict[str, int], expected: int) -> None:
    assert visibility_timeout(Settings.load(settings, environ={})) == expected


def test_worker_gets_its_own_node_name_unless_named() -> None:
    settings = Settings.load({}, environ={})
    names = [a for a in worker_argv(settings, []) if a.startswith("--hostname=")]
    assert len(names) == 1 and names[0].startswith("--hostname=kernkoa-")
    assert not [a for a in worker_argv(settings, ["-n", "w1@%h"]) if a.startswith("--hostname")]


def test_status_answers_options_and_405_for_other_methods(app: Flask) -> None:
    """Not the catch-all's 404, nor Flask's OPTIONS listing every method of both rules."""
    client = app.test_client()
    task_id = client.post("/jobs/jobs/work_celery?n=1").get_json()["id"]
    for url in (f"/status/{task_id}", "/status/not-a-task"):
        options = client.options(url)
        assert options.status_code == 204
        assert options.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS"
        for method in ("PUT", "POST", "PATCH"):
            response = client.open(url, method=method)
            assert response.status_code == 405, (method, response.data)
            assert response.headers["Allow"] == "DELETE, GET, HEAD"
            assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert client.get(f"/status/{task_id}").get_json() == {"status": "PENDING"}

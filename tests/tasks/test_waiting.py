"""Waiting for tasks, on the embedded store and on a real redis-server: the long poll
``GET /status/<id>?wait=`` and triggers sent with ``Prefer: wait=``.

No worker runs here: the test stores the task's state itself, from a thread,
while the request waits, as a worker would.
"""

from __future__ import annotations

import json
import threading
import time
import typing as t

import pytest
from flask import Flask

from kernel.catalog.access import OPEN
from kernel.core.errors import BrokerUnavailable
from kernel.core.errors import ParameterError
from kernel.tasks import enqueue
from kernel.tasks import views as status
from kernel.tasks import waiting
from kernel.tasks.celeryapp import get_celery
from kernel.tasks.ids import describe_task_id
from kernel.tasks.ids import new_task_id
from kernel.tasks.store import JobStore
from kernel.tasks.store import TaskRecord
from kernel.tasks.waiting import disconnect_result_store
from kernel.tasks.waiting import is_settled
from kernel.tasks.waiting import preferred_wait
from kernel.tasks.waiting import wait_seconds
from tests.support.catalogs import ControllerTree

CONTROLLER = """
class jobs:
    def work_celery(self, task, n: int = 1):
        return n
"""

ISSUED = {"route": "/jobs/jobs/work_celery", "created": 0}

# Celery's Redis backend stores results with SETEX, which redis-py 8 calls deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")


def _listeners(server: t.Any) -> list[str]:
    """Ids of the clients of ``server`` that subscribed or unsubscribed last."""
    return [c["id"] for c in server.client_list() if c["cmd"].endswith("subscribe")]


def _until_nobody_listens(server: t.Any) -> list[str]:
    # The server sees a closed connection a moment after it was closed.
    deadline = time.monotonic() + 10
    while _listeners(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _listeners(server)


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0.0), ("1.5", 1.5), ("600", 600.0)])
def test_wait_is_seconds(raw: str, seconds: float) -> None:
    assert wait_seconds(raw) == seconds


@pytest.mark.parametrize("raw", ["", "soon", "-1", "nan", "inf", "1e999"])
def test_a_wait_that_is_not_seconds_is_refused(raw: str) -> None:
    with pytest.raises(ParameterError) as caught:
        wait_seconds(raw)
    assert caught.value.fields[0]["name"] == "wait"


@pytest.mark.parametrize(("record", "settled"), [
    (TaskRecord(issued=ISSUED, revoked=False, meta=None), False),
    (TaskRecord(issued=ISSUED, revoked=False, meta={"status": "STARTED"}), False),
    (TaskRecord(issued=ISSUED, revoked=False, meta={"status": "PROGRESS"}), False),
    (TaskRecord(issued=ISSUED, revoked=False, meta={"status": "RETRY"}), False),
    (TaskRecord(issued=ISSUED, revoked=False, meta={"status": "SUCCESS"}), True),
    (TaskRecord(issued=ISSUED, revoked=False, meta={"status": "FAILURE"}), True),
    (TaskRecord(issued=ISSUED, revoked=True, meta={"status": "STARTED"}), True),
    (TaskRecord(issued=None, revoked=False, meta=None), True),
])
def test_settled_records(record: TaskRecord, settled: bool) -> None:
    assert is_settled(record) is settled


def _app(tree: ControllerTree, make_app: t.Callable[..., Flask], **overrides: t.Any) -> Flask:
    tree.write("jobs.py", CONTROLLER)
    return make_app(**overrides)


def _later(app: Flask, action: t.Callable[[JobStore, t.Any, str], None],
           task_id: str, delay: float = 0.3) -> threading.Timer:
    """Run ``action(store, backend, task_id)`` in ``delay`` seconds, as a worker would.

    Tests whose request must answer before the action pass a longer delay.
    """
    celery = get_celery(app)
    timer = threading.Timer(delay, action, (JobStore(celery, fail_fast=False),
                                            celery.backend, task_id))
    timer.start()
    return timer


def _succeed(store: JobStore, backend: t.Any, task_id: str) -> None:
    backend.store_result(task_id, 7, "SUCCESS")
    # Then the result goes away again: a wait that did not end on the success
    # (but when its time was over) would answer PENDING.
    time.sleep(1.0)
    backend.forget(task_id)


def _cancel(store: JobStore, backend: t.Any, task_id: str) -> None:
    store.mark_revoked(task_id)


def _long_poll(app: Flask, action: t.Callable[[JobStore, t.Any, str], None],
               wait: str = "5", delay: float = 0.3) -> tuple[int, dict[str, t.Any]]:
    client = app.test_client()
    task_id = client.post("/jobs/jobs/work_celery?n=7").get_json()["id"]
    timer = _later(app, action, task_id, delay)
    try:
        response = client.get(f"/status/{task_id}?wait={wait}")
    finally:
        timer.join()
    return response.status_code, json.loads(response.data)


@pytest.mark.parametrize(("action", "body"), [
    (_succeed, {"status": "SUCCESS", "data": 7}),
    (_cancel, {"status": "REVOKED"}),
])
def test_embedded_wait_answers_when_the_task_settles(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        action: t.Callable[[JobStore, t.Any, str], None], body: dict[str, t.Any]) -> None:
    assert _long_poll(_app(tree, make_app), action) == (200, body)


@pytest.mark.parametrize(("action", "body"), [
    (_succeed, {"status": "SUCCESS", "data": 7}),
    (_cancel, {"status": "REVOKED"}),  # announces nothing: seen by the periodic read
])
def test_redis_wait_answers_when_the_task_settles(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any,
        monkeypatch: pytest.MonkeyPatch,
        action: t.Callable[[JobStore, t.Any, str], None], body: dict[str, t.Any]) -> None:
    if action is _succeed:
        # Only the stored state's announcement can end the wait in time.
        monkeypatch.setattr(waiting, "RECHECK", 60.0)
    app = _app(tree, make_app, BROKER_URL=redis.url)
    assert _long_poll(app, action) == (200, body)
    # The wait's subscription is gone with it: nothing stays subscribed.
    assert redis.client().pubsub_channels() == []


def _spied_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record, in order, each read of a task record and each record an announcement gave."""
    events: list[str] = []
    read, announced = JobStore.read, JobStore.announced

    def spy_read(store: JobStore, task_id: str) -> TaskRecord:
        events.append("read")
        return read(store, task_id)

    def spy_announced(store: JobStore, task_id: str, meta: t.Any) -> TaskRecord | None:
        record = announced(store, task_id, meta)
        events.append("announced" if record is not None else "not announced")
        return record

    monkeypatch.setattr(JobStore, "read", spy_read)
    monkeypatch.setattr(JobStore, "announced", spy_announced)
    return events


def test_a_final_announcement_answers_without_reading_the_store(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "RECHECK", 60.0)
    app = _app(tree, make_app, BROKER_URL=redis.url)
    events = _spied_reads(monkeypatch)
    assert _long_poll(app, _succeed) == (200, {"status": "SUCCESS", "data": 7})
    # Read once the subscription stood; the announced success was the record.
    assert events[-2:] == ["read", "announced"]


def test_an_unreadable_announcement_is_checked_by_a_read(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "RECHECK", 60.0)
    app = _app(tree, make_app, BROKER_URL=redis.url)
    events = _spied_reads(monkeypatch)

    def garbage_then_succeed(store: JobStore, backend: t.Any, task_id: str) -> None:
        # Not a state: the wait reads the record (still PENDING) and waits on.
        redis.client().publish(backend.get_key_for_task(task_id), b"\xff not json")
        time.sleep(0.3)
        _succeed(store, backend, task_id)

    assert _long_poll(app, garbage_then_succeed) == (200, {"status": "SUCCESS", "data": 7})
    assert events[-4:] == ["read", "not announced", "read", "announced"]


def test_an_old_form_id_is_read_after_its_announcement(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tree, make_app, BROKER_URL=redis.url)
    store = JobStore(get_celery(app))
    task_id = "0b4a8d1e-5f6c-4e2a-9d3b-7c1f2e3a4b5c"  # the form before signed ids
    meta = {"status": "SUCCESS", "result": 7}
    # Its origin is a record of its own, which only a read finds.
    assert store.announced(task_id, meta) is None
    assert store.announced(FIXED_ID, meta) == TaskRecord(
        issued=describe_task_id(FIXED_ID).issued, revoked=False, meta=meta)  # type: ignore[union-attr]


def test_a_wait_that_runs_out_answers_the_status_of_that_moment(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any) -> None:
    app = _app(tree, make_app, BROKER_URL=redis.url)
    client = app.test_client()
    task_id = client.post("/jobs/jobs/work_celery").get_json()["id"]
    response = client.get(f"/status/{task_id}?wait=0.2")
    assert (response.status_code, response.get_json()) == (200, {"status": "PENDING"})


def test_no_wait_when_the_setting_is_zero(tree: ControllerTree,
                                          make_app: t.Callable[..., Flask]) -> None:
    # The result is stored while a waiting request would still wait: this one answers first.
    app = _app(tree, make_app, STATUS_WAIT_MAX=0.0)
    assert _long_poll(app, _succeed, delay=2.0) == (200, {"status": "PENDING"})


def test_a_long_wait_is_cut_to_the_setting(tree: ControllerTree,
                                           make_app: t.Callable[..., Flask]) -> None:
    client = _app(tree, make_app, STATUS_WAIT_MAX=0.2).test_client()
    task_id = client.post("/jobs/jobs/work_celery").get_json()["id"]
    # Nothing will finish it: without the cut this would wait ten minutes.
    assert client.get(f"/status/{task_id}?wait=600").get_json() == {"status": "PENDING"}


def test_a_bad_wait_is_a_422_naming_the_field(tree: ControllerTree,
                                              make_app: t.Callable[..., Flask]) -> None:
    client = _app(tree, make_app).test_client()
    task_id = client.post("/jobs/jobs/work_celery").get_json()["id"]
    response = client.get(f"/status/{task_id}?wait=later")
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"][0]["name"] == "wait"


def test_wait_is_ignored_where_it_means_nothing(tree: ControllerTree,
                                                make_app: t.Callable[..., Flask]) -> None:
    client = _app(tree, make_app).test_client()
    task_id = client.post("/jobs/jobs/work_celery").get_json()["id"]
    # An unknown id, and a cancel: answered at once, whatever the wait says.
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/status/{unknown}?wait=later").status_code == 404
    assert client.delete(f"/status/{task_id}?wait=20").get_json() == {"status": "REVOKED"}
    # A settled task answers at once, a bad wait is refused all the same.
    assert client.get(f"/status/{task_id}?wait=20").get_json() == {"status": "REVOKED"}
    assert client.get(f"/status/{task_id}?wait=later").status_code == 422


def test_waits_share_one_connection_and_leave_it_listening_to_nothing(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any) -> None:
    app = _app(tree, make_app, BROKER_URL=redis.url)
    assert _long_poll(app, _succeed) == (200, {"status": "SUCCESS", "data": 7})
    server = redis.client()
    first = _listeners(server)
    assert len(first) == 1
    for _ in range(3):
        assert _long_poll(app, _succeed) == (200, {"status": "SUCCESS", "data": 7})
    assert _listeners(server) == first
    assert server.pubsub_channels() == []


def test_a_wait_after_the_store_restarted_opens_a_new_connection(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any) -> None:
    app = _app(tree, make_app, BROKER_URL=redis.url)
    assert _long_poll(app, _succeed) == (200, {"status": "SUCCESS", "data": 7})
    redis.stop()
    redis.start()
    # The kept connection died with the server: the wait opens a new one.
    assert _long_poll(app, _succeed) == (200, {"status": "SUCCESS", "data": 7})


def test_disconnecting_closes_the_result_store_connections(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any) -> None:
    app = _app(tree, make_app, BROKER_URL=redis.url)
    assert _long_poll(app, _succeed) == (200, {"status": "SUCCESS", "data": 7})
    server = redis.client()
    assert len(_listeners(server)) == 1
    disconnect_result_store(app)
    assert _until_nobody_listens(server) == []
    # The next use opens new connections.
    assert _long_poll(app, _succeed) == (200, {"status": "SUCCESS", "data": 7})


@pytest.mark.parametrize(("headers", "seconds"), [
    ([], None), (["wait=5"], 5), (["respond-async, wait=10"], 10), (['wait="3"'], 3),
    (["WAIT=4"], 4), (["handling=lenient", "wait=2"], 2), (["wait=1, wait=9"], 1),
    (["wait=soon"], None), (["wait=-1"], None), (["return=minimal"], None),
    (["wait=7;foo=bar"], 7), (["wait=\xb2"], None),  # a digit, but not an ASCII one
    # Too long to read: the longest wait HTTP knows (RFC 9111), never an error.
    (["wait=" + "9" * 5000], 2**31), (["wait=" + "0" * 5000 + "12"], 12),
    (["wait=2147483649"], 2**31), (["wait=", "wait=3"], None),
])
def test_the_wait_preference_of_prefer_headers(headers: list[str], seconds: int | None) -> None:
    assert preferred_wait(headers) == seconds


#: A signed id (under another key: only the trigger's answer shows it, nothing verifies it).
FIXED_ID = new_task_id(("a fixed key",), "/jobs/jobs/work_celery", OPEN)


def _trigger_preferring_wait(app: Flask, monkeypatch: pytest.MonkeyPatch,
                             action: t.Callable[[JobStore, t.Any, str], None] | None,
                             prefer: str = "respond-async, wait=5",
                             delay: float = 0.3) -> tuple[int, t.Any]:
    # The id is fixed so that the stand-in worker knows which task to settle.
    monkeypatch.setattr(enqueue, "new_task_id", lambda *_: FIXED_ID)
    timer = _later(app, action, FIXED_ID, delay) if action else None
    try:
        response = app.test_client().post("/jobs/jobs/work_celery?n=7",
                                          headers={"Prefer": prefer})
    finally:
        if timer is not None:
            timer.join()
    return response.status_code, response.get_json()


def test_a_trigger_preferring_to_wait_answers_with_the_result(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, body = _trigger_preferring_wait(_app(tree, make_app), monkeypatch, _succeed)
    assert code == 200
    assert body == {"id": FIXED_ID, "status": "SUCCESS", "data": 7,
                    "status_url": f"http://localhost/status/{FIXED_ID}"}


def test_a_trigger_preferring_to_wait_on_redis(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "RECHECK", 60.0)
    app = _app(tree, make_app, BROKER_URL=redis.url)
    code, body = _trigger_preferring_wait(app, monkeypatch, _succeed)
    assert (code, body["status"], body["data"]) == (200, "SUCCESS", 7)


@pytest.mark.parametrize(("overrides", "prefer", "action"), [
    ({}, "wait=1", None),                       # nothing finished it in time
    # The task finishes while a waiting trigger would still wait: these answer first.
    ({"STATUS_WAIT_MAX": 0.0}, "wait=5", _succeed),  # waiting is off
    ({}, "wait=0", _succeed), ({}, "respond-async", _succeed),
])
def test_a_trigger_answers_202_when_the_task_is_not_done_within_the_wait(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch, overrides: dict[str, t.Any], prefer: str,
        action: t.Callable[[JobStore, t.Any, str], None] | None) -> None:
    app = _app(tree, make_app, **overrides)
    code, body = _trigger_preferring_wait(app, monkeypatch, action, prefer, delay=2.0)
    assert (code, body["status"], body["id"]) == (202, "PENDING", FIXED_ID)


def test_a_store_failure_during_the_wait_still_answers_202(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The task was sent: the client must learn its id, not a 503 to retry on.
    def unreachable(task_id: str, timeout: float) -> TaskRecord:
        raise BrokerUnavailable()

    monkeypatch.setattr(status, "wait_for_task", unreachable)
    code, body = _trigger_preferring_wait(_app(tree, make_app), monkeypatch, None)
    assert (code, body["status"]) == (202, "PENDING")


def test_a_connection_whose_subscription_was_not_confirmed_is_not_kept(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: t.Any) -> None:
    # Its confirmation, still to come, would be taken by the next wait on the
    # same task for the confirmation of its own subscription.
    app = _app(tree, make_app, BROKER_URL=redis.url)
    client = app.test_client()
    task_id = client.post("/jobs/jobs/work_celery").get_json()["id"]
    server = redis.client()
    assert client.get(f"/status/{task_id}?wait=0.000001").get_json() == {"status": "PENDING"}
    assert _until_nobody_listens(server) == []
    assert client.get(f"/status/{task_id}?wait=0.1").get_json() == {"status": "PENDING"}
    assert len(_listeners(server)) == 1  # confirmed, so kept

"""Signed task ids (kernel/tasks/ids.py): what they carry, and that ``/status``
refuses every id it did not sign, or that outlived its results, with a 404 and
without a single read of the result store; old-form (UUID) ids still answer."""

from __future__ import annotations

import json
import time
import typing as t
import uuid

import pytest
from flask import Flask

from kernel.catalog.access import AUTHENTICATED
from kernel.catalog.access import OPEN
from kernel.catalog.access import AccessRule
from kernel.tasks import ids
from kernel.tasks.celeryapp import get_celery
from kernel.tasks.ids import describe_task_id
from kernel.tasks.ids import new_task_id
from kernel.tasks.ids import verify_task_id
from kernel.tasks.store import ISSUED_PREFIX
from kernel.tasks.store import JobStore
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error

CONTROLLER = """
class jobs:
    def work_celery(self, task, n: int = 1):
        return n
"""

ROUTE = "/jobs/jobs/work_celery"
KEYS = ("the first node's secret key, long enough",)
SECRET = KEYS[0]


def test_an_id_carries_its_route_rule_and_time() -> None:
    rule = AccessRule(required=True, scopes=frozenset({"reports", "admin"}))
    before = time.time()
    task_id = new_task_id(KEYS, "/shop/report/Report/build_celery", rule)
    found = verify_task_id(KEYS, task_id, 86400)
    assert found is not None
    assert (found.route, found.access) == ("/shop/report/Report/build_celery", rule)
    assert before - 1 <= found.created <= time.time()
    assert describe_task_id(task_id) == found


def test_ids_are_url_safe_short_and_unique() -> None:
    made = {new_task_id(KEYS, "/shop/report/Report/build_celery", AUTHENTICATED)
            for _ in range(1000)}
    assert len(made) == 1000
    # As long as the module docstring says: 30 + ceil(4 * (len(route) + 8) / 3).
    assert {len(task_id) for task_id in made} == {84}
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert all(set(task_id) <= allowed for task_id in made)


def _forgeries(task_id: str) -> dict[str, str]:
    payload, stamp, mac = task_id.split(".")
    other = ids.describe_task_id(task_id)
    assert other is not None
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    return {
        "forged MAC": f"{payload}.{stamp}.{flipped}",
        "truncated": task_id[:-1],
        "no MAC": f"{payload}.{stamp}",
        "other route, same MAC": new_task_id(("x",), "/jobs/jobs/other_celery", OPEN)
        .split(".")[0] + f".{stamp}.{mac}",
        "re-signed with another key": new_task_id(("another key",), ROUTE, OPEN),
        "garbage": "not.a.task",
    }


def test_forged_truncated_and_foreign_ids_do_not_verify() -> None:
    task_id = new_task_id(KEYS, ROUTE, OPEN)
    for name, forged in _forgeries(task_id).items():
        assert verify_task_id(KEYS, forged, 86400) is None, name


def test_an_id_older_than_the_results_does_not_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    task_id = new_task_id(KEYS, ROUTE, OPEN)
    now = time.time()
    assert verify_task_id(KEYS, task_id, 60) is not None
    monkeypatch.setattr(ids.time, "time", lambda: now + 61)
    assert verify_task_id(KEYS, task_id, 60) is None
    assert verify_task_id(KEYS, task_id, 0) is not None  # results that never expire
    # A node whose clock is a little behind still reads it; far behind, not.
    monkeypatch.setattr(ids.time, "time", lambda: now - 10)
    assert verify_task_id(KEYS, task_id, 60) is not None
    monkeypatch.setattr(ids.time, "time", lambda: now - ids.CLOCK_SKEW - 10)
    assert verify_task_id(KEYS, task_id, 60) is None


def test_a_fallback_key_still_verifies() -> None:
    task_id = new_task_id(("old key",), ROUTE, OPEN)
    assert verify_task_id(("old key", "new key"), task_id, 60) is not None
    assert verify_task_id(("new key",), task_id, 60) is None


class StoreSpy:
    """Counts every read of one app's result store."""

    def __init__(self, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: list[str] = []
        backend = get_celery(app).backend
        for name in ("get", "mget"):
            monkeypatch.setattr(backend, name, self._counted(name, getattr(backend, name)))

        self._inside = False

    def _counted(self, name: str, method: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        def counted(*args: t.Any, **kwargs: t.Any) -> t.Any:
            if self._inside:  # the embedded store's mget is a get per key: one read
                return method(*args, **kwargs)
            self.reads.append(name)
            self._inside = True
            try:
                found = method(*args, **kwargs)
                return list(found) if name == "mget" else found
            finally:
                self._inside = False
        return counted


def _app(tree: ControllerTree, make_app: t.Callable[..., Flask], **overrides: t.Any) -> Flask:
    tree.write("jobs.py", CONTROLLER)
    return make_app(secretKey=SECRET, **overrides)


def _started(app: Flask) -> str:
    answer = app.test_client().post(f"{ROUTE}?n=3")
    assert answer.status_code == 202, answer.data
    task_id: str = answer.get_json()["id"]
    return task_id


def test_status_refuses_what_it_did_not_sign_without_reading_the_store(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tree, make_app)
    task_id = _started(app)
    spy = StoreSpy(app, monkeypatch)
    client = app.test_client()
    for name, forged in _forgeries(task_id).items():
        for path, method in ((f"/status/{forged}", "GET"), (f"/status/{forged}", "DELETE"),
                             (f"/status/{forged}/events", "GET")):
            assert_error(client.open(path, method=method), 404, "not_found")
            assert spy.reads == [], (name, path, method)
    # The genuine id: one read, of Celery's result (a cancellation is stored in it).
    assert client.get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    assert spy.reads == ["get"]


def test_an_expired_id_is_404_without_a_store_read(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tree, make_app, RESULT_EXPIRES=60)
    task_id = _started(app)
    spy = StoreSpy(app, monkeypatch)
    now = time.time()
    monkeypatch.setattr(ids.time, "time", lambda: now + 120)
    assert_error(app.test_client().get(f"/status/{task_id}"), 404, "not_found")
    assert spy.reads == []


def test_an_id_reads_through_every_app_sharing_the_secret_and_no_other(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    first = _app(tree, make_app)
    task_id = _started(first)
    # Same VAR (the embedded broker's store), same secret: another node.
    sharing = make_app(secretKey=SECRET)
    assert sharing.test_client().get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    other = make_app(secretKey="another node's own secret key, also long")
    assert_error(other.test_client().get(f"/status/{task_id}"), 404, "not_found")


def test_the_celery_task_id_is_the_signed_id(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tree, make_app)
    sent: list[str] = []
    celery = get_celery(app)
    send_task = celery.send_task

    def recording(*args: t.Any, **kwargs: t.Any) -> t.Any:
        sent.append(kwargs["task_id"])
        return send_task(*args, **kwargs)

    monkeypatch.setattr(celery, "send_task", recording)
    assert sent == [_started(app)]


def test_no_issued_marker_is_written_for_a_signed_id(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    app = _app(tree, make_app)
    task_id = _started(app)
    assert get_celery(app).backend.get(ISSUED_PREFIX + task_id.encode()) is None


def test_an_old_form_id_still_answers_from_its_marker(
        tree: ControllerTree, make_app: t.Callable[..., Flask]) -> None:
    app = _app(tree, make_app)
    task_id = str(uuid.uuid4())
    store = JobStore(get_celery(app))
    store.mark_issued(task_id, ROUTE, time.time(), OPEN)
    client = app.test_client()
    assert client.get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    store.backend.store_result(task_id, 3, "SUCCESS")
    assert client.get(f"/status/{task_id}").get_json() == {"status": "SUCCESS", "data": 3}
    # Without its marker (never issued, or expired), an old-form id is unknown.
    unknown = str(uuid.uuid4())
    assert_error(client.get(f"/status/{unknown}"), 404, "not_found")
    assert json.loads(client.get(f"/status/{task_id}").data)["data"] == 3


def test_a_secret_key_changed_at_run_time_counts_at_once(
        tree: ControllerTree, make_app: t.Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Verified ids are cached, keyed by the keys that verified them: a new key
    # (a rotation, without a restart) must not find the old answer.
    app = _app(tree, make_app)
    task_id = _started(app)
    client = app.test_client()
    assert client.get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    spy = StoreSpy(app, monkeypatch)
    app.config["SECRET_KEY"] = "a newer secret key, long enough too"
    assert_error(client.get(f"/status/{task_id}"), 404, "not_found")
    assert spy.reads == []
    app.config["SECRET_KEY_FALLBACKS"] = [SECRET]
    assert client.get(f"/status/{task_id}").get_json() == {"status": "PENDING"}
    assert spy.reads == ["get"]


def test_what_a_verified_id_says_is_made_once_and_read_only() -> None:
    task_id = new_task_id(KEYS, ROUTE, AUTHENTICATED)
    signed = verify_task_id(KEYS, task_id, None)
    assert signed is not None
    # Shared by every request naming the id (the cache): one origin, one record.
    assert signed.origin is signed.origin
    assert (signed.origin.route, signed.origin.recorded) == (ROUTE, AUTHENTICATED)
    assert signed.issued is signed.issued
    with pytest.raises(TypeError):
        signed.issued["route"] = "/another/route"  # type: ignore[index]
    assert signed.as_issued() == {"route": ROUTE, "created": signed.created,
                                  "access": AUTHENTICATED.as_record()}
    assert signed.as_issued() is not signed.as_issued()

"""``/_kernkoa/tasks`` on the embedded broker (files under VAR), the message a trigger
publishes (its route name, options), and ``@task_options``'s checks.

The queued messages are run in this process by the worker's own code
(:func:`run_queued`: the generic task with the message's headers as its request).

The live page, Flower and the rate limit on real parts: tests/tasks/test_operations.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
import typing as t
from pathlib import Path

import pytest
from celery.exceptions import Ignore
from flask import Flask

from kernel.tasks.enqueue import celery_and_breaker
from kernel.tasks.recent import FileRecent
from kernel.tasks.recent import recent_index
from kernel.tasks.recent import started_record
from kernel.tasks.run import options_of
from kernel.tasks.run import task_options
from tests.support.auth import KEY
from tests.support.auth import bearer
from tests.support.auth import token
from tests.support.catalogs import ControllerTree
from tests.support.tasks import queued_messages
from tests.support.tasks import run_queued

JOBS = '''
from kernkoa import *


class Jobs:
    @task_options(rate_limit="5/m", priority=7, expires=120)
    def limited_celery(self, task, n: int = 1):
        return n

    def plain_celery(self, task):
        return "plain"
'''


@pytest.fixture
def jobs_app(tree: ControllerTree, make_app: t.Callable[..., Flask],
             tmp_path: Path) -> t.Callable[..., Flask]:
    tree.write("shop.py", JOBS)

    def make(**overrides: t.Any) -> Flask:
        return make_app(VAR=str(tmp_path / "var"), **overrides)

    return make


def _trigger(client: t.Any, route: str, **headers: str) -> str:
    answer = client.post(route, json={}, headers=headers)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return t.cast(str, answer.get_json()["id"])


def test_json_lists_the_tasks_taken_newest_first_with_counts_and_queues(
        jobs_app: t.Callable[..., Flask], tmp_path: Path) -> None:
    app = jobs_app()
    client = app.test_client()
    first = _trigger(client, "/shop/Jobs/limited_celery", **{"X-Request-Id": "req-1"})
    second = _trigger(client, "/shop/Jobs/plain_celery")
    # Queued only: counted in their queue, not listed (the trigger wrote nothing else).
    data = client.get("/_kernkoa/tasks?format=json").get_json()
    assert data["tasks"] == [] and data["queues"] == {"celery": {"waiting": 2, "workers": 0}}
    assert not (tmp_path / "var" / "celery" / "recent").exists()
    run_queued(app, queued_messages(tmp_path / "var"))
    answer = client.get("/_kernkoa/tasks?format=json")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    data = answer.get_json()
    assert [task["id"] for task in data["tasks"]] == [second, first]
    task = data["tasks"][1]
    assert task["route"] == "/shop/Jobs/limited_celery" and task["state"] == "STARTED"
    assert task["created"] <= task["started"] <= task["finished"]
    assert task["duration"] is not None and task["worker"] == "w1@test"
    assert task["request_id"] == "req-1" and task["identity"] == ""
    assert data["counts"] == {"/shop/Jobs/limited_celery": {"STARTED": 1},
                              "/shop/Jobs/plain_celery": {"STARTED": 1}}
    assert data["workers"] == []
    # Accept: application/json is the same; a browser gets the page with the same data.
    assert client.get("/_kernkoa/tasks",
                      headers={"Accept": "application/json"}).get_json()["tasks"] == data["tasks"]
    page = client.get("/_kernkoa/tasks", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.mimetype == "text/html"
    assert b'id="tasks"' in page.data and first.encode() in page.data


def test_the_index_is_bounded(jobs_app: t.Callable[..., Flask], tmp_path: Path) -> None:
    app = jobs_app(RECENT_TASKS=3)
    client = app.test_client()
    ids = [_trigger(client, "/shop/Jobs/plain_celery") for _ in range(6)]
    run_queued(app, queued_messages(tmp_path / "var"))
    listed = [task["id"] for task in client.get("/_kernkoa/tasks?format=json").get_json()["tasks"]]
    assert listed == ids[:2:-1]
    assert len(list((tmp_path / "var" / "celery" / "recent").glob("*.json"))) == 3
    assert client.get("/_kernkoa/tasks?format=json&limit=2").get_json()["tasks"][0]["id"] == ids[-1]


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "4", "", "1e3", "\u00b2", "9" * 40, " 2"])
def test_a_bad_limit_is_a_422_envelope(jobs_app: t.Callable[..., Flask], limit: str) -> None:
    answer = jobs_app(RECENT_TASKS=3).test_client().get(f"/_kernkoa/tasks?limit={limit}")
    assert answer.status_code == 422
    assert answer.get_json()["error"]["fields"] == [
        {"name": "limit", "source": "query", "message": "must be a whole number from 1 to 3"}]


def test_an_index_of_nothing_is_an_empty_page(jobs_app: t.Callable[..., Flask]) -> None:
    client = jobs_app(RECENT_TASKS=0).test_client()
    _trigger(client, "/shop/Jobs/plain_celery")
    assert client.get("/_kernkoa/tasks?format=json").get_json()["tasks"] == []


def test_the_page_follows_the_pages_access_rule(tree: ControllerTree,
                                                make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop.py", JOBS)
    client = make_app(ADDONS=["jwt_auth"], HMACKEY=KEY, PAGES_AUTH=True).test_client()
    for url in ("/_kernkoa/tasks", "/_kernkoa/tasks?format=json", "/_kernkoa/tasks/events"):
        assert client.get(url).status_code == 401, url
    assert client.get("/_kernkoa/tasks?format=json",
                      headers=bearer(token())).status_code == 200
    # PAGES off: no page at all.
    assert make_app(PAGES=False).test_client().get("/_kernkoa/tasks").status_code == 404


def test_the_identity_that_triggered_is_recorded(tree: ControllerTree, tmp_path: Path,
                                                 make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop.py", JOBS)
    app = make_app(ADDONS=["jwt_auth"], HMACKEY=KEY, VAR=str(tmp_path / "var"))
    client = app.test_client()
    _trigger(client, "/shop/Jobs/plain_celery", **bearer(token(sub="ada")))
    run_queued(app, queued_messages(tmp_path / "var"))
    tasks = client.get("/_kernkoa/tasks?format=json").get_json()["tasks"]
    assert tasks[0]["identity"] == "ada"


def test_the_message_names_the_route_and_carries_its_options(
        jobs_app: t.Callable[..., Flask], tmp_path: Path) -> None:
    client = jobs_app().test_client()
    task_id = _trigger(client, "/shop/Jobs/limited_celery")
    [message] = [json.loads(path.read_text())
                 for path in (tmp_path / "var" / "celery" / "queue").glob("*.msg")]
    headers = message["headers"]
    assert headers["id"] == task_id
    assert headers["task"] == "kernkoa.run"  # the routing stays the one generic task
    assert headers["shadow"] == "/shop/Jobs/limited_celery"
    assert headers["kernkoa_rate_limit"] == "5/m"
    assert headers["expires"]  # an absolute time, 120 s after the trigger
    assert message["properties"]["priority"] == 7


def test_task_options_take_celery_options_and_refuse_bad_ones() -> None:
    def method(self: t.Any, task: t.Any) -> None:
        """A method."""

    decorated = task_options(rate_limit="10/s", priority=0, expires=1.5)(method)
    assert options_of(decorated) == {
        "queue": None, "soft_time_limit": None, "time_limit": None, "retries": 0,
        "retry_delay": 5.0, "rate_limit": "10/s", "priority": 0, "expires": 1.5}
    assert options_of(task_options(rate_limit=3)(method))["rate_limit"] == 3
    for bad in ({"rate_limit": "fast"}, {"rate_limit": "10/y"}, {"rate_limit": "0/s"},
                {"rate_limit": -1}, {"rate_limit": True}, {"rate_limit": "nan/s"},
                {"rate_limit": "inf/s"}, {"rate_limit": float("nan")},
                {"rate_limit": float("inf")}, {"rate_limit": b"10/s"}, {"rate_limit": [1]},
                {"priority": 10}, {"priority": -1}, {"priority": True},
                {"priority": 1.5}, {"expires": 0}, {"expires": "soon"}, {"expires": True}):
        with pytest.raises(ValueError):
            task_options(**bad)


def test_the_file_index_skips_what_is_not_its_own(tmp_path: Path) -> None:
    index = FileRecent(tmp_path / "recent", size=10, expires=3600)
    index.started("../escape", started_record(None, "/a/B/c_celery", None, None, None))
    index.started("good-id", started_record({"identity": 5, "created": "junk", "x": "y"},
                                            "/a/B/c_celery", None, None, "req-1"))
    (tmp_path / "recent" / "broken.json").write_text("{not json")
    index.changed("missing", {"state": "STARTED"})
    index.changed("good-id", {"state": "STARTED"})
    assert [r["id"] for r in index.latest(10)] == ["good-id"]
    good = index.record("good-id")
    assert good["state"] == "STARTED" and good["identity"] == "5" and "x" not in good
    assert isinstance(good["created"], float)
    assert not (tmp_path / "escape.json").exists()


@pytest.mark.redis
def test_the_redis_index_is_bounded_and_expires(jobs_app: t.Callable[..., Flask],
                                                redis: t.Any) -> None:
    app = jobs_app(BROKER_URL=redis.url, RESULT_BACKEND=redis.url, RECENT_TASKS=3,
                   RESULT_EXPIRES=600)
    client = app.test_client()
    ids = [_trigger(client, "/shop/Jobs/plain_celery") for _ in range(5)]
    store = redis.client()
    messages = [json.loads(raw) for raw in reversed(store.lrange("celery", 0, -1))]
    assert [m["headers"]["id"] for m in messages] == ids
    run_queued(app, messages)
    data = client.get("/_kernkoa/tasks?format=json").get_json()
    assert [task["id"] for task in data["tasks"]] == ids[:1:-1]
    assert {task["state"] for task in data["tasks"]} == {"STARTED"}
    assert data["queues"]["celery"]["waiting"] == 5  # read from the list, never taken here
    assert store.zcard("kernkoa-recent") == 3
    assert 0 < store.ttl("kernkoa-recent") <= 600
    assert 0 < store.ttl(f"kernkoa-recent-{ids[-1]}") <= 600
    redis.stop()
    # The store is away: the trigger and the page say so (503).
    assert client.post("/shop/Jobs/plain_celery", json={}).status_code == 503
    answer = client.get("/_kernkoa/tasks?format=json")
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "broker_unavailable"


def test_the_file_index_prunes_a_tenth_of_its_size_apart(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    index = FileRecent(tmp_path / "recent", size=50, expires=3600)
    listings = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listings.append(path) or scandir(path))
    for number in range(200):
        index.started(f"task-{number}", started_record(None, "/a/B/c_celery", None, None, None))
        assert len(list((tmp_path / "recent").iterdir())) <= 50 + 5
    # One listing of the folder (about its size) every five writes, not one each.
    assert len(listings) == 200 // 5
    assert [r["id"] for r in index.latest(3)] == ["task-199", "task-198", "task-197"]


def test_a_task_cancelled_while_queued_is_listed_as_revoked(
        jobs_app: t.Callable[..., Flask], tmp_path: Path) -> None:
    app = jobs_app()
    client = app.test_client()
    task_id = _trigger(client, "/shop/Jobs/plain_celery")
    assert client.delete(f"/status/{task_id}").get_json() == {"status": "REVOKED"}
    with pytest.raises(Ignore):
        run_queued(app, queued_messages(tmp_path / "var"))
    [task] = client.get("/_kernkoa/tasks?format=json").get_json()["tasks"]
    assert task["id"] == task_id and task["state"] == "REVOKED"
    assert task["started"] is None and task["created"]


@pytest.mark.parametrize("junk", ['{"route": 5}', '{"route": ["a"], "started": {"x": 1}}',
                                  '{"route": null, "created": "soon", "identity": [1]}',
                                  '[1, 2]', '"text"', '', '{"route": "/a/B/c_celery"'])
def test_a_corrupt_index_file_is_no_500(jobs_app: t.Callable[..., Flask], tmp_path: Path,
                                        junk: str) -> None:
    app = jobs_app()
    client = app.test_client()
    _trigger(client, "/shop/Jobs/plain_celery")
    run_queued(app, queued_messages(tmp_path / "var"))
    (tmp_path / "var" / "celery" / "recent" / "hand-written.json").write_text(junk)
    answer = client.get("/_kernkoa/tasks?format=json")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert "/shop/Jobs/plain_celery" in answer.get_json()["counts"]


def _from_threads(write: t.Callable[[int], None], count: int = 50, each: int = 20) -> None:
    """``write(n)`` for ``count * each`` numbers, from ``count`` threads at once."""
    start = threading.Barrier(count)

    def work(first: int) -> None:
        start.wait(timeout=30)
        for number in range(first, first + each):
            write(number)

    threads = [threading.Thread(target=work, args=(n * each,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)


def test_the_file_index_stays_bounded_under_50_threads(tmp_path: Path) -> None:
    index = FileRecent(tmp_path / "recent", size=30, expires=3600)
    errors: list[BaseException] = []

    def write(number: int) -> None:
        try:
            index.started(f"t-{number}", started_record(None, "/a/B/c_celery", None, None, None))
            index.latest(30)
        except BaseException as error:  # noqa: BLE001 - collected for the assert
            errors.append(error)

    _from_threads(write)
    assert errors == []
    # Each pruning keeps 30; the writes between two prunings (3 per thread at most) add.
    assert len(list((tmp_path / "recent").iterdir())) <= 30 + 50 * 3
    index.started("last", started_record(None, "/a/B/c_celery", None, None, None))
    index._prune()
    assert len(list((tmp_path / "recent").iterdir())) == 30


@pytest.mark.redis
def test_the_redis_index_stays_bounded_under_50_threads(
        jobs_app: t.Callable[..., Flask], redis: t.Any) -> None:
    app = jobs_app(BROKER_URL=redis.url, RESULT_BACKEND=redis.url, RECENT_TASKS=30)
    with app.app_context():
        celery, _ = celery_and_breaker()
    index = recent_index(celery)
    assert index is not None
    _from_threads(lambda n: index.started(
        f"t-{n}", started_record({"created": float(n)}, "/a/B/c_celery", None, None, None)))
    store = redis.client()
    assert store.zcard("kernkoa-recent") == 30
    assert len(store.keys("kernkoa-recent-*")) == 30  # the records cut went with them
    # The newest by trigger time are kept, whatever order the threads wrote in.
    assert [r["id"] for r in index.latest(3)] == ["t-999", "t-998", "t-997"]



@pytest.mark.parametrize("created", ["inf", "-inf", "nan", float("inf"), "soon", None, [1]])
def test_a_trigger_time_that_is_no_time_is_the_start_time(created: t.Any) -> None:
    before = time.time()
    record = started_record({"created": created}, "/a/B/c_celery", None, None, None)
    assert before <= record["created"] <= time.time()


def test_the_file_index_deletes_drafts_a_killed_writer_left(tmp_path: Path) -> None:
    index = FileRecent(tmp_path / "recent", size=10, expires=3600)
    index.started("first", started_record(None, "/a/B/c_celery", None, None, None))
    old, fresh = tmp_path / "recent" / ".gone.json.999", tmp_path / "recent" / ".kept.json.998"
    old.write_text('{"route": "/a/B/c_ce')
    fresh.write_text("{")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    index.started("second", started_record(None, "/a/B/c_celery", None, None, None))
    assert not old.exists() and fresh.exists()
    assert [r["id"] for r in index.latest(10)] == ["second", "first"]

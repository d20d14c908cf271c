"""Long work on real parts: redis-server, kernkoa worker processes, a kernkoa server."""

from __future__ import annotations

import concurrent.futures
import json
import re
import typing as t
from pathlib import Path
from unittest.mock import ANY

import pytest
from celery import Celery

from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.tasks import SECRET_HEADERS
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import status_of
from tests.support.tasks import trigger
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

#: Every test here uses the module's redis-server.
pytestmark = pytest.mark.redis

#: An add-on whose task hooks write one line each next to it.
TASKLOG_ADDON = """
from pathlib import Path

LOG = Path(__file__).with_name("hooks.log")


def on_task_start(*, task_id, name, **info):
    with LOG.open("a") as log:
        log.write(f"start {task_id} {name}\\n")


def on_task_finish(*, task_id, name, state, duration, error=None, **info):
    with LOG.open("a") as log:
        log.write(f"finish {task_id} {name} {state} {type(error).__name__}\\n")
"""


class Live(t.NamedTuple):
    server: LiveServer
    redis: RedisServer
    env: dict[str, str]
    stack: Stack
    folder: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Live]:
    """Redis, one worker (2 processes) and a server, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("redis-live")
    redis = RedisServer(folder / "redis")
    redis.start()
    stack = Stack(folder)
    addons = folder / "addons"
    addons.mkdir()
    (addons / "tasklog.py").write_text(TASKLOG_ADDON)
    env = clean_environ(CATALOG=str(write_catalog(folder / "catalog")),
                        BROKER_URL=redis.url, RESULT_BACKEND=redis.url,
                        VAR=str(folder / "var"), PROGRESS_INTERVAL="0",
                        ADDONS="tasklog", ADDONS_FOLDER=str(addons))
    try:
        stack.worker(env, "--concurrency=2")
        yield Live(stack.server(env), redis, env, stack, folder)
    finally:
        stack.close()
        redis.stop()


def test_progress_is_seen_in_order_then_success(live: Live) -> None:
    task_id = trigger(live.server, "/jobs/jobs/count_celery?tag=q", n=8, delay=0.1, tag="t")
    seen: list[dict[str, t.Any]] = []
    body = wait_status(live.server, task_id, final, seen=seen)
    url = live.server.base + "/"
    assert body == {"status": "SUCCESS",
                    "data": {"counted": 8, "tag": "t", "arg": "q", "url": url},
                    "request_id": ANY}
    progress = [b["state"] for b in seen if b["status"] == "PROGRESS"]
    assert progress, seen
    currents = [p["current"] for p in progress]
    assert currents == sorted(currents)
    assert progress[-1]["total"] == 8
    assert progress[-1]["percent"] == round(100.0 * currents[-1] / 8, 1)
    assert {b["status"] for b in seen} <= {"PENDING", "STARTED", "PROGRESS", "SUCCESS"}


def test_failure_envelope(live: Live) -> None:
    task_id = trigger(live.server, "/jobs/jobs/fail_celery")
    body = wait_status(live.server, task_id, final)
    assert body == {"status": "FAILURE", "error": {"type": "ValueError", "message": "boom"},
                    "request_id": ANY}


def test_one_long_poll_gets_the_result(live: Live) -> None:
    task_id = trigger(live.server, "/jobs/jobs/count_celery", n=3, delay=0.1, tag="w")
    code, _, body = live.server.request(f"/status/{task_id}?wait=20", timeout=30)
    assert code == 200
    assert json.loads(body)["data"]["counted"] == 3


def test_a_trigger_preferring_to_wait_gets_the_result_in_one_request(live: Live) -> None:
    code, headers, body = live.server.request(
        "/jobs/jobs/count_celery", "POST", json.dumps({"n": 2, "delay": 0.05}).encode(),
        {"Content-Type": "application/json", "Prefer": "respond-async, wait=20"}, timeout=30)
    answer = json.loads(body)
    assert (code, answer["status"], answer["data"]["counted"]) == (200, "SUCCESS", 2)
    # The same task, followed as usual.
    assert status_of(live.server, answer["id"])[1]["status"] == "SUCCESS"


def test_a_long_poll_ends_with_a_cancellation(live: Live) -> None:
    note = live.folder / "waited.txt"
    task_id = trigger(live.server, "/jobs/jobs/run_celery", note=str(note), seconds=60)
    wait_status(live.server, task_id, lambda b: b["status"] == "PROGRESS")
    waiting = concurrent.futures.ThreadPoolExecutor(1)
    answer = waiting.submit(live.server.request, f"/status/{task_id}?wait=25", timeout=30)
    try:
        assert live.server.request(f"/status/{task_id}", "DELETE")[0] == 200
        code, _, body = answer.result(timeout=30)
    finally:
        waiting.shutdown()
    assert (code, json.loads(body)) == (200, {"status": "REVOKED", "request_id": ANY})
    wait_for(lambda: "end" in note.read_text(), timeout=20, what="the task to stop")


def test_unknown_id_is_404(live: Live) -> None:
    for task_id in ("5f0c8f53-7a43-4d59-9a8c-000000000000", "not-a-uuid", "a.b.c"):
        code, body = status_of(live.server, task_id)
        assert code == 404
        assert body["error"]["code"] == "not_found"


def test_seed_example_flow(live: Live) -> None:
    code, _, page = live.server.request("/celeryexample/asynclibrary/asyncclass/triggerfunction")
    assert code == 200
    match = re.fullmatch(rb"<a href='(http://[^']+/status/([A-Za-z0-9_.-]+))'>Async Test", page)
    assert match, page
    assert match.group(1).decode().startswith(live.server.base + "/status/")
    seen: list[dict[str, t.Any]] = []
    body = wait_status(live.server, match.group(2).decode(), final, seen=seen)
    assert body == {"status": "SUCCESS", "data": 10, "request_id": ANY}
    numbers = [b["state"]["number"] for b in seen if b["status"] == "inProgress"]
    assert numbers and numbers == sorted(numbers)
    assert all(1 <= n <= 10 for n in numbers)
    progress = next(b for b in seen if b["status"] == "inProgress")
    assert progress["state"]["title"] == "Contando con 2 segundos de desfase hasta 10"


def test_exetask_from_a_get_with_fields(live: Live) -> None:
    code, _, page = live.server.request("/jobs/jobs/trigger?n=2&tag=x")
    assert code == 200
    task_id = page.split(b"status/")[1].split(b"'")[0].decode()
    body = wait_status(live.server, task_id, final)
    assert body["status"] == "SUCCESS"
    assert body["data"]["tag"] == "x" and body["data"]["arg"] == "x"


def test_invalid_arguments_are_422_before_enqueueing(live: Live) -> None:
    code, _, body = live.server.request(
        "/jobs/jobs/count_celery", "POST", json.dumps({"n": "many"}).encode(),
        {"Content-Type": "application/json"})
    assert code == 422
    assert json.loads(body)["error"]["fields"][0]["name"] == "n"


def test_revoking_a_running_task_stops_it(live: Live) -> None:
    note = live.folder / "running.txt"
    task_id = trigger(live.server, "/jobs/jobs/run_celery", note=str(note), seconds=60)
    wait_status(live.server, task_id, lambda b: b["status"] == "PROGRESS")
    code, _, body = live.server.request(f"/status/{task_id}", "DELETE")
    assert code == 200 and json.loads(body) == {"status": "REVOKED"}
    # The task stops at its next progress report, long before its 60 s.
    wait_for(lambda: "end" in note.read_text(), timeout=20, what="the task to stop")
    assert status_of(live.server, task_id) == (200, {"status": "REVOKED", "request_id": ANY})


def test_a_form_post_reaches_the_task(live: Live) -> None:
    code, _, body = live.server.request(
        "/jobs/jobs/count_celery?tag=query", "POST", b"n=2&tag=form",
        {"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 202, body
    done = wait_status(live.server, json.loads(body)["id"], final)
    assert done["status"] == "SUCCESS", done
    assert done["data"]["counted"] == 2
    assert done["data"]["tag"] == "form"


def test_task_hooks_of_add_ons_run_in_the_worker(live: Live) -> None:
    good = trigger(live.server, "/jobs/jobs/count_celery", n=1)
    bad = trigger(live.server, "/jobs/jobs/fail_celery")
    for task_id in (good, bad):
        wait_status(live.server, task_id, final)
    log = live.folder / "addons" / "hooks.log"
    wait_for(lambda: f"finish {bad}" in log.read_text(), timeout=20, what="the finish hook")
    lines = log.read_text().splitlines()
    assert f"start {good} /jobs/jobs/count_celery" in lines
    assert f"finish {good} /jobs/jobs/count_celery SUCCESS NoneType" in lines
    assert f"finish {bad} /jobs/jobs/fail_celery FAILURE ValueError" in lines


def test_revoking_a_silent_running_task_stops_it(live: Live) -> None:
    note = live.folder / "sleepy.txt"
    task_id = trigger(live.server, "/jobs/jobs/sleepy_celery", note=str(note))
    wait_for(lambda: note.exists() and "start" in note.read_text(), timeout=20,
             what="the task to start")
    # Running, no progress: STARTED, stored as Celery's own readers expect it.
    assert status_of(live.server, task_id) == (200, {"status": "STARTED", "request_id": ANY})
    celery = Celery(backend=live.redis.url, set_as_current=False)
    try:
        started = celery.AsyncResult(task_id)
        assert started.state == "STARTED"
        assert started.info["pid"] > 0 and started.info["hostname"]
    finally:
        celery.backend.client.connection_pool.disconnect()
        celery.close()
    code, _, _ = live.server.request(f"/status/{task_id}", "DELETE")
    assert code == 200
    # It never reports progress: only the soft signal can stop it before its 60 s.
    wait_for(lambda: "end" in note.read_text(), timeout=20, what="the task to stop")
    assert status_of(live.server, task_id) == (200, {"status": "REVOKED", "request_id": ANY})
    follow = trigger(live.server, "/jobs/jobs/count_celery", n=1)
    assert wait_status(live.server, follow, final)["status"] == "SUCCESS"


def test_revoking_a_queued_task_means_it_never_starts(live: Live) -> None:
    note = live.folder / "side.txt"
    # Queue "side" has no worker yet: the task stays queued.
    task_id = trigger(live.server, "/jobs/jobs/side_celery", note=str(note))
    assert status_of(live.server, task_id) == (200, {"status": "PENDING"})
    code, _, _ = live.server.request(f"/status/{task_id}", "DELETE")
    assert code == 200
    live.stack.worker(live.env, "--concurrency=1", "-Q", "side")
    client = live.redis.client()
    wait_for(lambda: client.llen("side") == 0, timeout=20, what="the side queue to drain")
    witness = trigger(live.server, "/jobs/jobs/side_celery", note=str(note))
    assert wait_status(live.server, witness, final)["status"] == "SUCCESS"
    assert note.read_text() == "ran\n"  # only the witness ran
    assert status_of(live.server, task_id) == (200, {"status": "REVOKED"})


def test_time_limits_fail_clearly_and_free_the_slot(live: Live) -> None:
    soft = trigger(live.server, "/jobs/jobs/soft_celery")
    hard = trigger(live.server, "/jobs/jobs/hard_celery")
    soft_body = wait_status(live.server, soft, final)
    hard_body = wait_status(live.server, hard, final)
    assert soft_body["status"] == "FAILURE"
    assert soft_body["error"]["type"] == "TaskTimeLimitExceeded"
    assert "time limit of 1" in soft_body["error"]["message"]
    assert hard_body["status"] == "FAILURE"
    assert hard_body["error"]["type"] == "TimeLimitExceeded"
    assert "hard time limit of 2" in hard_body["error"]["message"]
    # Both worker processes take work again.
    ids = [trigger(live.server, "/jobs/jobs/count_celery", n=1) for _ in range(2)]
    assert [wait_status(live.server, i, final)["status"] for i in ids] == ["SUCCESS"] * 2


def test_markers_are_plain_expiring_sets(live: Live) -> None:
    # The issued and revoked markers are one SET each with the results' expiry
    # (no MULTI/EXEC, no PUBLISH): same keys, same values, same lifetime.
    import redis

    from kernel.app import create_app
    from kernel.catalog.access import AUTHENTICATED
    from kernel.tasks.celeryapp import get_celery
    from kernel.tasks.store import ISSUED_PREFIX
    from kernel.tasks.store import REVOKED_PREFIX
    from kernel.tasks.store import JobStore

    app = create_app({"CATALOG": live.env["KERNKOA_CATALOG"], "VAR": live.env["KERNKOA_VAR"],
                      "BROKER_URL": live.redis.url, "RESULT_BACKEND": live.redis.url})
    celery = get_celery(app)
    store = JobStore(celery)
    task_id = "5f0c8f53-7a43-4d59-9a8c-00000000beef"
    client = redis.Redis.from_url(live.redis.url)
    listener = client.pubsub()
    listener.subscribe(ISSUED_PREFIX + task_id.encode(), REVOKED_PREFIX + task_id.encode())
    store.mark_issued(task_id, "/a/b/c_celery", 12.5, AUTHENTICATED)
    store.mark_revoked(task_id)
    expires = celery.backend.expires
    for prefix in (ISSUED_PREFIX, REVOKED_PREFIX):
        assert 0 < client.ttl(prefix + task_id.encode()) <= expires
    record = store.read(task_id)
    assert record.issued == {"route": "/a/b/c_celery", "created": 12.5,
                             "access": AUTHENTICATED.as_record()} and record.revoked
    messages = [listener.get_message(timeout=0.2) for _ in range(4)]
    assert all(m is None or m["type"] == "subscribe" for m in messages)
    listener.close()
    client.delete(ISSUED_PREFIX + task_id.encode())
    assert store.read(task_id).issued is None


def test_only_allowed_headers_reach_the_worker(live: Live) -> None:
    code, _, body = live.server.request(
        "/jobs/jobs/headers_celery", "POST", b"",
        {**SECRET_HEADERS, "User-Agent": "hardening-test", "X-Request-Id": "req-42"})
    assert code == 202, body
    seen = wait_status(live.server, json.loads(body)["id"], final)
    assert seen["status"] == "SUCCESS", seen
    headers = {k.lower(): v for k, v in seen["data"].items()}
    assert headers["user-agent"] == "hardening-test"
    assert headers["x-request-id"] == "req-42"
    assert not {name.lower() for name in SECRET_HEADERS} & headers.keys()

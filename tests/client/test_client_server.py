"""kernel.client.Client against a real uWSGI server with a Redis broker and a worker."""

from __future__ import annotations

import json
import threading
import time
import typing as t
from pathlib import Path

import httpx
import pytest

from kernel.client import CallError
from kernel.client import Client
from kernel.client import TaskFailed
from tests.support.cutting_proxy import CuttingProxy
from tests.support.cutting_proxy import answer_body
from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

pytestmark = [pytest.mark.redis, pytest.mark.uwsgi]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[RedisServer]:
    """One Redis for the module's tests (some stop and restart it: it keeps its data,
    as production's does)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), persistent=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           redis_server: RedisServer) -> t.Iterator[LiveServer]:
    """uWSGI serving the test controllers, and a worker, both on ``redis_server``."""
    folder = tmp_path_factory.mktemp("served")
    env = clean_environ(CATALOG=str(write_catalog(folder / "catalog")),
                        BROKER_URL=redis_server.url, VAR=str(folder / "var"),
                        BROKER_COOLDOWN="1")
    stack = Stack(folder)
    try:
        stack.worker(env, "--concurrency=2")
        settings = {k: v for k, v in env.items() if k.startswith("KERNKOA_")}
        with uwsgi_server(folder, settings) as served:
            yield served
    finally:
        stack.close()


def requests_of(client: Client) -> list[str]:
    """The requests ``client`` sends from now on, as ``METHOD path?query``."""
    sent: list[str] = []

    def note(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.raw_path.decode()}")

    client.http.event_hooks["request"].append(note)
    return sent


def test_call_start_wait_and_cancel(server: LiveServer, tmp_path: Path) -> None:
    with Client(server.base) as client:
        assert client.call("/jobs/jobs/hello", method="GET") == "hello"
        # A _celery method called is waited for: its result comes back in the trigger's
        # own answer (Prefer: wait), with no status request.
        calls = requests_of(client)
        assert client.call("/jobs/jobs/count_celery", n=2, delay=0.01, tag="a")["counted"] == 2
        assert calls == ["POST /jobs/jobs/count_celery"]
        client.http.event_hooks["request"].clear()

        sent = requests_of(client)
        task = client.start("/jobs/jobs/count_celery", n=10, delay=0.1)
        assert task.status in ("PENDING", "STARTED", "PROGRESS", "SUCCESS")
        assert task.wait(timeout=60)["counted"] == 10
        assert task.status == "SUCCESS" and task.progress is None
        # Long polls, no busy polling: the trigger, one look, and a few waits at most.
        assert len(sent) <= 5, sent
        assert any("?wait=" in line for line in sent), sent

        note = tmp_path / "run.txt"
        running = client.start("/jobs/jobs/run_celery", note=str(note), seconds=60)
        deadline = time.monotonic() + 60
        while running.progress is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running.progress is not None and running.progress["current"] >= 1
        running.cancel()
        with pytest.raises(TaskFailed, match="cancelled"):
            running.wait(timeout=60)
        assert running.status == "REVOKED"

        failing = client.start("/jobs/jobs/fail_celery")
        with pytest.raises(TaskFailed) as caught:
            failing.wait(timeout=60)
        assert (caught.value.type, caught.value.error_message) == ("ValueError", "boom")
        # A finished task cannot be cancelled: the server's 409, as an error.
        with pytest.raises(CallError) as refused:
            client.task(failing.id).cancel()
        assert refused.value.status == 409

        with pytest.raises(CallError) as missing:
            client.call("/jobs/jobs/nothing_here")
        assert missing.value.status == 404 and missing.value.code == "not_found"


def test_cbor(server: LiveServer) -> None:
    with Client(server.base, format="cbor") as client:
        response = client.post("/jobs/jobs/count_celery", n=1, delay=0.01)
        assert response.status_code == 202
        assert response.headers["Content-Type"] == "application/cbor"
        assert client.result_of(response)["counted"] == 1
        assert client.call("/jobs/jobs/count_celery", n=3, delay=0.01, tag="c")["tag"] == "c"
        with pytest.raises(CallError) as refused:
            client.call("/jobs/jobs/count_celery", n="three")
        assert refused.value.status == 422 and refused.value.fields[0]["name"] == "n"
        # Keys the server refuses: their envelopes, and nothing started.
        for key, status, code in [("", 400, "invalid_idempotency_key"),
                                  ("k" * 256, 400, "invalid_idempotency_key"),
                                  ('"', 400, "invalid_idempotency_key")]:
            with pytest.raises(CallError) as bad:
                client.start("/jobs/jobs/count_celery", n=1, idempotency_key=key)
            assert (bad.value.status, bad.value.code) == (status, code)
        client.start("/jobs/jobs/count_celery", n=1, delay=0.01, idempotency_key="cbor-1")
        with pytest.raises(CallError) as reused:
            client.start("/jobs/jobs/count_celery", n=2, idempotency_key="cbor-1")
        assert (reused.value.status, reused.value.code) == (422, "idempotency_key_reused")
        assert reused.value.envelope["error"]["code"] == "idempotency_key_reused"


def test_503_is_retried_while_redis_is_away(server: LiveServer,
                                            redis_server: RedisServer) -> None:
    redis = redis_server
    redis.stop()
    with Client(server.base, retries=0) as impatient:
        with pytest.raises(CallError) as caught:
            impatient.call("/jobs/jobs/count_celery", n=1)
        assert caught.value.status == 503 and caught.value.code == "broker_unavailable"

    comeback = threading.Timer(4.0, redis.start)
    comeback.start()
    try:
        with Client(server.base, retries=8, backoff=0.5) as client:
            sent = requests_of(client)
            result = client.call("/jobs/jobs/count_celery", n=1, delay=0.01)
    finally:
        comeback.join()
    assert result["counted"] == 1
    assert sent.count("POST /jobs/jobs/count_celery") >= 2, sent


# --- Retried triggers start their task once (Idempotency-Key) ----------------------

def keys_sent(client: Client) -> list[str | None]:
    """The ``Idempotency-Key`` of each POST ``client`` sends from now on."""
    keys: list[str | None] = []

    def note(request: httpx.Request) -> None:
        if request.method == "POST":
            keys.append(request.headers.get("Idempotency-Key"))

    client.http.event_hooks["request"].append(note)
    return keys


def runs_in(note: Path) -> int:
    """How many times ``run_celery`` started with ``note``."""
    return sum(line.startswith("start") for line in note.read_text().splitlines())


def test_a_start_whose_answer_was_cut_is_retried_and_runs_once(server: LiveServer,
                                                                  tmp_path: Path) -> None:
    note = tmp_path / "runs.txt"
    with CuttingProxy(httpx.URL(server.base).port or 80) as proxy, \
            Client(f"http://127.0.0.1:{proxy.port}", backoff=0.2) as client:
        keys = keys_sent(client)
        proxy.cuts = 1
        task = client.start("/jobs/jobs/run_celery", note=str(note), seconds=0.2)
        [cut] = proxy.cut_answers
        assert cut.startswith(b"HTTP/1.1 202")
        # The retry names the task the lost answer named: the same one.
        assert json.loads(answer_body(cut))["id"] == task.id
        assert len(keys) >= 2 and keys[0] is not None and set(keys) == {keys[0]}
        assert task.wait(timeout=60) == "done"
    assert runs_in(note) == 1


def test_a_call_that_timed_out_is_retried_and_runs_once(server: LiveServer,
                                                        tmp_path: Path) -> None:
    note = tmp_path / "runs.txt"
    with CuttingProxy(httpx.URL(server.base).port or 80) as proxy, \
            Client(f"http://127.0.0.1:{proxy.port}", timeout=1, task_timeout=1,
                   backoff=0.2) as client:
        keys = keys_sent(client)

        def hold_until_done_and_too_late(answer: bytes) -> None:
            # The client waits 2 s (1 s, and the 1 s it asked the server to hold the
            # answer): by the end of this, it has given up on this answer.
            wait_status(server, json.loads(answer_body(answer))["id"], final, timeout=60)
            time.sleep(2.5)

        proxy.cuts, proxy.on_cut = 1, hold_until_done_and_too_late
        assert client.call("/jobs/jobs/run_celery", note=str(note), seconds=0.5) == "done"
        assert len(proxy.cut_answers) == 1
    assert len(keys) >= 2 and keys[0] is not None and set(keys) == {keys[0]}
    assert runs_in(note) == 1
    # The next call is another piece of work: another key, another run.
    with Client(server.base) as client:
        next_keys = keys_sent(client)
        assert client.call("/jobs/jobs/run_celery", note=str(note), seconds=0.1) == "done"
    assert next_keys[0] is not None and next_keys[0] != keys[0]
    assert runs_in(note) == 2


def test_a_retry_while_redis_is_away_gets_the_first_task(server: LiveServer,
                                                         redis_server: RedisServer,
                                                         tmp_path: Path) -> None:
    """The answer is lost after the task ran, and Redis goes away before the retry:
    the retry is answered once Redis is back (503s in between are sent again too),
    with the task, which ran once."""
    note = tmp_path / "runs.txt"
    comeback: list[threading.Timer] = []

    def take_redis_away(answer: bytes) -> None:
        wait_status(server, json.loads(answer_body(answer))["id"], final, timeout=60)
        redis_server.stop()
        comeback.append(threading.Timer(3.0, redis_server.start))
        comeback[0].start()

    try:
        with CuttingProxy(httpx.URL(server.base).port or 80) as proxy, \
                Client(f"http://127.0.0.1:{proxy.port}", retries=8, backoff=0.5) as client:
            keys = keys_sent(client)
            proxy.cuts, proxy.on_cut = 1, take_redis_away
            task = client.start("/jobs/jobs/run_celery", note=str(note), seconds=0.1)
            assert json.loads(answer_body(proxy.cut_answers[0]))["id"] == task.id
            assert task.wait(timeout=60) == "done"
    finally:
        for timer in comeback:
            timer.join()
    assert len(keys) >= 2 and keys[0] is not None and set(keys) == {keys[0]}
    assert runs_in(note) == 1

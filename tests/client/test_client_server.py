"""kernel.client.Client against a real uWSGI server with a Redis broker and a worker."""

from __future__ import annotations

import threading
import time
import typing as t
from pathlib import Path

import httpx
import pytest

from kernel.client import CallError
from kernel.client import Client
from kernel.client import TaskFailed
from tests.support.processes import clean_environ
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server
from tests.support.tasks import Stack
from tests.support.tasks import write_catalog

pytestmark = [pytest.mark.redis, pytest.mark.uwsgi]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[RedisServer]:
    """One Redis for the module's tests (the last one stops and restarts it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
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

"""kernel.client in-process, against a scripted server (httpx's MockTransport)."""

from __future__ import annotations

import json
import time
import typing as t

import cbor2
import httpx
import pytest

from kernel.client import CallError
from kernel.client import Client
from kernel.client import TaskFailed
from kernel.client import TaskTimeout
from kernel.client.client import _retry_after
from kernel.core.errors import KernKoaError

Handler = t.Callable[[httpx.Request], httpx.Response]


def client_of(handler: Handler, **options: t.Any) -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    options.setdefault("backoff", 0.01)
    return Client("http://kk.test", transport=httpx.MockTransport(recording), **options), seen


def envelope(status: int, code: str, message: str, **extra: t.Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"status": status, "code": code,
                                                  "message": message, **extra}})


def test_503_is_sent_again_until_it_passes() -> None:
    answers = iter([envelope(503, "broker_unavailable", "down")] * 2
                   + [httpx.Response(200, json={"ok": True})])
    client, seen = client_of(lambda request: next(answers))
    assert client.call("/a/A/b", x=1) == {"ok": True}
    assert len(seen) == 3
    assert all(json.loads(r.content) == {"x": 1} for r in seen)


def test_503_after_the_retries_is_an_error_with_the_envelope() -> None:
    client, seen = client_of(lambda request: envelope(503, "broker_unavailable", "down"),
                             retries=2)
    with pytest.raises(CallError) as caught:
        client.call("/a/A/b")
    assert len(seen) == 3
    assert (caught.value.status, caught.value.code) == (503, "broker_unavailable")
    assert isinstance(caught.value, KernKoaError)


@pytest.mark.parametrize(("header", "pause"), [
    ("2", 2.0), ("120", 8.0), ("", None), ("soon", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_retry_after(header: str, pause: float | None) -> None:
    response = httpx.Response(503, headers={"Retry-After": header} if header else {})
    assert _retry_after(response) == pause


def test_an_error_reads_well() -> None:
    client, _ = client_of(lambda request: envelope(
        422, "unprocessable_entity", "The fields do not fit.",
        fields=[{"name": "n", "source": "json", "message": "expected an integer"}],
        detail="Traceback...\nValueError: boom"))
    with pytest.raises(CallError) as caught:
        client.call("/a/A/b", n="x")
    assert str(caught.value) == (
        "POST /a/A/b: 422 unprocessable_entity: The fields do not fit.\n"
        "  n (json): expected an integer\nTraceback...\nValueError: boom")
    assert caught.value.fields == [{"name": "n", "source": "json",
                                    "message": "expected an integer"}]


def test_an_error_without_an_envelope() -> None:
    client, _ = client_of(lambda request: httpx.Response(502, text="<html>bad gateway"))
    with pytest.raises(CallError, match="502 error: <html>bad gateway"):
        client.call("/a/A/b")


def test_answers_are_decoded_by_their_type() -> None:
    answers = {"/json": httpx.Response(200, json=[1, 2]),
               "/text": httpx.Response(200, text="hello", headers={"Content-Type": "text/html"}),
               "/cbor": httpx.Response(200, content=cbor2.dumps({"b": b"\x00"}),
                                       headers={"Content-Type": "application/cbor"})}
    client, _ = client_of(lambda request: answers[request.url.path])
    assert client.call("/json") == [1, 2]
    assert client.call("/text") == "hello"
    assert client.call("/cbor") == {"b": b"\x00"}


def test_cbor_bodies_and_accept() -> None:
    client, seen = client_of(lambda request: httpx.Response(200, json={}), format="cbor")
    client.call("/a/A/b", n=1)
    assert seen[0].headers["Content-Type"] == "application/cbor"
    assert seen[0].headers["Accept"].startswith("application/cbor")
    assert cbor2.loads(seen[0].content) == {"n": 1}
    client.call("/a/A/b", method="GET", n=1)
    assert seen[1].url.query == b"n=1" and seen[1].content == b""
    with pytest.raises(ValueError, match="format must be one of"):
        Client("http://kk.test", format="xml")


def trigger(task_id: str = "t1", status: int = 202) -> httpx.Response:
    return httpx.Response(status, json={"id": task_id, "status": "PENDING",
                                        "status_url": f"http://kk.test/status/{task_id}"})


def test_a_task_is_waited_for_with_long_polls() -> None:
    polls = iter([{"status": "PROGRESS", "state": {"current": 1}},
                  {"status": "SUCCESS", "data": 42}])

    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return trigger()
        return httpx.Response(200, json=next(polls))

    client, seen = client_of(server)
    task = client.start("/a/A/b_celery")
    assert task.progress == {"current": 1}
    assert task.wait(timeout=30) == 42
    assert task.status == "SUCCESS" and task.result == 42
    assert [r.url.params.get("wait") for r in seen] == [None, None, "25.0"]  # cut to LONG_POLL
    assert len(seen) == 3  # a final status is never asked again


def test_a_server_that_waits_less_is_not_polled_in_a_loop() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        return trigger() if request.method == "POST" else httpx.Response(
            200, json={"status": "PENDING"})

    client, seen = client_of(server)
    task = client.start("/a/A/b_celery")
    began = time.monotonic()
    with pytest.raises(TaskTimeout, match="still PENDING after 1.0 s"):
        task.wait(timeout=1.0)
    assert time.monotonic() - began >= 1.0
    assert len(seen) <= 7, len(seen)  # pauses of 0.1, 0.2, 0.4, 0.8 s at most


@pytest.mark.parametrize(("body", "said"), [
    ({"status": "FAILURE", "error": {"type": "ValueError", "message": "boom"}},
     "failed: ValueError: boom"),
    ({"status": "REVOKED"}, "was cancelled"),
])
def test_a_failed_task_raises(body: dict[str, t.Any], said: str) -> None:
    client, _ = client_of(lambda request: trigger(status=200) if request.method == "POST"
                          else httpx.Response(200, json=body))
    with pytest.raises(TaskFailed, match=said) as caught:
        client.call("/a/A/b_celery")
    assert caught.value.status == body["status"]


def test_start_of_a_plain_method_is_refused() -> None:
    client, _ = client_of(lambda request: httpx.Response(200, json={"id": 1}))
    with pytest.raises(ValueError, match="started no task"):
        client.start("/a/A/b")
    # A result that merely looks like a task is a result.
    assert client.call("/a/A/b") == {"id": 1}


@pytest.mark.parametrize("kind", ["application/json", "application/cbor"])
def test_malformed_answers(kind: str) -> None:
    status = iter([200, 500])
    client, _ = client_of(lambda request: httpx.Response(
        next(status), content=b"\xff{not", headers={"Content-Type": kind}))
    with pytest.raises(ValueError, match=f"a malformed {kind} answer"):
        client.call("/a/A/b")
    with pytest.raises(CallError) as caught:
        client.call("/a/A/b")
    assert caught.value.status == 500 and caught.value.code == ""

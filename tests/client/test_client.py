"""kernel.client in-process, against a scripted server (httpx's MockTransport)."""

from __future__ import annotations

import json
import time
import typing as t
import uuid

import cbor2
import httpx
import pytest

from kernel.client import CallError
from kernel.client import Client
from kernel.client import TaskFailed
from kernel.client import TaskTimeout
from kernel.client.client import _retry_after
from kernel.client.client import names_a_task
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


# --- Idempotency-Key: one per call, the same on each of its retries -----------------

def keys_of(seen: list[httpx.Request]) -> list[str | None]:
    return [request.headers.get("Idempotency-Key") for request in seen]


def test_a_trigger_carries_one_key_per_call_and_the_same_on_each_retry() -> None:
    answers = iter([envelope(503, "broker_unavailable", "down"), trigger("t1"),
                    envelope(503, "broker_unavailable", "down"), trigger("t2")])
    client, seen = client_of(lambda request: next(answers))
    assert client.start("/a/A/b_celery", x=1).id == "t1"
    assert client.start("/a/A/b_celery", x=1).id == "t2"
    first, retry, second, second_retry = keys_of(seen)
    assert first is not None and second is not None
    assert (retry, second_retry) == (first, second)
    assert first != second
    assert str(uuid.UUID(first)) == first  # a random UUID: nothing two clients share


@pytest.mark.parametrize("lost", [
    httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.WriteTimeout("slow"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadError("reset"),
], ids=lambda error: type(error).__name__)
def test_a_trigger_whose_answer_was_lost_is_sent_again_with_its_key(lost: Exception) -> None:
    tries = iter([lost, lost, None])

    def server(request: httpx.Request) -> httpx.Response:
        error = next(tries)
        if error is not None:
            raise error
        return trigger("t1")

    client, seen = client_of(server)
    assert client.start("/a/A/b_celery", x=1).id == "t1"
    keys = keys_of(seen)
    assert len(keys) == 3 and keys[0] is not None and set(keys) == {keys[0]}
    assert all(json.loads(r.content) == {"x": 1} for r in seen)


def test_call_of_a_celery_method_sends_a_key_and_is_retried() -> None:
    tries = iter(["lost", "done"])

    def server(request: httpx.Request) -> httpx.Response:
        if next(tries) == "lost":
            raise httpx.ReadTimeout("slow")
        return httpx.Response(200, json={"id": "t1", "status": "SUCCESS", "data": 7,
                                         "status_url": "http://kk.test/status/t1"})

    client, seen = client_of(server)
    assert client.call("/a/A/b_celery/extra", n=1) == 7
    assert len(seen) == 2 and keys_of(seen)[0] == keys_of(seen)[1] is not None
    assert seen[1].headers["Prefer"].startswith("wait=")


def test_a_call_waits_for_the_answer_as_long_as_it_asked_the_server_to_hold_it() -> None:
    client, seen = client_of(lambda request: httpx.Response(200, json={}), timeout=3,
                             task_timeout=10)
    client.call("/a/A/b_celery")
    assert seen[0].headers["Prefer"] == "wait=10"
    assert seen[0].extensions["timeout"]["read"] == 13


def test_the_callers_own_key_is_sent() -> None:
    client, seen = client_of(lambda request: trigger(status=200) if request.method == "POST"
                             else httpx.Response(200, json={"status": "SUCCESS"}))
    client.start("/a/A/b_celery", idempotency_key="order-17")
    client.call("/a/A/b_celery", idempotency_key="order-18")
    # Given explicitly, it goes to any route: the caller says the call is a trigger.
    client.call("/a/A/plain", idempotency_key="order-19")
    posts = [r for r in seen if r.method == "POST"]
    assert keys_of(posts) == ["order-17", "order-18", "order-19"]


def test_a_plain_post_is_never_sent_again_once_it_may_have_arrived() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    client, seen = client_of(server)
    with pytest.raises(httpx.RemoteProtocolError):
        client.call("/a/A/b", x=1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/a/A/b_celery", x=1)  # the raw post sends no key: not resent either
    assert len(seen) == 2 and keys_of(seen) == [None, None]


def test_without_idempotent_triggers_no_key_is_sent_nor_a_lost_trigger_resent() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    client, seen = client_of(server, idempotent_triggers=False)
    with pytest.raises(httpx.ReadTimeout):
        client.start("/a/A/b_celery")
    assert keys_of(seen) == [None]


def test_a_lost_answer_after_the_retries_raises_the_transport_error() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client, seen = client_of(server, retries=2)
    with pytest.raises(httpx.ConnectError):
        client.start("/a/A/b_celery")
    assert len(seen) == 3


def test_a_key_reused_with_other_fields_is_an_error_with_the_envelope() -> None:
    client, seen = client_of(lambda request: envelope(
        422, "idempotency_key_reused",
        "This Idempotency-Key was used with other fields."))
    with pytest.raises(CallError) as caught:
        client.start("/a/A/b_celery", idempotency_key="k1", year=2025)
    assert (caught.value.status, caught.value.code) == (422, "idempotency_key_reused")
    assert caught.value.envelope["error"]["code"] == "idempotency_key_reused"
    assert len(seen) == 1  # a 422 is an answer: never sent again


@pytest.mark.parametrize("key", ["clé", "a\nb", "tab\there", "\x00"])
def test_a_key_that_cannot_travel_in_a_header_is_refused_before_sending(key: str) -> None:
    client, seen = client_of(lambda request: trigger())
    with pytest.raises(ValueError, match="idempotency_key must be printable ASCII"):
        client.start("/a/A/b_celery", idempotency_key=key)
    with pytest.raises(ValueError, match="idempotency_key must be printable ASCII"):
        client.call("/a/A/b_celery", idempotency_key=key)
    assert seen == []


@pytest.mark.parametrize(("path", "task"), [
    ("/a/A/b_celery", True), ("/a/A/b_celery/", True), ("/a/A/b_celery/7?x=1", True),
    ("http://kk.test/base/a/A/b_celery", True), ("/a/A/b", False),
    ("/a/A/b?tag=x_celery", False), ("/a/A/celery", False),
])
def test_names_a_task(path: str, task: bool) -> None:
    assert names_a_task(path) is task

"""Idempotent triggers in one process (embedded store, no worker), and the file claims."""

from __future__ import annotations

import concurrent.futures
import json
import time
import typing as t
from pathlib import Path

import pytest
from flask import Flask

from kernel.tasks import claims as claim_stores
from kernel.tasks import idempotency
from kernel.tasks.claims import Claim
from kernel.tasks.claims import FileClaims
from kernel.tasks.claims import RedisClaims
from kernel.tasks.idempotency import parse_key
from tests.support.auth import KEY as KEY_HS256
from tests.support.auth import token
from tests.support.catalogs import ControllerTree
from tests.support.redis_server import RedisServer

CONTROLLER = """
from kernkoa import *

class jobs:
    def work_celery(self, task, n: int = 1, params=None):
        return n

    @public
    def other_celery(self, task, n: int = 1):
        return n
"""

KEY = {"Idempotency-Key": "6c1b2a6e-0d5c-4a9f-9a57-1f9a3c1d2e4f"}


@pytest.fixture
def app(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> Flask:
    tree.write("jobs.py", CONTROLLER)
    return make_app()


def queued(tmp_path: Path) -> int:
    """How many messages wait in the embedded queue."""
    return len(list((tmp_path / "var" / "celery" / "queue").glob("*.msg")))


def test_a_repeated_key_answers_with_the_first_task(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    first = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    again = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert queued(tmp_path) == 1
    # Quoted, as the draft's structured-field string, it is the same key.
    quoted = client.post("/jobs/jobs/work_celery", json={"n": 2},
                         headers={"Idempotency-Key": f'"{KEY["Idempotency-Key"]}"'})
    assert quoted.get_json()["id"] == first.get_json()["id"]
    # Without a key, or with another, each trigger is a task.
    assert client.post("/jobs/jobs/work_celery", json={"n": 2}).get_json()["id"] != \
        first.get_json()["id"]
    other = client.post("/jobs/jobs/work_celery", json={"n": 2},
                        headers={"Idempotency-Key": "another"})
    assert other.get_json()["id"] != first.get_json()["id"]
    assert queued(tmp_path) == 3


def test_a_key_is_per_route(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    one = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    two = client.post("/jobs/jobs/other_celery", json={"n": 2}, headers=KEY)
    assert one.get_json()["id"] != two.get_json()["id"]
    assert queued(tmp_path) == 2


@pytest.mark.parametrize("changed", [
    {"path": "/jobs/jobs/work_celery", "json": {"n": 3}},
    {"path": "/jobs/jobs/work_celery?n=2", "json": {"n": 2}},
    {"path": "/jobs/jobs/work_celery", "data": {"n": "2"}},
])
def test_the_same_key_with_other_fields_is_refused(
        app: Flask, tmp_path: Path, changed: dict[str, t.Any]) -> None:
    client = app.test_client()
    assert client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY).status_code == 202
    refused = client.post(headers=KEY, **changed)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "idempotency_key_reused"
    assert queued(tmp_path) == 1


@pytest.mark.parametrize(("first", "again"), [
    # The same fields in another order, or spelled with percent-escapes.
    ({"path": "/jobs/jobs/work_celery?n=2&params=a"},
     {"path": "/jobs/jobs/work_celery?params=a&n=%32"}),
    ({"path": "/jobs/jobs/work_celery", "data": {"n": "2", "params": "a"}},
     {"path": "/jobs/jobs/work_celery", "data": {"params": "a", "n": "2"}}),
    ({"path": "/jobs/jobs/work_celery", "data": '{"n": 2, "params": "a"}',
      "content_type": "application/json"},
     {"path": "/jobs/jobs/work_celery", "data": '{"params":"a","n":2}',
      "content_type": "application/json"}),
])
def test_the_same_fields_in_another_order_are_the_same_request(
        app: Flask, tmp_path: Path, first: dict[str, t.Any], again: dict[str, t.Any]) -> None:
    client = app.test_client()
    one = client.post(headers=KEY, **first)
    two = client.post(headers=KEY, **again)
    assert one.status_code == two.status_code == 202, two.get_data()
    assert two.get_json()["id"] == one.get_json()["id"]
    assert queued(tmp_path) == 1


def test_path_segments_are_fields_of_the_method(app: Flask, tmp_path: Path) -> None:
    # /work_celery/3 and /work_celery/4 call one method with n=3 and n=4: the
    # second started another task instead of being refused.
    client = app.test_client()
    first = client.post("/jobs/jobs/work_celery/3", headers=KEY)
    assert client.post("/jobs/jobs/work_celery/3", headers=KEY).get_json()["id"] == \
        first.get_json()["id"]
    for other in ("/jobs/jobs/work_celery/4", "/jobs/jobs/work_celery"):
        refused = client.post(other, headers=KEY)
        assert refused.status_code == 422, other
    assert queued(tmp_path) == 1


def test_the_order_of_repeated_values_matters(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    assert client.post("/jobs/jobs/work_celery?params=a&params=b", headers=KEY).status_code == 202
    assert client.post("/jobs/jobs/work_celery?params=b&params=a", headers=KEY).status_code == 422


@pytest.mark.parametrize("key", ["", '""', "x" * 256, "has space", "quote\"in", "back\\slash",
                                 "caf\u00e9", '"unbalanced', "tab\there"])
def test_a_malformed_key_is_a_400(app: Flask, tmp_path: Path, key: str) -> None:
    response = app.test_client().post("/jobs/jobs/work_celery", json={"n": 1},
                                      headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"
    assert queued(tmp_path) == 0


def test_key_bounds() -> None:
    assert parse_key("x" * 255) == "x" * 255
    assert parse_key('"a-b_c:1"') == "a-b_c:1"


def test_concurrent_triggers_with_one_key_start_one_task(app: Flask, tmp_path: Path) -> None:
    def post(_: int) -> str:
        response = app.test_client().post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
        assert response.status_code == 202, response.get_data()
        return str(response.get_json()["id"])

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        ids = set(pool.map(post, range(50)))
    assert len(ids) == 1
    assert queued(tmp_path) == 1


def test_a_claim_expires(app: Flask, tree: ControllerTree, make_app: t.Callable[..., Flask],
                         tmp_path: Path) -> None:
    short = make_app(RESULT_EXPIRES=1)
    client = short.test_client()
    first = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY).get_json()["id"]
    time.sleep(1.2)
    again = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert again.get_json()["id"] != first
    assert "Idempotent-Replayed" not in again.headers
    assert queued(tmp_path) == 2


def test_a_failed_publish_frees_the_key(app: Flask, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    client = app.test_client()
    client.post("/jobs/jobs/work_celery", json={"n": 1})  # builds the Celery app
    celery = app.extensions["kernkoa"].celery

    def broken(*args: t.Any, **kwargs: t.Any) -> None:
        raise ConnectionError("broker away")

    monkeypatch.setattr(celery, "send_task", broken)
    assert client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY).status_code == 503
    monkeypatch.undo()
    celery.breaker._open_until = 0.0  # the test does not wait the cool-down out
    retried = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers


def _store_away_during_the_publish(app: Flask, store: type[t.Any],
                                   monkeypatch: pytest.MonkeyPatch) -> t.Any:
    """The trigger's publish fails, and so does the release of its claim."""
    client = app.test_client()
    client.post("/jobs/jobs/work_celery", json={"n": 1})  # builds the Celery app
    celery = app.extensions["kernkoa"].celery

    def away(*args: t.Any, **kwargs: t.Any) -> None:
        raise ConnectionError("store away")

    with monkeypatch.context() as during:
        during.setattr(celery, "send_task", away)
        during.setattr(store, "release", away)
        assert client.post("/jobs/jobs/work_celery", json={"n": 2},
                           headers=KEY).status_code == 503
    celery.breaker._open_until = 0.0  # the test does not wait the cool-down out
    return client


def test_a_key_whose_task_was_never_sent_is_never_replayed(
        app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The store failed (or the process died) between the claim and the publish:
    # the claim names a task that does not exist. It was replayed (202 and an id
    # that stays PENDING forever) for all of RESULT_EXPIRES.
    monkeypatch.setattr(claim_stores, "PENDING_SECONDS", 1)
    monkeypatch.setattr(idempotency, "SENT_WAIT", 0.2)
    client = _store_away_during_the_publish(app, FileClaims, monkeypatch)
    blocked = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert blocked.status_code == 409, blocked.get_data()
    assert blocked.get_json()["error"]["code"] == "idempotency_key_in_flight"
    assert blocked.headers["Retry-After"] == "1"
    assert queued(tmp_path) == 1  # the warm-up trigger's only
    time.sleep(1.2)  # the provisional claim lapses
    retried = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    assert client.post("/jobs/jobs/work_celery", json={"n": 2},
                       headers=KEY).get_json()["id"] == retried.get_json()["id"]
    assert queued(tmp_path) == 2


def test_a_task_sent_whose_claim_cannot_be_confirmed_is_still_a_202(
        app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def away(*args: t.Any, **kwargs: t.Any) -> None:
        raise OSError("store away")

    monkeypatch.setattr(FileClaims, "confirm", away)
    sent = app.test_client().post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert sent.status_code == 202 and queued(tmp_path) == 1


def test_a_retry_after_a_cancellation_answers_with_the_cancelled_task(app: Flask) -> None:
    client = app.test_client()
    first = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY).get_json()["id"]
    assert client.delete(f"/status/{first}").get_json() == {"status": "REVOKED"}
    again = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert again.get_json()["id"] == first and again.headers["Idempotent-Replayed"] == "true"
    assert client.get(f"/status/{first}").get_json() == {"status": "REVOKED"}


def test_a_duplicate_waits_for_the_first_trigger_to_send(tmp_path: Path) -> None:
    claims = FileClaims(tmp_path, expires=3600)
    first = Claim("t1", "f")
    assert claims.claim("k", first) is None
    assert claims.claim("k", Claim("t2", "f")) == first  # provisional: not sent
    assert claims.confirm("k", first)
    assert claims.claim("k", Claim("t2", "f")) == first.confirmed()
    assert not claims.confirm("k", Claim("t2", "f"))  # not the holder
    held = json.loads((tmp_path / "k").read_text())
    assert held["sent"] and held["expires"] > time.time() + 3000


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"task_id": "t0"}', b"\xff\xfe"])
def test_an_unreadable_claim_file_is_replaced(app: Flask, tmp_path: Path,
                                              content: bytes) -> None:
    # A claim file emptied by a crash, or a stray one, made every trigger with its
    # key a 500: it names no task, so it is as good as expired.
    client = app.test_client()
    first = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    (claim,) = (tmp_path / "var" / "celery" / "idempotency").glob("[0-9a-f]*")
    claim.write_bytes(content)
    again = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert again.get_json()["id"] != first.get_json()["id"]
    replay = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert replay.get_json()["id"] == again.get_json()["id"]
    claim.write_bytes(content)
    assert FileClaims(claim.parent, expires=3600).prune() == 1


def test_file_claims_replace_an_expired_claim_once(tmp_path: Path) -> None:
    claims = FileClaims(tmp_path / "claims", expires=0)
    assert claims.claim("k", Claim("t1", "f")) is None
    # Expired at once: each new claim replaces the old one, never two at a time.
    assert claims.claim("k", Claim("t2", "f")) is None
    held = json.loads((tmp_path / "claims" / "k").read_text())
    assert held["task_id"] == "t2"
    claims.release("k", Claim("t1", "f"))  # not the holder: nothing happens
    assert (tmp_path / "claims" / "k").exists()
    claims.release("k", Claim("t2", "f"))
    assert not (tmp_path / "claims" / "k").exists()
    assert not list((tmp_path / "claims").glob(".k.*"))  # no draft left behind


def test_file_claims_prune_expired(tmp_path: Path) -> None:
    FileClaims(tmp_path, expires=0).claim("ab", Claim("t", "f"))
    FileClaims(tmp_path, expires=3600).claim("cd", Claim("t", "f"))
    assert FileClaims(tmp_path, expires=3600).prune() == 1
    assert [p.name for p in tmp_path.glob("[0-9a-f]*")] == ["cd"]


def test_a_key_is_per_caller(tree: ControllerTree, make_app: t.Callable[..., Flask],
                             tmp_path: Path) -> None:
    tree.write("jobs.py", CONTROLLER)
    client = make_app(ADDONS=["jwt_auth"], HMACKEY=KEY_HS256).test_client()

    def post(**extra: str) -> str:
        response = client.post("/jobs/jobs/work_celery", json={"n": 2},
                               headers={**KEY, **extra})
        assert response.status_code == 202, response.get_data()
        return str(response.get_json()["id"])

    alice = {"Authorization": "Bearer " + token(sub="alice")}
    bob = {"Authorization": "Bearer " + token(sub="bob")}
    assert post(**alice) == post(**alice)
    assert post(**bob) != post(**alice)
    assert post() not in {post(**alice), post(**bob)}  # anonymous is a caller too
    assert queued(tmp_path) == 3


def test_on_a_route_that_requires_a_login_keys_are_per_identity(
        tree: ControllerTree, make_app: t.Callable[..., Flask], tmp_path: Path) -> None:
    tree.write("locked.py", """
        from kernkoa import *

        class jobs:
            @requires()
            def mine_celery(self, task, n: int = 1):
                return n
        """)
    client = make_app(ADDONS=["jwt_auth"], HMACKEY=KEY_HS256).test_client()
    route = "/locked/jobs/mine_celery"
    # Refused before any claim: an anonymous caller cannot take a key from anyone.
    assert client.post(route, json={"n": 2}, headers=KEY).status_code == 401
    assert not list((tmp_path / "var" / "celery").glob("idempotency/[0-9a-f]*"))
    alice = {**KEY, "Authorization": "Bearer " + token(sub="alice")}
    bob = {**KEY, "Authorization": "Bearer " + token(sub="bob")}
    first = client.post(route, json={"n": 2}, headers=alice).get_json()["id"]
    assert client.post(route, json={"n": 2}, headers=alice).get_json()["id"] == first
    theirs = client.post(route, json={"n": 3}, headers=bob)  # bob's key, bob's fields
    assert theirs.status_code == 202 and theirs.get_json()["id"] != first
    assert queued(tmp_path) == 2


@pytest.mark.redis
def test_on_redis_a_claim_expires_with_the_results(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    tree.write("jobs.py", CONTROLLER)
    client = make_app(BROKER_URL=redis.url, RESULT_EXPIRES=2).test_client()
    first = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY).get_json()["id"]
    again = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert again.get_json()["id"] == first and again.headers["Idempotent-Replayed"] == "true"
    (claim,) = redis.client().keys("kernkoa-idem-*")
    assert 0 < redis.client().ttl(claim) <= 2
    time.sleep(2.5)
    later = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert later.get_json()["id"] != first and "Idempotent-Replayed" not in later.headers


@pytest.mark.redis
def test_on_redis_a_claim_is_provisional_until_its_task_is_sent(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tree.write("jobs.py", CONTROLLER)
    monkeypatch.setattr(idempotency, "SENT_WAIT", 0.2)
    app = make_app(BROKER_URL=redis.url)
    client = _store_away_during_the_publish(app, RedisClaims, monkeypatch)
    (claim,) = redis.client().keys("kernkoa-idem-*")
    assert not json.loads(redis.client().get(claim))["sent"]
    assert 0 < redis.client().ttl(claim) <= claim_stores.PENDING_SECONDS
    assert client.post("/jobs/jobs/work_celery", json={"n": 2},
                       headers=KEY).status_code == 409
    redis.client().delete(claim)  # as if it lapsed
    sent = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert sent.status_code == 202
    assert json.loads(redis.client().get(claim))["sent"]
    assert redis.client().ttl(claim) > claim_stores.PENDING_SECONDS  # RESULT_EXPIRES


@pytest.mark.redis
@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"task_id": 5, "fingerprint": "f"}'])
def test_on_redis_an_unreadable_claim_is_replaced(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer,
        content: bytes) -> None:
    tree.write("jobs.py", CONTROLLER)
    client = make_app(BROKER_URL=redis.url).test_client()
    first = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY).get_json()["id"]
    (claim,) = redis.client().keys("kernkoa-idem-*")
    redis.client().set(claim, content)
    again = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert again.status_code == 202 and again.get_json()["id"] != first
    assert json.loads(redis.client().get(claim))["task_id"] == again.get_json()["id"]


@pytest.mark.redis
def test_on_redis_a_key_tried_while_redis_is_down_starts_its_task_once_it_is_back(
        tree: ControllerTree, make_app: t.Callable[..., Flask], redis: RedisServer) -> None:
    tree.write("jobs.py", CONTROLLER)
    app = make_app(BROKER_URL=redis.url)
    client = app.test_client()
    assert client.post("/jobs/jobs/work_celery", json={"n": 1}).status_code == 202
    redis.stop()
    down = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert down.status_code == 503
    assert down.get_json()["error"]["code"] == "broker_unavailable"
    redis.start()
    app.extensions["kernkoa"].celery.breaker._open_until = 0.0  # no cool-down wait
    sent = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert sent.status_code == 202 and "Idempotent-Replayed" not in sent.headers
    again = client.post("/jobs/jobs/work_celery", json={"n": 2}, headers=KEY)
    assert again.get_json()["id"] == sent.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


def test_the_key_pattern_bounds_keys_at_max_key_length() -> None:
    from kernel.tasks import idempotency

    assert idempotency._KEY.fullmatch("k" * idempotency.MAX_KEY_LENGTH)
    assert not idempotency._KEY.fullmatch("k" * (idempotency.MAX_KEY_LENGTH + 1))

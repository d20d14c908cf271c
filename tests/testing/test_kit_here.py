"""The kit's fixtures inside this suite, beside its own conftest fixtures."""

from __future__ import annotations

import typing as t
from unittest.mock import ANY

import pytest

from kernel.client import CallError
from kernel.testing.inprocess import KitClient
from kernel.testing.plugin import _marker_options
from tests.support.catalogs import ControllerTree

JOBS = '''
from kernkoa import *


class Jobs:
    def count_celery(self, task, n: int = 2):
        for step in range(n):
            task.progress(step + 1, n)
        return {"counted": n}

    def later(self):
        return exeTask(self, "count_celery", {"n": 3})
'''


@pytest.fixture
def kernkoa_settings(tree: ControllerTree) -> dict[str, t.Any]:
    """This module's catalog: the kit's fixture, overridden as a project would."""
    tree.write("jobs.py", JOBS)
    return {"CATALOG": str(tree.root)}


def test_the_kit_runs_beside_this_suites_fixtures(kernkoa_client: KitClient,
                                                   client: t.Any) -> None:
    assert kernkoa_client.call("/jobs/Jobs/count_celery", n=2) == {"counted": 2}
    # The suite's own ``client`` fixture still serves the shipped catalog.
    assert client.get("/fasthelloworld/fastHelloClass/fastHelloWorld").status_code == 200


def test_held_tasks_run_before_the_next_look(kernkoa_client: KitClient) -> None:
    started = kernkoa_client.call("/jobs/Jobs/later")
    # exeTask's task ran once the call was answered.
    assert kernkoa_client.get(f"/status/{started['id']}").json() == {
        "status": "SUCCESS", "data": {"counted": 3}, "request_id": ANY}
    task = kernkoa_client.start("/jobs/Jobs/count_celery", n=1)
    task.cancel()
    assert task.status == "REVOKED"
    # A cancelled task stays cancelled; a finished one cannot be.
    done = kernkoa_client.start("/jobs/Jobs/count_celery", n=1)
    assert done.wait(10) == {"counted": 1}
    with pytest.raises(CallError) as caught:
        done.cancel()
    assert caught.value.status == 409


@pytest.mark.kernkoa(settings={"AUTH_DEFAULT": "required", "ADDONS": ["jwt_auth"]})
def test_a_token_for_a_scope(kernkoa_client: KitClient) -> None:
    with pytest.raises(CallError) as caught:
        kernkoa_client.call("/jobs/Jobs/count_celery")
    assert caught.value.status == 401
    assert kernkoa_client.with_token().call("/jobs/Jobs/count_celery", n=1) == {"counted": 1}


def test_triggers_carry_keys_in_process(kernkoa_client: KitClient) -> None:
    keys: list[str | None] = []
    kernkoa_client.http.event_hooks["request"].append(
        lambda request: keys.append(request.headers.get("Idempotency-Key")))
    first = kernkoa_client.start("/jobs/Jobs/count_celery", n=1)
    assert kernkoa_client.call("/jobs/Jobs/count_celery", n=2) == {"counted": 2}
    assert first.wait(10) == {"counted": 1}
    fresh = [key for key in keys if key is not None]
    assert len(fresh) == 2 and fresh[0] != fresh[1]
    # A key of the caller's: one task, claimed in the test's VAR; other fields refused.
    mine = kernkoa_client.start("/jobs/Jobs/count_celery", n=3, idempotency_key="k-1")
    again = kernkoa_client.start("/jobs/Jobs/count_celery", n=3, idempotency_key="k-1")
    assert again.id == mine.id and again.wait(10) == {"counted": 3}
    with pytest.raises(CallError) as caught:
        kernkoa_client.start("/jobs/Jobs/count_celery", n=4, idempotency_key="k-1")
    assert (caught.value.status, caught.value.code) == (422, "idempotency_key_reused")


def test_cbor_in_process(kernkoa_client: KitClient) -> None:
    assert kernkoa_client.with_format("cbor").call("/jobs/Jobs/count_celery", n=2) == {
        "counted": 2}


class _Node:
    def __init__(self, *markers: pytest.MarkDecorator) -> None:
        self.markers = [m.mark for m in markers]

    def iter_markers(self, name: str) -> t.Iterator[pytest.Mark]:
        return iter(self.markers)  # closest first, as pytest gives them


class _Request:
    def __init__(self, *markers: pytest.MarkDecorator) -> None:
        self.node = _Node(*markers)


def test_the_marker_options() -> None:
    assert _marker_options(_Request()) == {"tasks": "eager"}  # type: ignore[arg-type]
    closest = pytest.mark.kernkoa(tasks="worker")
    farther = pytest.mark.kernkoa(tasks="eager", settings={"DEBUG": False})
    assert _marker_options(_Request(closest, farther)) == {  # type: ignore[arg-type]
        "tasks": "worker", "settings": {"DEBUG": False}}


@pytest.mark.parametrize(("marker", "said"), [
    (pytest.mark.kernkoa("worker"), "keyword arguments only"),
    (pytest.mark.kernkoa(task="worker"), "unknown option(s) ['task']"),
    (pytest.mark.kernkoa(tasks="celery"), "expected one of ('eager', 'worker')"),
])
def test_a_wrong_marker_says_why(marker: pytest.MarkDecorator, said: str) -> None:
    with pytest.raises(pytest.UsageError) as caught:
        _marker_options(_Request(marker))  # type: ignore[arg-type]
    assert said in str(caught.value)

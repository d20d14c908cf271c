"""The embedded default: ``kernkoa serve`` with its own worker on files under VAR."""

from __future__ import annotations

import json
import os
import signal
import time
import typing as t
from pathlib import Path
from unittest.mock import ANY

import cbor2

from tests.support.processes import children
from tests.support.processes import clean_environ
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import trigger
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _command(pid: int) -> str:
    """What ``kernkoa serve`` started as ``pid``: ``worker`` or ``beat``."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_text()
    return "beat" if "['beat']" in cmdline else "worker"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][:1] != "Z"


def test_serve_runs_tasks_with_its_own_worker_and_takes_it_down(
        stack: Stack, tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")), VAR=str(var),
                        WORKER_CONCURRENCY="1")
    server = stack.server(env, with_worker=True)
    task_id = trigger(server, "/jobs/jobs/count_celery", n=3, tag="e")
    seen: list[dict[str, t.Any]] = []
    body = wait_status(server, task_id, final, seen=seen)
    assert body["status"] == "SUCCESS" and body["data"]["tag"] == "e"
    assert (var / "celery" / "queue").is_dir()

    note = tmp_path / "revoked.txt"
    running = trigger(server, "/jobs/jobs/run_celery", note=str(note), seconds=60)
    wait_status(server, running, lambda b: b["status"] == "PROGRESS")
    assert server.request(f"/status/{running}", "DELETE")[0] == 200
    wait_for(lambda: "end" in note.read_text(), timeout=20, what="the task to stop")

    started = _children(server.process.pid)
    assert sorted(_command(p) for p in started) == ["beat", "worker"]  # never two workers
    server.process.terminate()
    server.process.wait(20)
    wait_for(lambda: not any(_alive(p) for p in started), timeout=20,
             what="the worker and beat to exit with the server")


def _starts(note: Path) -> int:
    return note.read_text().count("start") if note.exists() else 0


def test_embedded_worker_killed_is_restarted_and_its_tasks_finish(
        stack: Stack, tmp_path: Path) -> None:
    # The file broker dropped a taken message from disk: a worker that died
    # lost one running task per pool process, and nothing started another.
    env = clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")),
                        VAR=str(tmp_path / "var"), WORKER_CONCURRENCY="2",
                        WORKER_HEARTBEAT="0.3", WORKER_LEASE="1.5")
    server = stack.server(env, with_worker=True)
    notes = [tmp_path / f"run{i}.txt" for i in range(2)]
    ids = [trigger(server, "/jobs/jobs/run_celery", note=str(note), seconds=1.5)
           for note in notes]
    wait_for(lambda: all(_starts(note) == 1 for note in notes), what="both tasks to start")
    (worker,) = {p for p in children(server.process.pid) if _command(p) == "worker"}
    # With its pool: a pool process whose parent died may still finish its task.
    for pid in {worker, *children(worker)}:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: {p for p in children(server.process.pid) if _command(p) == "worker"}
             - {worker} != set(), timeout=30, what="kernkoa serve to start another worker")
    bodies = [wait_status(server, task_id, final, timeout=60) for task_id in ids]
    assert bodies == [{"status": "SUCCESS", "data": "done", "request_id": ANY}] * 2
    assert [_starts(note) for note in notes] == [2, 2]


def test_a_cbor_trigger_and_its_status_in_cbor(stack: Stack, tmp_path: Path) -> None:
    env = clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")),
                        VAR=str(tmp_path / "var"), WORKER_CONCURRENCY="1")
    server = stack.server(env, with_worker=True)
    cbor = {"Content-Type": "application/cbor", "Accept": "application/cbor"}
    code, headers, body = server.request("/jobs/jobs/count_celery", "POST",
                                         cbor2.dumps({"n": 2, "tag": "cbor"}), cbor)
    assert code == 202 and headers["Content-Type"] == "application/cbor", body
    accepted = cbor2.loads(body)
    assert accepted["status"] == "PENDING" and headers["Location"] == accepted["status_url"]
    deadline = time.monotonic() + 30
    while True:
        code, headers, body = server.request(f"/status/{accepted['id']}",
                                             headers={"Accept": "application/cbor"})
        assert code == 200 and headers["Content-Type"] == "application/cbor", body
        status = cbor2.loads(body)
        if final(status) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["status"] == "SUCCESS" and status["data"]["tag"] == "cbor", status
    # The same status as JSON for */*, and a waited trigger's 200 in CBOR.
    assert json.loads(server.request(f"/status/{accepted['id']}")[2]) == status
    code, headers, body = server.request("/jobs/jobs/count_celery", "POST",
                                         cbor2.dumps({"n": 1, "tag": "w"}),
                                         {**cbor, "Prefer": "wait=20"})
    assert code == 200 and cbor2.loads(body)["data"]["tag"] == "w", body
    # A refused CBOR body never reaches the queue: its envelope comes in CBOR.
    code, _, body = server.request("/jobs/jobs/count_celery", "POST", b"\x9f\x01", cbor)
    assert code == 400 and cbor2.loads(body)["error"]["code"] == "bad_request"

"""The embedded default: ``kernkoa serve`` with its own worker on files under VAR."""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import pytest
from tasks_support import Stack
from tasks_support import clean_environ
from tasks_support import final
from tasks_support import trigger
from tasks_support import wait_for
from tasks_support import wait_status
from tasks_support import write_catalog


@pytest.fixture
def stack(tmp_path: Path) -> t.Iterator[Stack]:
    started = Stack(tmp_path)
    yield started
    started.close()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


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

    workers = _children(server.process.pid)
    assert len(workers) == 1  # never two
    server.process.terminate()
    server.process.wait(20)
    wait_for(lambda: not any(_alive(p) for p in workers), timeout=20,
             what="the worker to exit with the server")

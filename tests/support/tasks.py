"""Long work on real processes: the test controllers, kernkoa workers and servers, and
the client side of a task (trigger, poll its status).

Every process started here is stopped by the fixture or helper that started
it; every wait is bounded. Redis is :mod:`tests.support.redis_server`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import textwrap
import time
import typing as t
from pathlib import Path

from flask import Flask

from kernel.core.settings import PROJECT_ROOT
from kernel.tasks.enqueue import celery_and_breaker
from kernel.tasks.recent import TRIGGER_HEADER
from kernel.tasks.run import TASK_NAME
from kernel.tasks.run import run_controller
from kernel.tasks.run import write_waiting_note
from tests.support.processes import BIN
from tests.support.processes import free_port
from tests.support.processes import stop
from tests.support.processes import wait_for_http
from tests.support.servers import LiveServer

#: Controllers used by the long-work tests.
JOBS_CONTROLLER = '''
import os
import time

from kernkoa import *


def _note(path, text):
    with open(path, "a") as handle:
        handle.write(text + "\\n")


class jobs:
    def hello(self):
        return "hello"

    def count_celery(self, task, n: int = 5, delay: float = 0.05, tag: str = ""):
        """Reports progress n times, returns what the worker saw of the request."""
        for i in range(n):
            task.progress(i + 1, n, "step %d" % (i + 1))
            time.sleep(delay)
        return {"counted": n, "tag": tag, "arg": request.args.get("tag"), "url": config.url}

    def fail_celery(self, task):
        raise ValueError("boom")

    def run_celery(self, task, note: str, seconds: float = 1.0):
        """Notes its pid, then works while reporting progress (cooperative)."""
        _note(note, "start %d" % os.getpid())
        try:
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                i += 1
                task.progress(i)
                time.sleep(0.05)
        finally:
            _note(note, "end")
        return "done"

    def sleepy_celery(self, task, note: str):
        """Notes its start, then sleeps without ever reporting progress."""
        _note(note, "start")
        try:
            time.sleep(60)
        finally:
            _note(note, "end")
        return "slept"

    @task_options(queue="side")
    def side_celery(self, task, note: str):
        _note(note, "ran")
        return "ran"

    @task_options(soft_time_limit=1, time_limit=30)
    def soft_celery(self, task):
        time.sleep(20)

    @task_options(soft_time_limit=1, time_limit=2)
    def hard_celery(self, task):
        try:
            time.sleep(20)
        except BaseException:
            time.sleep(20)

    def headers_celery(self, task):
        return dict(request.headers)

    def trigger(self, params=None):
        task = exeTask(self, "count_celery", params)
        return "<a href='" + config.url + "status/" + task["id"] + "'>Async Test"
'''


#: Credential headers of several kinds, none of which may travel with a task.
SECRET_HEADERS = {"Authorization": "Bearer t0ken-secret", "Cookie": "session=c00kie-secret",
                  "X-Api-Key": "ap1key-secret", "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
                  "X-Auth-Token": "x-t0ken-secret"}


def write_catalog(root: Path) -> Path:
    """A catalog with the test controllers and the seed example (its delay shortened)."""
    controllers = root / "controller"
    (controllers / "celeryexample").mkdir(parents=True, exist_ok=True)
    (controllers / "jobs.py").write_text(textwrap.dedent(JOBS_CONTROLLER))
    seed = PROJECT_ROOT / "catalog/controller/celeryexample/asynclibrary.py"
    source = seed.read_text()
    assert "\nDELAY = 2\n" in source
    (controllers / "celeryexample/asynclibrary.py").write_text(
        source.replace("\nDELAY = 2\n", "\nDELAY = 0.05\n"))
    return root


class Worker:
    """A ``kernkoa worker`` process in its own session (so its pool can be killed)."""

    def __init__(self, env: dict[str, str], log: Path, *celery_args: str) -> None:
        self.log = log
        handle = open(log, "ab")
        self.process = subprocess.Popen(
            [str(BIN / "kernkoa"), "worker", "--without-mingle", "--without-gossip",
             *celery_args],
            cwd=PROJECT_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()

    def wait_ready(self, timeout: float = 30) -> Worker:
        """Wait until the worker logs that it is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            if b" ready." in self.log.read_bytes():
                return self
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready: {self.log.read_text()[-2000:]}")

    def kill_all(self) -> None:
        """SIGKILL the worker and its pool at once (a machine dying)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """Stop the worker; whatever is left of its group is killed."""
        stop(self.process, grace=10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Stack:
    """Processes started for one test module or test, stopped in reverse order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.workers: list[Worker] = []
        self.servers: list[tuple[subprocess.Popen[bytes], t.IO[bytes]]] = []
        self._count = 0

    def worker(self, env: dict[str, str], *celery_args: str) -> Worker:
        """Start a worker and wait until it is ready."""
        self._count += 1
        worker = Worker(env, self.folder / f"worker-{self._count}.log",
                        "-n", f"w{self._count}@%h", *celery_args)
        self.workers.append(worker)
        return worker.wait_ready()

    def server(self, env: dict[str, str], with_worker: bool = False) -> LiveServer:
        """Start ``kernkoa serve`` and wait until it answers."""
        port = free_port()
        log = open(self.folder / f"serve-{port}.log", "wb")
        command = [str(BIN / "kernkoa"), "serve", "--port", str(port)]
        if not with_worker:
            command.append("--no-worker")
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        self.servers.append((process, log))
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/jobs/jobs/hello", process)
        return LiveServer(base, process)

    def close(self) -> None:
        """Stop everything started here."""
        for process, log in reversed(self.servers):
            stop(process)
            log.close()
        for worker in reversed(self.workers):
            worker.stop()


def trigger(server: LiveServer, route: str, **fields: t.Any) -> str:
    """POST ``fields`` as JSON to a ``_celery`` route; return the task id."""
    status, headers, body = server.request(
        route, "POST", json.dumps(fields).encode(), {"Content-Type": "application/json"})
    assert status == 202, body
    answer = json.loads(body)
    assert headers["Location"] == answer["status_url"]
    return str(answer["id"])


def status_of(server: LiveServer, task_id: str) -> tuple[int, dict[str, t.Any]]:
    """``GET /status/<id>``: HTTP status and JSON body."""
    code, _, body = server.request(f"/status/{task_id}")
    return code, json.loads(body)


def wait_status(server: LiveServer, task_id: str, done: t.Callable[[dict[str, t.Any]], bool],
                timeout: float = 30, seen: list[dict[str, t.Any]] | None = None
                ) -> dict[str, t.Any]:
    """Poll ``/status/<id>`` until ``done(body)``; keep every body in ``seen``."""
    deadline = time.monotonic() + timeout
    body: dict[str, t.Any] = {}
    while time.monotonic() < deadline:
        code, body = status_of(server, task_id)
        assert code == 200, body
        if seen is not None:
            seen.append(body)
        if done(body):
            return body
        time.sleep(0.02)
    raise TimeoutError(f"task {task_id} still {body}")


def final(body: dict[str, t.Any]) -> bool:
    """Whether a status body is final."""
    return body.get("status") in ("SUCCESS", "FAILURE", "REVOKED")


def wait_for(predicate: t.Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    """Poll ``predicate`` until true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what or predicate}")


def queued_messages(var: Path) -> list[dict[str, t.Any]]:
    """The messages waiting in the embedded broker's queue, oldest first."""
    paths = sorted((var / "celery" / "queue").glob("*.msg"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(path.read_text()) for path in paths]


def run_queued(app: Flask, messages: list[dict[str, t.Any]]) -> None:
    """Run ``messages`` in this process as a worker would: the generic task, its request carrying
    the message's headers (the worker's own start and end writes included; the
    result is Celery's tracer's to store, so each task reads as STARTED)."""
    with app.app_context():
        celery, _ = celery_and_breaker()
    task = celery.tasks[TASK_NAME]
    for message in messages:
        headers = message["headers"]
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        task.push_request(id=headers["id"], hostname="w1@test",
                          **{TRIGGER_HEADER: headers.get(TRIGGER_HEADER)})
        try:
            run_controller(task, **kwargs)
        finally:
            task.pop_request()
            # As Celery's tracer has the worker do once the task is over.
            write_waiting_note(sender=task, task_id=headers["id"])

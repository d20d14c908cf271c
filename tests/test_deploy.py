"""The production set-up, for real: ``setup.sh --no-systemd`` with uWSGI, nginx, a Celery
worker and Redis, driven through nginx on a free port.

The tests in this module share one installation and run in file order; the last
ones stop it, check that no process is left, and uninstall it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from conftest import pid_alive
from conftest import wait_for_http
from tasks_support import RedisServer

from kernel.settings import PROJECT_ROOT

SETUP = PROJECT_ROOT / "setup.sh"

CONTROLLER = '''
import os
import time

from kernkoa import *

VERSION = {version}


class probe:
    def whoami(self):
        return {{"pid": os.getpid(), "version": VERSION}}

    def crash(self):
        os._exit(3)

    def double_celery(self, task, n: int):
        task.progress(1, 2, "halfway")
        return n * 2

    def steps_celery(self, task, steps: int):
        for step in range(steps):
            task.progress(step + 1, steps)
            time.sleep(0.1)
        return steps
'''


@dataclass
class Deployment:
    """One installation made by ``setup.sh``."""

    prefix: Path
    port: int
    args: list[str]
    redis: RedisServer

    def request(self, path: str, method: str = "GET",
                body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request through nginx, the path sent exactly as given."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def json(self, path: str, method: str = "GET") -> tuple[int, t.Any]:
        """One request; the status and the decoded JSON body."""
        status, _, body = self.request(path, method)
        return status, json.loads(body)

    def write_probe(self, version: int) -> None:
        """(Re)write the probe controller in the installed catalog."""
        path = self.prefix / "catalog/controller/deploytest/probe.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_suffix(".tmp")
        draft.write_text(CONTROLLER.format(version=version))
        draft.replace(path)


def run_setup(*args: str) -> subprocess.CompletedProcess[str]:
    """Run setup.sh; fail the test with its output when it fails."""
    result = subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True,
                            timeout=900, env={**os.environ, "KERNKOA_STOP_GRACE": "10"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def processes_under(prefix: Path) -> list[str]:
    """Command lines of running processes that mention ``prefix``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(prefix) in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Deployment]:
    """Redis, then ``setup.sh --prefix ... --no-systemd``; stopped afterwards."""
    for tool in ("nginx", "shellcheck"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `make test` installs it")
    root = tmp_path_factory.mktemp("deploy")
    redis = RedisServer(root / "redis", persistent=True)
    redis.start()
    prefix = root / "kernkoa"
    port = free_port()
    args = ["--prefix", str(prefix), "--port", str(port), "--no-systemd", "--broker", redis.url]
    deployed = Deployment(prefix, port, args, redis)
    try:
        run_setup(*args)
        wait_for_http(f"http://127.0.0.1:{port}/")
        yield deployed
    finally:
        subprocess.run(["bash", str(SETUP), "--prefix", str(prefix), "--stop"],
                       capture_output=True, timeout=120)
        redis.stop()


def test_setup_script_passes_shellcheck() -> None:
    result = subprocess.run(["shellcheck", str(SETUP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_controller_through_nginx(deployment: Deployment) -> None:
    status, headers, body = deployment.request("/fasthelloworld/fastHelloClass/fastHelloWorld")
    assert (status, body) == (200, b"hello world!!.")
    assert headers["Server"].startswith("nginx")


def test_static_image_served_by_nginx(deployment: Deployment) -> None:
    picture = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    (deployment.prefix / "images/probe.png").write_bytes(picture)
    status, headers, body = deployment.request("/images/probe.png")
    assert (status, body) == (200, picture)
    assert headers["Content-Type"] == "image/png"


@pytest.mark.parametrize("path", [
    "/images/../config.py", "/images/%2e%2e/config.py", "/images/..%2fconfig.py",
    "/images../config.py", "/images/%2e%2e%2fconfig.py", "/pdfs/../../config.py",
    "/pdfs/..%2f..%2fconfig.py", "/images/..%5cconfig.py",
])
def test_static_folders_cannot_be_escaped(deployment: Deployment, path: str) -> None:
    status, _, body = deployment.request(path)
    assert status in (400, 404)
    assert b"MAX_CONTENT_LENGTH" not in body


def test_celery_task_runs_to_success(deployment: Deployment) -> None:
    deployment.write_probe(1)
    status, headers, body = deployment.request("/deploytest/probe/probe/double_celery?n=21",
                                               "POST")
    assert status == 202, body
    task = json.loads(body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, state = deployment.json(f"/status/{task['id']}")
        if state["status"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.1)
    assert state == {"status": "SUCCESS", "data": 42}


def _run_task(deployment: Deployment, path: str) -> dict[str, t.Any]:
    """Trigger a task through nginx and poll its status until it is final."""
    status, _, body = deployment.request(path, "POST")
    assert status == 202, body
    task_id = json.loads(body)["id"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status, state = deployment.json(f"/status/{task_id}")
        if status == 200 and state["status"] in ("SUCCESS", "FAILURE"):
            return t.cast(dict[str, t.Any], state)
        time.sleep(0.1)
    raise TimeoutError(f"task {task_id} not done: {state}")


def _worker_pid(deployment: Deployment) -> int | None:
    """The worker's pid from its pid file, if that process is alive."""
    try:
        pid = int((deployment.prefix / "var/worker.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def test_killed_celery_worker_is_started_again(deployment: Deployment) -> None:
    # Under --no-systemd nothing restarted a worker that died.
    deployment.write_probe(1)
    first = _worker_pid(deployment)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while _worker_pid(deployment) in (None, first) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _worker_pid(deployment) not in (None, first), "uWSGI did not start another worker"
    assert _run_task(deployment, "/deploytest/probe/probe/double_celery?n=4") == {
        "status": "SUCCESS", "data": 8}


def test_redis_restart_under_a_task_keeps_the_worker(deployment: Deployment) -> None:
    # The worker died of the restart (kernel/redisbroker.py) and every task
    # accepted afterwards stayed PENDING.
    deployment.write_probe(1)
    worker = _worker_pid(deployment)
    status, _, body = deployment.request("/deploytest/probe/probe/steps_celery?steps=30", "POST")
    assert status == 202, body
    task_id = json.loads(body)["id"]
    deadline = time.monotonic() + 30
    while deployment.json(f"/status/{task_id}")[1]["status"] != "PROGRESS":
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.05)
    deployment.redis.stop()
    deployment.redis.start()
    deadline = time.monotonic() + 90
    while deployment.request(f"/status/{task_id}")[0] != 200:
        assert time.monotonic() < deadline, "/status did not answer again"
        time.sleep(0.2)
    state: dict[str, t.Any] = {}
    while time.monotonic() < deadline:
        state = deployment.json(f"/status/{task_id}")[1]
        if state["status"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.1)
    assert state == {"status": "SUCCESS", "data": 30}
    assert _run_task(deployment, "/deploytest/probe/probe/double_celery?n=5") == {
        "status": "SUCCESS", "data": 10}
    assert _worker_pid(deployment) == worker, "the worker was restarted, it did not survive"


def _pids_answering(deployment: Deployment, version: int, wanted: int = 2) -> set[int]:
    """Ask until ``wanted`` uWSGI workers answered with ``version`` (30 s at most)."""
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < wanted and time.monotonic() < deadline:
        status, _, body = deployment.request("/deploytest/probe/probe/whoami")
        if status == 200 and json.loads(body)["version"] == version:
            pids.add(json.loads(body)["pid"])
    return pids


def test_edited_controller_is_served_by_every_process(deployment: Deployment) -> None:
    deployment.write_probe(1)
    assert len(_pids_answering(deployment, 1)) == 2
    deployment.write_probe(2)
    seen = set()
    for _ in range(200):
        status, body = deployment.json("/deploytest/probe/probe/whoami")
        assert status == 200
        assert body["version"] == 2, "a worker served the old code after the edit"
        seen.add(body["pid"])
    assert len(seen) == 2


def test_killed_worker_is_respawned(deployment: Deployment) -> None:
    deployment.write_probe(3)
    before = _pids_answering(deployment, 3)
    status, _, _ = deployment.request("/deploytest/probe/probe/crash")
    assert status == 502
    after = _pids_answering(deployment, 3)
    assert len(after) == 2, "the master did not bring back a second worker"
    assert after != before


def test_setup_is_idempotent(deployment: Deployment) -> None:
    run_setup(*deployment.args)
    status, _, body = deployment.request("/fasthelloworld/fastHelloClass/fastHelloWorld")
    assert (status, body) == (200, b"hello world!!.")
    result = run_setup("--prefix", str(deployment.prefix), "--status")
    assert "kernkoa_uwsgi: running" in result.stdout


def test_env_file_is_private(deployment: Deployment) -> None:
    env_file = deployment.prefix / "etc" / "kernkoa.env"
    assert "KERNKOA_BROKER_URL=redis://" in env_file.read_text()
    assert env_file.stat().st_mode & 0o777 == 0o640


def test_uninstall_refuses_a_folder_it_did_not_install(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    result = subprocess.run(["bash", str(SETUP), "--prefix", str(precious), "--no-systemd",
                             "--uninstall"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "not a KernKoa install" in result.stderr
    assert (precious / "data.txt").read_text() == "keep me"


def test_stop_leaves_no_process(deployment: Deployment) -> None:
    assert processes_under(deployment.prefix)
    run_setup("--prefix", str(deployment.prefix), "--stop")
    assert processes_under(deployment.prefix) == []
    result = run_setup("--prefix", str(deployment.prefix), "--status")
    assert "running" not in result.stdout


def test_uninstall_removes_the_install(deployment: Deployment) -> None:
    run_setup("--prefix", str(deployment.prefix), "--no-systemd", "--uninstall")
    assert not deployment.prefix.exists()
    assert processes_under(deployment.prefix) == []

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
import subprocess
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from conftest import wait_for_http
from tasks_support import RedisServer

from kernel.settings import PROJECT_ROOT
from kernel.settings import Settings

SETUP = PROJECT_ROOT / "setup.sh"

CONTROLLER = '''
import os

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
'''


@dataclass
class Deployment:
    """One installation made by ``setup.sh``."""

    prefix: Path
    port: int
    args: list[str]

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
    redis = RedisServer(root / "redis")
    redis.start()
    prefix = root / "kernkoa"
    port = free_port()
    args = ["--prefix", str(prefix), "--port", str(port), "--no-systemd", "--broker", redis.url]
    deployed = Deployment(prefix, port, args)
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


LIMITS_PROBE = """
from flask import request


class limits:
    def fields(self, params):
        return {"fields": sorted(params or {})}

    def size(self):
        return {"bytes": len(request.get_data())}
"""

#: The body of issue 13, part 1, grown to 256 KB: 70 empty objects, then an
#: unterminated string of escaped quotes. The old depth check's regular
#: expression backtracked on it for about two minutes (4.6 s at 24 KB).
BACKTRACKING_BODY = b"{}" * 70 + b'"' + b'\\"' * (128 * 1024)


def _post(port: int, path: str, body: bytes, headers: dict[str, str],
          timeout: float) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_backtracking_json_body_does_not_hold_the_workers(deployment: Deployment) -> None:
    path = deployment.prefix / "catalog/controller/deploytest/limits.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LIMITS_PROBE)
    json_type = {"Content-Type": "application/json"}
    # Two at once, one per uWSGI worker, each bounded far below the old cost.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(
            lambda _: _post(deployment.port, "/deploytest/limits/limits/fields",
                            BACKTRACKING_BODY, json_type, timeout=20), range(2)))
    for status, body in answers:
        assert status == 400, body[:300]
        assert json.loads(body)["error"]["status"] == 400
    # The workers are free: a plain body is answered.
    status, body = _post(deployment.port, "/deploytest/limits/limits/fields", b'{"a": 1}',
                         json_type, timeout=20)
    assert (status, json.loads(body)) == (200, {"fields": ["a"]})


def _post_chunked(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=iter([body[i:i + 65536]
                                                    for i in range(0, len(body), 65536)]),
                           headers={"Content-Type": "application/octet-stream"},
                           encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_chunked_bodies_through_nginx_arrive_whole_or_are_refused(
        deployment: Deployment) -> None:
    path = deployment.prefix / "catalog/controller/deploytest/limits.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LIMITS_PROBE)
    limit = Settings.load().MAX_CONTENT_LENGTH
    status, body = _post_chunked(deployment.port, "/deploytest/limits/limits/size",
                                 b"x" * limit)
    assert (status, json.loads(body)) == (200, {"bytes": limit})
    # nginx counts the chunks against client_max_body_size (the same limit).
    status, _ = _post_chunked(deployment.port, "/deploytest/limits/limits/size",
                              b"x" * (limit + 1))
    assert status == 413


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

"""Shared fixtures: apps on the shipped catalog or on a catalog written by the test."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from kernel import create_app
from kernel.core.settings import PROJECT_ROOT
from kernel.tasks.waiting import disconnect_result_store

#: The project's virtualenv binaries (the tests run from it).
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _clean_kernkoa_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's KERNKOA_* variables; each gets its own VAR folder."""
    for name in list(os.environ):
        if name.startswith("KERNKOA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KERNKOA_VAR", str(tmp_path / "var"))


class ControllerTree:
    """A throw-away catalog: ``tree.write("shop/cart.py", source)`` adds a controller."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.controllers = root / "controller"
        self.controllers.mkdir(parents=True, exist_ok=True)

    def write(self, relative: str, source: str) -> Path:
        """Write a controller file (dedented) under ``controller/``; return its path."""
        path = self.controllers / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path


@pytest.fixture
def tree(tmp_path: Path) -> ControllerTree:
    """An empty catalog in ``tmp_path``."""
    return ControllerTree(tmp_path / "catalog")


@pytest.fixture
def make_app(tree: ControllerTree) -> t.Iterator[t.Callable[..., Flask]]:
    """Build an app on the test's catalog, with extra settings; its result-store
    connections are closed after the test."""
    made: list[Flask] = []

    def make(**overrides: t.Any) -> Flask:
        made.append(create_app({"CATALOG": str(tree.root), **overrides}))
        return made[-1]

    yield make
    for app in made:
        disconnect_result_store(app)


@pytest.fixture
def app() -> Flask:
    """An app on the project's shipped catalog."""
    return create_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of :func:`app`."""
    return app.test_client()


def assert_error(response: TestResponse, status: int, code: str | None = None) -> dict[str, t.Any]:
    """Check that ``response`` is the kernel's JSON error envelope; return its inner dict."""
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    else:
        assert isinstance(error["code"], str) and error["code"]
    assert ("fields" in error) == (status == 422)
    return t.cast(dict[str, t.Any], error)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes] | None = None,
                  timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers at all (any status); fail if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate a process, escalating to SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


class LiveServer:
    """A real server process on 127.0.0.1, and a small HTTP client for it."""

    def __init__(self, base: str, process: subprocess.Popen[bytes],
                 log: Path | None = None) -> None:
        self.base = base
        self.process = process
        #: The server's output, where it is kept in a file.
        self.log = log

    def request(self, path: str, method: str = "GET", data: bytes | None = None,
                headers: dict[str, str] | None = None,
                timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return status, headers and body, whatever the status.

        :raises TimeoutError: when no answer came within ``timeout`` seconds.
        """
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@pytest.fixture
def redis(tmp_path: Path) -> t.Iterator[t.Any]:
    """A throw-away ``redis-server`` on a free port (a ``tasks_support.RedisServer``)."""
    from tasks_support import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def serve(tmp_path: Path) -> t.Iterator[t.Callable[..., LiveServer]]:
    """Start ``kernkoa serve`` on a free port with extra ``KERNKOA_*`` variables
    (``worker=True``: with the task worker ``kernkoa serve`` starts beside itself)."""
    started: list[tuple[subprocess.Popen[bytes], t.IO[bytes]]] = []

    def start(worker: bool = False, **env: str) -> LiveServer:
        port = free_port()
        environ = {**os.environ, **{f"KERNKOA_{k}": v for k, v in env.items()}}
        log_path = tmp_path / f"serve-{port}.log"
        log = open(log_path, "wb")
        process = subprocess.Popen(
            [str(BIN / "kernkoa"), "serve", "--port", str(port),
             *([] if worker else ["--no-worker"])],
            cwd=PROJECT_ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
        )
        started.append((process, log))
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/", process)
        return LiveServer(base, process, log_path)

    yield start
    for process, log in started:
        stop(process)
        log.close()


def pid_alive(pid: int) -> bool:
    """Whether a process of that pid still exists (and is not a zombie)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pids: t.Iterable[int], timeout: float = 15.0) -> bool:
    """Poll until none of ``pids`` is alive; False if some still are after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def children(pid: int) -> set[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found


@contextlib.contextmanager
def uwsgi_server(tmp_path: Path, env: dict[str, str], *options: str) -> t.Iterator[LiveServer]:
    """uWSGI running ``kernkoa.app``: a master and 2 worker processes on a free port.

    ``env`` is added to this process's environment; ``options`` go to uWSGI
    (``--lazy-apps``, ``--harakiri 3``...). On the way out uWSGI is stopped
    (SIGTERM, then SIGKILL) and no worker may outlive it.
    """
    port = free_port()
    log_path = tmp_path / f"uwsgi-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "uwsgi"), "--master", "--processes", "2",
             "--http-socket", f"127.0.0.1:{port}", "--module", "kernkoa", "--callable", "app",
             "--need-app", "--die-on-term", *options],
            cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    workers: set[int] = set()
    try:
        wait_for_http(server.base + "/", process)
        yield server
        workers = children(process.pid)
    finally:
        stop(process, grace=30)
    assert wait_until_gone(workers), log_path.read_text()[-3000:]

"""Shared fixtures: apps on the shipped catalog or on a catalog written by the test, real
servers, and the markers of the tests that start real parts.

Helpers that are not fixtures are in :mod:`tests.support`.
"""

from __future__ import annotations

import os
import subprocess
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kernel import create_app
from kernel.auth.users import UserStore
from kernel.core.settings import PROJECT_ROOT
from kernel.tasks.waiting import disconnect_result_store
from tests.support import real_parts
from tests.support.auth import PASSWORD
from tests.support.catalogs import ControllerTree
from tests.support.chromium import browser_page
from tests.support.processes import BIN
from tests.support.processes import free_port
from tests.support.processes import stop
from tests.support.processes import wait_for_http
from tests.support.redis_server import RedisServer
from tests.support.servers import LiveServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the real parts its fixtures start (before ``-m`` selects)."""
    real_parts.mark_by_fixtures(items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note the test being set up, so the helpers starting a part can check its marker."""
    real_parts.running(item)


@pytest.fixture(scope="session", autouse=True)
def _metrics_in_multiprocess_mode(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``prometheus_client`` picks its mode when first imported, whichever test does it:
    multiprocess, as the apps with METRICS want it (one folder for this process)."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(tmp_path_factory.mktemp("metrics")))


@pytest.fixture(autouse=True)
def _clean_kernkoa_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's KERNKOA_* variables; each gets its own VAR folder."""
    for name in list(os.environ):
        if name.startswith("KERNKOA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KERNKOA_VAR", str(tmp_path / "var"))


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


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    """The users file of ``basic_auth`` in the test's VAR, holding ``alice`` (scope
    ``reports``, password :data:`tests.support.auth.PASSWORD`)."""
    store = UserStore(tmp_path / "var" / "users.json")
    store.add("alice", PASSWORD, ["reports"])
    return store


@pytest.fixture
def redis(tmp_path: Path) -> t.Iterator[RedisServer]:
    """A throw-away ``redis-server`` on a free port (its tests are marked ``redis``)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(tmp_path: Path) -> t.Iterator[t.Any]:
    """A headless Chromium page (its tests are marked ``chromium``)."""
    with browser_page(tmp_path / "profile") as opened:
        yield opened


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

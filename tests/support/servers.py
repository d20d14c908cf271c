"""Real servers a test talks to over HTTP: the client of one, and uWSGI serving the kernel."""

from __future__ import annotations

import contextlib
import os
import subprocess
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

from kernel.core.settings import PROJECT_ROOT
from tests.support import real_parts
from tests.support.processes import BIN
from tests.support.processes import children
from tests.support.processes import free_port
from tests.support.processes import stop
from tests.support.processes import wait_for_http
from tests.support.processes import wait_until_gone


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


@contextlib.contextmanager
def uwsgi_server(tmp_path: Path, env: dict[str, str], *options: str) -> t.Iterator[LiveServer]:
    """uWSGI running ``kernkoa.app``: a master and 2 worker processes on a free port.

    ``env`` is added to this process's environment; ``options`` go to uWSGI
    (``--lazy-apps``, ``--harakiri 3``...). On the way out uWSGI is stopped
    (SIGTERM, then SIGKILL) and no worker may outlive it.
    """
    real_parts.require("uwsgi")
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

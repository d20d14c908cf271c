"""A real Prometheus server for a test: scraping given targets every second, queried
through its own HTTP API.

``prometheus`` comes from the distribution; where it is missing and the test
runs as root it is installed here (CI starts from a clean machine), else the
test fails naming what to install (``make test`` installs it too).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import typing as t
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import free_port
from tests.support.processes import stop
from tests.support.processes import wait_for_http

#: The Debian package holding the server.
PACKAGE = "prometheus"


def require_prometheus() -> str:
    """The path of ``prometheus``, installed from the distribution if missing."""
    found = shutil.which("prometheus")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq",
                        "--no-install-recommends", PACKAGE],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL, timeout=900, check=False)
        found = shutil.which("prometheus")
    if found is None:
        pytest.fail(f"prometheus is missing: `make test` installs it (apt-get install {PACKAGE})")
    return found


class Prometheus:
    """A running Prometheus server on 127.0.0.1."""

    def __init__(self, base: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base = base
        self.process = process
        self.log = log

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll ``/-/ready`` until it answers 200 (503 while the storage opens)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready: {self.log.read_text()[-2000:]}")

    def query(self, expression: str) -> list[dict[str, t.Any]]:
        """The instant vector ``expression`` evaluates to now (``/api/v1/query``)."""
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return t.cast(list[dict[str, t.Any]], answer["data"]["result"])

    def value(self, expression: str) -> float | None:
        """The one value of ``expression`` now, or ``None`` when it has none."""
        result = self.query(expression)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for_value(self, expression: str, expected: float, timeout: float = 60) -> None:
        """Poll until ``expression`` is exactly ``expected`` (scrapes come every second)."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.value(expression)
            if seen == expected:
                return
            time.sleep(0.5)
        targets = urllib.request.urlopen(self.base + "/api/v1/targets", timeout=10).read()
        raise AssertionError(f"{expression} is {seen}, not {expected}; "
                             f"targets: {targets[-2000:]!r}")


@contextlib.contextmanager
def prometheus_server(folder: Path, jobs: dict[str, tuple[str, str]]) -> t.Iterator[Prometheus]:
    """Prometheus scraping every second ``jobs``: name -> (``host:port``, metrics path)."""
    binary = require_prometheus()
    folder.mkdir(parents=True, exist_ok=True)
    scrapes = "".join(
        f"  - job_name: {name}\n"
        f"    metrics_path: {path}\n"
        f"    static_configs:\n"
        f"      - targets: ['{target}']\n"
        for name, (target, path) in jobs.items())
    config = folder / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                      f"scrape_configs:\n{scrapes}")
    port = free_port()
    log = folder / "prometheus.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={folder / 'data'}"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for_http(server.base + "/-/ready", process, timeout=60)
        server.wait_ready()
        yield server
    finally:
        stop(process, grace=10)

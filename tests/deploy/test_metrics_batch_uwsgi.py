"""Batched request metrics under real uWSGI (2 processes, lazy apps, threads on, as
shipped): workers reloaded gracefully write what they noted on their way out, so a
scrape after the reload still counts every request exactly once."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.processes import clean_environ
from tests.support.servers import LiveServer
from tests.support.servers import uwsgi_server

pytestmark = pytest.mark.uwsgi

PID = """
import os


class M:
    def pid(self):
        return {"pid": os.getpid()}

    def poll(self):
        return {"pid": os.getpid()}
"""

REQUESTS = 20


def pid_of(server: LiveServer, path: str) -> int:
    status, _, body = server.request(path, timeout=30)
    assert status == 200, body
    return int(json.loads(body)["pid"])


def counted(server: LiveServer, route: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = server.request("/_kernkoa/metrics", timeout=30)
    assert status == 200, body
    return sum(sample.value for family in text_string_to_metric_families(body.decode())
               for sample in family.samples
               if sample.name == "kernkoa_http_requests_total"
               and sample.labels["route"] == route)


def test_workers_reloaded_gracefully_write_their_counts(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    (catalog / "controller").mkdir(parents=True)
    (catalog / "controller" / "m.py").write_text(PID)
    # An hour between flushes: only the exit of each worker can write its counts.
    env = clean_environ(CATALOG=str(catalog), VAR=str(tmp_path / "var"), METRICS="true",
                        METRICS_FLUSH_SECONDS="3600")
    # An idle worker of uWSGI 2.0 with threads on may sit out its reload mercy
    # (60 s) in accept(): a short one keeps the test short, the counts are written
    # by the workers that served.
    with uwsgi_server(tmp_path, env, "--lazy-apps", "--enable-threads",
                      "--worker-reload-mercy", "10") as server:
        before = {pid_of(server, "/m/M/pid") for _ in range(REQUESTS)}
        os.kill(server.process.pid, signal.SIGHUP)  # graceful reload of every worker
        deadline = time.monotonic() + 120
        after: set[int] = set()
        while time.monotonic() < deadline:  # until two new workers answered
            try:
                after.add(pid_of(server, "/m/M/poll"))
            except (OSError, AssertionError):
                pass
            if len(after - before) == 2:
                break
            time.sleep(0.1)
        assert len(after - before) == 2, (before, after)
        # Written by the old workers' exit alone: the new ones never served the route.
        assert counted(server, "/m/M/pid") == REQUESTS


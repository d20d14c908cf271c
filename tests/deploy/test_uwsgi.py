"""Real uWSGI with two lazy-app workers: every worker sees an edited controller."""

from __future__ import annotations

import json
import typing as t
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.catalogs import ControllerTree
from tests.support.processes import wait_until_gone
from tests.support.servers import uwsgi_server

#: Every test here runs uWSGI.
pytestmark = pytest.mark.uwsgi

# Each request records its worker's pid for its round, then waits (bounded) until
# two workers have arrived: a busy worker cannot take the second request, so two
# concurrent requests of one round are answered by two different processes.
WORKER = """
import os
import time
from pathlib import Path

ARRIVALS = Path({arrivals!r})
VERSION = {version!r}


class W:
    def hold(self, round: str):
        folder = ARRIVALS / round
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 10
        while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return {{"pid": os.getpid(), "version": VERSION}}
"""


def get_json(url: str) -> t.Any:
    """GET ``url`` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def one_round(base: str, name: str) -> list[dict[str, t.Any]]:
    """Two concurrent requests of round ``name``; their answers."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(get_json, f"{base}/w/W/hold?round={name}") for _ in range(2)]
        return [future.result(timeout=60) for future in futures]


def test_every_worker_runs_the_edited_controller(tree: ControllerTree, tmp_path: Path) -> None:
    arrivals = tmp_path / "arrivals"
    source = tree.write("w.py", WORKER.format(arrivals=str(arrivals), version="one"))
    with uwsgi_server(tmp_path, {"KERNKOA_CATALOG": str(tree.root)}, "--lazy-apps") as server:
        before = one_round(server.base, "before")
        workers = {answer["pid"] for answer in before}
        assert len(workers) == 2 and server.process.pid not in workers
        assert [answer["version"] for answer in before] == ["one", "one"]

        source.write_text(WORKER.format(arrivals=str(arrivals), version="two"))
        after = one_round(server.base, "after")
        assert {answer["pid"] for answer in after} == workers
        assert [answer["version"] for answer in after] == ["two", "two"]
    assert wait_until_gone(workers)

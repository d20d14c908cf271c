"""Real uWSGI with two lazy-app workers: every worker sees an edited controller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import typing as t
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import BIN
from conftest import ControllerTree
from conftest import free_port
from conftest import wait_for_http

from kernel.settings import PROJECT_ROOT

UWSGI = BIN / "uwsgi"

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


@pytest.mark.skipif(not UWSGI.exists(), reason="uWSGI is installed by `make install`")
def test_every_worker_runs_the_edited_controller(tree: ControllerTree, tmp_path: Path) -> None:
    arrivals = tmp_path / "arrivals"
    source = tree.write("w.py", WORKER.format(arrivals=str(arrivals), version="one"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "uwsgi.log", "wb") as log:
        process = subprocess.Popen(
            [str(UWSGI), "--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}",
             "--module", "kernkoa", "--callable", "app", "--lazy-apps", "--need-app",
             "--die-on-term"],
            cwd=PROJECT_ROOT, env={**os.environ, "KERNKOA_CATALOG": str(tree.root)},
            stdout=log, stderr=subprocess.STDOUT,
        )
        workers: set[int] = set()
        try:
            wait_for_http(base + "/", process)
            before = one_round(base, "before")
            workers = {answer["pid"] for answer in before}
            assert len(workers) == 2 and process.pid not in workers
            assert [answer["version"] for answer in before] == ["one", "one"]

            source.write_text(WORKER.format(arrivals=str(arrivals), version="two"))
            after = one_round(base, "after")
            assert {answer["pid"] for answer in after} == workers
            assert [answer["version"] for answer in after] == ["two", "two"]
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)
        assert process.returncode is not None
        assert wait_until_gone(workers), (tmp_path / "uwsgi.log").read_text()

"""Real uWSGI: a controller that kills its worker or never returns does not take the
server down; the master respawns the worker, and harakiri ends the runaway."""

from __future__ import annotations

import http.client
import json
import threading
import time
import typing as t
import urllib.request
from pathlib import Path

import pytest

from tests.support.catalogs import ControllerTree
from tests.support.servers import uwsgi_server

#: Every test here runs uWSGI.
pytestmark = pytest.mark.uwsgi

HOSTILE = """
import os


class K:
    def ok(self):
        return {"pid": os.getpid()}

    def die(self):
        os._exit(3)

    def spin(self):
        while True:
            pass
"""


def fetch(url: str, timeout: float = 20.0) -> tuple[int, t.Any] | None:
    """GET ``url``: status and JSON body, or ``None`` when the connection broke."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, http.client.HTTPException):
        return None


def answered_ok(base: str, within: float = 30.0) -> int:
    """Poll ``/k/K/ok`` until it answers 200 (bounded); the worker pid that did."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = fetch(base + "/k/K/ok", timeout=5)
        if found is not None and found[0] == 200:
            return int(found[1]["pid"])
        time.sleep(0.1)
    raise AssertionError(f"{base} stopped answering")


@pytest.fixture
def uwsgi(tree: ControllerTree, tmp_path: Path) -> t.Iterator[tuple[str, Path]]:
    tree.write("k.py", HOSTILE)
    with uwsgi_server(tmp_path, {"KERNKOA_CATALOG": str(tree.root)},
                      "--harakiri", "3", "--lazy-apps") as server:
        yield server.base, t.cast(Path, server.log)


def test_a_controller_that_kills_its_worker(uwsgi: tuple[str, Path]) -> None:
    base, log = uwsgi
    answered_ok(base)
    for _ in range(3):
        # The dying worker's client gets a broken connection or a 5xx from the
        # master, never a hang; the next request is answered.
        broken = fetch(base + "/k/K/die")
        assert broken is None or broken[0] >= 500
        answered_ok(base)
    assert "respawned" in log.read_text() or "DAMN" in log.read_text()


def test_a_runaway_controller_is_ended_by_harakiri(uwsgi: tuple[str, Path]) -> None:
    base, log = uwsgi
    answered_ok(base)
    outcomes: list[tuple[int, t.Any] | None] = []
    # Both workers stuck in an endless loop at once.
    spinners = [threading.Thread(target=lambda: outcomes.append(fetch(base + "/k/K/spin", 30)))
                for _ in range(2)]
    for spinner in spinners:
        spinner.start()
    time.sleep(0.5)  # let both reach their workers (a start, not a timing assertion)
    # Harakiri kills them within its 3 s; the server answers again.
    answered_ok(base, within=40)
    for spinner in spinners:
        spinner.join(40)
        assert not spinner.is_alive()
    assert all(o is None or o[0] >= 500 for o in outcomes), outcomes
    assert "HARAKIRI" in log.read_text()

"""The live task page in real headless Chromium: a real server, worker and embedded broker."""

from __future__ import annotations

import json
import typing as t
import urllib.request
from pathlib import Path

import pytest

from tests.support.chromium import screenshot
from tests.support.processes import clean_environ
from tests.support.servers import LiveServer
from tests.support.tasks import Stack
from tests.support.tasks import final
from tests.support.tasks import trigger
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

SLOW = '''
import os
import time

from kernkoa import *


def _wait_for(path, limit=30.0):
    end = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.05)


class Slow:
    def work_celery(self, task, gate: str, steps: int = 4):
        """Reports steps up to the last, waits for the test's gate file, then finishes."""
        for i in range(1, steps):
            task.progress(i, steps, "step %d of %d" % (i, steps))
            time.sleep(0.6)  # longer than PROGRESS_INTERVAL, so no report is dropped
        _wait_for(gate)
        task.progress(steps, steps, "step %d of %d" % (steps, steps))
        return {"steps": steps, "answer": 42}

    def forever_celery(self, task):
        """Ticks until it is cancelled (bounded, in case nobody does)."""
        end = time.monotonic() + 60
        i = 0
        while time.monotonic() < end:
            i += 1
            task.progress(i, None, "tick %d" % i)
            time.sleep(0.1)

    def fail_celery(self, task):
        raise ValueError("it went <b>wrong</b>")
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[LiveServer]:
    """``kernkoa serve`` with its embedded worker, on the jobs catalog plus ``slow.py``."""
    folder = tmp_path_factory.mktemp("status-page")
    catalog = write_catalog(folder / "catalog")
    (catalog / "controller" / "slow.py").write_text(SLOW)
    stack = Stack(folder)
    try:
        yield stack.server(clean_environ(CATALOG=str(catalog), VAR=str(folder / "var")),
                           with_worker=True)
    finally:
        stack.close()


def _wait_state(page: t.Any, state: str) -> None:
    page.locator(f"#state.state-{state}").wait_for()


def test_progress_bar_reaches_100_and_shows_the_result(server: LiveServer, page: t.Any,
                                                       tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    task_id = trigger(server, "/slow/Slow/work_celery", gate=str(gate))
    page.goto(f"{server.base}/status/{task_id}")
    assert page.locator("#task").get_attribute("data-status-url") == f"/status/{task_id}"
    _wait_state(page, "PROGRESS")
    page.locator("#progress-text", has_text="75 %").wait_for()
    assert page.locator("#bar").get_attribute("aria-valuenow") == "75"
    assert "step 3 of 4" in page.locator("#fields").inner_text()
    assert page.locator("#task").get_attribute("data-transport") == "events"
    screenshot(page, "status-page-progress.png")

    gate.write_text("go")
    _wait_state(page, "SUCCESS")
    assert page.locator("#bar").get_attribute("aria-valuenow") == "100"
    assert page.locator("#progress-text").inner_text() == "100 %"
    result = json.loads(page.locator("#result").inner_text())
    assert result == {"steps": 4, "answer": 42}
    # The id of the request that started it, filled in live if the page began PENDING.
    request_id = wait_status(server, task_id, final)["request_id"]
    assert page.locator("#request-id").inner_text() == request_id
    assert page.locator("#cancel").is_disabled()
    # The bar's width is animated: let it arrive before the picture.
    page.wait_for_function("() => { const bar = document.querySelector('#bar');"
                           " return bar.firstElementChild.offsetWidth >= bar.clientWidth - 1; }")
    screenshot(page, "status-page.png")


def test_cancel_button_revokes_a_running_task(server: LiveServer, page: t.Any) -> None:
    task_id = trigger(server, "/slow/Slow/forever_celery")
    page.goto(f"{server.base}/status/{task_id}")
    page.locator("#fields", has_text="tick").wait_for()
    page.locator("#cancel").click()
    _wait_state(page, "REVOKED")
    assert wait_status(server, task_id, final)["status"] == "REVOKED"
    assert page.locator("#cancel").is_disabled()


def test_failure_shows_the_error_as_text(server: LiveServer, page: t.Any) -> None:
    task_id = trigger(server, "/slow/Slow/fail_celery")
    page.goto(f"{server.base}/status/{task_id}")
    _wait_state(page, "FAILURE")
    assert page.locator("#error").inner_text() == "ValueError: it went <b>wrong</b>"
    assert page.locator("#error b").count() == 0


def test_falls_back_to_polling_without_the_event_stream(server: LiveServer, page: t.Any,
                                                        tmp_path: Path) -> None:
    page.route("**/events", lambda route: route.abort())
    gate = tmp_path / "gate"
    task_id = trigger(server, "/slow/Slow/work_celery", gate=str(gate))
    page.goto(f"{server.base}/status/{task_id}")
    page.locator("#task[data-transport=polling]").wait_for(state="attached")
    gate.write_text("go")
    _wait_state(page, "SUCCESS")
    assert page.locator("#task").get_attribute("data-transport") == "polling"
    assert "42" in page.locator("#result").inner_text()


def test_event_stream_over_http(server: LiveServer, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("go")
    task_id = trigger(server, "/slow/Slow/work_celery", gate=str(gate))
    wait_status(server, task_id, final)
    with urllib.request.urlopen(f"{server.base}/status/{task_id}/events", timeout=30) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["X-Accel-Buffering"] == "no"
        text = stream.read().decode()  # a finished task's stream ends at once
    assert text.startswith("retry: ")
    assert '"status":"SUCCESS"' in text and "event: end" in text


def test_unknown_task_page_and_stream(server: LiveServer) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    code, _, body = server.request(f"/status/{missing}/events")
    assert code == 200 and b"event: end" in body and b'"code":404' in body
    code, _, body = server.request("/status/not-an-id/events")
    assert code == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_the_tasks_page_json_on_the_embedded_broker(server: LiveServer, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("go")
    task_id = trigger(server, "/slow/Slow/work_celery", gate=str(gate), steps=2)
    wait_status(server, task_id, final)
    code, _, body = server.request("/_kernkoa/tasks?format=json")
    assert code == 200
    data = json.loads(body)
    [task] = [task for task in data["tasks"] if task["id"] == task_id]
    assert task["route"] == "/slow/Slow/work_celery" and task["state"] == "SUCCESS"
    assert task["started"] <= task["finished"] and task["duration"] >= 0 and task["worker"]
    assert data["counts"]["/slow/Slow/work_celery"]["SUCCESS"] >= 1
    assert [worker["queues"] for worker in data["workers"]] == [["celery"]]

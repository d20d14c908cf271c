"""``/_kernkoa/tasks`` in headless Chromium with hostile values: a task's identity and
progress meta come from users, and are shown as text, never as markup (a ``kernkoa
serve`` on the embedded broker; the task run in this process). A request id is
checked at the edge (only ``A-Z a-z 0-9 . _ -``), a route is the catalog's."""

from __future__ import annotations

import typing as t
from pathlib import Path

from kernel.app import create_app
from kernel.tasks.enqueue import celery_and_breaker
from kernel.tasks.recent import TRIGGER_HEADER
from tests.support.processes import clean_environ
from tests.support.tasks import Stack
from tests.support.tasks import queued_messages
from tests.support.tasks import run_queued
from tests.support.tasks import trigger
from tests.support.tasks import write_catalog

IDENTITY = '<img src=x onerror="window.pwned=1">'
MESSAGE = "</script><script>window.pwned=3</script><b onmouseover=window.pwned=4>x</b>"


def test_hostile_identity_and_progress_are_text(tmp_path: Path, page: t.Any) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    var = tmp_path / "var"
    stack = Stack(tmp_path)
    try:
        server = stack.server(clean_environ(CATALOG=str(catalog), VAR=str(var)))
        task_id = trigger(server, "/jobs/jobs/count_celery", n=1)
        app = create_app({"CATALOG": str(catalog), "VAR": str(var)})
        [message] = queued_messages(var)
        message["headers"][TRIGGER_HEADER]["identity"] = IDENTITY
        run_queued(app, [message])
        with app.app_context():
            celery, _ = celery_and_breaker()
        celery.backend.store_result(task_id, {"current": 1, "total": 2, "percent": 50.0,
                                              "message": MESSAGE}, "PROGRESS")
        page.goto(f"{server.base}/_kernkoa/tasks")
        row = page.locator("#recent tr", has=page.locator(f"a[href$='{task_id}']"))
        row.locator("td.state-PROGRESS").wait_for()
        cells = row.locator("td").all_inner_texts()
        assert cells[2] == "50 % " + MESSAGE and cells[6] == IDENTITY
        assert page.evaluate("window.pwned") is None
        assert page.locator("#recent img, #recent script, #recent b").count() == 0
        # Were anything to slip through, the page's policy runs no inline script.
        _, headers, _ = server.request("/_kernkoa/tasks", headers={"Accept": "text/html"})
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    finally:
        stack.close()

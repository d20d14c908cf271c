"""Each process ``setup.sh --no-systemd`` starts writes its lines where the
operator looks: ``kernkoa worker --logfile=FILE`` into that file, in both
``LOG_FORMAT``\\ s (Celery's own ``ready``, ``received``, ``succeeded``, the
kernel's, and a method's ``print()``, each line of the task with its request id and
task id), ``kernkoa beat --logfile=FILE`` too, and uWSGI's app into its
``logto`` file. Real processes: ``kernkoa serve`` (no worker of its own), a
prefork worker and beat on the embedded broker; uWSGI."""

from __future__ import annotations

import json
import re
import subprocess
import typing as t
from pathlib import Path

import pytest

from kernel.core.settings import PROJECT_ROOT
from tests.support.processes import BIN
from tests.support.processes import clean_environ
from tests.support.processes import stop
from tests.support.servers import uwsgi_server
from tests.support.tasks import Stack
from tests.support.tasks import Worker
from tests.support.tasks import final
from tests.support.tasks import wait_for
from tests.support.tasks import wait_status
from tests.support.tasks import write_catalog

#: A task that prints and logs.
TALK = '''
import logging

from kernkoa import *

log = logging.getLogger("catalog.talk")


class talk:
    def say_celery(self, task, word: str = "hello"):
        print("the task says", word)
        log.warning("logged by the method")
        return {"word": word}
'''

TEXT_CONTEXT = re.compile(r" \[request_id=(?P<request_id>\S+) task_id=(?P<task_id>\S+)\]$")


def _parsed(path: Path, log_format: str) -> list[dict[str, t.Any]]:
    """Every line of the log file as a mapping (``message``, ``logger``, ids)."""
    if log_format == "json":
        return [json.loads(line) for line in path.read_text().splitlines()]
    lines = []
    for line in path.read_text().splitlines():
        found = TEXT_CONTEXT.search(line)
        fields = found.groupdict() if found else {}
        lines.append({**fields, "line": line, "message": line})
    return lines


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_worker_logfile_gets_every_line_of_the_worker(
        tmp_path: Path, log_format: str) -> None:
    catalog = write_catalog(tmp_path / "catalog")
    (catalog / "controller" / "talk.py").write_text(TALK)
    env = clean_environ(CATALOG=str(catalog), VAR=str(tmp_path / "var"),
                        LOG_FORMAT=log_format)
    logfile = tmp_path / "worker.log"
    stack = Stack(tmp_path)
    # What the worker writes to stdout and stderr besides its file (Celery's banner).
    worker = Worker(env, tmp_path / "worker-output.log", "--concurrency=1",
                    f"--logfile={logfile}")
    stack.workers.append(worker)
    try:
        wait_for(lambda: logfile.exists() and " ready." in logfile.read_text(),
                 timeout=60, what=f"the worker's ready line in its log file; output: "
                 f"{(tmp_path / 'worker-output.log').read_bytes()[-2000:]!r}")
        server = stack.server(env)
        status, headers, body = server.request(
            "/talk/talk/say_celery", "POST", json.dumps({"word": "hi"}).encode(),
            {"Content-Type": "application/json", "X-Request-Id": "trace-file-1"})
        assert status == 202, body
        task_id = json.loads(body)["id"]
        assert wait_status(server, task_id, final, timeout=60)["status"] == "SUCCESS"

        def of_task() -> list[dict[str, t.Any]]:
            return [line for line in _parsed(logfile, log_format)
                    if line.get("task_id") == task_id]

        wait_for(lambda: any("succeeded" in line["message"] for line in of_task()),
                 timeout=30, what="the task's succeeded line in the worker's log file")
        lines = of_task()
        assert {line["request_id"] for line in lines} == {"trace-file-1"}
        messages = [line["message"] for line in lines]
        assert any("the task says hi" in message for message in messages), messages
        assert any("logged by the method" in message for message in messages), messages
        received = [line for line in _parsed(logfile, log_format)
                    if "received" in line["message"] and task_id in line["message"]]
        assert received, logfile.read_text()[-3000:]
        # Nothing of the task went to stderr instead.
        output = (tmp_path / "worker-output.log").read_text()
        assert "the task says hi" not in output and "succeeded" not in output, output[-3000:]
    finally:
        stack.close()
    if log_format == "json":
        # Every line to the last, the pool's own (a pool process ended at shutdown) included.
        assert all(line["logger"] for line in _parsed(logfile, log_format))


def test_beat_logfile_gets_the_lines_of_beat(tmp_path: Path) -> None:
    env = clean_environ(CATALOG=str(write_catalog(tmp_path / "catalog")),
                        VAR=str(tmp_path / "var"), LOG_FORMAT="json")
    logfile = tmp_path / "beat.log"
    with open(tmp_path / "beat-output.log", "wb") as output:
        beat = subprocess.Popen([str(BIN / "kernkoa"), "beat", f"--logfile={logfile}"],
                                cwd=PROJECT_ROOT, env=env, stdout=output,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: logfile.exists() and "holding the lock" in logfile.read_text(),
                 timeout=60, what="beat's lines in its log file")
    finally:
        stop(beat)
    loggers = {line["logger"] for line in _parsed(logfile, "json")}
    assert {"celery.beat", "kernkoa.beat"} <= loggers


@pytest.mark.uwsgi
def test_uwsgi_logto_file_gets_the_web_lines_with_their_request_id(tmp_path: Path) -> None:
    logfile = tmp_path / "kernkoa_uwsgi.log"
    env = {"KERNKOA_CATALOG": str(write_catalog(tmp_path / "catalog")),
           "KERNKOA_VAR": str(tmp_path / "var"), "KERNKOA_LOG_FORMAT": "json",
           "KERNKOA_ADDONS": "access_log"}
    with uwsgi_server(tmp_path, env, "--logto", str(logfile)) as server:
        status, _, _ = server.request("/jobs/jobs/hello", headers={"X-Request-Id": "web-file-1"})
        assert status == 200

        def access() -> list[dict[str, t.Any]]:
            return [json.loads(line) for line in logfile.read_text().splitlines()
                    if line.startswith("{") and '"web-file-1"' in line]

        wait_for(lambda: bool(access()), timeout=30, what="the access line in uWSGI's log")
    [line] = access()
    assert line["logger"] == "kernkoa.access" and line["route"] == "/jobs/jobs/hello"

"""The production set-up, for real: ``setup.sh --no-systemd`` with uWSGI, nginx, a Celery
worker and Redis, driven through nginx on a free port.

The tests in this module share one installation and run in file order; the last
ones stop it, check that no process is left, and uninstall it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
import typing as t
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import ANY

import pytest

from kernel.cli.nginx_errors import LOCATION
from kernel.cli.nginx_errors import NGINX_STATUSES
from kernel.core.settings import PROJECT_ROOT
from kernel.core.settings import Settings
from kernel.web.envelope import standard_envelope
from tests.support.processes import children
from tests.support.processes import free_port
from tests.support.processes import pid_alive
from tests.support.processes import wait_for_http
from tests.support.processes import wait_until_gone
from tests.support.redis_server import RedisServer
from tests.support.steady_load import SteadyLoad

#: The install runs uWSGI behind nginx, on a redis-server (a few checks of
#: setup.sh's refusals start nothing, and are left out with the rest).
pytestmark = [pytest.mark.uwsgi, pytest.mark.nginx, pytest.mark.redis]

SETUP = PROJECT_ROOT / "setup.sh"

CONTROLLER = '''
import os
import time

from kernkoa import *

VERSION = {version}

#: Memory a grown worker keeps (the bound for recycling is below it).
HOARD = []


class probe:
    def whoami(self):
        return {{"pid": os.getpid(), "version": VERSION}}

    def crash(self):
        os._exit(3)

    def double_celery(self, task, n: int):
        task.progress(1, 2, "halfway")
        return n * 2

    def spin(self):
        while True:
            pass

    def grow(self, mib: int):
        HOARD.append(b"x" * (mib << 20))
        return {{"pid": os.getpid()}}

    def store(self):
        dbs["maindb"].execute("create table if not exists visits (n integer)")
        dbs["maindb"].execute("insert into visits values (1)")
        return "stored"

    def steps_celery(self, task, steps: int):
        for step in range(steps):
            task.progress(step + 1, steps)
            time.sleep(0.1)
        return steps
'''

#: The host name the shared install is made for (``setup.sh --server-name``).
SERVER_NAME = "kernkoa.test"

#: Sizes the shared install is made with (small, so the tests see them at work).
SIZES = {"processes": 2, "threads": 1, "harakiri": 8, "reload-on-rss": 128}

#: The defaults kernkoa_uwsgi.ini and setup.sh share, by environment variable.
DEFAULT_SIZES = {"KERNKOA_PROCESSES": "8", "KERNKOA_THREADS": "1", "KERNKOA_HARAKIRI": "60",
                 "KERNKOA_RELOAD_ON_RSS": "256"}

#: A page of the shipped catalog, for load.
HELLO = "/fasthelloworld/fastHelloClass/fastHelloWorld"

#: "A few seconds": the longest the install may go without answering anyone
#: while a runaway request spins or a worker is replaced.
GAP_LIMIT = 5.0

#: Connections that send half a request and wait, next to normal clients.
SLOW_CLIENTS = 200

#: nginx's client_header_timeout (kernkoa_nginx.conf): slow clients are dropped after it.
HEADER_TIMEOUT = 10

#: A controller file whose import error holds a secret.
LEAKY = 'raise ConnectionError("cannot log in with password=hunter2")\n'


@dataclass
class Deployment:
    """One installation made by ``setup.sh``."""

    prefix: Path
    port: int
    args: list[str]
    redis: RedisServer

    def request(self, path: str, method: str = "GET", body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request through nginx, the path sent exactly as given."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def raw(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send ``data`` as it is (a request no HTTP client would write); the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(data)
            response = http.client.HTTPResponse(sock)
            response.begin()
            return response.status, dict(response.getheaders()), response.read()

    def wait_for(self, path: str, status: int) -> None:
        """Ask for ``path`` until it answers ``status`` (the services restart), 60 s at most."""
        deadline = time.monotonic() + 60
        while self.request(path)[0] != status:
            assert time.monotonic() < deadline, f"{path} never answered {status}"
            time.sleep(0.1)

    def env(self) -> dict[str, str]:
        """The install's env file as a mapping."""
        lines = (self.prefix / "etc/kernkoa.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line)

    def uwsgi_workers(self) -> set[int]:
        """The pids of uWSGI's worker processes (its master's uWSGI children)."""
        master = int((self.prefix / "var/kernkoa_uwsgi.pid").read_text())
        found = set()
        for pid in children(master):
            try:
                if b"uwsgi" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
            except OSError:
                continue
        return found

    def wait_for_workers(self, count: int) -> None:
        """Poll until uWSGI runs ``count`` workers (a replaced one is respawned), 60 s at most."""
        deadline = time.monotonic() + 60
        while len(self.uwsgi_workers()) != count:
            assert time.monotonic() < deadline, f"uWSGI never ran {count} workers"
            time.sleep(0.05)

    def json(self, path: str, method: str = "GET") -> tuple[int, t.Any]:
        """One request; the status and the decoded JSON body."""
        status, _, body = self.request(path, method)
        return status, json.loads(body)

    def write_probe(self, version: int) -> None:
        """(Re)write the probe controller in the installed catalog."""
        path = self.prefix / "catalog/controller/deploytest/probe.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_suffix(".tmp")
        draft.write_text(CONTROLLER.format(version=version))
        draft.replace(path)


def run_setup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run setup.sh (``env`` added to its environment); fail the test when it fails."""
    result = subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True,
                            timeout=900,
                            env={**os.environ, "KERNKOA_STOP_GRACE": "10", **(env or {})})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def processes_under(prefix: Path) -> list[str]:
    """Command lines of running processes that mention ``prefix``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(prefix) in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Deployment]:
    """Redis, then ``setup.sh --prefix ... --no-systemd``; stopped afterwards."""
    for tool in ("nginx", "shellcheck"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `make test` installs it")
    root = tmp_path_factory.mktemp("deploy")
    redis = RedisServer(root / "redis", persistent=True)
    redis.start()
    prefix = root / "kernkoa"
    port = free_port()
    args = ["--prefix", str(prefix), "--port", str(port), "--no-systemd", "--broker", redis.url,
            "--server-name", SERVER_NAME,
            *(part for name, size in SIZES.items() for part in (f"--{name}", str(size)))]
    deployed = Deployment(prefix, port, args, redis)
    try:
        run_setup(*args)
        wait_for_http(f"http://127.0.0.1:{port}/")
        yield deployed
    finally:
        subprocess.run(["bash", str(SETUP), "--prefix", str(prefix), "--stop"],
                       capture_output=True, timeout=120)
        redis.stop()


def test_setup_script_passes_shellcheck() -> None:
    result = subprocess.run(["shellcheck", str(SETUP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_controller_through_nginx(deployment: Deployment) -> None:
    status, headers, body = deployment.request(HELLO)
    assert (status, body) == (200, b"hello world!!.")
    assert headers["Server"] == "nginx", "nginx tells its version"


def test_static_image_served_by_nginx(deployment: Deployment) -> None:
    picture = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    (deployment.prefix / "images/probe.png").write_bytes(picture)
    status, headers, body = deployment.request("/images/probe.png")
    assert (status, body) == (200, picture)
    assert headers["Content-Type"] == "image/png"


@pytest.mark.parametrize("path", [
    "/images/../config.py", "/images/%2e%2e/config.py", "/images/..%2fconfig.py",
    "/images../config.py", "/images/%2e%2e%2fconfig.py", "/pdfs/../../config.py",
    "/pdfs/..%2f..%2fconfig.py", "/images/..%5cconfig.py",
])
def test_static_folders_cannot_be_escaped(deployment: Deployment, path: str) -> None:
    status, _, body = deployment.request(path)
    assert status in (400, 404)
    assert b"MAX_CONTENT_LENGTH" not in body


def test_celery_task_runs_to_success(deployment: Deployment) -> None:
    deployment.write_probe(1)
    status, headers, body = deployment.request("/deploytest/probe/probe/double_celery?n=21",
                                               "POST")
    assert status == 202, body
    task = json.loads(body)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, state = deployment.json(f"/status/{task['id']}")
        if state["status"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.1)
    assert state == {"status": "SUCCESS", "data": 42, "request_id": ANY}
    # The worker uWSGI keeps running writes into its --logfile, the task's ids on the lines.
    request_id = {name.lower(): value for name, value in headers.items()}["x-request-id"]
    worker_log = deployment.prefix / "var/worker.log"

    def succeeded() -> list[str]:
        return [line for line in worker_log.read_text().splitlines()
                if "succeeded" in line and f"task_id={task['id']}" in line]

    deadline = time.monotonic() + 30
    while not succeeded() and time.monotonic() < deadline:
        time.sleep(0.1)
    [line] = succeeded()
    assert f"[request_id={request_id} task_id={task['id']}]" in line


def _run_task(deployment: Deployment, path: str) -> dict[str, t.Any]:
    """Trigger a task through nginx and poll its status until it is final."""
    status, _, body = deployment.request(path, "POST")
    assert status == 202, body
    task_id = json.loads(body)["id"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status, state = deployment.json(f"/status/{task_id}")
        if status == 200 and state["status"] in ("SUCCESS", "FAILURE"):
            return t.cast(dict[str, t.Any], state)
        time.sleep(0.1)
    raise TimeoutError(f"task {task_id} not done: {state}")


def _worker_pid(deployment: Deployment) -> int | None:
    """The worker's pid from its pid file, if that process is alive."""
    try:
        pid = int((deployment.prefix / "var/worker.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def test_killed_celery_worker_is_started_again(deployment: Deployment) -> None:
    # Under --no-systemd nothing restarted a worker that died.
    deployment.write_probe(1)
    first = _worker_pid(deployment)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while _worker_pid(deployment) in (None, first) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _worker_pid(deployment) not in (None, first), "uWSGI did not start another worker"
    assert _run_task(deployment, "/deploytest/probe/probe/double_celery?n=4") == {
        "status": "SUCCESS", "data": 8, "request_id": ANY}


#: A method the beat of the install runs every second; it notes each run in ``NOTE``.
TICKER = """
from kernkoa import *

NOTE = {note!r}


class ticker:
    @every(seconds=1)
    def tick_celery(self, task):
        with open(NOTE, "a") as note:
            note.write(task.id + "\\n")
"""


def _pid_of(deployment: Deployment, name: str) -> int | None:
    """The pid in ``var/<name>.pid``, if that process is alive."""
    try:
        pid = int((deployment.prefix / f"var/{name}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _ticks(note: Path) -> int:
    return len(note.read_text().split()) if note.exists() else 0


def test_beat_runs_the_schedules_and_is_started_again(deployment: Deployment,
                                                      tmp_path: Path) -> None:
    note = tmp_path / "ticks.txt"
    note.touch(mode=0o666)
    note.chmod(0o666)  # the service writes it whatever its umask
    controller = deployment.prefix / "catalog/controller/deploytest/ticker.py"
    controller.parent.mkdir(parents=True, exist_ok=True)
    controller.write_text(TICKER.format(note=str(note)))
    try:
        deadline = time.monotonic() + 60
        while _ticks(note) < 2:
            assert time.monotonic() < deadline, "the beat of the install never fired"
            time.sleep(0.2)
        first = _pid_of(deployment, "beat")
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while _pid_of(deployment, "beat") in (None, first):
            assert time.monotonic() < deadline, "uWSGI did not start another beat"
            time.sleep(0.1)
        ticks = _ticks(note)
        deadline = time.monotonic() + 60
        while _ticks(note) < ticks + 2:
            assert time.monotonic() < deadline, "the new beat never fired"
            time.sleep(0.2)
    finally:
        controller.unlink()


def test_redis_restart_under_a_task_keeps_the_worker(deployment: Deployment) -> None:
    # The worker died of the restart (kernel/tasks/redisbroker.py) and every task
    # accepted afterwards stayed PENDING.
    deployment.write_probe(1)
    worker = _worker_pid(deployment)
    status, _, body = deployment.request("/deploytest/probe/probe/steps_celery?steps=30", "POST")
    assert status == 202, body
    task_id = json.loads(body)["id"]
    deadline = time.monotonic() + 30
    while deployment.json(f"/status/{task_id}")[1]["status"] != "PROGRESS":
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.05)
    deployment.redis.stop()
    deployment.redis.start()
    deadline = time.monotonic() + 90
    while deployment.request(f"/status/{task_id}")[0] != 200:
        assert time.monotonic() < deadline, "/status did not answer again"
        time.sleep(0.2)
    state: dict[str, t.Any] = {}
    while time.monotonic() < deadline:
        state = deployment.json(f"/status/{task_id}")[1]
        if state["status"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.1)
    assert state == {"status": "SUCCESS", "data": 30, "request_id": ANY}
    assert _run_task(deployment, "/deploytest/probe/probe/double_celery?n=5") == {
        "status": "SUCCESS", "data": 10, "request_id": ANY}
    assert _worker_pid(deployment) == worker, "the worker was restarted, it did not survive"


def _pids_answering(deployment: Deployment, version: int, wanted: int = 2) -> set[int]:
    """Ask until ``wanted`` uWSGI workers answered with ``version`` (30 s at most)."""
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < wanted and time.monotonic() < deadline:
        status, _, body = deployment.request("/deploytest/probe/probe/whoami")
        if status == 200 and json.loads(body)["version"] == version:
            pids.add(json.loads(body)["pid"])
    return pids


def test_edited_controller_is_served_by_every_process(deployment: Deployment) -> None:
    deployment.write_probe(1)
    assert len(_pids_answering(deployment, 1)) == 2
    deployment.write_probe(2)
    seen = set()
    for _ in range(200):
        status, body = deployment.json("/deploytest/probe/probe/whoami")
        assert status == 200
        assert body["version"] == 2, "a worker served the old code after the edit"
        seen.add(body["pid"])
    assert len(seen) == 2


def test_killed_worker_is_respawned(deployment: Deployment) -> None:
    deployment.write_probe(3)
    before = _pids_answering(deployment, 3)
    status, headers, body = deployment.request("/deploytest/probe/probe/crash")
    assert status == 502
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == standard_envelope(502)
    after = _pids_answering(deployment, 3)
    assert len(after) == 2, "the master did not bring back a second worker"
    assert after != before


LIMITS_PROBE = """
from flask import request


class limits:
    def fields(self, params):
        return {"fields": sorted(params or {})}

    def size(self):
        return {"bytes": len(request.get_data())}
"""

#: The body of issue 13, part 1, grown to 256 KB: 70 empty objects, then an
#: unterminated string of escaped quotes. The old depth check's regular
#: expression backtracked on it for about two minutes (4.6 s at 24 KB).
BACKTRACKING_BODY = b"{}" * 70 + b'"' + b'\\"' * (128 * 1024)


def _post(port: int, path: str, body: bytes, headers: dict[str, str],
          timeout: float) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_backtracking_json_body_does_not_hold_the_workers(deployment: Deployment) -> None:
    path = deployment.prefix / "catalog/controller/deploytest/limits.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LIMITS_PROBE)
    json_type = {"Content-Type": "application/json"}
    # Two at once, one per uWSGI worker, each bounded far below the old cost.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(
            lambda _: _post(deployment.port, "/deploytest/limits/limits/fields",
                            BACKTRACKING_BODY, json_type, timeout=20), range(2)))
    for status, body in answers:
        assert status == 400, body[:300]
        assert json.loads(body)["error"]["status"] == 400
    # The workers are free: a plain body is answered.
    status, body = _post(deployment.port, "/deploytest/limits/limits/fields", b'{"a": 1}',
                         json_type, timeout=20)
    assert (status, json.loads(body)) == (200, {"fields": ["a"]})


def _post_chunked(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=iter([body[i:i + 65536]
                                                    for i in range(0, len(body), 65536)]),
                           headers={"Content-Type": "application/octet-stream"},
                           encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_chunked_bodies_through_nginx_arrive_whole_or_are_refused(
        deployment: Deployment) -> None:
    path = deployment.prefix / "catalog/controller/deploytest/limits.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LIMITS_PROBE)
    limit = Settings.load().MAX_CONTENT_LENGTH
    status, body = _post_chunked(deployment.port, "/deploytest/limits/limits/size",
                                 b"x" * limit)
    assert (status, json.loads(body)) == (200, {"bytes": limit})
    # nginx counts the chunks against client_max_body_size (the same limit).
    status, body = _post_chunked(deployment.port, "/deploytest/limits/limits/size",
                                 b"x" * (limit + 1))
    assert (status, json.loads(body)) == (413, standard_envelope(413))


def test_setup_is_idempotent(deployment: Deployment) -> None:
    pid_file = deployment.prefix / "var/kernkoa_uwsgi.pid"
    before = pid_file.read_text()
    run_setup(*deployment.args)
    assert pid_file.read_text() == before, "uWSGI was restarted though nothing changed"
    status, _, body = deployment.request(HELLO)
    assert (status, body) == (200, b"hello world!!.")
    result = run_setup("--prefix", str(deployment.prefix), "--status")
    assert "kernkoa_uwsgi: running" in result.stdout
    assert "beat: running" in result.stdout


def _raw_request(path: str, *headers: str, method: str = "GET", host: str = "localhost") -> bytes:
    """A whole request as bytes, closed after its answer."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


#: Requests nginx answers itself, without uWSGI, and the status of its answer.
NGINX_ERRORS = {
    "static miss": (_raw_request("/images/missing.png"), 404),
    "static folder listing": (_raw_request("/images/quiet/"), 403),
    "static file POSTed": (_raw_request("/images/quiet.txt", "Content-Length: 0",
                                         method="POST"), 405),
    "failed precondition": (_raw_request(
        "/images/quiet.txt", "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT"), 412),
    "unsatisfiable range": (_raw_request("/images/quiet.txt", "Range: bytes=999999-"), 416),
    "body over the limit": (_raw_request(HELLO,
                                          f"Content-Length: {64 * 1024 * 1024}",
                                          method="POST"), 413),
    "URI too long": (_raw_request("/" + "a" * 9000), 414),
    "header too large": (_raw_request("/", "X-Filler: " + "a" * 9000), 431),
    "unreadable request line": (b"GARBAGE\r\n\r\n", 400),
    "malformed Host": (b"GET / HTTP/1.1\r\nHost: local host\r\n\r\n", 400),
    "unknown transfer coding": (_raw_request("/", "Transfer-Encoding: gzip",
                                              method="POST"), 501),
    "HTTP/2.0 on an HTTP/1 port": (b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n", 505),
}


@pytest.mark.parametrize("case", NGINX_ERRORS)
def test_nginx_errors_are_the_kernel_envelope(deployment: Deployment, case: str) -> None:
    (deployment.prefix / "images/quiet").mkdir(exist_ok=True)
    (deployment.prefix / "images/quiet.txt").write_text("quiet")
    data, expected = NGINX_ERRORS[case]
    status, headers, body = deployment.raw(data)
    assert status == expected, body
    # A 416 on a text file keeps the file's "; charset=utf-8".
    assert headers["Content-Type"].split(";")[0] == "application/json"
    assert json.loads(body) == standard_envelope(expected)
    assert headers["Server"] == "nginx"


def test_every_error_nginx_generates_is_configured(deployment: Deployment) -> None:
    # The ones a test cannot provoke in reasonable time (504, 408) or at all
    # (500, 503) too: the include is part of the configuration nginx runs.
    etc = deployment.prefix / "etc"
    dump = subprocess.run(["nginx", "-T", "-c", str(etc / "nginx.conf"), "-p",
                           str(deployment.prefix / "var/nginx")],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    for generated, sent in NGINX_STATUSES.items():
        assert f"error_page {generated} ={sent} {LOCATION.format(status=sent)};" in dump


def test_kernel_pages_are_off_but_health(deployment: Deployment) -> None:
    for page in ("info", "endpoints", "openapi.json", "docs"):
        status, body = deployment.json(f"/_kernkoa/{page}")
        assert (status, body["error"]["code"]) == (404, "not_found"), page
    status, body = deployment.json("/_kernkoa/health")
    assert (status, body["status"]) == (200, "ok")


def test_a_forged_host_is_refused(deployment: Deployment) -> None:
    for host in (SERVER_NAME, f"{SERVER_NAME}:{deployment.port}", f"localhost:{deployment.port}",
                 f"127.0.0.1:{deployment.port}"):
        assert deployment.request(HELLO, headers={"Host": host})[0] == 200, host
    for path, method in ((HELLO, "GET"), ("/deploytest/probe/probe/double_celery?n=1", "POST")):
        status, headers, body = deployment.request(path, method,
                                                   headers={"Host": "evil.example"})
        assert status == 400, body
        assert json.loads(body)["error"]["code"] == "bad_request"
        assert "Location" not in headers


def test_urls_the_kernel_builds_carry_the_port(deployment: Deployment) -> None:
    deployment.write_probe(5)
    trigger = "/deploytest/probe/probe/double_celery?n=1"
    urls = []
    for host in (f"127.0.0.1:{deployment.port}", f"{SERVER_NAME}:{deployment.port}",
                 f"LocalHost:{deployment.port}"):
        status, headers, body = deployment.request(trigger, "POST", headers={"Host": host})
        assert status == 202, body
        task = json.loads(body)
        assert task["status_url"] == headers["Location"] == (
            f"http://{host.lower()}/status/{task['id']}")
        urls.append(task["status_url"])
    # The one a client can resolve here reaches this server as it stands.
    with urllib.request.urlopen(urls[0], timeout=30) as followed:
        assert followed.status == 200


def test_a_host_header_port_is_not_glued_onto_another_host(deployment: Deployment) -> None:
    # An absolute request line names the host nginx serves; a Host header naming
    # another one lends it no port.
    request = _raw_request(f"http://{SERVER_NAME}:{deployment.port}/deploytest/probe/probe/"
                           "double_celery?n=1", "Content-Length: 0", method="POST",
                           host="localhost:1")
    status, headers, body = deployment.raw(request)
    assert status == 202, body
    assert headers["Location"].startswith(f"http://{SERVER_NAME}/status/")


def test_clients_are_kept_alive(deployment: Deployment) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", deployment.port, timeout=30)
    try:
        sockets = set()
        for _ in range(20):
            connection.request("GET", HELLO)
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"hello world!!.")
            sockets.add(id(connection.sock))
        assert len(sockets) == 1, "nginx closed the connection between requests"
    finally:
        connection.close()


def test_slow_clients_neither_starve_the_others_nor_stay(deployment: Deployment) -> None:
    slow: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", deployment.port),
                                            timeout=HEADER_TIMEOUT + 30)
            # Half a request: nginx waits for the rest of the header.
            sock.sendall(f"GET {HELLO} HTTP/1.1\r\nHost: localhost\r\n".encode())
            slow.append(sock)
        opened = time.monotonic()
        with SteadyLoad(deployment.port, HELLO, clients=32) as load:
            load.wait_for(answers=2000)
        assert load.failures == []
        for sock in slow:
            try:
                assert sock.recv(1) == b"", "a slow client was answered"
            except ConnectionResetError:
                pass  # reset_timedout_connection: the usual way it ends
        took = time.monotonic() - opened
        assert took < HEADER_TIMEOUT + 30, f"slow clients were held for {took:.0f} s"
    finally:
        for sock in slow:
            sock.close()


def test_a_runaway_request_is_stopped_near_harakiri_under_load(deployment: Deployment) -> None:
    deployment.write_probe(6)
    assert len(_pids_answering(deployment, 6)) == SIZES["processes"]
    log = deployment.prefix / "var/kernkoa_uwsgi.log"
    kills_before = log.read_text().count("HARAKIRI ON WORKER")
    with SteadyLoad(deployment.port, HELLO) as load:
        load.wait_for(answers=100)
        started = time.monotonic()
        status, headers, body = deployment.request("/deploytest/probe/probe/spin")
        took = time.monotonic() - started
        served = load.count()
        # Still served once the runaway's worker was replaced.
        load.wait_for(answers=served + 100)
    assert status in (502, 504), body
    assert json.loads(body) == standard_envelope(status)
    harakiri = SIZES["harakiri"]
    assert took < harakiri + 10, f"the runaway ran {took:.0f} s with harakiri {harakiri} s"
    assert log.read_text().count("HARAKIRI ON WORKER") == kills_before + 1
    assert load.failures == []
    gap = load.longest_gap()
    assert gap < GAP_LIMIT, f"nothing was answered for {gap:.1f} s"


def test_a_grown_worker_is_replaced_while_the_others_serve(deployment: Deployment) -> None:
    deployment.write_probe(7)
    assert len(_pids_answering(deployment, 7)) == SIZES["processes"]
    with SteadyLoad(deployment.port, HELLO) as load:
        load.wait_for(answers=100)
        status, _, body = deployment.request(
            f"/deploytest/probe/probe/grow?mib={SIZES['reload-on-rss'] + 64}")
        assert status == 200, body
        grown = json.loads(body)["pid"]
        # uWSGI replaces it after a request ending past the bound, once it is
        # 10 s old (its min-worker-lifetime).
        assert wait_until_gone([grown], timeout=60), "the grown worker was never replaced"
        served = load.count()
        load.wait_for(answers=served + 100)
    assert load.failures == []
    gap = load.longest_gap()
    assert gap < GAP_LIMIT, f"nothing was answered for {gap:.1f} s"
    deployment.wait_for_workers(SIZES["processes"])


def test_files_are_private(deployment: Deployment) -> None:
    deployment.write_probe(4)
    assert deployment.request("/deploytest/probe/probe/store")[2] == b"stored"
    var, etc = deployment.prefix / "var", deployment.prefix / "etc"
    made = {path.name for path in var.iterdir()}
    assert {"maindb.sqlite3", "nginx-access.log", "kernkoa_uwsgi.pid", "worker.pid",
            "beat.pid", "nginx.pid", "kernkoa_uwsgi.log", "worker.log", "beat.log",
            "secret_key"} <= made
    assert (var / "nginx-access.log").stat().st_size > 0
    assert stat.S_IMODE(var.stat().st_mode) == 0o750
    assert stat.S_IMODE((etc / "kernkoa.env").stat().st_mode) == 0o640
    for path in [*var.rglob("*"), *etc.rglob("*")]:
        mode = path.lstat().st_mode
        shown = f"{path.relative_to(deployment.prefix)} is {stat.filemode(mode)}"
        if stat.S_ISSOCK(mode):
            assert stat.S_IMODE(mode) == 0o660, shown
        elif var in path.parents:
            assert stat.S_IMODE(mode) & 0o077 == 0, shown
        else:
            assert stat.S_IMODE(mode) & 0o022 == 0, shown


def test_pages_option_keeps_paths_and_load_errors_private(deployment: Deployment) -> None:
    leaky = deployment.prefix / "catalog/controller/deploytest/leaky.py"
    leaky.write_text(LEAKY)
    try:
        run_setup(*deployment.args, "--pages")
        deployment.wait_for("/_kernkoa/info", 200)
        status, info = deployment.json("/_kernkoa/info")
        assert info["broker"] == info["result_backend"] == {"kind": "redis"}
        assert "catalog" not in info
        for page in ("info", "endpoints", "openapi.json", "docs", "endpoints/deploytest/leaky/A/b"):
            _, _, body = deployment.request(f"/_kernkoa/{page}")
            for secret in ("hunter2", "ConnectionError", str(deployment.prefix)):
                assert secret.encode() not in body, (page, secret)
        _, listing = deployment.json("/_kernkoa/endpoints")
        assert [b["file"] for b in listing["broken"]] == ["controller/deploytest/leaky.py"]
    finally:
        leaky.unlink()
        run_setup(*deployment.args)
    deployment.wait_for("/_kernkoa/info", 404)


def test_metrics_options_turn_on_the_endpoint_and_the_workers_port(
        deployment: Deployment) -> None:
    assert deployment.request("/_kernkoa/metrics")[0] == 404  # off by default
    worker_port = free_port()
    try:
        run_setup(*deployment.args, "--metrics", "--worker-metrics-port", str(worker_port))
        env = deployment.env()
        assert (env["KERNKOA_METRICS"], env["KERNKOA_WORKER_METRICS_PORT"]) == (
            "true", str(worker_port))
        deployment.wait_for("/_kernkoa/metrics", 200)
        assert deployment.request(HELLO)[0] == 200
        # The hello may have been answered by another uWSGI worker than the
        # scrape: its count is written by that worker's flush, late by at most
        # METRICS_FLUSH_SECONDS (docs/operations.md, Metrics).
        counted = f'route="{HELLO}",status="200"'.encode()
        deadline = time.monotonic() + 10
        while True:
            _, headers, body = deployment.request("/_kernkoa/metrics")
            if counted in body:
                break
            assert time.monotonic() < deadline, "the hello was never counted"
            time.sleep(0.1)
        assert headers["Content-Type"].startswith("text/plain; version=")
        assert b"kernkoa_broker_up 1.0" in body
        deployment.write_probe(1)
        route = "/deploytest/probe/probe/double_celery"
        assert _run_task(deployment, f"{route}?n=1")["status"] == "SUCCESS"
        # The worker was restarted with the new env file; it counted the task.
        finished = f'kernkoa_tasks_finished_total{{route="{route}",state="SUCCESS"}} 1.0'
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/",
                                            timeout=5) as worker:
                    if finished.encode() in worker.read():
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the worker never served its count"
            time.sleep(0.2)
    finally:
        run_setup(*deployment.args)
    deployment.wait_for("/_kernkoa/metrics", 404)
    assert deployment.env()["KERNKOA_METRICS"] == "false"


def test_serving_sizes_are_written_into_the_env_file(deployment: Deployment) -> None:
    env = deployment.env()
    assert {name: env[name] for name in DEFAULT_SIZES} == {
        f"KERNKOA_{name.upper().replace('-', '_')}": str(size) for name, size in SIZES.items()}
    assert len(deployment.uwsgi_workers()) == SIZES["processes"]
    site = (deployment.prefix / "etc/kernkoa_nginx.conf").read_text()
    assert f"uwsgi_read_timeout {SIZES['harakiri'] + 15}s;" in site


def test_serving_sizes_default_to_those_of_the_uwsgi_ini(deployment: Deployment) -> None:
    ini = (PROJECT_ROOT / "kernkoa_uwsgi.ini").read_text()
    ini_defaults = dict(re.findall(r"^if-not-env = (KERNKOA_\w+)\n[\w-]+ = (\d+)$", ini, re.M))
    assert ini_defaults == DEFAULT_SIZES
    unsized = deployment.args[:deployment.args.index("--processes")]
    try:
        # A size given by environment variable, the others left out.
        run_setup(*unsized, env={"KERNKOA_HARAKIRI": "30"})
        assert {name: deployment.env()[name] for name in DEFAULT_SIZES} == {
            **DEFAULT_SIZES, "KERNKOA_HARAKIRI": "30"}
        deployment.wait_for_workers(int(DEFAULT_SIZES["KERNKOA_PROCESSES"]))
    finally:
        run_setup(*deployment.args)
    deployment.wait_for_workers(SIZES["processes"])
    deployment.wait_for(HELLO, 200)


@pytest.mark.parametrize("option, value", [("--processes", "0"), ("--threads", "two"),
                                           ("--harakiri", ""), ("--harakiri", "08"),
                                           ("--reload-on-rss", "-1")])
def test_a_bad_size_is_refused(tmp_path: Path, option: str, value: str) -> None:
    result = subprocess.run(["bash", str(SETUP), "--prefix", str(tmp_path / "none"), option,
                             value], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{option} takes a whole number" in result.stderr
    assert not (tmp_path / "none").exists()


def test_a_prefix_too_long_for_the_socket_is_refused(tmp_path: Path) -> None:
    prefix = tmp_path / ("d" * 100)
    result = subprocess.run(["bash", str(SETUP), "--prefix", str(prefix), "--no-systemd"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "too long a path for uWSGI's socket" in result.stderr
    assert not prefix.exists()


@pytest.mark.parametrize("secret", ["short", "has a blank but is long enough to pass",
                                    "quote'd-" + "x" * 32, "dollar$" + "x" * 32, ""])
def test_a_bad_secret_key_is_refused(tmp_path: Path, secret: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(secret + "\n")
    for how, env in ((["--secret-file", str(key_file)], {}), ([], {"KERNKOA_SECRETKEY": secret})):
        result = subprocess.run(["bash", str(SETUP), "--prefix", str(tmp_path / "none"), *how],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, **env})
        assert result.returncode == 2, result.stderr
        assert "the secret key (KERNKOA_SECRETKEY or --secret-file) must be" in result.stderr
        assert not (tmp_path / "none").exists()


def test_an_unreadable_secret_file_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(SETUP), "--prefix", str(tmp_path / "none"),
                             "--secret-file", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--secret-file: cannot read" in result.stderr


def test_the_shared_secret_key_goes_into_the_env_file_and_signs_task_ids(
        deployment: Deployment, tmp_path: Path) -> None:
    from kernel.tasks.ids import verify_task_id

    shared = "node-key-" + "5f" * 20
    key_file = tmp_path / "key"
    key_file.write_text(shared + "\n")
    run_setup(*deployment.args, "--secret-file", str(key_file))
    assert deployment.env()["KERNKOA_SECRETKEY"] == shared
    # Run again without one: the key given before stays.
    run_setup(*deployment.args)
    assert deployment.env()["KERNKOA_SECRETKEY"] == shared
    other = "other-key-" + "7e" * 20
    run_setup(*deployment.args, env={"KERNKOA_SECRETKEY": other})
    assert deployment.env()["KERNKOA_SECRETKEY"] == other
    deployment.write_probe(1)
    deployment.wait_for(HELLO, 200)
    status, _, body = deployment.request("/deploytest/probe/probe/double_celery?n=1", "POST")
    assert status == 202, body
    task_id = json.loads(body)["id"]
    assert verify_task_id((other,), task_id, 0) is not None
    assert verify_task_id((shared,), task_id, 0) is None


def test_env_file_is_private(deployment: Deployment) -> None:
    env_file = deployment.prefix / "etc" / "kernkoa.env"
    assert "KERNKOA_BROKER_URL=redis://" in env_file.read_text()
    assert env_file.stat().st_mode & 0o777 == 0o640


def test_uninstall_refuses_a_folder_it_did_not_install(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    result = subprocess.run(["bash", str(SETUP), "--prefix", str(precious), "--no-systemd",
                             "--uninstall"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "not a KernKoa install" in result.stderr
    assert (precious / "data.txt").read_text() == "keep me"


def test_stop_leaves_no_process(deployment: Deployment) -> None:
    assert processes_under(deployment.prefix)
    run_setup("--prefix", str(deployment.prefix), "--stop")
    assert processes_under(deployment.prefix) == []
    result = run_setup("--prefix", str(deployment.prefix), "--status")
    assert "running" not in result.stdout


def test_uninstall_removes_the_install(deployment: Deployment) -> None:
    run_setup("--prefix", str(deployment.prefix), "--no-systemd", "--uninstall")
    assert not deployment.prefix.exists()
    assert processes_under(deployment.prefix) == []

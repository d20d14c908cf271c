"""Start and stop the real servers the benchmarks drive, all on 127.0.0.1.

Every process is started in its own session and stopped (SIGTERM, then
SIGKILL to the whole group) when its ``with`` block ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

#: The project root (the folder holding ``kernkoa.py``).
ROOT = Path(__file__).resolve().parent.parent

#: The virtualenv's binaries: the benchmarks run from it.
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, *processes: subprocess.Popen[bytes],
                  timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers 200; fail when one of ``processes`` (the server,
    and a proxy in front of it) dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode} "
                                   "before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.01)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")


def nginx_conf(folder: Path, name: str, http: str, connections: int = 1024) -> Path:
    """A private nginx main configuration, ``folder/<name>.conf``; its path.

    nginx runs as this user with one worker process; its pid file, error log
    and temporary folders are under ``folder`` (``<name>.pid``,
    ``<name>-error.log``, ``nginx/``), so it needs no root and touches nothing
    of the system's nginx. ``http`` is the inside of the ``http`` block.
    """
    (folder / "nginx").mkdir(parents=True, exist_ok=True)
    temp = "".join(f"    {kind}_temp_path {folder}/nginx/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = folder / f"{name}.conf"
    conf.write_text(f"""user {getpass.getuser()};
worker_processes 1;
pid {folder}/{name}.pid;
error_log {folder}/{name}-error.log;
events {{ worker_connections {connections}; }}
http {{
{temp}{http}}}
""")
    return conf


def start_nginx(conf: Path) -> subprocess.Popen[bytes]:
    """nginx in the foreground on ``conf`` (made by :func:`nginx_conf`), in its own session."""
    return subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(conf.parent / "nginx"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop a process started with ``start_new_session``, and everything it started."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    # Workers a killed master left behind share its process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)


def children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (uWSGI's workers, for its master)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(p) for p in text.split())
    return found


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid``, in seconds."""
    # /proc/PID/stat: the command (field 2) may hold spaces; it ends at the last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A running server: its base URL and its process."""

    def __init__(self, name: str, base: str, process: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.base = base
        self.process = process
        #: Seconds from spawning to the first 200 answer.
        self.startup = 0.0

    def worker_cpu_seconds(self) -> float:
        """CPU time (user + system) the worker processes have used so far."""
        return sum(cpu_seconds(pid) for pid in children(self.process.pid))

    def worker_pids(self) -> list[int]:
        """The worker processes' pids (the master's children)."""
        return children(self.process.pid)

    def worker_rss_kib(self) -> list[int]:
        """Resident memory of each worker process, in KiB (in :meth:`worker_pids`' order)."""
        return [rss_kib(pid) for pid in self.worker_pids()]


#: uWSGI options both sides get, so the comparison is of the Python code only.
#: They follow kernkoa_uwsgi.ini except the socket (HTTP on a free port), no
#: log files and no worker recycling (a recycle mid-run would measure a reload).
UWSGI_COMMON = [
    "--master", "--lazy-apps", "--need-app", "--die-on-term", "--disable-logging",
    "--buffer-size", "32768", "--listen", "128",
]


@contextlib.contextmanager
def uwsgi(name: str, module: str, ready_path: str, log_dir: Path, processes: int = 2,
          threads: int = 1, env: dict[str, str] | None = None,
          enable_threads: bool = False) -> t.Iterator[Server]:
    """Run uWSGI serving ``module:app`` over HTTP on a free loopback port
    (``enable_threads``: Python threads run beside one thread of requests, as
    ``kernkoa_uwsgi.ini`` has it)."""
    port = free_port()
    command = [
        str(BIN / "uwsgi"), "--http-socket", f"127.0.0.1:{port}", *UWSGI_COMMON,
        "--processes", str(processes), "--threads", str(threads),
        "--chdir", str(ROOT), "--pythonpath", str(ROOT), "--virtualenv", str(BIN.parent),
        "--module", module, "--callable", "app",
    ]
    if threads > 1 or enable_threads:
        command.append("--enable-threads")
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}-{port}.log", "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            server = Server(name, f"http://127.0.0.1:{port}", process)
            wait_for_http(server.base + ready_path, process)
            server.startup = time.monotonic() - started
            yield server
        finally:
            stop(process)


class RedisServer:
    """A throw-away ``redis-server`` on a free 127.0.0.1 port, in its own session.

    :param persistent: keep the data in an append-only file in ``folder``, as
        production runs it, so a restart (:meth:`stop`, then :meth:`start`)
        finds the queues, the unacknowledged messages and the results again.
    """

    def __init__(self, folder: Path, persistent: bool = False) -> None:
        self.folder = folder
        self.persistent = persistent
        # The port is kept across restarts: clients reconnect to the same URL.
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until it answers PING (loading its data first)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes" if self.persistent else "no", "--dir", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("redis-server exited before accepting connections")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise TimeoutError("redis-server did not answer PING")

    def stop(self) -> None:
        """Stop it (SIGTERM: a persistent one writes its data first)."""
        if self.process is not None:
            stop(self.process)
            self.process = None


@contextlib.contextmanager
def redis_server(log_dir: Path) -> t.Iterator[str]:
    """Run a throw-away ``redis-server`` on a free loopback port; yield its URL."""
    server = RedisServer(log_dir)
    server.start(timeout=20)
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def celery_worker(name: str, command: list[str], log_dir: Path,
                  env: dict[str, str] | None = None, timeout: float = 60.0) -> t.Iterator[None]:
    """Run a Celery worker command until the block ends; wait until it logs "ready"."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while b" ready." not in log_path.read_bytes():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited: {log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready: {log_path.read_text()[-2000:]}")
                time.sleep(0.05)
            yield
        finally:
            stop(process)

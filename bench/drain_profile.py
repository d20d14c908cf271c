"""What one worker does per task, KernKoa's against plain Celery's, with a solo pool.

Each side's queue is filled beforehand (triggers called in this process, no
server), then one worker with ``--pool=solo`` (the task runs in the worker's
own process) drains it, while ``MONITOR`` counts the Redis commands its
connections send::

    python -m bench.drain_profile                  # commands and CPU per task
    python -m bench.drain_profile --tasks 3000 --profile kk.prof   # and a cProfile
    python -m bench.drain_profile --tasks 200 --instructions       # callgrind, per task

The command counts are deterministic (they do not move with the machine's
load, apart from the idle polls of the fetch and the lease renewals, which
are timed); the CPU per task (``/proc``, from the first message taken to the
last acknowledged) is the worker's own but still grows with a busy machine.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

import redis

from kernel.tasks.leases import INFLIGHT_KEY

from .catalog import write_catalog
from .inprocess import environ
from .servers import BIN
from .servers import ROOT
from .servers import cpu_seconds
from .servers import redis_server
from .servers import stop
from .tasks_bench import TRIGGER

QUEUE = "celery"
SOLO = ["--pool=solo", "--without-mingle", "--without-gossip", "--without-heartbeat",
        "--loglevel=INFO"]
CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
_COLLECTED = re.compile(r"Collected : (\d++)")


class MonitorReader:
    """Reads what Redis's ``MONITOR`` shows, line by line, in a thread of its own;
    subclasses say what a line is for (:meth:`_line`)."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].split("/")[0].split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.sendall(b"MONITOR\r\n")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _line(self, line: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop reading."""
        self.sock.close()

    def _read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for line in lines:
                    self._line(line.decode(errors="replace"))


class Monitor(MonitorReader):
    """Counts, by name, the commands ``MONITOR`` shows from clients other than ``skip``."""

    def __init__(self, url: str, skip: t.Collection[str]) -> None:
        self.skip = set(skip)
        self.counts: collections.Counter[str] = collections.Counter()
        self.counting = False
        super().__init__(url)

    def _line(self, line: str) -> None:
        # +1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "abc..." ...
        if not self.counting or "[" not in line:
            return
        client = line.split("[", 1)[1].split("]", 1)[0].split(" ")[-1]
        if client in self.skip or client.startswith("lua"):
            return
        words = line.split("] ", 1)[1].split('" "')
        name = words[0].strip('"').upper()
        if name in ("EVALSHA", "EVAL") and len(words) > 1:
            name += " " + words[1].strip('"')[:8]
        self.counts[name] += 1


def _fill(work: Path, url: str, side: str, tasks: int) -> None:
    if side == "plain":
        os.environ["BENCH_REDIS_URL"] = url
        from . import plain_tasks
        for _ in range(tasks):
            plain_tasks.ping_task.apply_async()
        return
    from kernel import create_app
    app = create_app({"CATALOG": str(work / "catalog-1"), "VAR": str(work / "var"),
                      "BROKER_URL": url})
    env = dict(environ(TRIGGER, method="POST"), HTTP_ACCEPT="application/json")
    for _ in range(tasks):
        body = b"".join(app(dict(env, **{"wsgi.input": io.BytesIO(b"")}),
                            lambda status, headers, exc_info=None: None))
        json.loads(body)


def _held(client: t.Any) -> int:
    in_flight = sum(client.llen(key) for key in client.smembers(INFLIGHT_KEY))
    return int(client.llen(QUEUE) + client.hlen("unacked") + in_flight)


def drain(work: Path, url: str, side: str, tasks: int, profile: str | None,
          counting: bool = False) -> int | None:
    """Fill ``side``'s queue with ``tasks`` messages, drain it with a solo worker; print.
    ``counting``: under callgrind, and return the instructions of the worker's
    whole life (``tasks`` 0: started, then stopped once ready)."""
    if tasks:
        subprocess.run([sys.executable, "-m", "bench.drain_profile", "--fill", side,
                        str(tasks), str(work), url], cwd=ROOT, check=True)
    client = redis.Redis.from_url(url)
    queued = int(client.llen(QUEUE))
    local = client.connection_pool.get_connection()
    skip = {f"127.0.0.1:{local._sock.getsockname()[1]}"}  # the watch's own commands
    client.connection_pool.release(local)
    monitor = Monitor(url, skip)
    if side == "plain":
        env = {"BENCH_REDIS_URL": url}
        command = [str(BIN / "celery"), "-A", "bench.plain_tasks:celery", "worker", *SOLO]
    else:
        env = {"KERNKOA_CATALOG": str(work / "catalog-1"), "KERNKOA_VAR": str(work / "var"),
               "KERNKOA_BROKER_URL": url, "KERNKOA_RESULT_BACKEND": url}
        command = [str(BIN / "kernkoa"), "worker", *SOLO]
    command = [sys.executable, *command]
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", profile, *command[1:]]
    if counting:
        command = [*CALLGRIND, *command]
    log_path = work / f"{side}-worker-{os.getpid()}-{tasks}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    if not tasks:
        try:
            while b" ready." not in log_path.read_bytes():
                if process.poll() is not None:
                    raise RuntimeError(f"the worker exited: {log_path.read_text()[-2000:]}")
                time.sleep(0.05)
        finally:
            stop(process, grace=120.0)
            monitor.close()
        return _collected(log_path)
    try:
        while client.llen(QUEUE) == queued:
            if process.poll() is not None:
                raise RuntimeError("the worker exited before taking anything")
            time.sleep(0.001)
        monitor.counting = True
        started, cpu = time.monotonic(), cpu_seconds(process.pid)
        while _held(client):
            time.sleep(0.01)
        elapsed, cpu = time.monotonic() - started, cpu_seconds(process.pid) - cpu
        monitor.counting = False
    finally:
        stop(process, grace=120.0)
        monitor.close()
    if counting:
        return _collected(log_path)
    total = sum(monitor.counts.values())
    print(f"{side}: {queued} tasks, {queued / elapsed:,.0f} tasks/s, "
          f"{cpu * 1e6 / queued:,.0f} µs CPU per task, "
          f"{total / queued:.2f} Redis commands per task (the first message's included)")
    for name, count in monitor.counts.most_common():
        print(f"  {name:24} {count / queued:6.2f}")
    return None


def _collected(log: Path) -> int:
    found = _COLLECTED.search(log.read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"no callgrind count: {log.read_text()[-2000:]}")
    return int(found.group(1))


#: Tasks both counted workers drain first (the first task's imports and caches).
WARMUP = 20


def instructions(work: Path, url: str, side: str, tasks: int) -> None:
    """Print the instructions per task of ``side``'s worker: a worker draining
    ``WARMUP + tasks`` less one draining ``WARMUP``, under callgrind."""
    full = drain(work, url, side, WARMUP + tasks, None, counting=True)
    warm = drain(work, url, side, WARMUP, None, counting=True)
    assert full is not None and warm is not None
    print(f"{side}: {(full - warm) / tasks:,.0f} instructions per task "
          f"({WARMUP} + {tasks} tasks: {full:,}; {WARMUP}: {warm:,})")


def main(argv: list[str] | None = None) -> int:
    """Run the comparison (see the module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--side", choices=("kernkoa", "plain", "both"), default="both")
    parser.add_argument("--profile", help="cProfile output file prefix (one per side)")
    parser.add_argument("--instructions", action="store_true",
                        help="callgrind's instructions per task instead (slow: use ~100 tasks)")
    parser.add_argument("--prefork", type=int, default=0,
                        help="a prefork pool of this many processes instead of solo")
    parser.add_argument("--fill", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prefork:
        SOLO[0] = "--pool=prefork"
        SOLO.append(f"--concurrency={args.prefork}")
    if args.fill:
        side, tasks, work, url = args.fill
        _fill(Path(work), url, side, int(tasks))
        return 0
    work = ROOT / "var" / "bench" / "drain-profile"
    write_catalog(work / "catalog-1", 1)
    with redis_server(work / "logs") as url:
        for number, side in enumerate(("kernkoa", "plain")):
            if args.side in (side, "both") and args.instructions:
                instructions(work, url[:-1] + str(number), side, args.tasks)
            elif args.side in (side, "both"):
                drain(work, url[:-1] + str(number), side, args.tasks,
                      f"{args.profile}.{side}" if args.profile else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

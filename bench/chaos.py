"""The fault suite: tasks under load while Redis restarts and workers die or freeze.

    python -m bench.chaos                      # every fault, 30 s of load each
    python -m bench.chaos --only worker-kill --duration 60 --rate 8
    python -m bench.chaos --smoke              # one tiny run (what ``make test`` runs)

Each fault gets a fresh production-shaped stack on 127.0.0.1: a persistent
``redis-server`` (append-only file, as production runs it), uWSGI serving
``kernkoa.app``, and ``--workers`` ``kernkoa worker`` processes, each kept
running by :class:`kernel.cli.supervisor.WorkerSupervisor` (as uWSGI's master or
systemd keeps them). A client triggers ``--rate`` tasks a second for
``--duration`` seconds; a third of the way in the fault is injected once:

- ``redis-restart``: Redis stopped (SIGTERM) and started again on its data;
- ``redis-outage``: the same, Redis staying away for ``OUTAGE`` seconds;
- ``worker-kill``: SIGKILL of one worker's main process (its pool dies with it);
- ``pool-kill``: SIGKILL of every pool process of one worker;
- ``worker-freeze``: SIGSTOP of one worker's processes for two leases, then SIGCONT.

Every task notes its start and end in a shared file. The table counts the
tasks accepted (202), refused (503, while Redis is away), finished, failed,
lost (accepted, never finished nor failed once the drain is over: the target
is 0), and run to the end more than once (duplicates: delivery is at least
once, so a frozen worker that wakes up finishes what was requeued meanwhile),
and the recovery: seconds from the fault until the result of the last task
in flight at that moment was stored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import typing as t
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis

from kernel.cli.supervisor import WorkerSupervisor

from .servers import BIN
from .servers import ROOT
from .servers import RedisServer
from .servers import children
from .servers import stop
from .servers import uwsgi

#: The controller the load triggers.
CHAOS_CONTROLLER = '''
import os
import time

from kernkoa import *


def _note(path, text):
    with open(path, "a") as handle:
        handle.write(text + "\\n")


class chaos:
    def hello(self):
        return "ok"

    def work_celery(self, task, notes: str, seconds: float = 0.4):
        """Works ``seconds`` while reporting progress; notes its start and end."""
        _note(notes, "start %s %d %f" % (task.request.id, os.getpid(), time.time()))
        end = time.monotonic() + seconds
        step = 0
        while time.monotonic() < end:
            step += 1
            task.progress(step)
            time.sleep(0.05)
        _note(notes, "end %s %d %f" % (task.request.id, os.getpid(), time.time()))
        return step
'''

#: The faults, in the order they run.
FAULTS = ("redis-restart", "redis-outage", "worker-kill", "pool-kill", "worker-freeze")

#: Seconds Redis stays away in ``redis-outage``.
OUTAGE = 3.0


@dataclass(frozen=True)
class ChaosConfig:
    """The size of one run."""

    rate: float = 5.0
    duration: float = 30.0
    workers: int = 2
    concurrency: int = 2
    task_seconds: float = 0.4
    heartbeat: float = 2.0
    lease: float = 6.0
    work: Path = ROOT / "var" / "chaos"

    @classmethod
    def smoke(cls, work: Path) -> ChaosConfig:
        """A tiny run, so the script cannot rot."""
        return cls(rate=3.0, duration=6.0, workers=2, concurrency=1, task_seconds=0.3,
                   heartbeat=0.3, lease=1.5, work=work)


@dataclass
class Outcome:
    """What one fault did."""

    fault: str
    accepted: int
    refused: int
    finished: int
    failed: int
    lost: int
    duplicates: int
    recovery: float | None


class Workers:
    """``count`` supervised ``kernkoa worker`` processes."""

    def __init__(self, count: int, env: dict[str, str], logs: Path, concurrency: int) -> None:
        self.supervisors = []
        for index in range(count):
            log = logs / f"worker-{index}.log"

            def start(log: Path = log) -> subprocess.Popen[bytes]:
                with open(log, "ab") as handle:
                    return subprocess.Popen(
                        [str(BIN / "kernkoa"), "worker", f"--concurrency={concurrency}"],
                        cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                        start_new_session=True)

            self.supervisors.append(WorkerSupervisor(start, stop, restart_delay=0.5))
        self.logs = [logs / f"worker-{index}.log" for index in range(count)]

    def start(self, timeout: float = 60) -> None:
        """Start them and wait until each logs that it is ready."""
        for supervisor in self.supervisors:
            supervisor.start()
        deadline = time.monotonic() + timeout
        while not all(log.exists() and b" ready." in log.read_bytes() for log in self.logs):
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not get ready")
            time.sleep(0.05)

    def main_pid(self, index: int) -> int:
        """The pid of worker ``index``'s main process."""
        process = self.supervisors[index].process
        assert process is not None
        return process.pid

    def stop(self) -> None:
        """Stop them all."""
        for supervisor in self.supervisors:
            supervisor.stop()


class Load:
    """Triggers tasks at a steady rate from a few client threads."""

    def __init__(self, base: str, notes: Path, config: ChaosConfig) -> None:
        self.base = base
        self.notes = notes
        self.config = config
        self.accepted: list[str] = []
        self.refused = 0
        self._lock = threading.Lock()

    def _trigger(self) -> None:
        data = json.dumps({"notes": str(self.notes),
                           "seconds": self.config.task_seconds}).encode()
        request = urllib.request.Request(self.base + "/chaos/chaos/work_celery", data=data,
                                         method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                task_id = json.loads(response.read())["id"]
            with self._lock:
                self.accepted.append(task_id)
        except (urllib.error.URLError, OSError):
            with self._lock:
                self.refused += 1

    def run(self, on_fault: t.Callable[[], None], fault_at: float) -> None:
        """Trigger for ``duration`` seconds; call ``on_fault`` once at ``fault_at``."""
        started = time.monotonic()
        interval = 1.0 / self.config.rate
        fault = threading.Timer(fault_at, on_fault)
        fault.start()
        threads: list[threading.Thread] = []
        sent = 0
        while time.monotonic() - started < self.config.duration:
            thread = threading.Thread(target=self._trigger)
            thread.start()
            threads.append(thread)
            sent += 1
            time.sleep(max(0.0, started + sent * interval - time.monotonic()))
        for thread in threads:
            thread.join(30)
        fault.join(120)


def _notes(path: Path) -> list[tuple[str, str, float]]:
    """(kind, task id, wall time) of every note."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        kind, task_id, _pid, when = line.split()
        found.append((kind, task_id, float(when)))
    return found


def _states(redis_url: str, ids: list[str]) -> dict[str, tuple[str, float | None]]:
    """The stored status of each task id, and when it was stored (wall time)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        metas = client.mget([f"celery-task-meta-{task_id}" for task_id in ids]) if ids else []
    finally:
        client.close()
    found: dict[str, tuple[str, float | None]] = {}
    for task_id, raw in zip(ids, metas, strict=True):
        meta = json.loads(raw) if raw else {"status": "PENDING"}
        done = meta.get("date_done")
        found[task_id] = (meta["status"],
                          datetime.fromisoformat(done).timestamp() if done else None)
    return found


def _inject(fault: str, server: RedisServer, workers: Workers, config: ChaosConfig) -> None:
    if fault in ("redis-restart", "redis-outage"):
        server.stop()
        if fault == "redis-outage":
            time.sleep(OUTAGE)
        server.start()
    elif fault == "worker-kill":
        os.kill(workers.main_pid(0), signal.SIGKILL)
    elif fault == "pool-kill":
        for pid in children(workers.main_pid(0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    elif fault == "worker-freeze":
        group = workers.main_pid(0)
        os.killpg(group, signal.SIGSTOP)
        time.sleep(2 * config.lease)
        os.killpg(group, signal.SIGCONT)
    else:
        raise ValueError(f"unknown fault {fault}")


def run_fault(fault: str, config: ChaosConfig) -> Outcome:
    """One fresh stack, one load, one fault: what became of the tasks."""
    work = config.work / fault
    shutil.rmtree(work, ignore_errors=True)
    controllers = work / "catalog" / "controller"
    controllers.mkdir(parents=True)
    (controllers / "chaos.py").write_text(textwrap.dedent(CHAOS_CONTROLLER))
    notes = work / "notes.txt"
    store = RedisServer(work / "redis", persistent=True)
    store.start()
    settings = {"KERNKOA_CATALOG": str(work / "catalog"), "KERNKOA_VAR": str(work / "var"),
                "KERNKOA_BROKER_URL": store.url, "KERNKOA_RESULT_BACKEND": store.url,
                "KERNKOA_WORKER_HEARTBEAT": str(config.heartbeat),
                "KERNKOA_WORKER_LEASE": str(config.lease)}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KERNKOA_")}, **settings}
    workers = Workers(config.workers, env, work, config.concurrency)
    fault_time: list[float] = []
    try:
        workers.start()
        with uwsgi("chaos", "kernkoa", "/chaos/chaos/hello", work, env=settings) as server:
            load = Load(server.base, notes, config)

            def inject() -> None:
                fault_time.append(time.time())
                _inject(fault, store, workers, config)

            load.run(inject, config.duration / 3)
            drain = time.monotonic() + config.lease + 4 * config.heartbeat + 60
            states: dict[str, tuple[str, float | None]] = {}
            while time.monotonic() < drain:
                with contextlib.suppress(OSError):
                    states = _states(store.url, load.accepted)
                if all(state in ("SUCCESS", "FAILURE") for state, _ in states.values()):
                    break
                time.sleep(0.5)
    finally:
        workers.stop()
        store.stop()
    return _outcome(fault, load, states, _notes(notes), fault_time[0] if fault_time else None)


def _outcome(fault: str, load: Load, states: dict[str, tuple[str, float | None]],
             notes: list[tuple[str, str, float]], fault_time: float | None) -> Outcome:
    ends = Counter(task_id for kind, task_id, _ in notes if kind == "end")
    recovery = None
    if fault_time is not None:
        started = {i for kind, i, when in notes if kind == "start" and when < fault_time}
        ended = {i for kind, i, when in notes if kind == "end" and when < fault_time}
        # When the result of each task running at the fault was stored.
        stored = [states.get(i, ("PENDING", None))[1] for i in started - ended]
        if stored and None not in stored:
            recovery = round(max(t.cast(list[float], stored)) - fault_time, 1)
    finished = sum(1 for state, _ in states.values() if state == "SUCCESS")
    failed = sum(1 for state, _ in states.values() if state == "FAILURE")
    return Outcome(fault=fault, accepted=len(load.accepted), refused=load.refused,
                   finished=finished, failed=failed,
                   lost=len(load.accepted) - finished - failed,
                   duplicates=sum(1 for count in ends.values() if count > 1),
                   recovery=recovery)


def table(outcomes: list[Outcome], config: ChaosConfig) -> str:
    """The results as a Markdown table."""
    load = (f"{config.rate:g}/s for {config.duration:g} s, {config.workers} workers x "
            f"{config.concurrency}, tasks of {config.task_seconds:g} s")
    lines = [f"load: {load}; WORKER_HEARTBEAT {config.heartbeat:g} s, "
             f"WORKER_LEASE {config.lease:g} s; one fault each", "",
             "| fault | accepted | refused (503) | finished | failed | lost | duplicates "
             "| recovery (s) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        recovery = "-" if o.recovery is None else f"{o.recovery:g}"
        lines.append(f"| {o.fault} | {o.accepted} | {o.refused} | {o.finished} | {o.failed} "
                     f"| {o.lost} | {o.duplicates} | {recovery} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the fault suite and print its table; exit 1 if a task was lost."""
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one tiny run of worker-kill")
    parser.add_argument("--only", action="append", choices=FAULTS, help="repeatable")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="triggers a second")
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--task-seconds", type=float, default=defaults.task_seconds)
    parser.add_argument("--heartbeat", type=float, default=defaults.heartbeat)
    parser.add_argument("--lease", type=float, default=defaults.lease)
    parser.add_argument("--work", type=Path, default=defaults.work)
    args = parser.parse_args(argv)
    if args.smoke:
        config = ChaosConfig.smoke(args.work)
        faults = args.only or ["worker-kill"]
    else:
        config = ChaosConfig(rate=args.rate, duration=args.duration, workers=args.workers,
                             concurrency=args.concurrency, task_seconds=args.task_seconds,
                             heartbeat=args.heartbeat, lease=args.lease, work=args.work)
        faults = args.only or list(FAULTS)
    outcomes = []
    for fault in faults:
        print(f"fault {fault}...", file=sys.stderr, flush=True)
        outcomes.append(run_fault(fault, config))
    print(table(outcomes, config))
    return 1 if any(o.lost for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())

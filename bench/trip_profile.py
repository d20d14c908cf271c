"""Where a task round trip's time goes, KernKoa's ``Prefer: wait`` trip against
raw ``apply_async().get()``, read off Redis's own clock.

Part 4 measures the two trips end to end; this splits them. One Redis serves
both sides (KernKoa on database 0, plain Celery on 1), each with one worker of
one process as in part 4, and ``MONITOR`` stamps every command Redis runs with
the time it ran. Trips of the two sides alternate one at a time, so each trip's
commands are told apart by their database, and the client's own clock (the
same wall clock) stamps its start and its end::

    python -m bench.trip_profile                 # 300 trips a side: medians per stage
    python -m bench.trip_profile --trips 50 --show 1   # and one trip's commands

The stages, the same on both sides: the client until the message is pushed
(KernKoa: the HTTP request and the trigger; raw: ``apply_async``'s own work),
the push until the worker records the message as unacknowledged (its wake, its
fetch and the delivery), that until the result is stored (the hand-off to the
pool process and the task's whole run there), and the result until the client
has it (the announcement, and KernKoa's HTTP answer). ``MONITOR`` slows Redis
a little for both sides alike; the stages' sum stays near the end-to-end trip.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
import typing as t

from .catalog import module_path
from .catalog import write_catalog
from .drain_profile import MonitorReader
from .servers import BIN
from .servers import ROOT
from .servers import celery_worker
from .servers import redis_server
from .servers import uwsgi
from .tasks_bench import TRIP_TIMEOUT
from .tasks_bench import WORKER_FLAGS
from .tasks_bench import kernkoa_trip

#: The stages of a trip, in order, each ending at the milestone named.
STAGES = ("client → message pushed", "pushed → taken (unacked record)",
          "taken → result stored", "result stored → client has it")


class Command(t.NamedTuple):
    """One command as ``MONITOR`` showed it."""

    at: float
    database: int
    client: str
    words: tuple[str, ...]


class Recorder(MonitorReader):
    """Keeps every command ``MONITOR`` shows, with Redis's timestamp."""

    def __init__(self, url: str) -> None:
        self.commands: list[Command] = []
        self.lock = threading.Lock()
        super().__init__(url)

    def _line(self, line: str) -> None:
        # +1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "abc..." ...
        if "[" not in line:
            return
        stamp, rest = line[1:].split(" [", 1)
        where, words = rest.split("] ", 1)
        database, client = where.split(" ", 1)
        command = Command(float(stamp), int(database), client,
                          tuple(word.strip('"') for word in words.split('" "')))
        with self.lock:
            self.commands.append(command)

    def between(self, database: int, start: float, end: float) -> list[Command]:
        """The commands run on ``database`` from ``start`` to ``end`` (wall clock)."""
        with self.lock:
            return [c for c in self.commands
                    if c.database == database and start <= c.at <= end]


def _first(commands: list[Command], test: t.Callable[[Command], bool],
           after: float = 0.0) -> float | None:
    return next((c.at for c in commands if c.at >= after and test(c)), None)


def _is(*names: str) -> t.Callable[[Command], bool]:
    return lambda command: command.words[0].upper() in names and command.client != "lua"


def stages(commands: list[Command], start: float, end: float) -> list[float] | None:
    """A trip's four stage times in ms (see :data:`STAGES`), or None when a
    milestone is missing (a command ``MONITOR`` did not show in time)."""
    pushed = _first(commands, _is("LPUSH"))
    if pushed is None:
        return None
    # kombu records a taken message as unacknowledged with MULTI, ZADD, HSET.
    taken = _first(commands, _is("ZADD"), pushed)
    if taken is None:
        return None
    # The result's announcement: a PUBLISH on the task's result channel (KernKoa
    # publishes from its result script, Celery from its own pipeline).
    stored = _first(commands, lambda c: c.words[0].upper() == "PUBLISH"
                    and c.words[1].startswith("celery-task-meta-"), taken)
    if stored is None:
        return None
    marks = [start, pushed, taken, stored, end]
    return [(b - a) * 1000 for a, b in zip(marks, marks[1:], strict=False)]


def show(commands: list[Command], start: float) -> None:
    """Print one trip's commands, ms from its start."""
    for command in commands:
        text = " ".join(word[:40] for word in command.words[:4])
        print(f"  {(command.at - start) * 1000:8.3f} ms  {command.client:>21}  {text}")


def main(argv: list[str] | None = None) -> int:
    """Run the trips; print the medians per stage of both sides."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trips", type=int, default=300)
    parser.add_argument("--show", type=int, default=0, help="print the commands of N trips")
    args = parser.parse_args(argv)
    work = ROOT / "var" / "bench" / "trip-profile"
    catalog = write_catalog(work / "catalog-1", 1)
    logs = work / "logs"
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server(logs))
        kk_url, plain_url = url[:-1] + "0", url[:-1] + "1"
        kk_env = {"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": str(work / "var"),
                  "KERNKOA_BROKER_URL": kk_url}
        kk = stack.enter_context(uwsgi("kernkoa-trips", "kernkoa",
                                       f"{module_path(0)}/Bench/hello", logs, 1, env=kk_env))
        stack.enter_context(celery_worker(
            "kernkoa-worker", [str(BIN / "kernkoa"), "worker", *WORKER_FLAGS], logs,
            env=kk_env))
        stack.enter_context(celery_worker(
            "plain-worker", [str(BIN / "celery"), "-A", "bench.plain_tasks:celery", "worker",
                             *WORKER_FLAGS], logs, env={"BENCH_REDIS_URL": plain_url}))
        from .plain_tasks import make_celery
        client = make_celery(plain_url)
        stack.callback(client.close)
        ping = client.tasks["bench.ping"]

        def raw_trip() -> None:
            ping.apply_async().get(timeout=TRIP_TIMEOUT)

        def ours() -> None:
            kernkoa_trip(kk.base, "Prefer: wait")

        for _ in range(20):  # warm-up: connections, pools, first loads
            ours()
            raw_trip()
        recorder = Recorder(url)
        stack.callback(recorder.close)
        time.sleep(0.2)
        sides = {"kernkoa": (0, ours), "raw celery": (1, raw_trip)}
        trips: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        for _ in range(args.trips):
            for side, (_, trip) in sides.items():
                started = time.time()
                trip()
                trips[side].append((started, time.time()))
                time.sleep(0.002)  # the worker back in its wait, as in part 4
        time.sleep(0.5)  # the last commands read
        for side, (database, _) in sides.items():
            timed = [(start, end, recorder.between(database, start, end))
                     for start, end in trips[side]]
            split = [s for start, end, commands in timed
                     if (s := stages(commands, start, end)) is not None]
            total = statistics.median((end - start) * 1000 for start, end, _ in timed)
            print(f"{side}: {len(split)} of {len(timed)} trips split; "
                  f"median trip {total:.3f} ms")
            for name, values in zip(STAGES, zip(*split, strict=True), strict=bool(split)):
                print(f"  {name:34} {statistics.median(values):7.3f} ms")
            for start, _, commands in timed[len(timed) // 2:][:args.show]:
                show(commands, start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Requests noted in memory and written in batches (:mod:`kernel.core.metrics_batch`):
the files get every request exactly once, within the interval for an idle process, at
exit for one that stops, and never twice across a fork.

Each case runs in a process of its own (the library's mode and folder are fixed
per process), and the counts are read from the files as a scrape reads them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

from kernel.core.settings import PROJECT_ROOT

#: Notes requests in a tally of its own; ``argv``: folder, interval, then a scenario.
PROGRAM = """
import os, sys, time
from pathlib import Path
from kernel.core.metrics import enable
from kernel.core.metrics_batch import STARTED

folder, interval, scenario = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
metrics = enable(folder)
tally = metrics.request_tally(interval)

def answer(seconds=0.001, route="/a/B/c", status="200 OK"):
    tally.note(STARTED)  # as the web middleware does
    if not tally.flushing:
        tally.start_flushing()
    tally.note((route, "GET", status, seconds))

if scenario == "timings":
    for seconds in (0.001, 0.005, 0.02, 0.3, 0.3, 3.0, 100.0):
        answer(seconds)
    answer(route="/x/Y/z", status="404 NOT FOUND")
    tally.note(STARTED)  # still running
    tally.flush()
    sys.stdout.write("flushed\\n"); sys.stdout.flush()
    time.sleep(600)
elif scenario == "threads":
    import threading
    sys.setswitchinterval(1e-6)  # threads switch between any two steps of a flush
    # Eight threads answer at once while the tally flushes every millisecond and
    # the main thread flushes too: every append lands in exactly one flush.
    def serve():
        for _ in range(2000):
            answer()
    tally.note(STARTED)  # one request held in flight throughout
    workers = [threading.Thread(target=serve) for _ in range(8)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        tally.flush()
    for worker in workers:
        worker.join()
    tally.flush()
    sys.stdout.write("flushed\\n"); sys.stdout.flush()
    time.sleep(600)
elif scenario == "idle":
    for _ in range(5):
        answer()
    sys.stdout.write("noted\\n"); sys.stdout.flush()
    time.sleep(600)  # nothing more happens here: the thread must write them
elif scenario == "exit":
    for _ in range(7):
        answer()
    sys.exit(0)  # well before the interval: only the exit writes them
elif scenario == "fork":
    for _ in range(3):
        answer()  # not written yet when the fork comes
    child = os.fork()
    if child == 0:
        for _ in range(2):
            answer()
        time.sleep(20 * interval)  # room for a loaded machine
        os._exit(0)  # no exit hook: only the child's own thread wrote its two
    os.waitpid(child, 0)
    answer()
    sys.exit(0)
"""


def run(folder: Path, interval: float, scenario: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", PROGRAM, str(folder), str(interval), scenario],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items()
                                 if k != "PROMETHEUS_MULTIPROC_DIR"})


def read(folder: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the folder's files, summed over processes, as a scrape sees them."""
    from prometheus_client.multiprocess import MultiProcessCollector

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in MultiProcessCollector(None, str(folder)).collect()
            for sample in family.samples}


def requests(folder: Path, route: str = "/a/B/c", status: str = "200") -> float:
    key = ("kernkoa_http_requests_total",
           (("method", "GET"), ("route", route), ("status", status)))
    return read(folder).get(key, 0.0)


def wait_for(check: t.Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)



def flushed(tmp_path: Path, interval: float,
            scenario: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Run ``scenario`` until it says it flushed; the values written then."""
    process = run(tmp_path, interval, scenario)
    try:
        assert process.stdout is not None and process.stdout.readline() == "flushed\n"
        return read(tmp_path)
    finally:
        stop(process)

def test_a_batch_writes_what_one_write_per_request_would(tmp_path: Path) -> None:
    found = flushed(tmp_path, 3600, "timings")
    route = (("route", "/a/B/c"),)
    assert requests(tmp_path) == 7
    assert requests(tmp_path, "/x/Y/z", "404") == 1
    assert found["kernkoa_http_request_duration_seconds_count", route] == 7
    assert abs(found["kernkoa_http_request_duration_seconds_sum", route] - 103.626) < 1e-9
    # Cumulative, as observe() leaves them: a value on a bound is in that bucket.
    expected = {"0.005": 2, "0.01": 2, "0.025": 3, "0.25": 3, "0.5": 5, "2.5": 5, "5.0": 6,
                "10.0": 6, "+Inf": 7}
    for le, count in expected.items():
        key = ("kernkoa_http_request_duration_seconds_bucket", (("le", le), *route))
        assert found[key] == count, le
    assert found["kernkoa_http_requests_in_flight", ()] == 1


def test_requests_noted_from_many_threads_during_flushes_are_all_written(
        tmp_path: Path) -> None:
    found = flushed(tmp_path, 0.001, "threads")
    assert requests(tmp_path) == 8 * 2000
    assert found["kernkoa_http_request_duration_seconds_count", (("route", "/a/B/c"),)] == 16000
    # Every thread's requests started and ended: only the held one is in flight.
    assert found["kernkoa_http_requests_in_flight", ()] == 1


def test_an_idle_process_writes_its_counts_within_the_interval(tmp_path: Path) -> None:
    process = run(tmp_path, 0.2, "idle")
    try:
        assert process.stdout is not None and process.stdout.readline() == "noted\n"
        # Bounded on a loaded machine by the timeout, not by a timing assert.
        assert wait_for(lambda: requests(tmp_path) == 5), read(tmp_path)
    finally:
        stop(process)
    assert requests(tmp_path) == 5  # killed outright afterwards: nothing lost, none twice


def test_a_process_that_exits_writes_what_it_noted(tmp_path: Path) -> None:
    process = run(tmp_path, 3600, "exit")
    process.communicate(timeout=60)
    assert process.returncode == 0
    assert requests(tmp_path) == 7


def test_a_forked_child_writes_its_own_requests_not_its_parents(tmp_path: Path) -> None:
    process = run(tmp_path, 0.3, "fork")
    process.communicate(timeout=60)
    assert process.returncode == 0
    # Parent 3 + 1, child 2: the child's copy of the parent's 3 is not written again,
    # and the child's thread (its own, started on its first request) wrote its 2.
    assert requests(tmp_path) == 6
    assert len(list(tmp_path.glob("counter_*.db"))) == 2

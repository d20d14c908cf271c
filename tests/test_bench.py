"""The benchmark scripts run end to end at a tiny size, so they cannot rot.

Timings are never asserted: only that every section ran, measured both sides
and left no process behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.body_shapes import HOSTILE
from kernel.core.settings import PROJECT_ROOT
from tests.support.processes import clean_environ

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("nginx") is None,
                                reason="wrk or nginx is not installed (make test installs them)")


def _command_lines() -> dict[int, bytes]:
    """The command line of every running process, by pid (NUL-separated, as /proc has it)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                continue
    return found


def _bench_processes() -> set[int]:
    """uWSGI servers and Celery workers started the way the benchmarks start them."""
    found = set()
    for pid, cmdline in _command_lines().items():
        if str(PROJECT_ROOT).encode() not in cmdline:
            continue  # another checkout's processes
        if (b"uwsgi" in cmdline and b"--http-socket" in cmdline) or (
                b"bench.plain_tasks" in cmdline or b"--without-heartbeat" in cmdline):
            found.add(pid)
    return found


def _processes_under(folder: Path) -> list[str]:
    """Command lines of running processes that mention ``folder`` (part 7's install)."""
    return [cmdline.replace(b"\0", b" ").decode() for cmdline in _command_lines().values()
            if str(folder).encode() in cmdline]


@pytest.mark.uwsgi
@pytest.mark.nginx
@pytest.mark.redis
def test_every_benchmark_runs_once_at_a_tiny_size(tmp_path: Path) -> None:
    before = _bench_processes()
    out = tmp_path / "results.json"
    env = clean_environ()
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--work", str(tmp_path / "work"),
         "--json", str(out)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())["results"]
    cases = {r["case"] for r in results}
    for expected in ("1. GET, no params", "1. GET, 3 query params", "1. POST, JSON body",
                     "1. GET, no params, instructions per request",
                     "5. RSS per worker", "5. start-up to first 200",
                     "3. trigger vs apply_async route", "3. /status vs AsyncResult.state",
                     "7. p99 vs p50, steady load through nginx",
                     "7. slowest second vs median second",
                     "13. GET, METRICS on vs off", "13. GET, METRICS off vs off",
                     "13. GET, METRICS on vs off, worker CPU per request",
                     "13. GET in one process, METRICS on vs off",
                     "10. soak, RSS of the most grown worker",
                     "10. soak, RSS of that worker, end vs halfway",
                     "10. soak, requests answered without error",
                     *(f"4. task round trip, {where}, {client}"
                       for where in ("Redis", "embedded")
                       for client in ("polling", "?wait=", "Prefer: wait"))):
        assert expected in cases
    assert sum(c.startswith("2. ") for c in cases) == 3
    assert sum(c.endswith(", worker CPU per request") for c in cases) == 7
    assert sum(c.startswith("9. ") for c in cases) == 6
    # Part 6: every hostile body shape at both sizes, the worst one named at each.
    part6 = [c for c in cases if c.startswith("6. ")]
    assert len(part6) == 2 * len(HOSTILE)
    assert sum(c.endswith("(worst found)") for c in part6) == 2
    for result in results:
        assert result["ratios"], result["case"]
        assert all(value > 0 for side in result["samples"].values() for value in side)
    assert _bench_processes() <= before
    assert _processes_under(tmp_path / "work") == []


@pytest.mark.uwsgi
@pytest.mark.redis
def test_the_fault_suite_runs_once_at_a_tiny_size(tmp_path: Path) -> None:
    work = tmp_path / "chaos"
    env = clean_environ()
    done = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--smoke", "--work", str(work)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| worker-kill"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    accepted, lost = int(cells[1]), int(cells[5])
    assert accepted > 0 and lost == 0
    assert _processes_under(work) == []


@pytest.mark.uwsgi
@pytest.mark.redis
def test_the_round_trip_profile_splits_both_sides_trips() -> None:
    before = _bench_processes()
    done = subprocess.run(
        [sys.executable, "-m", "bench.trip_profile", "--trips", "3", "--show", "1"],
        cwd=PROJECT_ROOT, env=clean_environ(), capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for side in ("kernkoa", "raw celery"):
        assert f"{side}: " in done.stdout and "of 3 trips split" in done.stdout
    # Each side's stages, and the commands of one trip (a push among them).
    assert done.stdout.count("client → message pushed") == 2
    assert " LPUSH celery " in done.stdout
    assert _bench_processes() <= before

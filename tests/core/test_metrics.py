"""The metric files' folder: emptied once per start of a server, never by one of its
forked processes; the live gauges of dead processes dropped; and the mode check."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

from kernel.core.metrics import empty_on_new_start
from kernel.core.metrics import mark_dead_processes
from kernel.core.metrics import method_label
from kernel.core.settings import PROJECT_ROOT


def test_a_new_start_empties_the_folder_and_the_same_start_does_not(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    assert empty_on_new_start(folder, "uwsgi-1") is True
    (folder / "counter_11.db").write_bytes(b"x")
    (folder / "notes.txt").write_text("not a metric file")
    assert empty_on_new_start(folder, "uwsgi-1") is False
    assert (folder / "counter_11.db").exists()
    assert empty_on_new_start(folder, "uwsgi-2") is True
    assert not (folder / "counter_11.db").exists()
    assert (folder / "notes.txt").exists()


def _one_process_of_a_start(folder: Path, results: multiprocessing.Queue[bool]) -> None:
    emptied = empty_on_new_start(folder, "uwsgi-42")
    (folder / f"counter_{os.getpid()}.db").write_bytes(b"x")  # then it counts
    results.put(emptied)


def test_the_processes_of_one_start_empty_the_folder_once(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"from the previous start")
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[bool] = context.Queue()
    processes = [context.Process(target=_one_process_of_a_start, args=(folder, results))
                 for _ in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert sorted(results.get(timeout=10) for _ in processes) == [False] * 7 + [True]
    assert sorted(path.name for path in folder.glob("*.db")) == sorted(
        f"counter_{process.pid}.db" for process in processes)


def test_the_live_gauges_of_dead_processes_are_dropped(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    for name in (f"gauge_livesum_{gone.pid}.db", f"gauge_livesum_{os.getpid()}.db",
                 f"counter_{gone.pid}.db", f"histogram_{gone.pid}.db"):
        (tmp_path / name).write_bytes(b"x")
    assert mark_dead_processes(tmp_path) == [gone.pid]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([
        f"gauge_livesum_{os.getpid()}.db", f"counter_{gone.pid}.db",
        f"histogram_{gone.pid}.db"])  # what a dead process counted stays counted


def test_unknown_http_methods_share_one_label() -> None:
    assert [method_label(m) for m in ("GET", "DELETE", "BREW", "get", "")] == [
        "GET", "DELETE", "other", "other", "other"]


def test_metrics_refuse_a_library_already_in_single_process_mode(tmp_path: Path) -> None:
    code = ("import prometheus_client, pathlib, sys\n"
            "from kernel.core.errors import MetricsError\n"
            "from kernel.core.metrics import enable\n"
            "try:\n"
            "    enable(pathlib.Path(sys.argv[1]))\n"
            "except MetricsError as error:\n"
            "    print(error)\n")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "imported before METRICS was enabled" in result.stdout, result.stderr

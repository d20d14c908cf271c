"""``make run`` installs only what serving needs, takes ``PORT=``, and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kernel.core.settings import PROJECT_ROOT
from tests.support.processes import children
from tests.support.processes import free_port
from tests.support.processes import pid_alive
from tests.support.processes import stop
from tests.support.processes import wait_for_http
from tests.support.processes import wait_until_gone

#: The environment of a ``make`` of our own, not a sub-make of ``make test``'s.
MAKE_ENVIRON = {k: v for k, v in os.environ.items()
                if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS") and not k.startswith("KERNKOA_")}


def dry_run(*targets: str) -> list[str]:
    """The commands ``make`` would run for ``targets`` from scratch (``-n -B``)."""
    result = subprocess.run(["make", "--no-print-directory", "-n", "-B", *targets],
                            cwd=PROJECT_ROOT, env=MAKE_ENVIRON, capture_output=True, text=True,
                            timeout=30, check=True)
    return result.stdout.splitlines()


def test_make_run_installs_the_kernel_without_the_test_tools() -> None:
    commands = dry_run("run", "PORT=8123")
    installs = [c for c in commands if "pip install" in c and "--upgrade pip" not in c]
    assert installs and all(c.endswith("-e .") for c in installs), commands
    assert commands[-1].endswith("kernkoa serve --port 8123"), commands


def test_make_install_and_test_add_the_test_tools_to_the_same_venv() -> None:
    for target in ("install", "test"):
        commands = dry_run(target)
        assert any(c.endswith("-e '.[test]'") for c in commands), (target, commands)
        assert any(c.endswith("-e .") for c in commands), (target, commands)


def test_make_run_stops_on_ctrl_c(tmp_path: Path) -> None:
    """What the README promises: Ctrl-C stops the server and the worker it started."""
    stamp = PROJECT_ROOT / ".venv/.installed-run"
    project = PROJECT_ROOT / "pyproject.toml"
    if not stamp.exists() or stamp.stat().st_mtime < project.stat().st_mtime:
        pytest.skip("make run would install first (run make install)")
    port = free_port()
    env = {**MAKE_ENVIRON, "KERNKOA_VAR": str(tmp_path / "var")}
    # A terminal's Ctrl-C: SIGINT to the foreground process group, with the
    # default action (a background job of a shell would ignore it).
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"], cwd=PROJECT_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", make)
        started = [make.pid, *children(make.pid)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(children(p) for p in started[1:]):
            time.sleep(0.05)  # the server starts its worker beside itself
        family = {*started, *(c for p in started[1:] for c in children(p))}
        assert len(family) >= 3, family  # make, the server, its worker
        os.killpg(make.pid, signal.SIGINT)
        make.wait(30)
        assert wait_until_gone(family, timeout=30), [p for p in family if pid_alive(p)]
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        stop(make)

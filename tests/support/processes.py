"""Child processes of the tests: where their programs are, ports, waits and stops.

Every wait here is bounded; :func:`stop` escalates to SIGKILL, so no test leaves
a process behind however it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.request
from pathlib import Path

# The benchmarks pick ports the same way; one function serves both.
from bench.servers import free_port

__all__ = ["BIN", "children", "clean_environ", "free_port", "pid_alive", "stop",
           "wait_for_http", "wait_until_gone"]

#: The project's virtualenv binaries (the tests run from it).
BIN = Path(sys.executable).parent


def clean_environ(**settings: str) -> dict[str, str]:
    """This process's environment without KERNKOA_* variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNKOA_")}
    env.update({f"KERNKOA_{k}": str(v) for k, v in settings.items()})
    return env


def wait_for_http(url: str, process: subprocess.Popen[bytes] | None = None,
                  timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers at all (any status); fail if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate a process, escalating to SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


def pid_alive(pid: int) -> bool:
    """Whether a process of that pid still exists (and is not a zombie)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pids: t.Iterable[int], timeout: float = 15.0) -> bool:
    """Poll until none of ``pids`` is alive; False if some still are after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def children(pid: int) -> set[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found

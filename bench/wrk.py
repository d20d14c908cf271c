"""Drive a server with ``wrk`` for a bounded time and read its requests per second."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_TOTAL = re.compile(r"(\d+) requests in ")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class Load:
    """One kind of request: method, path(s) and body.

    Several paths are sent in turn (a Lua script rotates through them).
    """

    name: str
    paths: tuple[str, ...]
    method: str = "GET"
    body: dict[str, object] | None = None

    def script(self, folder: Path) -> Path:
        """Write the wrk Lua script sending this load; return its path."""
        folder.mkdir(parents=True, exist_ok=True)
        lua_paths = ", ".join(json.dumps(p) for p in self.paths)
        headers = "{}"
        body = "nil"
        if self.body is not None:
            headers = '{["Content-Type"] = "application/json"}'
            body = json.dumps(json.dumps(self.body, separators=(",", ":")))
        path = folder / f"{self.name}-{abs(hash(self.paths)) % 10**8}.lua"
        path.write_text(
            f"local paths = {{{lua_paths}}}\n"
            "local n = #paths\n"
            "local i = 0\n"
            f"local headers = {headers}\n"
            f"local body = {body}\n"
            "request = function()\n"
            "  i = i % n + 1\n"
            f'  return wrk.format("{self.method}", paths[i], headers, body)\n'
            "end\n"
        )
        return path


class WrkError(RuntimeError):
    """wrk failed, or some responses were not 2xx."""


def run_wrk(base: str, load: Load, scripts: Path, duration: float, connections: int,
            threads: int = 1, kept_alive: bool = False) -> float:
    """Requests per second of ``load`` against ``base`` over ``duration`` seconds."""
    return run_wrk_counted(base, load, scripts, duration, connections, threads, kept_alive)[0]


def run_wrk_counted(base: str, load: Load, scripts: Path, duration: float, connections: int,
                    threads: int = 1, kept_alive: bool = False) -> tuple[float, int]:
    """Requests per second of ``load`` against ``base``, and how many were answered.

    ``kept_alive``: the server keeps connections open (nginx), so a closed one
    is an error too.
    """
    script = load.script(scripts)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
               "--timeout", "10s", "-s", str(script), base]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60,
                          check=False)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    out = done.stdout
    match = _RPS.search(out)
    if match is None:
        raise WrkError(f"no Requests/sec in wrk's output:\n{out}")
    bad = _NON2XX.search(out)
    if bad is not None and int(bad.group(1)):
        raise WrkError(f"{bad.group(1)} non-2xx responses from {base}{load.paths[0]}:\n{out}")
    errors = _ERRORS.search(out)
    # uWSGI's --http-socket closes the connection after each answer, which wrk
    # counts as a read error before it reconnects: only the other kinds count.
    counted = (1, 2, 3, 4) if kept_alive else (1, 3, 4)
    if errors is not None and any(int(errors.group(n)) for n in counted):
        raise WrkError(f"socket errors from {base}: {errors.group(0)}")
    total = _TOTAL.search(out)
    if total is None:
        raise WrkError(f"no request count in wrk's output:\n{out}")
    return float(match.group(1)), int(total.group(1))

"""Part 11: TabPy's ``/query`` of a deployed ``add(x, y)`` vs a catalog method doing the same.

TabPy (Tableau's Python server, from PyPI) is what a user would pick to serve a
Python function over HTTP as JSON. It pins old libraries, so the benchmark
installs it into a virtualenv of its own in the scratch folder (never into the
project's), starts it on a free port, and deploys ``add(x, y)`` with TabPy's
own client. Then wrk posts the same two arrays, round by round in turn, to:

- TabPy: ``POST /query/add`` with ``{"data": {"x": [...], "y": [...]}}``;
- KernKoa: ``POST /bench/m0000/Bench/add`` with ``{"x": [...], "y": [...]}``
  (bound, converted and checked by the binder as any catalog method);
- the plain Flask route ``POST /add`` (:mod:`bench.plain_app`), for scale.

TabPy serves from one Tornado process over kept-alive connections, as it
ships; KernKoa and Flask from uWSGI as in part 1 (``processes`` workers,
``--http-socket``, a connection per request). Target: KernKoa >= 3x TabPy.
Downloading TabPy needs PyPI, so ``--smoke`` (the test suite) leaves this part out.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time
import typing as t
import urllib.request
from pathlib import Path

from .catalog import module_path
from .catalog import write_catalog
from .config import RunConfig
from .servers import cpu_seconds
from .servers import free_port
from .servers import stop
from .servers import uwsgi
from .stats import Comparison
from .wrk import Load
from .wrk import run_wrk
from .wrk import run_wrk_counted

#: The TabPy release measured (pip installs exactly this one).
TABPY = "tabpy==2.16.0"

X = [1.5, 2.0, 3.25]
Y = [4.0, 5.5, 6.0]

#: What the client side deploys into TabPy: the function, as TabPy's docs show.
DEPLOY = '''
import sys
from tabpy.tabpy_tools.client import Client

def add(x, y):
    return [a + b for a, b in zip(x, y)]

Client(sys.argv[1]).deploy("add", add, "x + y, element by element", override=True)
'''


def tabpy_venv(work: Path) -> Path:
    """A virtualenv holding TabPy (made on first use); its ``bin`` folder."""
    venv = (work / "tabpy-venv").resolve()
    if not (venv / "bin" / "tabpy").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       timeout=300)
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                               TABPY], capture_output=True, text=True, timeout=1800,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip install {TABPY} failed:\n{done.stdout}{done.stderr}")
    return venv / "bin"


def tabpy_conf(folder: Path, port: int) -> Path:
    """TabPy's configuration: the port, its state in ``folder``, logging at WARNING
    (KernKoa's uWSGI logs no request either)."""
    conf = folder / "tabpy.conf"
    conf.write_text(textwrap.dedent(f"""\
        [TabPy]
        TABPY_PORT = {port}
        TABPY_STATE_PATH = {folder}/state
        TABPY_QUERY_OBJECT_PATH = {folder}/query_objects
        TABPY_EVALUATE_ENABLE = false

        [loggers]
        keys=root

        [handlers]
        keys=rootHandler

        [formatters]
        keys=rootFormatter

        [logger_root]
        level=WARNING
        handlers=rootHandler
        qualname=root
        propagate=0

        [handler_rootHandler]
        class=StreamHandler
        level=WARNING
        formatter=rootFormatter
        args=(sys.stderr,)

        [formatter_rootFormatter]
        format=%(asctime)s [%(levelname)s] %(message)s
        """))
    return conf


@contextlib.contextmanager
def tabpy_server(work: Path) -> t.Iterator[tuple[str, int]]:
    """TabPy on a free port with ``add`` deployed; its base URL and its pid."""
    bin_folder = tabpy_venv(work)
    folder = (work / "tabpy").resolve()
    (folder / "state").mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(folder / "tabpy.log", "wb") as log:
        # Without authentication, as KernKoa's side runs (no auth add-on): TabPy
        # asks on its terminal to confirm that unless told not to.
        process = subprocess.Popen([str(bin_folder / "tabpy"), "--config",
                                    str(tabpy_conf(folder, port)), "--disable-auth-warning"],
                                   cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError("tabpy exited: " + (folder / "tabpy.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(base + "/info", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("tabpy did not answer /info") from None
                time.sleep(0.2)
        subprocess.run([str(bin_folder / "python"), "-c", DEPLOY, base + "/"], check=True,
                       timeout=120, capture_output=True)
        answer = _post(base + "/query/add", {"data": {"x": X, "y": Y}})
        if answer.get("response") != [a + b for a, b in zip(X, Y, strict=True)]:
            raise RuntimeError(f"TabPy's add answered {answer}")
        yield base, process.pid
    finally:
        stop(process)


def _post(url: str, body: dict[str, t.Any]) -> dict[str, t.Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return t.cast(dict[str, t.Any], json.loads(response.read()))


def run(config: RunConfig) -> list[Comparison]:
    """Measure part 11: KernKoa and plain Flask vs TabPy, rates and server CPU per request."""
    work = config.work / "tabpy-part"
    catalog = write_catalog(work / "catalog-1", 1)
    logs = work / "logs"
    scripts = work / "wrk"
    kernkoa_vs = Comparison("11. JSON add: catalog method vs TabPy /query", "kernkoa", "tabpy")
    plain_vs = Comparison("11. JSON add: plain Flask vs TabPy /query", "plain", "tabpy")
    # The servers' own CPU per answer: on a loaded machine, the figure the
    # other processes move least (TabPy's one process, uWSGI's workers).
    cpu = Comparison("11. JSON add: server CPU per request, catalog method vs TabPy",
                     "kernkoa", "tabpy", higher_is_better=False, unit="us")
    plain_cpu = Comparison("11. JSON add: server CPU per request, plain Flask vs TabPy",
                           "plain", "tabpy", higher_is_better=False, unit="us")
    loads = {
        "kernkoa": Load("add-kernkoa", (f"{module_path(0)}/Bench/add",), "POST",
                        {"x": X, "y": Y}),
        "plain": Load("add-plain", ("/add",), "POST", {"x": X, "y": Y}),
        "tabpy": Load("add-tabpy", ("/query/add",), "POST", {"data": {"x": X, "y": Y}}),
    }
    with contextlib.ExitStack() as stack:
        tabpy_base, tabpy_pid = stack.enter_context(tabpy_server(work))
        plain = stack.enter_context(uwsgi("plain", "bench.plain_app", "/hello", logs,
                                          config.processes))
        kernkoa = stack.enter_context(uwsgi(
            "kernkoa", "kernkoa", f"{module_path(0)}/Bench/hello", logs, config.processes,
            env={"KERNKOA_CATALOG": str(catalog), "KERNKOA_VAR": f"{work}/var"}))
        bases = {"tabpy": tabpy_base, "plain": plain.base, "kernkoa": kernkoa.base}
        used: dict[str, t.Callable[[], float]] = {
            "tabpy": lambda: cpu_seconds(tabpy_pid), "plain": plain.worker_cpu_seconds,
            "kernkoa": kernkoa.worker_cpu_seconds}
        if _post(bases["kernkoa"] + loads["kernkoa"].paths[0], {"x": X, "y": Y}) != _post(
                bases["plain"] + "/add", {"x": X, "y": Y}):
            raise RuntimeError("KernKoa's add and the plain route's disagree")
        for side, base in bases.items():
            if config.warmup > 0:
                run_wrk(base, loads[side], scripts, config.warmup, config.connections)
        for _ in range(config.rounds):
            for side, base in bases.items():
                before = used[side]()
                rate, answered = run_wrk_counted(base, loads[side], scripts, config.duration,
                                                 config.connections)
                spent = (used[side]() - before) * 1e6 / max(answered, 1)
                for rates, cpus in ((kernkoa_vs, cpu), (plain_vs, plain_cpu)):
                    if side in (rates.subject, rates.baseline):
                        rates.add(side, rate)
                        cpus.add(side, spent)
    return [kernkoa_vs, plain_vs, cpu, plain_cpu]

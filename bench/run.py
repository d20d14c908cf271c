"""Run KernKoa's benchmarks and print the side-by-side ratios.

    python -m bench.run                 # every section, 5 rounds of 5 s
    python -m bench.run --smoke         # one tiny round of each (what ``make test`` runs)
    python -m bench.run --only dispatch --rounds 7 --duration 10
    python -m bench.run --only serving --steady 120

Every server is started on a free 127.0.0.1 port and stopped before exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import typing as t
from pathlib import Path

from . import bodies_bench
from . import dispatch_bench
from . import drain_bench
from . import footprint
from . import inprocess
from . import instructions
from . import metrics_bench
from . import nginx_bench
from . import scaleout
from . import serving
from . import soak
from . import tabpy_bench
from . import tasks_bench
from .config import RunConfig
from .servers import ROOT
from .stats import Comparison

#: Section name to its ``run(config)``, in the order they are run.
SECTIONS: dict[str, t.Callable[[RunConfig], list[Comparison]]] = {
    "dispatch": dispatch_bench.run,
    "tasks": tasks_bench.run,
    "footprint": footprint.run,
    "inprocess": inprocess.run,
    "instructions": instructions.run,
    "bodies": bodies_bench.run,
    "metrics": metrics_bench.run,
    "serving": serving.run,
    "scaleout": scaleout.run,
    "nginx": nginx_bench.run,
    "soak": soak.run,
    "tabpy": tabpy_bench.run,
    "drain": drain_bench.run,
}

#: Sections ``--smoke`` (the test suite) leaves out: ``scaleout`` installs whole
#: nodes, and its own test runs its measurements at a tiny size on the nodes it
#: starts anyway; ``tabpy`` installs TabPy from PyPI.
HEAVY = ("scaleout", "tabpy")


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    uwsgi = subprocess.run([str(Path(sys.executable).parent / "uwsgi"), "--version"],
                           capture_output=True, text=True, check=False)
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "uwsgi": uwsgi.stdout.strip(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0] if (wrk.stdout or wrk.stderr) else "",
        "nginx": nginx.stderr.strip(),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench.run``."""
    defaults = RunConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one tiny round of each section")
    parser.add_argument("--only", action="append", choices=list(SECTIONS),
                        help="run only this section (repeatable)")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--duration", type=float, default=defaults.duration,
                        help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=defaults.warmup)
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--files", type=int, default=defaults.files,
                        help="controller files in the large catalog")
    parser.add_argument("--processes", type=int, default=defaults.processes)
    parser.add_argument("--trips", type=int, default=defaults.trips,
                        help="task round trips per round")
    parser.add_argument("--steady", type=float, default=defaults.steady,
                        help="seconds of the steady load through nginx (part 7)")
    parser.add_argument("--soak-requests", type=int, default=defaults.soak_requests,
                        help="requests the soak answers at least (part 10)")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench",
                        help="scratch folder (emptied first)")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, print each comparison, optionally write JSON."""
    args = build_parser().parse_args(argv)
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (make bench installs it)", file=sys.stderr)
            return 2
    if args.smoke:
        config = RunConfig.smoke(args.work)
    else:
        config = RunConfig(rounds=args.rounds, duration=args.duration, warmup=args.warmup,
                           connections=args.connections, files=args.files,
                           processes=args.processes, trips=args.trips, steady=args.steady,
                           soak_requests=args.soak_requests,
                           work=args.work)
    shutil.rmtree(config.work, ignore_errors=True)
    config.work.mkdir(parents=True)
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print("config:  " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items()))
    results: list[Comparison] = []
    started = time.monotonic()
    chosen = args.only or [name for name in SECTIONS if not (args.smoke and name in HEAVY)]
    for name in chosen:
        section_start = time.monotonic()
        found = SECTIONS[name](config)
        for comparison in found:
            print(comparison.line(), flush=True)
        print(f"  ({name}: {time.monotonic() - section_start:.0f} s)", flush=True)
        results.extend(found)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": info, "config": {k: str(v) for k, v in
                                        dataclasses.asdict(config).items()},
            "results": [c.as_dict() for c in results],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

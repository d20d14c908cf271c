"""The ``kernkoa`` command: ``serve``, ``worker``, ``routes``, ``check`` and ``user``."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from ..app import create_app
from ..catalog import listing
from ..catalog.registry import scan
from ..core.errors import SettingsError
from ..core.logs import install_logging
from ..core.settings import Settings
from ..web.state import state_of
from .supervisor import WorkerSupervisor
from .users import add_user_commands
from .worker import run_worker
from .worker import start_embedded_worker
from .worker import stop_worker


def serve(args: argparse.Namespace) -> int:
    """Serve the catalog with Werkzeug's threaded server (development and tests)."""
    from werkzeug.serving import run_simple

    overrides = {"DEBUG": True} if args.debug else {}
    app = create_app(overrides)
    settings = state_of(app).settings
    host = args.host or settings.HOST
    port = args.port if args.port is not None else settings.PORT
    worker = None if args.no_worker else WorkerSupervisor(start_embedded_worker, stop_worker)
    if worker is not None:
        worker.start()
    # SIGTERM must unwind through the finally below, so the worker goes too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # Our own loader reloads controllers; Werkzeug's reloader would start
        # the process twice (and two workers), and its debugger runs code
        # typed into a web page.
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        if worker is not None:
            worker.stop()
    return 0


def worker(args: argparse.Namespace) -> int:
    """Run a Celery worker; extra arguments go to ``celery worker``."""
    return run_worker(args.celery_args)


def routes(args: argparse.Namespace) -> int:
    """Print every URL that answers, short forms included (``--json``: the
    ``/_kernkoa/endpoints`` document)."""
    state = state_of(create_app())
    # The operator at the console may see full tracebacks, as in debug mode.
    found = listing.as_json(listing.build(state.catalog, state.settings.CATALOG), debug=True)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for route in found["routes"]:
        verbs = ",".join(route["http_methods"])
        print(f"{verbs:<16} {route['url']}  {route['summary']}".rstrip())
        # The short forms get a row each: every URL that answers is listed.
        for short in route["short_urls"]:
            print(f"{verbs:<16} {short}  = {route['url']}")
    for bad in found["broken"]:
        print(f"{'BROKEN':<16} {bad['file']}  {bad['error']}", file=sys.stderr)
    return 0


def check(args: argparse.Namespace) -> int:
    """Import every controller file; report each failure and exit 1 on any."""
    found, broken = scan(state_of(create_app()).catalog)
    for bad in broken:
        print(f"FAILED {bad.file}\n{bad.error}", file=sys.stderr)
    print(f"{len(found)} routes, {len(broken)} broken controller file(s)")
    return 1 if broken else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kernkoa`` command."""
    parser = argparse.ArgumentParser(prog="kernkoa", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve", help="serve the catalog (development server)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port to bind (default 5000)")
    p.add_argument("--debug", action="store_true", help="tracebacks in error bodies")
    p.add_argument("--no-worker", action="store_true",
                   help="do not start a task worker beside the server")
    p.set_defaults(func=serve)
    p = commands.add_parser("worker", help="run a task worker (options go to celery worker)")
    p.add_argument("celery_args", nargs=argparse.REMAINDER,
                   help="celery worker options, e.g. --concurrency=4 -Q celery,long")
    p.set_defaults(func=worker)
    p = commands.add_parser("routes", help="list every routable URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=routes)
    p = commands.add_parser("check", help="import every controller, report failures")
    p.set_defaults(func=check)
    add_user_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``kernkoa`` command."""
    try:
        log_format = Settings.load().LOG_FORMAT
        install_logging(log_format)
    except SettingsError:
        # The command says what is wrong when it loads the settings itself.
        install_logging("text")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"] and argv[1:2] not in (["-h"], ["--help"]):
        # Everything after "worker" is Celery's, options included.
        return run_worker(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))

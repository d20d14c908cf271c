"""The ``kernkoa`` command: ``serve``, ``worker``, ``beat``, ``routes``, ``check``, ``user``,
``call`` and ``new``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import typing as t

from ..app import create_app
from ..catalog import listing
from ..catalog.registry import scan
from ..core.errors import SettingsError
from ..core.logs import install_logging
from ..core.metrics import enable
from ..core.settings import Settings
from ..pages.views import with_runs
from ..web.metrics import web_folder
from ..web.state import state_of
from .call import add_call_command
from .new import add_new_command
from .supervisor import WorkerSupervisor
from .users import add_user_commands
from .worker import run_beat_here
from .worker import run_worker
from .worker import start_embedded_beat
from .worker import start_embedded_worker
from .worker import stop_beat
from .worker import stop_worker


def serve(args: argparse.Namespace) -> int:
    """Serve the catalog with Werkzeug's threaded server (development and tests)."""
    from werkzeug.serving import run_simple

    overrides = {"DEBUG": True} if args.debug else {}
    given = Settings.load(overrides)
    if given.METRICS:
        # This process is the server: its start empties the metrics folder.
        enable(web_folder(given), start=f"serve-{os.getpid()}")
    app = create_app(overrides)
    settings = state_of(app).settings
    host = args.host or settings.HOST
    port = args.port if args.port is not None else settings.PORT
    # The worker, and beat for the catalog's schedules, each restarted if it exits.
    children = [] if args.no_worker else [WorkerSupervisor(start_embedded_worker, stop_worker),
                                          WorkerSupervisor(start_embedded_beat, stop_beat)]
    for child in children:
        child.start()
    # SIGTERM must unwind through the finally below, so the worker goes too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # Our own loader reloads controllers; Werkzeug's reloader would start
        # the process twice (and two workers), and its debugger runs code
        # typed into a web page.
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        for child in children:
            child.stop()
    return 0


def worker(args: argparse.Namespace) -> int:
    """Run a Celery worker; extra arguments go to ``celery worker``."""
    return run_worker(args.celery_args)


def beat(args: argparse.Namespace) -> int:
    """Run Celery beat on the schedules of the catalog (one fires per deployment)."""
    return run_beat_here(args.logfile)


def routes(args: argparse.Namespace) -> int:
    """Print every URL that answers, short forms included (``--json``: the
    ``/_kernkoa/endpoints`` document)."""
    app = create_app()
    state = state_of(app)
    # The operator at the console may see full tracebacks, as in debug mode.
    found = with_runs(listing.as_json(listing.build(state.catalog, state.settings.CATALOG),
                                      debug=True), app)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for route in found["routes"]:
        verbs = ",".join(route["http_methods"])
        print(f"{verbs:<16} {route['url']}  {route['summary']}".rstrip())
        if route["schedule"] is not None:
            print(f"{'':<16}   {describe_schedule(route['schedule'])}")
        # The short forms get a row each: every URL that answers is listed.
        for short in route["short_urls"]:
            print(f"{verbs:<16} {short}  = {route['url']}")
    for bad in found["broken"]:
        print(f"{'BROKEN':<16} {bad['file']}  {bad['error']}", file=sys.stderr)
    return 0


def describe_schedule(schedule: dict[str, t.Any]) -> str:
    """One line about a route's schedule: when, last and next run, trouble."""
    when = (f"every {schedule['every']:g} s" if schedule.get("every") is not None
            else f"cron {schedule['cron']} ({schedule['timezone']})")
    if not schedule["overlap"]:
        when += ", no overlap"
    line = (f"scheduled {when}; last run {schedule['last_run'] or 'never'}, "
            f"next run {schedule['next_run'] or 'unknown'}")
    if schedule["skipped"]:
        line += f", {schedule['skipped']} skipped"
    return line + (f"; ERROR {schedule['error']}" if schedule["error"] else "")


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
                   help="do not start a task worker and beat beside the server")
    p.set_defaults(func=serve)
    p = commands.add_parser("worker", help="run a task worker (options go to celery worker)")
    p.add_argument("celery_args", nargs=argparse.REMAINDER,
                   help="celery worker options, e.g. --concurrency=4 -Q celery,long")
    p.set_defaults(func=worker)
    p = commands.add_parser("beat", help="run the catalog's schedules (@every, @cron)")
    p.add_argument("--logfile", default=None, help="log to this file instead of stderr")
    p.set_defaults(func=beat)
    p = commands.add_parser("routes", help="list every routable URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=routes)
    p = commands.add_parser("check", help="import every controller, report failures")
    p.set_defaults(func=check)
    add_user_commands(commands)
    add_call_command(commands)
    add_new_command(commands)
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
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "call":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        # kernkoa call /path --method GET item=4: fields may follow the options.
        args.fields += extra
    return int(args.func(args))

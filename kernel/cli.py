"""The ``kernkoa`` command: ``serve``, ``routes`` and ``check``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing as t

from flask import Flask

from . import listing
from .app import create_app
from .dispatch import Kernel
from .registry import scan


def _kernel(app: Flask) -> Kernel:
    return t.cast(Kernel, app.extensions["kernkoa"])


def serve(args: argparse.Namespace) -> int:
    """Serve the catalog with Werkzeug's threaded server (development and tests)."""
    from werkzeug.serving import run_simple

    overrides = {"DEBUG": True} if args.debug else {}
    app = create_app(overrides)
    settings = _kernel(app).settings
    host = args.host or settings.HOST
    port = args.port if args.port is not None else settings.PORT
    # Our own loader reloads controllers; Werkzeug's reloader would start the
    # process twice, and its debugger runs code typed into a web page.
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    return 0


def routes(args: argparse.Namespace) -> int:
    """Print every routable URL (``--json``: the ``/_kernkoa/endpoints`` document)."""
    kernel = _kernel(create_app())
    # The operator at the console may see full tracebacks, as in debug mode.
    found = listing.as_json(listing.build(kernel), debug=True)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for route in found["routes"]:
        verbs = ",".join(route["http_methods"])
        print(f"{verbs:<16} {route['url']}  {route['summary']}".rstrip())
    for bad in found["broken"]:
        print(f"{'BROKEN':<16} {bad['file']}  {bad['error']}", file=sys.stderr)
    return 0


def check(args: argparse.Namespace) -> int:
    """Import every controller file; report each failure and exit 1 on any."""
    found, broken = scan(_kernel(create_app()))
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
    p = commands.add_parser("routes", help="list every routable URL")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=routes)
    p = commands.add_parser("check", help="import every controller, report failures")
    p.set_defaults(func=check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``kernkoa`` command."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))

"""``kernkoa call``: run a controller method from the shell, without a server."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing as t
from pathlib import Path

from ..app import create_app
from ..client import CallError
from ..client import TaskFailed
from ..client.client import QUERY_METHODS
from ..core.project import find_project
from ..testing.inprocess import AppTransport
from ..testing.inprocess import KitClient


def parse_fields(pairs: t.Sequence[str]) -> dict[str, list[str]]:
    """``name=value`` words as fields (text, converted by the method's annotations); a
    name given twice has two values, as in a form.

    :raises ValueError: for a word without ``=`` or with an empty name.
    """
    fields: dict[str, list[str]] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise ValueError(f"expected name=value, got {pair!r}")
        fields.setdefault(name, []).append(value)
    return fields


def call(args: argparse.Namespace) -> int:
    """Call ``args.path`` in this process through the same binding as a request; print
    the result as JSON, or the error envelope (exit 1)."""
    try:
        fields = parse_fields(args.fields)
        body = None if args.json is None else json.loads(args.json)
    except ValueError as error:
        print(f"kernkoa call: {error}", file=sys.stderr)
        return 2
    if body is not None and not isinstance(body, dict):
        print("kernkoa call: --json must be a JSON object of fields", file=sys.stderr)
        return 2
    method = args.method.upper()
    # One line per request would bury the answer.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app({"path": str(find_project(Path.cwd()))})
    client = KitClient(app, AppTransport(app, eager=not args.send), task_timeout=args.timeout)
    with client:
        try:
            if body is not None or method in QUERY_METHODS:
                # Text fields go in the query string, beside a JSON body if any.
                response = client.request(method, args.path, fields=body, query=fields)
            else:
                response = client.request(method, args.path, form=fields)
            result = client.result_of(response)
        except CallError as error:
            print(json.dumps(error.envelope, indent=2), file=sys.stderr)
            return 1
        except TaskFailed as error:
            print(json.dumps(error.body, indent=2), file=sys.stderr)
            return 1
        except TimeoutError as error:
            print(f"kernkoa call: {error}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def add_call_command(commands: t.Any) -> None:
    """Add ``kernkoa call`` to the command's sub-parsers."""
    p = commands.add_parser(
        "call", help="call a controller method without a server, print its result as JSON")
    p.add_argument("path", help="the method's URL path, e.g. /shop/cart/Cart/add")
    p.add_argument("fields", nargs="*", metavar="name=value",
                   help="fields, as a form (converted by the method's annotations)")
    p.add_argument("--json", default=None, metavar="OBJECT",
                   help="a JSON object of fields, sent as the body")
    p.add_argument("--method", default="POST", help="the HTTP method (default POST)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--eager", action="store_true",
                      help="run a _celery method here, in this process (the default)")
    mode.add_argument("--send", action="store_true",
                      help="send a _celery method to the configured broker and follow it")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for a _celery method (default 300)")
    p.set_defaults(func=call)

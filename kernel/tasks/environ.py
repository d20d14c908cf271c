"""The triggering request, rebuilt on the worker from its snapshot (:mod:`kernel.tasks.enqueue`).

A ``_celery`` method runs in a request context like a view's: ``request``,
``g``, ``url_for``, the request id and the identity work as they did in the
request that triggered it. Flask's ``test_request_context`` builds that
request through Werkzeug's test ``EnvironBuilder``, whose generality (URL
quoting, header objects, content-type properties) cost about a quarter of a
trivial task's own time on the worker. :func:`task_environ` writes the same WSGI
environ directly for a snapshot of the usual shape (a path and root URL that
quoting leaves alone, no body or ``Host`` header among the headers kept); any other goes
through the builder as before (``tests/tasks/test_task_environ.py`` checks
the two agree).
"""

from __future__ import annotations

import io
import re
import sys
import typing as t
from urllib.parse import urlencode
from urllib.parse import urlsplit

from werkzeug.datastructures import MultiDict

from ..web.requestid import HEADER as REQUEST_ID_HEADER
from ..web.requestid import checked_request_id

#: A path that URL quoting, unquoting and the WSGI encoding leave as it is:
#: printable ASCII, without ``%``, ``?``, ``#`` or a space.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*+")

#: A host (and port) that ``iri_to_uri`` leaves as it is: lower-case labels of 1
#: to 63 characters (what IDNA encodes as they are), and a port without leading zero
#: (at most 65535: checked apart).
_PLAIN_HOST = re.compile(r"(?:[a-z0-9\-]{1,63}+\.)*+[a-z0-9\-]{1,63}+(?::[1-9][0-9]{0,4}+)?+")

_PORT_MAX = 65535

#: What Werkzeug's builder leaves unquoted in a form body.
_FORM_SAFE = "!$'()*,/:;?@"

#: Headers the builder treats apart: it turns the first two into ``CONTENT_TYPE``
#: and ``CONTENT_LENGTH``, and lets a ``Host`` header replace the base URL's host.
_BUILDER_HEADERS = frozenset({"content-type", "content-length", "host"})

_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower()


def request_id_of(snapshot: t.Any) -> str | None:
    """The id of the request a snapshot was taken of (``None``: a snapshot from
    before request ids, or a value that is not a sane id)."""
    return checked_request_id(snapshot.get("request_id")) if isinstance(snapshot, dict) else None


def request_context_args(snapshot: dict[str, t.Any] | None, route: str) -> dict[str, t.Any]:
    """Arguments of ``app.test_request_context`` that rebuild the triggering request.

    Its ``X-Request-Id`` is the triggering request's id, so the rebuilt request
    has the same id (``flask.g.request_id``) and a task it starts carries it on.
    """
    if not snapshot:
        return {"path": route}
    headers = [tuple(pair) for pair in snapshot["headers"]]
    request_id = request_id_of(snapshot)
    if request_id is not None:
        headers = [pair for pair in headers if pair[0].lower() != _REQUEST_ID_NAME]
        headers.append((REQUEST_ID_HEADER, request_id))
    args: dict[str, t.Any] = {
        "path": snapshot["path"],
        "base_url": snapshot["root_url"],
        "query_string": snapshot["query_string"],
        "method": snapshot["method"],
        "headers": headers,
    }
    if "json" in snapshot:
        args["json"] = snapshot["json"]
    elif "form" in snapshot:
        args["data"] = MultiDict([tuple(pair) for pair in snapshot["form"]])
    return args


def _plain_base(base_url: str) -> tuple[str, str, str] | None:
    """The scheme, host and script root of a root URL that Werkzeug's ``iri_to_uri``
    leaves as it is (``None`` for any other: a host to lower-case, to encode,
    with a user or a port to normalise, a path to quote)."""
    scheme, host, script_root, query, fragment = urlsplit(base_url)
    if query or fragment or not _PLAIN_HOST.fullmatch(host) \
            or not _PLAIN_PATH.fullmatch(script_root) \
            or int(host.partition(":")[2] or 0) > _PORT_MAX:
        return None
    return scheme, host, script_root.rstrip("/")


def task_environ(args: dict[str, t.Any],
                 json_dumps: t.Callable[[t.Any], str]) -> dict[str, t.Any] | None:
    """The WSGI environ ``test_request_context(**args)`` would build, for ``args`` of
    :func:`request_context_args` of the usual shape; ``None`` for any other
    (then the builder must do it). ``json_dumps``: the app's (``app.json.dumps``)."""
    path, base_url = args["path"], args.get("base_url")
    base = _plain_base(base_url) if base_url is not None else None
    if base is None or path[:1] != "/" or path[:2] == "//" or not _PLAIN_PATH.fullmatch(path):
        return None
    scheme, host, script_root = base
    environ: dict[str, t.Any] = {}
    for name, value in args["headers"]:
        if name.lower() in _BUILDER_HEADERS:
            return None
        key = "HTTP_" + name.upper().replace("-", "_")
        # Repeated headers are joined, as the builder joins them.
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    body: bytes | None = None
    if args.get("json") is not None:
        body, environ["CONTENT_TYPE"] = json_dumps(args["json"]).encode(), "application/json"
    elif args.get("data"):
        body = urlencode(list(args["data"].items(multi=True)), safe=_FORM_SAFE).encode("ascii")
        environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    if body is not None:
        environ["CONTENT_LENGTH"] = str(len(body))
    server_name, _, port = host.partition(":")
    environ.update({
        "REQUEST_METHOD": args["method"], "SCRIPT_NAME": script_root, "PATH_INFO": path,
        "QUERY_STRING": args["query_string"].encode().decode("latin-1"),
        "REQUEST_URI": path, "RAW_URI": path, "SERVER_NAME": server_name,
        "SERVER_PORT": port or ("443" if scheme == "https" else "80"),
        "HTTP_HOST": host, "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme, "wsgi.input": io.BytesIO(body or b""),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    })
    return environ

"""A shortcut past Werkzeug's URL adapter and matcher for plain controller URLs.

For every request Flask binds the URL map to the request (``bind_to_environ``,
whose IDNA encoding of the host alone costs more than a whole catch-all
dispatch) and then matches the catch-all ``<path:path>`` rule with a regular
expression after trying every static transition. For a path that
only the catch-all can match, the answer is known in advance: the catch-all
rule, with the path after the prefix as ``path``. :class:`CatchAllShortcut`
gives that answer for such requests and leaves every other one to Werkzeug:

- the path is made of non-empty ``[A-Za-z0-9_]`` segments under the prefix
  (no trailing slash, no dot, no percent sign, no empty segment), so merging
  and strict slashes, redirects and converters never come into play;
- no other rule could match it: it is not a converter-free rule's path (with
  or without a trailing slash) and does not start with the static part of a
  rule that has converters (``/status/``, ``/images/``...); a rule starting
  with a converter turns the shortcut off;
- the method is one the rule accepts, it is not a WebSocket upgrade, the URL
  map matches on paths only (no host or subdomain matching), and no rule of
  the catch-all's endpoint has defaults or redirects (no redirect is possible);
- binding the map could not fail: the host is one ``TRUSTED_HOSTS`` names
  (when set; Werkzeug's own check), and the host the map would be bound to
  IDNA-encodes (Werkzeug's ``BadHost`` check), both remembered per host name.

The table is rebuilt whenever a rule is added (:class:`VersionedMap` counts
them), so rules added later (add-ons, tests) are honoured. Security checks are not affected: the
dispatcher still refuses encoded slashes and empty segments from the raw URI,
and the router still applies the segment grammar to ``path``.
"""

from __future__ import annotations

import functools
import re
import typing as t

from flask import Flask
from flask import Request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.routing import Rule
from werkzeug.routing import RuleFactory
from werkzeug.wsgi import get_host

#: One path segment the shortcut accepts (the router checks the real grammar).
#: Possessive, as every pattern applied to client bytes: it cannot backtrack.
_SEGMENT = r"[A-Za-z0-9_]++"


def path_grammar(prefix: str) -> re.Pattern[str]:
    """The paths under ``prefix`` the shortcut may answer: segments joined by "/"."""
    return re.compile(re.escape(prefix) + _SEGMENT + "(?:/" + _SEGMENT + ")*+")


class CatchAllShortcut:
    """Answers Werkzeug's match for paths only the catch-all rule can match.

    :param app: the app whose URL map holds the rule.
    :param endpoint: the catch-all's endpoint name.
    """

    def __init__(self, app: Flask, endpoint: str) -> None:
        self.app = app
        self.endpoint = endpoint
        self._rules_version = -1
        self._table: tuple[Rule, re.Pattern[str], int, frozenset[str], tuple[str, ...]] | None
        self._table = None

    def _build(self) -> None:
        url_map = self.app.url_map
        rules = list(url_map.iter_rules())
        self._rules_version = rules_version(url_map)
        self._table = None
        catch_all = [r for r in rules if r.endpoint == self.endpoint and r.arguments == {"path"}]
        if url_map.host_matching or len(catch_all) != 1:
            return
        rule = catch_all[0]
        if rule.redirect_to is not None or any(
            r.endpoint == self.endpoint and r.defaults for r in rules
        ):
            return  # Werkzeug may answer with a redirect: leave it to Werkzeug
        prefix = rule.rule.split("<", 1)[0]
        if not rule.rule.endswith("<path:path>") or not prefix.endswith("/"):
            return
        exact: set[str] = set()
        prefixes: list[str] = []
        for other in rules:
            if other is rule:
                continue
            if "<" not in other.rule:
                exact.update({other.rule, other.rule.rstrip("/"), other.rule.rstrip("/") + "/"})
                continue
            static = other.rule.split("<", 1)[0]
            if static in ("", "/"):
                return  # a rule starting with a converter may match anything
            prefixes.append(static)
        self._table = (rule, path_grammar(prefix), len(prefix), frozenset(exact), tuple(prefixes))

    def match(self, request: Request) -> tuple[Rule, dict[str, t.Any]] | None:
        """The catch-all rule and its ``path`` for ``request``, or ``None`` to ask Werkzeug."""
        app = self.app
        if rules_version(app.url_map) != self._rules_version:
            self._build()
        table = self._table
        if table is None:
            return None
        rule, grammar, cut, exact, prefixes = table
        path = request.path
        environ = request.environ
        if (
            request.method not in (rule.methods or ())
            or not grammar.fullmatch(path)
            or path in exact
            or path.startswith(prefixes)
            or "HTTP_UPGRADE" in environ
            or app.subdomain_matching
        ):
            return None
        # Whether Flask's create_url_adapter would bind without an error (the
        # settings are read per request: a change at run time counts at once).
        config = app.config
        trusted = config["TRUSTED_HOSTS"]
        trusted = tuple(trusted) if trusted else None
        server_name = config["SERVER_NAME"]
        # Flask checks the Host header's trust, then binds to SERVER_NAME if set.
        if (server_name is None or trusted is not None) and not _host_binds(
            environ["wsgi.url_scheme"], environ.get("HTTP_HOST"), environ.get("SERVER_NAME"),
            environ.get("SERVER_PORT"), trusted,
        ):
            return None
        if server_name is not None and not _encodes_as_idna(
                server_name.lower().partition(":")[0]):
            return None
        return rule, {"path": path[cut:]}


class VersionedMap(Map):
    """Werkzeug's URL map, counting the rules added, so a change is seen cheaply."""

    #: How many times :meth:`add` was called.
    version = 0

    def add(self, rulefactory: RuleFactory) -> None:
        """Add a rule (or rule factory), as :meth:`Map.add` does."""
        super().add(rulefactory)
        self.version += 1


def rules_version(url_map: Map) -> int:
    """A number that changes whenever a rule is added to ``url_map``."""
    if isinstance(url_map, VersionedMap):
        return url_map.version
    return len(list(url_map.iter_rules()))


@functools.lru_cache(maxsize=256)
def _host_binds(scheme: str, host_header: str | None, server_name: str | None,
                server_port: str | None, trusted: tuple[str, ...] | None = None) -> bool:
    # The host Flask binds the map to comes from these four environ keys only;
    # an untrusted one is Flask's SecurityError (a 400), left to Flask.
    environ = {"wsgi.url_scheme": scheme, "HTTP_HOST": host_header,
               "SERVER_NAME": server_name, "SERVER_PORT": server_port}
    try:
        host = get_host({k: v for k, v in environ.items() if v is not None}, trusted)
    except HTTPException:
        return False
    return _encodes_as_idna(host.lower().partition(":")[0])


@functools.lru_cache(maxsize=256)
def _encodes_as_idna(name: str) -> bool:
    # Werkzeug's Map.bind answers BadHost (400) when this fails; the encoding
    # is pure Python and slow, and a server sees few distinct host names.
    try:
        name.encode("idna")
    except UnicodeError:
        return False
    return True

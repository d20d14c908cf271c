"""A shortcut past Werkzeug's matcher for plain controller URLs.

Werkzeug matches the catch-all ``<path:path>`` rule with a regular expression
after trying every static transition, about 5 µs per request (DESIGN §10),
where a hand-written route costs half of that. For a path that only the
catch-all can match, the answer is known in advance: the catch-all rule, with
the path after the prefix as ``path``. :class:`CatchAllShortcut` gives that
answer for such paths and leaves every other request to Werkzeug:

- the path is made of non-empty ``[A-Za-z0-9_]`` segments under the prefix
  (no trailing slash, no dot, no percent sign, no empty segment), so merging
  and strict slashes, redirects and converters never come into play;
- no other rule could match it: it is not a converter-free rule's path (with
  or without a trailing slash) and does not start with the static part of a
  rule that has converters (``/status/``, ``/images/``...); a rule starting
  with a converter turns the shortcut off;
- the method is one the rule accepts, it is not a WebSocket request, the
  URL map matches on paths only (no host matching), and no rule of the
  catch-all's endpoint has defaults or redirects (no redirect is possible).

The table is rebuilt whenever the number of rules changes, so rules added
later (add-ons, tests) are honoured. Security checks are not affected: the
dispatcher still refuses encoded slashes and empty segments from the raw URI,
and the router still applies the segment grammar to ``path``.
"""

from __future__ import annotations

import re
import typing as t

from flask import Flask
from flask.ctx import RequestContext
from werkzeug.routing import MapAdapter
from werkzeug.routing import Rule

#: One path segment the shortcut accepts (the router checks the real grammar).
_SEGMENT = r"[A-Za-z0-9_]+"


class CatchAllShortcut:
    """Answers Werkzeug's match for paths only the catch-all rule can match.

    :param app: the app whose URL map holds the rule.
    :param endpoint: the catch-all's endpoint name.
    """

    def __init__(self, app: Flask, endpoint: str) -> None:
        self.app = app
        self.endpoint = endpoint
        self._rule_count = -1
        self._table: tuple[Rule, re.Pattern[str], int, frozenset[str], tuple[str, ...]] | None
        self._table = None

    def _build(self) -> None:
        url_map = self.app.url_map
        rules = list(url_map.iter_rules())
        self._rule_count = len(rules)
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
        grammar = re.compile(re.escape(prefix) + _SEGMENT + "(?:/" + _SEGMENT + ")*")
        self._table = (rule, grammar, len(prefix), frozenset(exact), tuple(prefixes))

    def match(self, adapter: MapAdapter) -> tuple[Rule, dict[str, t.Any]] | None:
        """The catch-all rule and its ``path``, or ``None`` to ask Werkzeug."""
        # Rules are kept in a list that only grows; its size tells a change.
        if len(self.app.url_map._rules) != self._rule_count:
            self._build()
        table = self._table
        if table is None or adapter.websocket:
            return None
        rule, grammar, cut, exact, prefixes = table
        path = adapter.path_info
        if (
            adapter.default_method not in (rule.methods or ())
            or not grammar.fullmatch(path)
            or path in exact
            or path.startswith(prefixes)
        ):
            return None
        return rule, {"path": path[cut:]}


class ShortcutRequestContext(RequestContext):
    """Flask's request context, matching through :class:`CatchAllShortcut` first."""

    def match_request(self) -> None:
        """Use the shortcut when it knows the answer, else Werkzeug's matcher."""
        adapter = self.url_adapter
        shortcut: CatchAllShortcut | None = getattr(self.app, "catch_all_shortcut", None)
        if adapter is not None and shortcut is not None and self.request.routing_exception is None:
            found = shortcut.match(adapter)
            if found is not None:
                self.request.url_rule, self.request.view_args = found
                return
        super().match_request()


class KernKoaFlask(Flask):
    """Flask, with request contexts that take the catch-all shortcut."""

    #: Set by the app factory once the catch-all rule exists.
    catch_all_shortcut: CatchAllShortcut | None = None

    def request_context(self, environ: dict[str, t.Any]) -> RequestContext:
        """A :class:`ShortcutRequestContext` for ``environ``."""
        return ShortcutRequestContext(self, environ)

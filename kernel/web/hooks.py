"""The kernel's before-request checks, folded into as few Flask hooks as order allows.

Flask pays per hook, per request, an ``ensure_sync`` check (``inspect``
calls) besides the call itself. The kernel's checks (query limit, add-on
hooks, auth decision) run in that order; consecutive ones share one
:class:`RequestGate`, so with nothing registered between them they cost one hook.
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import Request
from flask import request

#: A step gets the request being served: one context lookup for all steps.
Step = t.Callable[[Request], t.Any]


class RequestGate:
    """One ``before_request`` hook running several steps in order; the first
    step that returns something other than ``None`` ends the request with it,
    as separate Flask hooks would."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def __call__(self) -> t.Any:
        req = request._get_current_object()  # type: ignore[attr-defined]
        for step in self.steps:
            result = step(req)
            if result is not None:
                return result
        return None


def add_before_request(app: Flask, step: Step) -> None:
    """Run ``step`` before every request, after every hook registered so far.

    It joins the last registered hook when that is a :class:`RequestGate`;
    otherwise (none yet, or an add-on's own Flask hook came last) a new gate is
    registered, so the order of all hooks stays the registration order.
    """
    funcs = app.before_request_funcs.setdefault(None, [])
    gate = funcs[-1] if funcs and isinstance(funcs[-1], RequestGate) else None
    if gate is None:
        gate = RequestGate()
        app.before_request(gate)
    gate.steps.append(step)

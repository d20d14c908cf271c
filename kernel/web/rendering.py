"""From a controller method's return value to a response.

=============================================  ======================================
method returns                                  response
=============================================  ======================================
``str``                                         200 ``text/html; charset=utf-8``
``dict``, ``list``, number, ``bool``, ``None``  200 ``application/json`` (``application/cbor``
                                                when ``Accept`` prefers CBOR)
``bytes``                                       200 ``application/octet-stream``
a generator or iterator                         streamed
``(body, status)``, ``(body, status, headers)``  as Flask does
a Flask or Werkzeug ``Response``                passed through
=============================================  ======================================
"""

from __future__ import annotations

import collections.abc as cabc
import functools
import typing as t

from flask import Flask
from flask import Request
from flask import current_app
from flask import render_template
from flask import request
from flask import stream_with_context
from werkzeug.wrappers import Response as WerkzeugResponse

from .cbor import cbor_or_json
from .cbor import prefers_cbor

_JSON_TYPES = (dict, list, int, float, bool, type(None))


def to_response(value: t.Any, app: Flask | None = None,
                req: Request | None = None) -> WerkzeugResponse:
    """Turn a controller's return value into a response (see the module docstring).

    :param app: the current app, when the caller holds it already (saves a
        context lookup per request).
    :param req: the current request, likewise (its ``Accept`` picks JSON or CBOR).
    :raises TypeError: for a value of any other type.
    """
    if isinstance(value, WerkzeugResponse):
        return value
    if isinstance(value, tuple):
        if not 2 <= len(value) <= 3:
            raise TypeError("a returned tuple must be (body, status) or (body, status, headers)")
        return current_app.make_response((to_response(value[0], app, req), *value[1:]))
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    response_class = app.response_class
    if isinstance(value, str):
        return response_class(value, mimetype="text/html")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return response_class(bytes(value), mimetype="application/octet-stream")
    if isinstance(value, _JSON_TYPES):
        if req is None:
            req = request._get_current_object()  # type: ignore[attr-defined]
        # Flask annotates the provider's answer as the sans-IO base class; it
        # is an instance of app.response_class. A partial, not a lambda: no
        # Python frame per answer.
        json_answer: t.Callable[[], WerkzeugResponse] = functools.partial(  # type: ignore[assignment]
            app.json.response, value)
        return cbor_or_json(value, 200, json_answer, prefers_cbor(req))
    if isinstance(value, cabc.Iterator):
        return response_class(stream_with_context(value), mimetype="text/html")
    raise TypeError(f"a controller method returned a {type(value).__name__}, which is not a "
                    "str, bytes, JSON value, generator, tuple or Response")


def render(template: str, **context: t.Any) -> str:
    """Render ``template`` from the templates folder, with autoescaping."""
    return render_template(template, **context)

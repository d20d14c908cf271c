"""Request limits beyond body size: how many fields, how deep a JSON body.

``MAX_CONTENT_LENGTH`` (413) and the path limits (``MAX_PATH_LENGTH``,
``MAX_PATH_DEPTH``, ``MAX_SEGMENT_LENGTH``: 404 before the file system) live
elsewhere. This module adds:

- ``MAX_FIELDS``: most fields in the query string, in an urlencoded or
  multipart form (Werkzeug's ``max_form_parts``) or at the top level of a JSON
  object body; more is a 413 ``too_many_fields``. Parsing a million tiny
  fields costs far more than their bytes suggest, hence a count.
- ``MAX_FORM_MEMORY_SIZE``: longest urlencoded body, and longest non-file
  field of a multipart one (Flask's own setting); longer is a 413
  ``form_too_large``. Percent-decoding costs Python work per escape, so a
  form of escapes costs many times a plain one of its size: this bounds it.
- ``MAX_JSON_CONTAINERS``: most arrays and objects in a JSON body; more is a
  413 ``json_too_large``. ``json.loads`` makes a Python object of each: a body
  of empty arrays costs many times a plain one of its size, and its memory.
- ``MAX_JSON_DEPTH``: deepest nesting of arrays and objects in a JSON body;
  deeper is a 400 ``json_too_deep``. It is measured in linear time, never by
  recursion nor by a regular expression (:mod:`kernel.web.jsondepth`), before
  ``json.loads`` sees the body.
"""

from __future__ import annotations

from flask import Flask
from flask import Request

from ..core.errors import FormTooLarge
from ..core.errors import JsonTooDeep
from ..core.errors import JsonTooLarge
from ..core.errors import TooManyFields
from ..core.settings import Settings
from .hooks import add_before_request
from .jsondepth import json_shape_past


def check_json_body(data: bytes, max_depth: int, max_containers: int) -> None:
    """Refuse a JSON body nested deeper than ``max_depth``, or holding more than
    ``max_containers`` arrays and objects.

    :raises JsonTooDeep: when it nests too deep.
    :raises JsonTooLarge: when it holds too many arrays and objects.
    """
    shape = json_shape_past(data, min(max_depth, max_containers))
    if shape is None:
        return
    if shape.depth > max_depth:
        raise JsonTooDeep(detail=f"nesting deeper than {max_depth}")
    if shape.containers > max_containers:
        raise JsonTooLarge(detail=f"more than {max_containers} arrays and objects")


def check_field_count(count: int, max_fields: int, where: str) -> None:
    """Refuse more than ``max_fields`` fields.

    :raises TooManyFields: when there are.
    """
    if count > max_fields:
        raise TooManyFields(detail=f"more than {max_fields} fields in the {where}")


def check_urlencoded_form(req: Request, max_fields: int, max_memory: int) -> None:
    """Measure an urlencoded body and count its fields before Werkzeug parses it
    (it applies neither ``MAX_FORM_MEMORY_SIZE`` nor a field count to this
    format; multipart has both).

    :raises FormTooLarge: when it is longer than ``max_memory`` bytes.
    :raises TooManyFields: when it has more than ``max_fields`` fields.
    """
    if req.mimetype == "application/x-www-form-urlencoded":
        data = req.get_data(cache=True)
        if len(data) > max_memory:
            raise FormTooLarge(detail=f"the form is longer than {max_memory} bytes")
        check_field_count(data.count(b"&") + 1 if data else 0, max_fields, "form")


def install_limits(app: Flask, settings: Settings) -> None:
    """Apply ``MAX_FIELDS`` to multipart forms and, on every request, to the query string."""
    max_fields = settings.MAX_FIELDS
    app.config["MAX_FORM_PARTS"] = max_fields
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.MAX_FORM_MEMORY_SIZE

    def limit_query(req: Request) -> None:
        query = req.query_string
        if query:
            # Counted on the raw bytes: no parsing of a hostile query string.
            check_field_count(query.count(b"&") + 1, max_fields, "query string")

    add_before_request(app, limit_query)

"""The request's fields, and the KernKoa ``params`` object built from them.

Fields come from the query string, the form and the top-level keys of a JSON
object body, in that order of precedence (later wins). The body is parsed only
when the request has one. A CBOR body (``application/cbor``) is read as a JSON
one: its decoded value is what the JSON source holds (:mod:`kernel.web.cbor`).
"""

from __future__ import annotations

import json
import types
import typing as t

from flask import Request
from werkzeug.datastructures import FileStorage
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.datastructures import MultiDict
from werkzeug.test import EnvironBuilder
from werkzeug.wsgi import get_content_length

from ..core.errors import BadRequestBody
from ..core.settings import Settings
from .body import is_chunked
from .cbor import decode_cbor
from .cbor import is_cbor
from .limits import check_field_count
from .limits import check_json_body
from .limits import check_urlencoded_form
from .state import current_settings

#: The field sources, lowest precedence first.
SOURCES = ("query", "form", "json")

#: Form media types whose fields the kernel reads (besides JSON).
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

#: What :meth:`RequestFields.sources` answers for a source the request lacks
#: (immutable: shared by every request).
_NO_FIELDS: dict[str, t.Any] = types.MappingProxyType({})  # type: ignore[assignment]
_NO_FORM: MultiDict[str, t.Any] = ImmutableMultiDict()

#: Keys the 2019 KernKoa put into its params dict; still readable as
#: ``params["get"]`` and so on when no field of that name exists.
_LEGACY_KEYS = {
    "get": lambda p: p.query.to_dict(),
    "post": lambda p: p.form.to_dict(),
    "urlpath": lambda p: p.urlpath,
    "data": lambda p: p.json,
}


class RequestFields:
    """The fields of one request by source, parsed on first use.

    :param request: the Flask request.
    :param settings: the settings whose limits apply (default: the current app's).
    """

    def __init__(self, request: Request, settings: Settings | None = None) -> None:
        self.request = request
        self._limits = settings
        self._body: tuple[MultiDict[str, t.Any], t.Any] | None = None
        #: Whether the body held a JSON document (``null`` included).
        self._json_sent = False
        #: Whether the request carries a body at all (every binding asks, most
        #: more than once: told once, from the environ as Werkzeug reads it,
        #: chunked meaning length ``None``, without building the header object).
        environ = request.environ
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit() and length.isascii() \
                and "HTTP_TRANSFER_ENCODING" not in environ:
            # The usual body: a length of plain digits, read as Werkzeug reads it.
            self.has_body = int(length) > 0
        else:
            self.has_body = bool(length or "HTTP_TRANSFER_ENCODING" in environ) and (
                bool(get_content_length(environ)) or is_chunked(environ))

    @property
    def query(self) -> MultiDict[str, str]:
        """The query-string fields."""
        return self.request.args

    @property
    def mimetype(self) -> str:
        """The body's media type."""
        return self.request.mimetype

    def params(self, urlpath: str) -> Params | None:
        """KernKoa's ``params`` of this request (see :func:`build_params`)."""
        return build_params(self, urlpath)

    @property
    def form(self) -> MultiDict[str, t.Any]:
        """Form fields (urlencoded or multipart); empty for other bodies."""
        return self._parse_body()[0]

    @property
    def json(self) -> t.Any:
        """The parsed JSON body, of any JSON type, or ``None``."""
        return self._parse_body()[1]

    @property
    def body_is_readable(self) -> bool:
        """Whether the body's media type is one the kernel reads fields from:
        JSON (``application/json``, ``application/*+json``), CBOR, or a form."""
        req = self.request
        return req.is_json or req.mimetype in FORM_TYPES or is_cbor(req)

    @property
    def json_type(self) -> str | None:
        """The JSON Schema type of the JSON body (``object``, ``array``,
        ``null``...), or ``None`` when the request carries no JSON body."""
        body = self.json
        if not self._json_sent:
            return None
        return _json_type(body)

    @property
    def json_fields(self) -> dict[str, t.Any]:
        """The top-level keys of a JSON object body."""
        body = self.json
        return body if isinstance(body, dict) else {}

    @property
    def files(self) -> MultiDict[str, FileStorage]:
        """Uploaded files of a multipart body."""
        # Only a multipart body carries files: asking Werkzeug for them on any
        # other body would run its form parser for nothing (~6 µs).
        if not self.has_body or self.request.mimetype != "multipart/form-data":
            return MultiDict()
        return self.request.files

    def body_field_names(self) -> set[str]:
        """Names of every field that came in the body (form or JSON)."""
        if not self.has_body:
            return set()
        form, body = self._parse_body()
        if body is not None:  # a JSON body has no form fields and no files
            return set(body) if isinstance(body, dict) else set()
        return set(form.keys()) | set(self.files.keys())

    def sources(self) -> tuple[dict[str, t.Any], MultiDict[str, t.Any], MultiDict[str, str]]:
        """The JSON object fields, the form and the query, highest precedence
        first (each empty when the request has none): one call per request
        where :meth:`lookup` would be one per field."""
        req = self.request
        # No query string, nothing to parse (Werkzeug would parse "" all the same).
        query = req.args if req.environ.get("QUERY_STRING") else _NO_FORM
        if not self.has_body:
            return _NO_FIELDS, _NO_FORM, query
        form, body = self._parse_body()
        return (body if isinstance(body, dict) else _NO_FIELDS), form, query

    def json_object_fields(self) -> dict[str, t.Any] | None:
        """The JSON (or CBOR) object body when its keys are the request's only
        fields: no query string, and a body that is an object (so no form and
        no files); else ``None``. The body is read and checked as by
        :meth:`sources`."""
        if not self.has_body or self.request.environ.get("QUERY_STRING"):
            return None
        body = self._parse_body()[1]
        return body if isinstance(body, dict) else None

    def lookup(self, name: str) -> tuple[str, t.Any] | None:
        """The winning source of field ``name`` and its value there.

        The value is the JSON value itself for ``json``, and the list of every
        value of the field for ``query`` and ``form``.
        """
        if self.has_body:
            form, body = self._parse_body()
            if isinstance(body, dict) and name in body:
                return "json", body[name]
            if name in form:
                return "form", form.getlist(name)
        query = self.request.args
        if name in query:
            return "query", query.getlist(name)
        return None

    def is_empty(self) -> bool:
        """True when the request carries no field, no file and no JSON at all."""
        return not self.query and not (
            self.has_body and (self.form or self.files or self.json is not None)
        )

    def _parse_body(self) -> tuple[MultiDict[str, t.Any], t.Any]:
        if self._body is None:
            if not self.has_body:
                self._body = (MultiDict(), None)
            elif self.request.is_json:
                self._body = (MultiDict(), self._parse_json())
            elif is_cbor(self.request):
                self._body = (MultiDict(), self._parse_cbor())
            else:
                settings = self._settings()
                check_urlencoded_form(self.request, settings.MAX_FIELDS,
                                      settings.MAX_FORM_MEMORY_SIZE)
                # KernKoaRequest knows what Werkzeug's silent parser hid; a
                # plain Flask request (built by hand) does not say.
                error = getattr(self.request, "form_error", None)
                if error is not None:
                    raise BadRequestBody("The form body could not be parsed.", detail=error)
                self._body = (self.request.form, None)
        return self._body

    def _parse_json(self) -> t.Any:
        data = self.request.get_data(cache=True)
        if not data.strip():
            return None
        self._json_sent = True
        settings = self._limits or current_settings()
        max_depth, max_containers = settings.MAX_JSON_DEPTH, settings.MAX_JSON_CONTAINERS
        # Neither limit can be passed with fewer brackets than the lower one
        # (json_shape_past's own first test, here to save two calls per body).
        if data.count(b"[") + data.count(b"{") > min(max_depth, max_containers):
            check_json_body(data, max_depth, max_containers)
        try:
            body = json.loads(data)
        except (ValueError, RecursionError) as error:
            raise BadRequestBody("The JSON body is not valid JSON.", detail=str(error)) from None
        # Only a \uD800-\uDFFF escape makes a lone surrogate (raw bytes are
        # decoded as UTF-8, which has none): most bodies skip the check.
        # (find, not "in": "in" on bytes first tries the operand as an int, and
        # the TypeError it raises and clears costs more than the search.)
        if data.find(b"\\ud") != -1 or data.find(b"\\uD") != -1:
            _refuse_lone_surrogates(body)
        if isinstance(body, dict) and len(body) > settings.MAX_FIELDS:
            check_field_count(len(body), settings.MAX_FIELDS, "JSON body")
        return body

    def _parse_cbor(self) -> t.Any:
        # Bound as JSON is: the same limits, the decoded value as the JSON source.
        data = self.request.get_data(cache=True)
        if not data:
            return None
        self._json_sent = True
        settings = self._settings()
        body = decode_cbor(data, settings.MAX_JSON_DEPTH, settings.MAX_JSON_CONTAINERS)
        if isinstance(body, dict):
            check_field_count(len(body), settings.MAX_FIELDS, "CBOR body")
        return body

    def _settings(self) -> Settings:
        # The limits of the app serving the request (config.py's outside one).
        return self._limits or current_settings()


def _refuse_lone_surrogates(body: t.Any) -> None:
    """Refuse a JSON body holding a string with a lone surrogate (``"\\ud800"``).

    No text can hold one (I-JSON, RFC 7493, forbids them): it could not be
    written into a UTF-8 answer, a log line or a database.

    :raises BadRequestBody: when it does.
    """
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestBody("The JSON body holds a string that is not text "
                             "(a lone UTF-16 surrogate).") from None


class GivenFields(RequestFields):
    """Fields handed over by code (``exeTask(self, name, {...})``), bound as the
    top-level keys of a JSON object body would be: no query, form or files.

    :param values: the fields; an empty mapping or ``None`` is no body at all.
    """

    def __init__(self, values: t.Mapping[str, t.Any] | None, settings: Settings) -> None:
        super().__init__(Request(EnvironBuilder(method="POST").get_environ()), settings)
        body = dict(values) if values else None
        self._body = (MultiDict(), body)
        self._json_sent = body is not None
        self.has_body = body is not None

    @property
    def body_is_readable(self) -> bool:
        """Always: the fields are a JSON object already."""
        return True


def _json_type(value: t.Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


class Params(dict[str, t.Any]):
    """KernKoa's ``params``: field name to its first value, query < form < JSON.

    Iterating gives only the request's fields, as the KernKoa README examples
    expect. The sources stay reachable as attributes.
    """

    def __init__(self, fields: RequestFields, urlpath: str) -> None:
        super().__init__()
        for name in fields.query:
            self[name] = fields.query[name]
        if fields.has_body:
            for name in fields.form:
                self[name] = fields.form[name]
            self.update(fields.json_fields)
        self._fields = fields
        #: The URL path that was called, without the leading "/".
        self.urlpath = urlpath
        #: The HTTP method of the request.
        self.method = fields.request.method

    @property
    def request_fields(self) -> RequestFields:
        """The fields this params was built from, by source."""
        return self._fields

    @property
    def query(self) -> MultiDict[str, str]:
        """The query-string fields, every value kept."""
        return self._fields.query

    @property
    def form(self) -> MultiDict[str, t.Any]:
        """The form fields, every value kept."""
        return self._fields.form

    @property
    def json(self) -> t.Any:
        """The whole parsed JSON body, of any JSON type, or ``None``."""
        return self._fields.json

    @property
    def files(self) -> MultiDict[str, FileStorage]:
        """Uploaded files, as Werkzeug ``FileStorage`` objects."""
        return self._fields.files

    def getlist(self, name: str) -> list[t.Any]:
        """Every value of ``name``: query values, then form values, then JSON."""
        values = list(self.query.getlist(name)) + list(self.form.getlist(name))
        if name in self._fields.json_fields:
            value = self._fields.json_fields[name]
            values.extend(value if isinstance(value, list) else [value])
        return values

    def __missing__(self, key: str) -> t.Any:
        legacy = _LEGACY_KEYS.get(key)
        if legacy is None:
            raise KeyError(key)
        return legacy(self)

    def get(self, key: str, default: t.Any = None) -> t.Any:
        """Like ``dict.get``, and the legacy keys answer as ``params[key]`` does."""
        try:
            return self[key]
        except KeyError:
            return default


def build_params(fields: RequestFields, urlpath: str) -> Params | None:
    """KernKoa's ``params``: ``None`` when the request carries no fields at all."""
    if fields.is_empty():
        return None
    return Params(fields, urlpath)

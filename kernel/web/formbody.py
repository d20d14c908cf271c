"""The request class the kernel builds, and how it reads a form body.

Werkzeug's form parser is silent: a malformed multipart body (a part without
its headers, a body without parts) reads as no fields at all, and a part
without a name is filed under ``None``. The kernel's parser reads as Werkzeug
does, and keeps the error (:attr:`KernKoaRequest.form_error`), so a method
taking fields answers 400 instead of its defaults (or a 500).

It also refuses a part whose name holds a backslash. Werkzeug reads a name as
an RFC 7578 quoted string, where a backslash escapes the next character
(``name="a\\b"`` is ``ab``, ``name="a\\"`` has no end); HTML's form encoding,
which browsers and most clients use, sends a backslash as it is. The two
readings differ, so the kernel takes neither.
"""

from __future__ import annotations

import typing as t

from werkzeug.datastructures import Headers
from werkzeug.formparser import FormDataParser
from werkzeug.formparser import MultiPartParser
from werkzeug.sansio.multipart import File

from .body import WholeBodyRequest
from .requestid import request_id_of


def _refuse_backslash_in_name(headers: Headers) -> None:
    disposition = headers.get("Content-Disposition", "")
    for parameter in disposition.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "name" and "\\" in value:
            raise ValueError("a part's name holds a backslash, which encoders disagree on")


class NameCheckingMultiPartParser(MultiPartParser):
    """Werkzeug's multipart parser, refusing a part whose name holds a backslash."""

    def get_part_charset(self, headers: Headers) -> str:
        """Werkzeug's answer, once the field part's name is checked."""
        _refuse_backslash_in_name(headers)
        return super().get_part_charset(headers)

    def start_file_streaming(self, event: File, total_content_length: int | None) -> t.IO[bytes]:
        """Werkzeug's stream, once the file part's name is checked."""
        _refuse_backslash_in_name(event.headers)
        return super().start_file_streaming(event, total_content_length)


class ReportingFormDataParser(FormDataParser):
    """Werkzeug's form parser, keeping the error of a malformed body where the
    silent parser only reads it as empty."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **{**kwargs, "silent": False})
        #: Why the body could not be parsed, or ``None``.
        self.error: str | None = None

    def parse(self, stream: t.IO[bytes], mimetype: str, content_length: int | None,
              options: dict[str, str] | None = None) -> t.Any:
        """Parse as Werkzeug does; a malformed body reads as empty, its error kept."""
        try:
            parsed = super().parse(stream, mimetype, content_length, options)
        except ValueError as error:
            self.error = str(error)
            return stream, self.cls(), self.cls()
        _, form, files = parsed
        if None in form or None in files:
            # RFC 7578: every part names its field; Werkzeug files one that does not under None.
            self.error = "a part of the body has no field name"
            return stream, self.cls(), self.cls()
        return parsed

    def _parse_multipart(self, stream: t.IO[bytes], mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> t.Any:
        # Werkzeug's own step, with the name-checking parser in place of its own.
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        parser = NameCheckingMultiPartParser(
            stream_factory=self.stream_factory, max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts, cls=self.cls)
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class KernKoaRequest(WholeBodyRequest):
    """The kernel's request: its body read whole or refused (:class:`WholeBodyRequest`),
    knowing whether its form body was malformed, and its request id."""

    form_data_parser_class = ReportingFormDataParser

    #: The parser that read the form body, once it was read.
    _form_parser: ReportingFormDataParser | None = None

    #: ``(path, target, endpoint)`` or ``(path, error, None)``: how the catch-all
    #: path of this request resolved (see :func:`kernel.web.dispatch.resolve_for_request`).
    kernkoa_resolved: tuple[str, t.Any, t.Any] | None = None

    @property
    def request_id(self) -> str:
        """This request's id: its sane ``X-Request-Id``, else a new one
        (:mod:`kernel.web.requestid`), the same however often it is read."""
        return request_id_of(self.environ)

    def make_form_data_parser(self) -> FormDataParser:
        """Werkzeug's parser, kept to ask it about errors."""
        parser = super().make_form_data_parser()
        if isinstance(parser, ReportingFormDataParser):
            self._form_parser = parser
        return parser

    @property
    def form_error(self) -> str | None:
        """Why the form body could not be parsed (read: as empty), or ``None``."""
        self._load_form_data()
        return self._form_parser.error if self._form_parser is not None else None

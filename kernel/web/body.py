"""The request body as the kernel reads it: whole, or refused with a 413, never cut.

A body with a ``Content-Length`` over ``MAX_CONTENT_LENGTH`` is refused by
Werkzeug before anything is read. A chunked body (``Transfer-Encoding:
chunked``) announces no length, and each server hands it on its own way:

- Werkzeug's development server de-chunks it and sets ``wsgi.input_terminated``.
  Werkzeug then reads it through a ``LimitedStream`` that takes the limit for
  the end of the body, so a longer one reached the controller cut to the limit.
- uWSGI's HTTP socket leaves it chunked: ``wsgi.input`` is empty and
  ``uwsgi.chunked_read()`` gives the chunks, so Werkzeug saw no body at all.
- nginx de-chunks it, refuses it past ``client_max_body_size`` itself and
  passes the rest on with a ``Content-Length``: the ordinary case above.

:func:`body_stream`, the stream of :class:`WholeBodyRequest`, reads the first
two as whole bodies through :class:`WholeBody`, which tells a body that ends
at the limit from one that goes on past it (413). A chunked body on any other
server, one that neither de-chunks it nor offers ``uwsgi.chunked_read``, is a
411: the kernel does not act on a body it cannot read.
"""

from __future__ import annotations

import io
import typing as t

from flask import Request
from flask import current_app
from flask import has_app_context
from werkzeug.exceptions import LengthRequired
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_set_header
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream
from werkzeug.wsgi import get_content_length
from werkzeug.wsgi import get_input_stream

try:  # present only inside a uWSGI worker
    import uwsgi
except ImportError:
    uwsgi = None

#: Bytes of a refused body still read, and dropped, so that a client still
#: sending it can read the 413 (a server closing on unread bytes resets the
#: connection, and the answer may be lost); past them the connection is cut.
DRAINED_AFTER_REFUSAL = 1024 * 1024


def is_chunked(environ: t.Mapping[str, t.Any]) -> bool:
    """Whether the request says its body comes in chunks (as Werkzeug's server reads it)."""
    coding = environ.get("HTTP_TRANSFER_ENCODING")
    return bool(coding) and "chunked" in parse_set_header(coding)


class WholeBody(LimitedStream):
    """A body read up to ``limit`` bytes, refused (413) when it goes on past them.

    Werkzeug's stream for a maximum stops reading at the limit, so a longer
    body looks like one that ended there. At the limit this one reads one byte
    more: none means the body ended, any means it is too large.
    """

    def __init__(self, stream: t.IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)

    def on_exhausted(self) -> None:
        """At the limit: refuse the body if it goes on."""
        if self._stream.read(1):
            self._drain()
            raise RequestEntityTooLarge()

    def _drain(self) -> None:
        left = DRAINED_AFTER_REFUSAL
        while left > 0:
            try:
                dropped = self._stream.read(min(left, 64 * 1024))
            except (OSError, ValueError):
                return
            if not dropped:
                return
            left -= len(dropped)

    def readall(self) -> bytes:
        """The whole body (a 413 if it is longer than the limit)."""
        data = super().readall()
        if self.is_exhausted:
            self.on_exhausted()
        return data


class UwsgiChunks(io.RawIOBase):
    """A chunked body as uWSGI hands it on, de-chunked by ``read_chunk`` (``uwsgi.chunked_read``).

    ``read_chunk`` gives the next chunk's bytes, ``b""`` after the last one,
    and raises ``OSError`` when the client breaks off or stalls.
    """

    def __init__(self, read_chunk: t.Callable[[], bytes]) -> None:
        super().__init__()
        self._read_chunk = read_chunk
        self._chunk = memoryview(b"")
        self._ended = False

    def readable(self) -> bool:
        """Always: it is an input stream."""
        return True

    def readinto(self, buffer: t.Any) -> int:
        """Fill ``buffer`` from the current chunk, fetching the next one when it is used up."""
        while not self._chunk and not self._ended:
            chunk = self._read_chunk()
            self._ended = not chunk
            self._chunk = memoryview(chunk)
        size = min(len(buffer), len(self._chunk))
        buffer[:size] = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return size


def body_stream(environ: dict[str, t.Any], limit: int | None) -> t.IO[bytes]:
    """The request body of ``environ`` as a stream, at most ``limit`` bytes (or refused).

    :raises RequestEntityTooLarge: when ``Content-Length`` is over the limit
        (at once) or the body goes on past it (when it gets there).
    :raises LengthRequired: for a chunked body this server cannot hand on.
    """
    if "wsgi.input_terminated" in environ:
        # The server ends the stream where the body ends (it de-chunked it):
        # read to that end (a Content-Length over the limit is refused at once).
        source = t.cast(t.IO[bytes], environ["wsgi.input"])
        if limit is not None and (get_content_length(environ) or 0) > limit:
            raise RequestEntityTooLarge()
    elif ("HTTP_TRANSFER_ENCODING" in environ  # the usual body stops at this lookup
          and get_content_length(environ) is None and is_chunked(environ)):
        if uwsgi is None:
            raise LengthRequired("This server cannot read a chunked body: "
                                 "send it with a Content-Length.")
        source = t.cast(t.IO[bytes], UwsgiChunks(uwsgi.chunked_read))
    else:
        return get_input_stream(environ, max_content_length=limit)
    return source if limit is None else t.cast(t.IO[bytes], WholeBody(source, limit))


class WholeBodyRequest(Request):
    """Flask's request, whose body is read whole or refused: :func:`body_stream`."""

    @property
    def max_content_length(self) -> int | None:
        """Flask's: the limit set on this request, else the app's
        ``MAX_CONTENT_LENGTH`` (read per request: a change counts at once),
        else Werkzeug's. The app is taken once from its context: a config
        read through the ``current_app`` proxy raised and caught an
        ``AttributeError`` on every request with a body."""
        if self._max_content_length is None and has_app_context():
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            limit: int | None = app.config["MAX_CONTENT_LENGTH"]
            return limit
        return Request.max_content_length.fget(self)  # type: ignore[attr-defined,no-any-return]

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    @cached_property
    def stream(self) -> t.IO[bytes]:
        """The body as a stream, read at most once; see :func:`body_stream`."""
        if self.shallow:
            raise RuntimeError("A shallow request does not read its body.")
        return body_stream(self.environ, self.max_content_length)

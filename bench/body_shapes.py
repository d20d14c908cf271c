"""Shapes of request bodies, hostile and plain, of any size, for the bench and the tests.

Each hostile shape is built to make a scanner backtrack or repeat work: long
runs of escapes, strings that never end, brackets by the million, separators
without fields, boundaries that never complete. Each plain shape is what an
honest client sends, the baseline a hostile body of the same size is
compared with (``bench/bodies_bench.py``).

Standard library only. It lives in the bench, which never imports the tests; the
hostile-body tests import it from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

#: The multipart boundary of every multipart shape but the long-boundary one.
BOUNDARY = "kernkoa-shape"


@dataclass(frozen=True)
class Shape:
    """A body: ``prefix``, then ``unit`` as often as the size allows, then ``suffix``."""

    name: str
    content_type: str
    unit: bytes
    prefix: bytes = b""
    suffix: bytes = b""
    #: Whether the shape is what an honest client sends.
    plain: bool = False
    #: What fills the bytes left after the last whole unit (JSON whitespace keeps
    #: a JSON shape valid); by default the start of one more unit.
    pad: bytes | None = None

    def build(self, size: int) -> bytes:
        """The body, exactly ``size`` bytes long when ``size`` is at least prefix + suffix."""
        room = max(0, size - len(self.prefix) - len(self.suffix))
        middle = self.unit * (room // len(self.unit))
        left = room - len(middle)
        middle += self.unit[:left] if self.pad is None else self.pad * left
        return self.prefix + middle + self.suffix

    @property
    def kind(self) -> str:
        """``json``, ``form`` or ``multipart``: which reader of the kernel it aims at."""
        if "json" in self.content_type:
            return "json"
        if "urlencoded" in self.content_type:
            return "form"
        return "multipart"


def _multipart(boundary: str = BOUNDARY) -> str:
    return f"multipart/form-data; boundary={boundary}"


_RECORD = json.dumps({"id": 12345, "name": "Ada \"the first\" Lovelace", "path": "C:\\data",
                      "tags": ["math", "engines"], "active": True}).encode()
_PART_HEAD = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.bin\""
              "\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
_FIELD_HEAD = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".encode()
_LONG_BOUNDARY = "b" * 200

SHAPES = [
    # JSON: what the depth scanner reads before json.loads.
    Shape("JSON records (plain)", "application/json", _RECORD + b",", b"[", _RECORD + b"]",
          plain=True, pad=b" "),
    Shape("JSON escaped quotes, unterminated (issue 13)", "application/json", b'\\"',
          b"{}" * 70 + b'"'),
    Shape("JSON backslash run, unterminated", "application/json", b"\\", b"[]" * 70 + b'"'),
    Shape("JSON brackets in an unterminated string", "application/json", b"[{", b"[]" * 70 + b'"'),
    Shape("JSON escapes and brackets in a string", "application/json", b'\\\\\\"[{',
          b"[]" * 70 + b'"'),
    Shape("JSON quotes only", "application/json", b'"', b"[]" * 70),
    Shape("JSON empty arrays", "application/json", b"[],", b"[", b"[]]", pad=b" "),
    Shape("JSON nested to the limit", "application/json", b"[" * 63 + b"]" * 63 + b",", b"[",
          b"[]]", pad=b" "),
    Shape("JSON strings of brackets", "application/json", b'"[{",', b"[", b'""]', pad=b" "),
    Shape("JSON strings and arrays", "application/json", b'"[",[],', b"[", b'""]', pad=b" "),
    Shape("JSON unclosed arrays", "application/json", b"[", b""),
    # urlencoded forms: the field count, then Werkzeug's parser.
    Shape("form one long field (plain)", "application/x-www-form-urlencoded", b"x", b"a=",
          plain=True),
    Shape("form ampersands", "application/x-www-form-urlencoded", b"&"),
    Shape("form equals signs", "application/x-www-form-urlencoded", b"=", b"a"),
    Shape("form broken percent escapes", "application/x-www-form-urlencoded", b"%2", b"a="),
    Shape("form empty fields", "application/x-www-form-urlencoded", b"a=&"),
    # multipart forms: Werkzeug's parser, with MAX_FIELDS as its part limit.
    Shape("multipart one file (plain)", _multipart(), b"x", _PART_HEAD,
          f"\r\n--{BOUNDARY}--\r\n".encode(), plain=True),
    Shape("multipart line breaks, no boundary", _multipart(), b"\r\n"),
    # A field part, not a file: Werkzeug leaves the spooled file of a part it
    # was reading open when the body breaks off (closed by the garbage collector).
    Shape("multipart boundaries never completed", _multipart(), f"\r\n--{BOUNDARY[:-1]}".encode(),
          _FIELD_HEAD),
    Shape("multipart spaces after a boundary", _multipart(), b" ", f"--{BOUNDARY}".encode()),
    Shape("multipart long boundary", _multipart(_LONG_BOUNDARY),
          f"\r\n--{_LONG_BOUNDARY[:-1]}x".encode(),
          f"--{_LONG_BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".encode()),
    Shape("multipart header continuations", _multipart(), b"\r\n X-Header: value",
          f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"".encode()),
]

HOSTILE = [shape for shape in SHAPES if not shape.plain]

#: The plain shape of each kind: what a hostile body of that kind is compared with.
PLAIN = {shape.kind: shape for shape in SHAPES if shape.plain}

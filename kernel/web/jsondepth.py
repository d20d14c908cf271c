"""How deeply a JSON text nests, measured without parsing it, in linear time.

The kernel refuses a body nested deeper than ``MAX_JSON_DEPTH`` before
``json.loads`` sees it. That check reads client bytes, so it must cost no
more than the parse it guards, whatever the bytes: it is a fixed sequence of
whole-buffer passes done by CPython in C (``bytes.count``, ``replace``,
``translate``, ``split``, ``itertools.accumulate``), each reading its input
once from left to right. There is no regular expression, so nothing can
backtrack. :class:`ScanWork` counts what every pass read, so tests can check
that the work grows with the size of the body and no faster.

The passes:

1. A backslash takes the byte after it out of play. Pairs of backslashes go
   first (from the left, as a JSON reader pairs them), then every backslash
   left standing together with the quote or bracket it escapes.
2. Only quotes and brackets are kept: opening brackets become +1 and closing
   ones -1 (one signed byte each), quotes stay quotes.
3. Two adjacent quotes are dropped. They end one string and start the next (or
   make an empty string), with no bracket between them, so dropping them moves
   no bracket into or out of a string. Most strings of a document hold no
   bracket and go in this pass, so the next one has little to split.
4. Brackets inside strings are dropped: split on the quotes, the pieces are
   outside and inside a string by turns. The split runs chunk by chunk, so a
   body of a million strings never makes a million pieces at once.
5. The depth after each bracket is the running sum of the +1s and -1s; the
   deepest point is its maximum.

For a JSON text, and for every prefix of one, the depth is exact. A backslash
outside a string, or a closing bracket with nothing open, is not JSON:
``json.loads`` stops there with an error, so what the scan says past that point
cannot let it recurse deeper.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

#: Opening brackets count +1, closing ones -1 (0xFF as a signed byte); the rest is dropped.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_QUOTE_OR_BRACKET = bytes(byte for byte in range(256) if byte not in b'"[]{}')

#: What a backslash left alone after pass 1's pairs can escape that matters here.
_ESCAPED = (b'\\"', b"\\[", b"\\]", b"\\{", b"\\}")

#: Bytes of the quote-and-bracket text split at a time in pass 4 (bounds its pieces).
SPLIT_CHUNK = 64 * 1024


@dataclass
class ScanWork:
    """What one scan did: every byte its passes read and every item they made."""

    #: Whole-buffer passes run.
    passes: int = 0
    #: Bytes those passes read, summed over the passes.
    bytes_read: int = 0
    #: Python objects made one by one: pieces of the split, turns of its loop.
    items: int = 0

    def read(self, size: int) -> None:
        """Record one pass over ``size`` bytes."""
        self.passes += 1
        self.bytes_read += size

    @property
    def total(self) -> int:
        """Everything counted, in one figure to compare with the body's size."""
        return self.bytes_read + self.items


@dataclass(frozen=True)
class JsonShape:
    """What a JSON text costs to parse, beyond its size."""

    #: Deepest nesting of arrays and objects.
    depth: int
    #: Arrays and objects in all (each one a Python object ``json.loads`` makes).
    containers: int


def json_depth(data: bytes, work: ScanWork | None = None) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``data``.

    Brackets inside strings do not count. Malformed text is not judged here
    (``json.loads`` does that); see the module docstring for what is exact.

    :param work: filled with the work the scan did, when given.
    """
    return json_shape(data, work).depth


def json_shape(data: bytes, work: ScanWork | None = None) -> JsonShape:
    """The :class:`JsonShape` of the JSON text ``data`` (brackets inside strings
    do not count), in the passes of :func:`json_depth`.

    :param work: filled with the work the scan did, when given.
    """
    tally = work if work is not None else ScanWork()
    tally.read(len(data))
    if b"\\" in data:
        data = _drop_escapes(data, tally)
    tally.read(len(data))
    events = data.translate(_BRACKETS, _NOT_QUOTE_OR_BRACKET)
    tally.read(len(events))
    events = events.replace(b'""', b"")
    outside = _outside_strings(events, tally)
    tally.read(len(outside))
    with memoryview(outside) as signed:
        depth = max(itertools.accumulate(signed.cast("b"), initial=0))
    tally.read(len(outside))
    return JsonShape(depth, outside.count(b"\x01"))


def json_depth_exceeds(data: bytes, max_depth: int, work: ScanWork | None = None) -> bool:
    """Whether the JSON text ``data`` nests arrays/objects deeper than ``max_depth``.

    :param work: filled with the work the scan did, when given.
    """
    shape = json_shape_past(data, max_depth, work)
    return shape is not None and shape.depth > max_depth


def json_shape_past(data: bytes, limit: int, work: ScanWork | None = None) -> JsonShape | None:
    """The :class:`JsonShape` of ``data``, or ``None`` when it cannot pass ``limit``
    in depth or in containers.

    Cheap when it cannot: a body with no more brackets than the limit is not
    scanned further.

    :param work: filled with the work the scan did, when given.
    """
    if work is not None:
        work.read(len(data))
        work.read(len(data))
    if data.count(b"[") + data.count(b"{") <= limit:
        return None
    return json_shape(data, work)


def _drop_escapes(data: bytes, tally: ScanWork) -> bytes:
    # Pairs first: after that no two backslashes touch, so dropping an escape
    # never makes a new one (the byte before a lone backslash is not one).
    for escape in (b"\\\\", *_ESCAPED):
        tally.read(len(data))
        data = data.replace(escape, b"")
    return data


def _outside_strings(events: bytes, tally: ScanWork) -> bytes | bytearray:
    tally.read(len(events))
    if b'"' not in events:
        return events
    kept = bytearray()
    inside = False
    for start in range(0, len(events), SPLIT_CHUNK):
        chunk = events[start:start + SPLIT_CHUNK]
        tally.read(len(chunk))
        pieces = chunk.split(b'"')
        # Pieces alternate outside/inside, starting where the last chunk ended.
        kept += b"".join(pieces[inside::2])
        tally.items += len(pieces) + 1
        if len(pieces) % 2 == 0:  # an odd number of quotes in the chunk
            inside = not inside
    return kept

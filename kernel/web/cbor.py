"""CBOR (RFC 8949) on the wire: ``application/cbor`` bodies read as JSON ones, and answers.

A CBOR body is bound exactly like a JSON body: the top-level keys of a map are
fields and ``params.json`` holds the whole decoded value. So that it can be,
the kernel accepts only CBOR whose decoded value a JSON body could have held:

=====================================  =========================================
CBOR item                              bound as
=====================================  =========================================
map with text keys, array              ``dict``, ``list``
text, integer, float, true/false/null  ``str``, ``int``, ``float``, ``bool``, ``None``
tag 0 (date/time text)                 the text itself (RFC 3339, as JSON sends it)
tag 1 (epoch date/time)                the number of seconds itself
tags 2, 3 (bignums)                    ``int`` (at most 1785 bytes: 4299 digits)
tag 4 (decimal fraction)               ``float``, as a JSON number with a fraction
=====================================  =========================================

Everything else is a 400 ``unsupported_cbor``: other tags (shared values, string
references, sets... would give ``params.json`` a cycle or a type JSON lacks),
byte strings outside a bignum, ``undefined`` and other simple values, map keys
that are not text. A body that is not one well-formed CBOR item (truncated, a
reserved header, a break out of place, bytes after the item) is a 400
``bad_request``. The JSON limits apply: ``MAX_JSON_DEPTH`` (400
``json_too_deep``) counts nested arrays and maps, ``MAX_JSON_CONTAINERS`` (413
``json_too_large``) counts them all, ``MAX_FIELDS`` the top-level map's keys.

All of that is checked by :func:`scan_cbor` before ``cbor2`` sees a byte: one
pass from left to right over the item headers, with its own stack (no
recursion), skipping string contents by their declared length. Every turn of
its loop reads at least one byte, so it does at most ``len(data)`` turns
whatever the bytes; a declared length longer than the bytes left is refused
before anything is allocated for it. Inside arrays and maps, items whose head
gives their whole size (numbers, short texts, tags 0-3 on those) are skipped in
a tight loop, and a run of one-byte items by one ``bytes.find`` in C: the worst
shape, a body of two-byte items, costs about 0.2 µs per byte.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import cbor2
from flask import Request
from flask import current_app
from werkzeug.wrappers import Response

from ..core.errors import BadRequestBody
from ..core.errors import JsonTooDeep
from ..core.errors import JsonTooLarge
from ..core.errors import UnsupportedCbor

#: The media type of CBOR bodies and answers.
CBOR_TYPE = "application/cbor"

#: The tags a body may carry: date/time text and epoch, bignums, decimal fractions.
ALLOWED_TAGS = frozenset({0, 1, 2, 3, 4})

#: Longest bignum, in bytes: 256**1785 has 4299 digits, under the 4300 Python
#: converts to text (``sys.get_int_max_str_digits``), so a bignum can be sent
#: back as JSON; a JSON body's longer integer is refused by ``json.loads`` too.
BIGNUM_MAX_BYTES = 1785

# Frame kinds of the scan's stack.
_ARRAY, _MAP, _DECIMAL, _CHUNKS = 0, 1, 2, 3
_INDEFINITE = -1
_NO_TAG = -1
_BREAK = 0xFF
#: Simple values a JSON body has: false, true, null; and the three float widths.
_JSON_SIMPLE = frozenset({20, 21, 22, 25, 26, 27})
#: 0 for a head that is a whole item of one byte a JSON body has (0..23, -1..-24,
#: false, true, null, ""), 1 for the others (containers count, so they are 1).
_LONG = bytes(0 if b < 0x18 or 0x20 <= b < 0x38 or b in (0x60, 0xF4, 0xF5, 0xF6) else 1
              for b in range(256))


def _whole_size(head: int) -> int:
    """The whole size of an item a JSON body has, when its head alone gives it; else 0."""
    major, info = head >> 5, head & 0x1F
    if major in (0, 1) and info < 28:
        return 1 if info < 24 else 1 + (1 << (info - 24))
    if major == 3 and info < 24:
        return 1 + info
    if head in (0xF4, 0xF5, 0xF6):
        return 1
    return {0xF9: 3, 0xFA: 5, 0xFB: 9}.get(head, 0)


#: :func:`_whole_size` of every head, and of the heads a map key may have (short texts).
_WHOLE = [_whole_size(head) for head in range(256)]
_KEY = [_WHOLE[head] if head >> 5 == 3 else 0 for head in range(256)]
#: What the tags 0-3 may apply to, by their one-byte head, as sizes: a short
#: text, a number, a short byte string (a bignum under 24 bytes).
_AFTER_TAG = {
    0xC0: _KEY,
    0xC1: [_WHOLE[head] if head >> 5 in (0, 1) or head >= 0xF9 else 0 for head in range(256)],
    0xC2: [1 + (head & 0x1F) if 0x40 <= head < 0x58 else 0 for head in range(256)],
}
_AFTER_TAG[0xC3] = _AFTER_TAG[0xC2]

#: Decoders for the allowed tags whose cbor2 value JSON lacks: each item binds
#: as what a JSON client sends for it (the callback gets the tag's content).
_AS_JSON: dict[int, t.Callable[[t.Any, bool], t.Any]] = {
    0: lambda text, _immutable: text,
    1: lambda seconds, _immutable: seconds,
    # float() of the text rounds correctly and turns a huge exponent into inf
    # at once, as json.loads does with 1e999; the exponent is at most 2**64.
    4: lambda pair, _immutable: float(f"{pair[1]}e{pair[0]}"),
}


@dataclass(frozen=True)
class CborShape:
    """What :func:`scan_cbor` found in a well-formed body."""

    #: Item headers read (tags and breaks included): at most the body's length.
    items: int
    #: Arrays and maps in all.
    containers: int
    #: Deepest nesting of arrays and maps.
    depth: int


def _malformed(what: str, pos: int) -> BadRequestBody:
    return BadRequestBody("The CBOR body is not valid CBOR.", detail=f"{what} at byte {pos}")


def _unsupported(what: str, pos: int) -> UnsupportedCbor:
    return UnsupportedCbor(detail=f"{what} at byte {pos}")


def scan_cbor(data: bytes, max_depth: int, max_containers: int) -> CborShape:
    """Check that ``data`` is one well-formed CBOR item a JSON body could hold,
    within the limits, without decoding it (see the module docstring).

    :raises BadRequestBody: when it is not well-formed CBOR, or has trailing bytes.
    :raises UnsupportedCbor: when it holds an item JSON has no counterpart for.
    :raises JsonTooDeep: when arrays and maps nest deeper than ``max_depth``.
    :raises JsonTooLarge: when it holds more than ``max_containers`` arrays and maps.
    """
    end = len(data)
    pos = 0
    # Each frame: [kind, items left (-1: until a break), items seen, string major type].
    stack: list[list[int]] = []
    depth = deepest = containers = items = 0
    tag = _NO_TAG
    # Bytes marked 1 where a one-byte item cannot stand (made on the first array).
    marks = b""
    while True:
        if pos >= end:
            raise _malformed("truncated item", pos)
        frame = stack[-1] if stack else None
        kind = frame[0] if frame is not None else _CHUNKS
        done = 0
        if kind <= _MAP and tag == _NO_TAG:
            if kind == _ARRAY and not _LONG[data[pos]]:
                # A run of one-byte items (small integers, false/true/null, ""):
                # one bytes.find over it in C, not a turn of this loop per byte.
                if not marks:
                    marks = data.translate(_LONG)
                left = frame[1]  # type: ignore[index]
                limit = end if left == _INDEFINITE else min(end, pos + left)
                stop = marks.find(1, pos, limit)
                done = (limit if stop < 0 else stop) - pos
                pos += done
            else:
                # Items whose head gives their whole size (numbers, short texts,
                # false/true/null) in a tight loop; the others go below.
                pos, done = _skip_whole(data, pos, end, frame)  # type: ignore[arg-type]
            if done:
                items += done
                frame[2] += done  # type: ignore[index]
                if frame[1] != _INDEFINITE:  # type: ignore[index]
                    frame[1] -= done  # type: ignore[index]
        if not done:
            start = pos
            head = data[pos]
            pos += 1
            items += 1
            major = head >> 5
            info = head & 0x1F
            if info < 24:
                arg = info
            elif info < 28:
                size = 1 << (info - 24)
                if pos + size > end:
                    raise _malformed("truncated header", start)
                arg = int.from_bytes(data[pos:pos + size], "big")
                pos += size
            elif info == 31 and (2 <= major <= 5 or head == _BREAK):
                arg = _INDEFINITE
            else:
                raise _malformed("reserved or misplaced header", start)
            if head == _BREAK:
                if frame is None or frame[1] != _INDEFINITE or tag != _NO_TAG:
                    raise _malformed("break outside an indefinite-length item", start)
                if frame[0] == _MAP and frame[2] % 2:
                    raise _malformed("map key without a value", start)
                stack.pop()
                if frame[0] != _CHUNKS:
                    depth -= 1
            else:
                if frame is not None and frame[0] != _ARRAY:
                    _check_placement(frame, major, arg, tag, start)
                if major == 6:
                    if tag != _NO_TAG:
                        raise _unsupported("a tag on a tag", start)
                    if arg not in ALLOWED_TAGS:
                        raise _unsupported(f"tag {arg}", start)
                    tag = arg
                    continue  # the tag belongs to the next item
                if tag != _NO_TAG:
                    _check_tagged(tag, major, info, arg, start)
                if frame is not None:
                    frame[2] += 1
                    if frame[1] > 0:
                        frame[1] -= 1
                if major == 3 or major == 2:
                    if major == 2 and tag != 2 and tag != 3:
                        raise _unsupported("a byte string outside a bignum", start)
                    if arg == _INDEFINITE:
                        stack.append([_CHUNKS, _INDEFINITE, 0, major])
                    elif arg > end - pos:
                        raise _malformed("a string longer than the body", start)
                    else:
                        pos += arg
                elif major == 4 or major == 5:
                    containers += 1
                    depth += 1
                    if containers > max_containers:
                        raise JsonTooLarge("The CBOR body holds more arrays and maps than this "
                                           "server decodes.",
                                           detail=f"more than {max_containers} arrays and maps")
                    if depth > max_depth:
                        raise JsonTooDeep("The CBOR body is nested too deeply.",
                                          detail=f"nesting deeper than {max_depth}")
                    if depth > deepest:
                        deepest = depth
                    kind = _DECIMAL if tag == 4 else (_MAP if major == 5 else _ARRAY)
                    count = arg if arg == _INDEFINITE or major == 4 else 2 * arg
                    if count > end - pos:  # every item takes a byte at least
                        raise _malformed("more items declared than the body holds", start)
                    if count:
                        stack.append([kind, count, 0, major])
                    else:
                        depth -= 1
                elif major == 7 and info not in _JSON_SIMPLE:
                    raise _unsupported(f"simple value {arg if info == 24 else info}", start)
                tag = _NO_TAG
        # Close every definite frame whose last item this was.
        while stack and stack[-1][1] == 0:
            if stack.pop()[0] != _CHUNKS:
                depth -= 1
        if not stack and tag == _NO_TAG:
            break
    if pos != end:
        raise _malformed("bytes after the item", pos)
    return CborShape(items, containers, deepest)


def _skip_whole(data: bytes, pos: int, end: int, frame: list[int]) -> tuple[int, int]:
    """Skip the items at ``pos`` of an array or map frame whose head gives their
    whole size; the new position and how many items were skipped."""
    left = frame[1]
    done = 0
    if frame[0] == _ARRAY:
        while left != done and pos < end:
            size = _WHOLE[data[pos]] or _tagged_size(data, pos, end)
            if not size or pos + size > end:
                break
            pos += size
            done += 1
        return pos, done
    if frame[2] % 2:  # a value comes first: the slow path takes it
        return pos, 0
    # Pairs of a short text key and such a value.
    while left != done and pos < end:
        key = _KEY[data[pos]]
        if not key or pos + key >= end:
            break
        size = _WHOLE[data[pos + key]] or _tagged_size(data, pos + key, end)
        if not size or pos + key + size > end:
            break
        pos += key + size
        done += 2
    return pos, done


def _tagged_size(data: bytes, pos: int, end: int) -> int:
    """The whole size of a tag 0-3 item whose content's head gives its size (a
    short date text, an epoch number, a short bignum); else 0."""
    after = _AFTER_TAG.get(data[pos])
    if after is None or pos + 1 >= end:
        return 0
    inner = after[data[pos + 1]]
    return 1 + inner if inner else 0


def _check_placement(frame: list[int], major: int, arg: int, tag: int, start: int) -> None:
    """Refuse an item its enclosing frame cannot hold."""
    kind = frame[0]
    if kind == _CHUNKS:
        if major != frame[3] or arg == _INDEFINITE:
            raise _malformed("a chunk that is not a definite string of the same type", start)
    elif kind == _MAP and frame[2] % 2 == 0:
        if major != 3:
            raise _unsupported("a map key that is not text", start)
    elif kind == _DECIMAL:
        # [exponent, mantissa]: integers; the mantissa may be a bignum.
        bignum = frame[2] == 1 and (major == 6 and arg in (2, 3) or major == 2 and tag != _NO_TAG)
        if major not in (0, 1) and not bignum:
            raise _unsupported("a decimal fraction that is not [integer, integer]", start)


def _check_tagged(tag: int, major: int, info: int, arg: int, start: int) -> None:
    """Refuse an item the tag before it cannot apply to."""
    if tag == _NO_TAG:
        return
    if tag == 0:
        fits = major == 3
    elif tag == 1:
        fits = major in (0, 1) or major == 7 and 25 <= info <= 27
    elif tag == 4:
        fits = major == 4 and arg == 2
    else:  # bignums
        fits = major == 2 and arg != _INDEFINITE and arg <= BIGNUM_MAX_BYTES
    if not fits:
        raise _unsupported(f"tag {tag} on an item it does not apply to", start)


def decode_cbor(data: bytes, max_depth: int, max_containers: int) -> t.Any:
    """The value of the CBOR body ``data``, checked by :func:`scan_cbor` first.

    :raises BadRequestBody: as :func:`scan_cbor` does, and when cbor2 refuses
        the item (text that is not UTF-8, an epoch out of range...).
    """
    shape = scan_cbor(data, max_depth, max_containers)
    try:
        # The scan bounded the depth; cbor2's own bound counts tags as well.
        return cbor2.loads(data, semantic_decoders=_AS_JSON, max_depth=2 * shape.depth + 2)
    except (cbor2.CBORDecodeError, ValueError, OverflowError, TypeError) as error:
        raise BadRequestBody("The CBOR body is not valid CBOR.", detail=str(error)) from None


def encode_cbor(value: t.Any) -> bytes:
    """The CBOR of a JSON-able value (a controller's result, a status body, an envelope)."""
    return cbor2.dumps(value)


def is_cbor(req: Request) -> bool:
    """Whether the request's body is CBOR."""
    return req.mimetype == CBOR_TYPE


def prefers_cbor(req: Request) -> bool:
    """Whether the client asks for CBOR over JSON: ``Accept`` names
    ``application/cbor`` with a higher quality than JSON's. ``*/*``, no
    ``Accept`` or a tie keep JSON."""
    # Parsing Accept costs more than a small answer: only a header naming
    # CBOR can prefer it, and most name JSON, */* or nothing.
    if "cbor" not in req.environ.get("HTTP_ACCEPT", ""):
        return False
    accept = req.accept_mimetypes
    return accept.quality(CBOR_TYPE) > accept.quality("application/json")


def cbor_or_json(value: t.Any, status: int, as_json: t.Callable[[], Response],
                 cbor: bool) -> Response:
    """The answer of a JSON-able ``value``: its CBOR when ``cbor`` (the client
    prefers it, :func:`prefers_cbor`), else the JSON answer ``as_json`` builds.

    Either way it says ``Vary: Accept``: the same URL answers in two encodings,
    and a shared cache must not hand one client's to the other.
    """
    response: Response
    if cbor:
        response = current_app.response_class(encode_cbor(value), status=status,
                                              mimetype=CBOR_TYPE)
    else:
        response = as_json()
    response.headers.add("Vary", "Accept")
    return response

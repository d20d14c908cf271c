"""Bodies in and out: JSON or CBOR, chosen by the client; answers decoded by their type."""

from __future__ import annotations

import json
import typing as t

import cbor2
import httpx

#: The formats a client speaks, by name.
FORMATS = {"json": "application/json", "cbor": "application/cbor"}


def accept_header(fmt: str) -> str:
    """The ``Accept`` of a client speaking ``fmt`` (text for what is neither)."""
    return f"{FORMATS[fmt]}, text/plain;q=0.5, */*;q=0.1"


def encode(fields: t.Any, fmt: str) -> tuple[bytes, str]:
    """``fields`` as a request body of format ``fmt``, and its ``Content-Type``."""
    if fmt == "cbor":
        return cbor2.dumps(fields), FORMATS["cbor"]
    return json.dumps(fields).encode(), FORMATS["json"]


def decode(response: httpx.Response) -> t.Any:
    """The value an answer holds: JSON and CBOR decoded, any other body as text.

    :raises ValueError: when a JSON or CBOR body is malformed.
    """
    kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    try:
        if kind == "application/cbor":
            return cbor2.loads(response.content)
        if kind == "application/json" or kind.endswith("+json"):
            return response.json()
    except (cbor2.CBORDecodeError, ValueError) as error:
        raise ValueError(f"a malformed {kind} answer (HTTP {response.status_code}): "
                         f"{error}") from None
    return response.text

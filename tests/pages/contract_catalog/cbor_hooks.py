"""schemathesis hooks of the contract test: CBOR bodies sent, CBOR answers read,
and a fresh ``Idempotency-Key`` per case.

schemathesis reads a custom media type through hooks: the serializer turns a
generated body (JSON data, from the document's schema) into CBOR; a case sent
as CBOR also asks for CBOR back (``Accept``), so the answers of those cases,
errors included, are CBOR, read by the deserializer and checked against the
same schemas as their JSON twins.

The fuzzer draws keys from a small space and would send one key with other
fields: a 422 by design (README, "Idempotent triggers"), which its valid-data
check reads as a disagreement. A well-formed key is made unique per case; a
malformed one is sent as drawn (400).
"""

from __future__ import annotations

import os
import re
import typing as t
import uuid
from pathlib import Path

import cbor2
import schemathesis

from kernel.pages.taskdoc import IDEMPOTENCY_KEY_PATTERN

CBOR = "application/cbor"

#: Where the cases sent and the answers read in CBOR are counted, one line
#: each (``CONTRACT_CBOR_TALLY``): the test checks that both happened.
TALLY = os.environ.get("CONTRACT_CBOR_TALLY")


def _count(what: str) -> None:
    if TALLY:
        with Path(TALLY).open("a") as tally:
            tally.write(what + "\n")


@schemathesis.serializer(CBOR)
def to_cbor(ctx: t.Any, value: t.Any) -> bytes:
    """The generated body, in CBOR."""
    _count("sent")
    return cbor2.dumps(value)


@schemathesis.deserializer(CBOR)
def from_cbor(ctx: t.Any, response: t.Any) -> t.Any:
    """A CBOR answer, for the schema checks."""
    _count("read")
    return cbor2.loads(response.content)


@schemathesis.hook
def before_call(context: t.Any, case: t.Any, kwargs: dict[str, t.Any]) -> None:
    """A case sent in CBOR asks for CBOR back; a well-formed key is made unique."""
    if case.media_type == CBOR:
        case.headers = {**(case.headers or {}), "Accept": CBOR}
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        case.headers["Idempotency-Key"] = str(uuid.uuid4())

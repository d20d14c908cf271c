"""The docs page's try-it forms in CBOR (and JSON), in real headless Chromium against a
real server and its worker: the bytes the page sends are checked on the server side, the
answers it decodes against what the kernel sent."""

from __future__ import annotations

import datetime
import decimal
import random
import time
import typing as t
from pathlib import Path

import cbor2
import pytest

from tests.support.catalogs import ControllerTree
from tests.support.chromium import screenshot
from tests.support.processes import clean_environ
from tests.support.servers import LiveServer
from tests.support.tasks import Stack

PROBE = '''
    from pathlib import Path
    from typing import Optional

    from kernkoa import *

    RECORD = Path({record!r})


    class Probe:
        def record(self, item: int, price: float, name: str, big: int = 0,
                   tags: list[int] = [], gift: Optional[bool] = None, note: Optional[str] = None):
            """Keeps the body the docs page sent; answers what it bound."""
            RECORD.write_bytes(request.get_data())
            return {{"content_type": request.mimetype, "item": item, "price": price,
                     "name": name, "big": big, "tags": tags, "gift": gift, "note": note}}

        def anything(self, params):
            """Answers the whole body it was sent."""
            return {{"content_type": request.mimetype, "json": params.json}}

        def tally_celery(self, task, weeks: int, label: str = "report"):
            """Runs on a worker."""
            return {{"weeks": weeks, "label": label, "mean": weeks / 4}}
'''


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where ``Probe.record`` keeps the raw body it was sent."""
    return tmp_path_factory.mktemp("record") / "sent.bin"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, record: Path) -> t.Iterator[LiveServer]:
    """``kernkoa serve`` and its embedded worker on the probe catalog."""
    folder = tmp_path_factory.mktemp("docs-cbor")
    tree = ControllerTree(folder / "catalog")
    tree.write("probe.py", PROBE.format(record=str(record)))
    stack = Stack(folder)
    try:
        yield stack.server(clean_environ(CATALOG=str(tree.root), VAR=str(folder / "var")),
                           with_worker=True)
    finally:
        stack.close()


def _article(page: t.Any, url: str) -> t.Any:
    return page.locator(f'article[data-url="{url}"]')


def _fill(form: t.Any, **fields: str) -> None:
    for name, value in fields.items():
        form.locator(f'[name="{name}"]').fill(value)


def _send(form: t.Any, send: str, answer: str) -> None:
    form.locator("select[name=__send]").select_option(send)
    form.locator("select[name=__answer]").select_option(answer)
    form.locator("button[type=submit]").click()


BIG = 2**70


def test_a_form_sent_and_answered_in_cbor(server: LiveServer, page: t.Any,
                                          record: Path) -> None:
    page.goto(server.base + "/_kernkoa/docs")
    form = _article(page, "/probe/Probe/record")
    _fill(form, item="3", price="2.5", name="0042", big=str(BIG), tags="1, -2, 30")
    form.locator("select[name=gift]").select_option("true")
    # GET sends a query: choosing CBOR picks POST, choosing GET again goes back to a form.
    method, send = form.locator("select[name=__method]"), form.locator("select[name=__send]")
    assert method.input_value() == "GET"
    send.select_option("cbor")
    assert method.input_value() == "POST"
    method.select_option("GET")
    assert send.input_value() == "form"
    _send(form, "cbor", "cbor")
    assert method.input_value() == "POST"
    status = form.locator(".result .status")
    status.filter(has_text="application/cbor").wait_for()

    # What the page sent: one CBOR map, each field typed by its parameter (the text
    # "0042" stays text for a str, 2**70 goes as a bignum).
    sent = {"item": 3, "price": 2.5, "name": "0042", "big": BIG, "tags": [1, -2, 30],
            "gift": True}
    assert cbor2.loads(record.read_bytes()) == sent
    # What the kernel answered, byte for byte, is what the page shows in hex.
    code, headers, raw = server.request(
        "/probe/Probe/record", "POST", record.read_bytes(),
        {"Content-Type": "application/cbor", "Accept": "application/cbor"})
    assert code == 200 and headers["Content-Type"] == "application/cbor"
    assert cbor2.loads(raw) == {**sent, "content_type": "application/cbor", "note": None}
    assert form.locator(".result .hex").inner_text() == raw.hex(" ")
    assert status.inner_text().startswith("200 OK · application/cbor")
    assert f"{len(raw)} bytes" in status.inner_text()
    shown = form.locator(".result .body").inner_text()
    for line in ('"content_type": "application/cbor"', '"item": 3', '"price": 2.5',
                 '"name": "0042"', f'"big": {BIG}', '"tags": [1, -2, 30]', '"gift": true',
                 '"note": null'):
        assert line in shown
    form.scroll_into_view_if_needed()
    screenshot(page, "docs-page-cbor.png")

    # An error envelope in CBOR: text where an integer goes is sent as text, refused.
    _fill(form, item="three")
    _send(form, "cbor", "cbor")
    failed = form.locator(".result.failed")
    failed.locator(".body").filter(has_text="expected an integer").wait_for()
    assert "422" in failed.locator(".status").inner_text()
    assert "application/cbor" in failed.locator(".status").inner_text()
    envelope = failed.locator(".body").inner_text()
    assert '"code": "unprocessable_entity"' in envelope
    assert cbor2.loads(record.read_bytes()) == sent  # the method never ran
    hex_shown = failed.locator(".hex").inner_text().replace(" ", "")
    assert cbor2.loads(bytes.fromhex(hex_shown))["error"]["status"] == 422
    screenshot(page, "docs-page-cbor-error.png")

    # The same fields as JSON, answered in JSON.
    _fill(form, item="4")
    _send(form, "json", "json")
    form.locator(".result.ok .body").filter(has_text='"item": 4').wait_for()
    assert "application/json" in form.locator(".result .status").inner_text()
    assert form.locator(".result .raw").is_hidden()
    assert record.read_bytes().decode().startswith('{"item": 4, "price": 2.5, "name": "0042"')
    assert f'"big": {BIG}' in record.read_text()


def test_other_fields_sent_in_cbor_reach_params_json(server: LiveServer, page: t.Any) -> None:
    page.goto(server.base + "/_kernkoa/docs")
    form = _article(page, "/probe/Probe/anything")
    form.locator("textarea[name=__extra]").fill('n=7\nlist=[1, "a", null]\nword=hello')
    _send(form, "cbor", "cbor")
    body = form.locator(".result .body")
    body.filter(has_text="application/cbor").wait_for()
    # Controllers read the decoded map: values that are JSON go typed, the rest as text.
    shown = body.inner_text()
    assert '"n": 7,' in shown and '"list": [1, "a", null],' in shown and '"word": "hello"' in shown


def test_a_celery_method_triggered_in_cbor(server: LiveServer, page: t.Any) -> None:
    page.goto(server.base + "/_kernkoa/docs")
    form = _article(page, "/probe/Probe/tally_celery")
    _fill(form, weeks="6")
    _send(form, "cbor", "cbor")
    status = form.locator(".result .status")
    status.filter(has_text="202").wait_for()
    assert "application/cbor" in status.inner_text()
    accepted = form.locator(".result .body").inner_text()
    assert '"status_url": "' + server.base + "/status/" in accepted
    assert form.locator("a.task-link").get_attribute("href").startswith(server.base + "/status/")

    # Its status, asked for in CBOR until the worker has run it.
    check = form.locator("button.task-status")
    body = form.locator(".result .body")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        check.click()
        body.filter(has_text='"status"').wait_for()
        if "SUCCESS" in body.inner_text():
            break
        page.wait_for_timeout(500)
    shown = body.inner_text()
    assert '"status": "SUCCESS"' in shown
    assert '"data": {"weeks": 6, "label": "report", "mean": 1.5}' in shown
    assert status.inner_text().startswith("200 OK · application/cbor")


#: What cbor2 sends, and how the page shows it (RFC 8949 diagnostic notation).
DECODED = [
    ({"a": [1, -1, 2.0, "é"], "b": None}, '{\n  "a": [1, -1, 2.0, "é"],\n  "b": null\n}'),
    ({"c": True, "d": -0.5}, '{"c": true, "d": -0.5}'),
    (2**64, "18446744073709551616"),
    (-(2**80), str(-(2**80))),
    (2**63, "9223372036854775808"),
    (float("inf"), "Infinity"),
    (datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), '0("2026-01-02T03:04:05Z")'),
    (cbor2.CBORTag(1, 1767323045), "1(1767323045) /2026-01-02T03:04:05.000Z/"),
    (decimal.Decimal("273.15"), "4([-2, 27315]) /273.15/"),
    ([[[]]], "[\n  [\n    []\n  ]\n]"),
]

#: What the page refuses to decode, and the reason it gives.
REFUSED = [
    (b"\x41x", "a byte string (the kernel sends bytes only as a bignum) at byte 0"),
    (cbor2.dumps(cbor2.CBORTag(258, [1])), "tag 258 (the kernel sends tags 0 to 4 only)"),
    (b"\xf7", "simple value 23"),
    (b"\x82\x01", "truncated"),
    (b"\x01\x02", "1 bytes after the item"),
    (b"\x62\xff\xfe", "text that is not UTF-8"),
    (b"\x1c", "reserved header 0x1c"),
]


def test_the_page_codec_agrees_with_cbor2(server: LiveServer, page: t.Any) -> None:
    page.goto(server.base + "/_kernkoa/docs")
    decode = ("hex => { const b = new Uint8Array(hex.match(/../g).map(h => parseInt(h, 16)));"
              " try { return KernKoaCbor.describe(KernKoaCbor.decode(b)); } catch (e) {"
              " return (e instanceof KernKoaCbor.CborError ? 'refused: ' : '') + e.message; } }")
    for value, shown in DECODED:
        assert page.evaluate(decode, cbor2.dumps(value).hex()) == shown
    for data, reason in REFUSED:
        refusal = page.evaluate(decode, data.hex())
        assert refusal.startswith("refused: ") and reason in refusal
    # Sent: integers (bignums past 64 bits), floats, text, arrays, maps.
    encoded = page.evaluate(
        "() => Array.from(KernKoaCbor.encode(new Map([['n', -500], ['f', 0.1], ['s', 'naïve'],"
        " ['big', -(2n ** 70n)], ['u64', 2n ** 64n - 1n], ['l', [true, false, null]],"
        " ['o', {k: []}]])))")
    assert cbor2.loads(bytes(encoded)) == {
        "n": -500, "f": 0.1, "s": "naïve", "big": -(2**70), "u64": 2**64 - 1,
        "l": [True, False, None], "o": {"k": []}}
    refused = page.evaluate("() => { try { KernKoaCbor.encode(new Date()); return 'sent'; }"
                            " catch (e) { return e.message; } }")
    assert refused == "cannot encode [object Date]"


def _hostile_answers(count: int) -> list[str]:
    """Answers a broken or hostile server might send: kernel answers cut, flipped and
    spliced, and random bytes (a fixed seed: the same cases every run)."""
    rng = random.Random(17)
    seeds = [cbor2.dumps(v) for v in (
        {"status": "SUCCESS", "data": [1, 2.5, "x", None, {"k": True}]},
        [2**70, -(2**64), decimal.Decimal("1.25"), cbor2.CBORTag(1, 1.5)],
        {"error": {"status": 422, "fields": [{"name": "n"}]}},
    )]
    seeds.append(bytes.fromhex("9f9f9fff5f4161ff7f6161ffbf6161f7ffff"))  # indefinite lengths
    cases = [b"\x81" * 600 + b"\x00", b"\x9f" * 600, b"\x5f\x41\x61", b"\xbf\x61\x61"]
    while len(cases) < count:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            if not data:
                break
            at = rng.randrange(len(data))
            kind = rng.randrange(3)
            if kind == 0:
                data[at] = rng.randrange(256)
            elif kind == 1:
                del data[at:]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 9))
        cases.append(bytes(data) or rng.randbytes(rng.randint(1, 30)))
    return [case.hex() for case in cases]


def test_the_page_decoder_refuses_hostile_answers_clearly(server: LiveServer,
                                                          page: t.Any) -> None:
    page.goto(server.base + "/_kernkoa/docs")
    outcomes = page.evaluate(
        "cases => cases.map(hex => { const b = new Uint8Array((hex.match(/../g) || [])"
        ".map(h => parseInt(h, 16))); try { KernKoaCbor.describe(KernKoaCbor.decode(b));"
        " return 'decoded'; } catch (e) { return e instanceof KernKoaCbor.CborError ?"
        " 'refused' : e.name + ': ' + e.message; } })", _hostile_answers(400))
    # Every answer is decoded or refused with a reason: no other exception, no hang.
    assert set(outcomes) <= {"decoded", "refused"}
    assert outcomes.count("refused") > 100 and "decoded" in outcomes

"""The OpenAPI document keeps its word: a fuzzer driven by it finds no disagreement.

schemathesis reads ``/_kernkoa/openapi.json`` from a real ``kernkoa serve``
(with its task worker) serving the shipped catalog plus
``tests/pages/contract_catalog/shapes.py`` (every parameter shape and constraint),
then generates requests from the document, valid and invalid, and runs every
check it has on every operation: statuses, content types, response headers
and schemas, valid data accepted and invalid data refused, methods the
document does not list (405 with ``Allow``), OPTIONS (``Allow`` as
documented), and sequences that follow the document's links (a task
started, read, cancelled). The one exception is in
``tests/pages/contract_catalog/schemathesis.toml``. CBOR bodies and answers are
covered through ``tests/pages/contract_catalog/cbor_hooks.py``: a case whose
body is CBOR asks for CBOR back.

The run is bounded by the number of cases per operation; its seed is fixed,
so a failure reproduces (``CONTRACT_SEED`` picks another).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import typing as t
from pathlib import Path

from kernel.core.settings import PROJECT_ROOT
from tests.support.processes import BIN
from tests.support.servers import LiveServer

HERE = Path(__file__).resolve().parent

#: Cases per operation and phase; 85 operations take about a minute on 2 cores.
MAX_EXAMPLES = 40

#: Seed of the run (``CONTRACT_SEED`` overrides it).
SEED = os.environ.get("CONTRACT_SEED", "20261201")

#: Longest the whole run may take, in seconds.
RUN_TIMEOUT = 300


def contract_catalog(root: Path) -> Path:
    """The shipped catalog plus the shapes controller, in ``root``."""
    shutil.copytree(PROJECT_ROOT / "catalog", root)
    seed = root / "controller/celeryexample/asynclibrary.py"
    source = seed.read_text()
    assert "\nDELAY = 2\n" in source
    # The seed example counts to 10 with 2 s steps: a task of the run would hold
    # the worker for 20 s. Its code is otherwise the shipped one.
    seed.write_text(source.replace("\nDELAY = 2\n", "\nDELAY = 0.01\n"))
    shutil.copy(HERE / "contract_catalog/shapes.py", root / "controller/shapes.py")
    return root


def fuzz(server: LiveServer, workdir: Path) -> tuple[subprocess.CompletedProcess[str],
                                                     dict[str, t.Any]]:
    """Run schemathesis against ``server``; return the process and its JSON report."""
    report = workdir / "report.json"
    result = subprocess.run(
        [str(BIN / "st"), "--config-file", str(HERE / "contract_catalog/schemathesis.toml"),
         "--no-color", "run", server.base + "/_kernkoa/openapi.json",
         "--max-examples", str(MAX_EXAMPLES), "--seed", SEED, "--workers", "1",
         "--request-timeout", "10", "--report", "json", "--report-json-path", str(report)],
        # One worker: Hypothesis reads lambdas' source with ast, which two threads
        # at once have been seen to break. Its database and reports stay here.
        cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "contract_catalog/cbor_hooks.py"),
             "CONTRACT_CBOR_TALLY": str(workdir / "cbor-tally.txt")},
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def test_the_fuzzer_finds_no_disagreement(serve: t.Callable[..., LiveServer],
                                          tmp_path: Path) -> None:
    catalog = contract_catalog(tmp_path / "catalog")
    # Long polls cut short: a status read of a running task must not hold a
    # fuzzer worker for 30 s.
    server = serve(worker=True, CATALOG=str(catalog), STATUS_WAIT_MAX="0.5")
    _, _, body = server.request("/_kernkoa/openapi.json")
    document = json.loads(body)
    operations = sum(1 for item in document["paths"].values()
                     for method in item if method in ("get", "post", "put", "patch", "delete"))
    result, report = fuzz(server, tmp_path)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:]
    assert report["complete"] and report["failures"] == [] and report["errors"] == [], report
    assert report["operations"]["tested"] == report["operations"]["total"] == operations, (
        operations, report["operations"])
    # Every phase ran, and the fuzzer could read every pattern the document holds.
    assert {name: phase["status"] for name, phase in report["phases"].items()} == {
        "examples": "skip", "coverage": "success", "fuzzing": "success", "stateful": "success"}
    assert report["warnings"]["unsupported_regex"] == []
    assert report["test_cases"]["generated"] >= 20 * operations, report["test_cases"]
    # CBOR went both ways: bodies sent in it, answers read from it.
    tally = (tmp_path / "cbor-tally.txt").read_text().split()
    assert tally.count("sent") >= operations and tally.count("read") >= operations, (
        tally.count("sent"), tally.count("read"))

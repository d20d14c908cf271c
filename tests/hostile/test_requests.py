"""Hostile input: thousands of generated requests, never a 500, nothing touched outside.

The run itself is ``hostile_run.py``, in a subprocess: its audit hook
(``sys.addaudithook``) cannot be removed, so it must not outlive the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kernel.core.settings import PROJECT_ROOT

#: Examples per Hypothesis test (three tests, so about three times as many requests).
EXAMPLES = 1500


def test_hostile_requests(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KERNKOA_")}
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tests" / "hostile" / "hostile_run.py"), str(tmp_path),
         str(EXAMPLES)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Every generated request got a documented status and the JSON envelope.
    assert report["failures"] == [], "\n".join(report["failures"])
    assert report["requests"] >= 3000, report
    # 429: basic_auth's answer once a client failed 5 logins in 60 s.
    assert set(report["statuses"]) <= {"-1", "200", "202", "204", "303", "400", "401", "403",
                                       "404", "405", "413", "415", "422", "429"}, \
        report["statuses"]
    # Requests the test client could not even build are a small minority.
    assert report["statuses"].get("-1", 0) < report["requests"] / 20
    # The audit hook saw a file outside the allowed folders when one was opened...
    assert report["control"] and report["control"][0].endswith("config.py")
    # ...and none during the run: no import, open or database outside them.
    assert report["outside"] == []
    assert report["modules_outside"] == []

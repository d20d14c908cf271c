"""Start-up refuses an explicitly empty or well-known secret key outside debug mode."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kernel import create_app
from kernel.core.errors import InsecureSecretError
from kernel.core.secretkey import SECRET_FILE
from kernel.core.secretkey import is_known_secret
from kernel.core.settings import PROJECT_ROOT


@pytest.mark.parametrize("value", ["development key", "Development-Key", "secret", "changeme",
                                   "CHANGE_ME", "  ", "password", "kernkoa"])
def test_known_secrets_are_refused(value: str) -> None:
    with pytest.raises(InsecureSecretError, match="secret key"):
        create_app({"secretKey": value})


def test_explicit_empty_secret_in_the_environment_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERNKOA_SECRETKEY", "")
    with pytest.raises(InsecureSecretError, match="set but empty"):
        create_app()


def test_debug_mode_only_warns(monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("KERNKOA_SECRETKEY", "development key")
    app = create_app({"DEBUG": True})
    assert app.secret_key == "development key"
    assert "well-known" in caplog.text


def test_unset_secret_is_generated_and_kept(tmp_path: Path) -> None:
    first = create_app().secret_key
    assert first == create_app().secret_key and len(first) == 64
    mode = (tmp_path / "var" / SECRET_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_a_good_secret_passes() -> None:
    assert create_app({"secretKey": "b4c1e0f2" * 8}).secret_key == "b4c1e0f2" * 8
    assert not is_known_secret("b4c1e0f2" * 8)


def test_start_up_message_from_the_command(tmp_path: Path) -> None:
    env = {**os.environ, "KERNKOA_SECRETKEY": "changeme", "KERNKOA_VAR": str(tmp_path)}
    command = [str(Path(sys.executable).parent / "kernkoa"), "routes"]
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    assert "well-known value" in done.stderr

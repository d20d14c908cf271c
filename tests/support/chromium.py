"""Headless Chromium for the page tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser downloads are never used: it launches the system
``/usr/bin/chromium`` (``make test`` installs it when missing) with a fresh
profile. Every wait is bounded by :data:`TIMEOUT_MS`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import typing as t
from pathlib import Path

import pytest

from kernel.core.settings import PROJECT_ROOT
from tests.support import real_parts

#: Where the page tests keep their screenshots (gitignored).
ARTIFACTS = PROJECT_ROOT / "test-artifacts"

#: The longest any single browser wait may take.
TIMEOUT_MS = 20_000

#: Flags for a quiet, isolated headless run (Playwright adds --headless itself).
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium; skips the test where there is none, fails on CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs it")
        pytest.skip("chromium is not installed (`make test` installs it)")
    return found


@contextlib.contextmanager
def browser_page(profile: Path) -> t.Iterator[t.Any]:
    """A fresh headless Chromium page; the browser is closed on the way out."""
    from playwright.sync_api import sync_playwright

    real_parts.require("chromium")
    executable = chromium_path()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=FLAGS,
            viewport={"width": 1100, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            context.close()


def screenshot(page: t.Any, name: str) -> Path:
    """Keep a full-page screenshot in ``test-artifacts/``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path

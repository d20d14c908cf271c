"""Fixtures shared by the task tests."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from tests.support.tasks import Stack


@pytest.fixture
def stack(tmp_path: Path) -> t.Iterator[Stack]:
    """Servers and workers a test starts, each in its own session, all stopped after it."""
    started = Stack(tmp_path)
    yield started
    started.close()

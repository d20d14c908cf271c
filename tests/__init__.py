"""KernKoa's test suite: a folder per kernel subpackage, folders for whole-system tests.

Fixtures come from ``conftest.py``; helpers that are not fixtures from
:mod:`tests.support`.
"""

import pytest

# Before any helper is imported: their asserts then report what they compared,
# as a test's own do.
pytest.register_assert_rewrite("tests.support")

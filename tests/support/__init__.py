"""Helpers of the test suite that are not fixtures: imported as ``from tests.support.x import y``.

Fixtures live in ``tests/conftest.py``. The benchmarks never import from here;
where both need the same helper, it lives in ``bench/`` and is imported from there.
"""

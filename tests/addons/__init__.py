"""Tests of the shipped add-ons of system/addons/: ``jwt_auth`` and ``cors``.

``basic_auth`` is tested with its users file in tests/auth/test_users.py, ``access_log``
in tests/web/test_addons.py.
"""

"""Tests of the shipped add-ons of system/addons/: ``jwt_auth``, ``cors`` and ``access_log``.

``basic_auth`` is tested with its users file in tests/auth/test_users.py.
"""

"""Tests of kernel/auth/: the auth layer, the users file, the login throttle, hashing costs."""

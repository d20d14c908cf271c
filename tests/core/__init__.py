"""Tests of kernel/core/: settings, the secret-key check (one file per module, named after it)."""

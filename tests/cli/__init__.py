"""Tests of kernel/cli/: the ``kernkoa`` command and the nginx error pages."""

"""Tests of kernel/pages/: the listings, OpenAPI (and its contract), the docs page, health."""

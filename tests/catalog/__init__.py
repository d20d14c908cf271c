"""Tests of kernel/catalog/: loading, routing, exposure, binding, constraints, the registry."""

"""Tests of kernel/api/: ``load`` and ``dbs``, what controllers get beside Flask's names."""

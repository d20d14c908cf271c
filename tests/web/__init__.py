"""Tests of kernel/web/: the Flask side of a request, one file per module (``test_<module>.py``)."""

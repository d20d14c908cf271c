"""The kernel's version, where every layer may read it (``kernel.__version__``)."""

__version__ = "0.1.0"

"""The one exception root, :class:`KernKoaError`, in a module that imports nothing: the
kernel's errors (:mod:`kernel.core.errors`) and the client's (:mod:`kernel.client.errors`)
both derive from it, and the client imports nothing else of the kernel."""

from __future__ import annotations


class KernKoaError(Exception):
    """Root of every exception the kernel and its client raise."""

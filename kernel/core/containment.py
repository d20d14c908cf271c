"""Keeping file reads inside a folder: the catalog's files never lead out of it.

A path is judged by where it really leads, symlinks followed, and a file is
judged again each time it is read: a symlink swapped in after a route was
first resolved must not get code from outside the catalog executed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import FileOutsideFolder


def stays_inside(file: Path | str, root: Path | str) -> bool:
    """Whether ``file``'s real path (symlinks followed) lies under ``root``'s."""
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(file), real_root]) == real_root


def read_inside(file: Path, root: Path) -> bytes:
    """The bytes of the regular file ``file``, checked to lie under ``root`` as opened.

    The check is made on the file actually opened (its descriptor's path where
    the system shows it), so no rename between a check and the read can slip
    another file in. Opened without blocking: a FIFO swapped in is refused,
    not waited on.

    :raises FileOutsideFolder: when it leads out of ``root`` or is not a regular file.
    :raises FileNotFoundError: when it is gone.
    """
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileOutsideFolder(detail=f"{file} is not a regular file")
        if not stays_inside(_opened_path(fd, file), root):
            raise FileOutsideFolder(detail=f"{file} leads outside {root}")
        return handle.read()


def _opened_path(fd: int, file: Path) -> str:
    """The real path of the open descriptor ``fd`` (Linux shows it under
    ``/proc``); elsewhere the real path of ``file``, read after the open."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(file)

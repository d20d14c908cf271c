"""Files the kernel watches for changes and files it writes for its own eyes only."""

from __future__ import annotations

import os
from pathlib import Path

#: What identifies one version of a file: (mtime_ns, size, inode). The inode
#: counts too: editors and atomic writers save by renaming a new file over.
Signature = tuple[int, int, int]


def file_signature(path: str | Path) -> Signature:
    """The :data:`Signature` of ``path``; raises :class:`FileNotFoundError` when it is gone."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def write_private(path: Path, text: str, replace: bool = True) -> None:
    """Write ``text`` to ``path`` with mode 0600, creating its folder if needed.

    The text is written aside first, then put in place whole: a reader sees
    the old file or the new one, never half of one; and no other user can
    read either file at any moment, the draft included.

    :param replace: put it over an existing file; without it, an existing file
        is kept (a process racing this one either wins, and its file stays,
        or loses, and this one's stays).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    if replace:
        os.replace(draft, path)
        return
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()

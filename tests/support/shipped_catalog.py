"""Facts about the shipped catalog (``catalog/controller/``) that several tests use."""

from __future__ import annotations

#: The seven nested folders of the README's folder example.
FOLDERS = "/folder1/folder2/folder3/folder4/folder5/folder6/folder7"

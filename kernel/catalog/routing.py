"""From a URL path to a controller file, class name, method name and arguments.

The path is checked against an allow-list before the file system is touched
(segments that name folders, modules, classes and methods must be identifiers);
then folders are walked from the controller root until a segment names a
``.py`` file. The walk's answers are cached per path, so a request after the
first does no directory lookups at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..core.containment import stays_inside
from ..core.errors import RouteNotFound

#: What a segment naming a folder, module, class or method must look like:
#: ASCII letters, digits and "_", starting with a letter (so "_private", "..",
#: "" and dunders never pass). Possessive ("*+"), as every pattern the kernel
#: applies to client bytes: it never gives back what it matched, so it cannot
#: backtrack.
SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*+")

#: What a leftover segment passed as an argument may look like: it never
#: reaches the file system, so numbers and "-", "." and "~" are allowed too,
#: but it must start with a letter or digit (never "..", "." or "_x").
ARGUMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.~-]*+")

#: The method called when a URL names only module and class.
DEFAULT_METHOD = "index"


@dataclass(frozen=True)
class Limits:
    """Bounds on a URL path, checked before anything else."""

    #: Longest path, in characters.
    max_length: int = 1024
    #: Most segments.
    max_depth: int = 32
    #: Longest segment, in characters.
    max_segment: int = 128


@dataclass(frozen=True)
class Target:
    """Where a URL points: a controller file, a class and method in it, extra arguments."""

    #: Absolute path of the controller file.
    file: Path
    #: The file's path under the controller root, without ``.py``, split on "/".
    module_parts: tuple[str, ...]
    class_name: str
    method_name: str
    #: Leftover path segments, passed as positional arguments.
    args: tuple[str, ...]

    @cached_property
    def route(self) -> str:
        """The canonical URL path of the method, without arguments."""
        # Built once per target: the catalog keeps a path's target until its
        # file changes, and METRICS labels every request with this.
        return "/" + "/".join((*self.module_parts, self.class_name, self.method_name))


def split_path(path: str, limits: Limits) -> list[str]:
    """Split a URL path into segments, refusing anything outside the grammar.

    :raises RouteNotFound: with a ``detail`` naming the rule that failed.
    """
    if len(path) > limits.max_length:
        raise RouteNotFound(detail=f"path longer than {limits.max_length} characters")
    path = path[1:] if path.startswith("/") else path
    segments = path.split("/") if path else []
    if len(segments) > limits.max_depth:
        raise RouteNotFound(detail=f"more than {limits.max_depth} path segments")
    for segment in segments:
        if len(segment) > limits.max_segment or not ARGUMENT.fullmatch(segment):
            raise RouteNotFound(detail=f"path segment {segment[:40]!r} is not allowed")
    return segments


def _require_name(segment: str, role: str) -> None:
    if not SEGMENT.fullmatch(segment):
        raise RouteNotFound(detail=f"{role} {segment[:40]!r} is not an identifier")


class Router:
    """Resolves URL paths to :class:`Target` objects under one controller root.

    :param root: the controller folder (``catalog/controller``).
    :param index_route: what ``/`` resolves to, as a path.
    :param reserved: first segments that never name a controller.

    It remembers nothing: :class:`~kernel.catalog.resolution.Catalog` keeps the
    answers, with the file version each came from.
    """

    def __init__(
        self,
        root: Path,
        index_route: str = "index/index/index",
        reserved: frozenset[str] = frozenset(),
        limits: Limits | None = None,
    ) -> None:
        self.root = root
        self.index_route = index_route
        self.reserved = reserved
        self.limits = limits or Limits()

    def resolve(self, path: str) -> Target:
        """Resolve ``path`` (with or without its leading "/") to a :class:`Target`.

        :raises RouteNotFound: for every kind of failure.
        """
        segments = split_path(path, self.limits)
        if not segments:
            segments = split_path(self.index_route, self.limits)
        if segments[0] in self.reserved:
            raise RouteNotFound(detail=f"{segments[0]!r} is a reserved prefix")
        folder = self.root
        for depth, segment in enumerate(segments):
            _require_name(segment, "folder or module name")
            candidate = folder / f"{segment}.py"
            if candidate.is_file():
                return self._target(candidate, segments, depth)
            folder = folder / segment
            if not folder.is_dir():
                break
        raise RouteNotFound(detail=f"no controller file on the path {'/'.join(segments)!r}")

    def _target(self, file: Path, segments: list[str], depth: int) -> Target:
        if not stays_inside(file, self.root):
            raise RouteNotFound(detail=f"{file} leads outside the controller folder")
        rest = segments[depth + 1:]
        if not rest:
            raise RouteNotFound(detail="the URL names a module but no class")
        _require_name(rest[0], "class name")
        if len(rest) > 1:
            _require_name(rest[1], "method name")
        return Target(
            file=file,
            module_parts=tuple(segments[: depth + 1]),
            class_name=rest[0],
            method_name=rest[1] if len(rest) > 1 else DEFAULT_METHOD,
            args=tuple(rest[2:]),
        )

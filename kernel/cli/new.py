"""``kernkoa new controller``: a controller file and a test for it that passes at once."""

from __future__ import annotations

import argparse
import re
import sys
import typing as t
from pathlib import Path

from ..app import RESERVED_SEGMENTS
from ..core.project import find_project

#: A folder, module or class name of a controller path (the router's rule).
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*+")

CONTROLLER = '''\
"""{title}: the methods under /{path}/{cls}/."""

from kernkoa import *


class {cls}:
    """{title}."""

    def hello(self, name: str = "world") -> dict[str, str]:
        """Say hello to ``name``: ``/{path}/{cls}/hello?name=Ada``."""
        return {{"hello": name}}
'''

CELERY_METHOD = '''
    def count_celery(self, task, n: int = 3) -> dict[str, int]:
        """Count to ``n`` on a task worker, reporting progress at each step."""
        for step in range(1, n + 1):
            task.progress(step, n, f"step {{step}} of {{n}}")
        return {{"counted": n}}
'''

TEST = '''\
"""Tests of /{path}/{cls}/, with KernKoa's pytest plugin (the kernkoa_* fixtures)."""


def test_hello(kernkoa_client):
    assert kernkoa_client.call("/{path}/{cls}/hello", name="Ada") == {{"hello": "Ada"}}
'''

CELERY_TEST = '''

def test_count(kernkoa_client):
    task = kernkoa_client.start("/{path}/{cls}/count_celery", n=3)
    assert task.wait(timeout=30) == {{"counted": 3}}
    assert task.status == "SUCCESS"
'''


def controller_files(path: str, cls: str, celery: bool) -> dict[str, str]:
    """The files of a new controller, by path relative to the project.

    :raises ValueError: when ``path`` or ``cls`` is not a controller name.
    """
    parts = path.strip("/").split("/")
    for name in (*parts, cls):
        if not NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a controller name "
                             "(a letter, then letters, digits or _)")
    if parts[0] in RESERVED_SEGMENTS:
        raise ValueError(f"/{parts[0]}/ is the kernel's own: a controller there is never reached")
    names = {"path": "/".join(parts), "cls": cls,
             "title": " ".join(parts).capitalize()}
    source = CONTROLLER.format(**names) + (CELERY_METHOD.format(**names) if celery else "")
    test = TEST.format(**names) + (CELERY_TEST.format(**names) if celery else "")
    return {f"catalog/controller/{'/'.join(parts)}.py": source,
            f"tests/test_{'_'.join(parts)}.py": test}


def new_controller(args: argparse.Namespace) -> int:
    """Write the controller and its test into the project; refuse to overwrite."""
    project = find_project(Path.cwd())
    cls = args.cls or args.path.strip("/").split("/")[-1].capitalize()
    try:
        files = controller_files(args.path, cls, args.celery)
    except ValueError as error:
        print(f"kernkoa new controller: {error}", file=sys.stderr)
        return 2
    existing = [name for name in files if (project / name).exists()]
    if existing:
        print(f"kernkoa new controller: {', '.join(existing)} exists already in {project}",
              file=sys.stderr)
        return 1
    for name, text in files.items():
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    return 0


def add_new_command(commands: t.Any) -> None:
    """Add ``kernkoa new controller`` to the command's sub-parsers."""
    new = commands.add_parser("new", help="write a new controller and its test")
    kinds = new.add_subparsers(dest="kind", required=True)
    p = kinds.add_parser("controller", help="catalog/controller/<path>.py and its test")
    p.add_argument("path", help="the controller's path under catalog/controller, e.g. shop/cart")
    p.add_argument("--class", dest="cls", default=None,
                   help="the class name (default: the last part, capitalized)")
    p.add_argument("--celery", action="store_true",
                   help="add a _celery method (run on a task worker) and its test")
    p.set_defaults(func=new_controller)

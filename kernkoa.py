"""KernKoa's entry point, as KernKoa controllers and deployments know it.

- Controllers: ``from kernkoa import *`` gives the names in ``__all__``.
- uWSGI: ``module = kernkoa``, ``callable = app``.
- Development: ``python kernkoa.py`` is ``kernkoa serve``.

Importing this module creates no app: ``app`` is built on first access, so a
controller's ``from kernkoa import *`` costs nothing and starts nothing.
"""

from __future__ import annotations

import html
import json
import time
import typing as t

from flask import Response
from flask import abort
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import send_file
from flask import session
from flask import stream_template
from flask import url_for

from kernel.databases import dbs
from kernel.exposure import methods
from kernel.load import load
from kernel.placeholders import exeTask
from kernel.rendering import render
from kernel.settings import config

__all__ = [
    "Response",
    "abort",
    "config",
    "dbs",
    "escape",
    "exeTask",
    "json",
    "jsonify",
    "load",
    "methods",
    "redirect",
    "render",
    "render_template",
    "request",
    "send_file",
    "session",
    "stream_template",
    "time",
    "url_for",
]


def escape(value: t.Any) -> str:
    """``value`` as text safe to put into HTML: ``& < > " '`` become entities.

    Returns a plain ``str``, so KernKoa-style ``"..." + escape(x) + "<br>"``
    concatenation keeps working.
    """
    return html.escape(str(value), quote=True)


def __getattr__(name: str) -> t.Any:
    if name == "app":
        from kernel.app import default_app

        return default_app()
    raise AttributeError(f"module 'kernkoa' has no attribute {name!r}")


# uWSGI finds ``callable = app`` by a lookup in this module's __dict__, which
# never reaches __getattr__ above: under uWSGI (the only place the ``uwsgi``
# module can be imported) the app is built at import. Building it opens no
# connection and starts no thread, so forking workers afterwards is safe.
try:
    import uwsgi  # noqa: F401
except ImportError:
    pass
else:
    from kernel.app import default_app as _default_app

    app = _default_app()


if __name__ == "__main__":
    import sys

    from kernel.cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))

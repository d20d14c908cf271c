"""The pytest plugin of the test kit, loaded by pytest through the ``pytest11`` entry
point of the package (no ``conftest.py`` line needed).

Fixtures, all named ``kernkoa_*``:

- ``kernkoa_project``: the project folder (pytest's rootdir, or the nearest folder
  above it holding ``catalog/`` or ``config.py``; ``KERNKOA_PATH`` wins).
- ``kernkoa_settings``: settings of the test's app over ``config.py`` and the
  ``KERNKOA_*`` variables; override the fixture, or give
  ``@pytest.mark.kernkoa(settings={...})``.
- ``kernkoa_app``: the app over the project's catalog, with its own temporary ``VAR``.
- ``kernkoa_client``: a :class:`kernel.testing.inprocess.KitClient` of that app.

Tasks run eagerly, in the test's process, unless the test is marked
``@pytest.mark.kernkoa(tasks="worker")``: then a real ``kernkoa worker`` runs them,
started before the test and stopped after it.

Importing this module costs pytest's own import only: the kernel is imported
when a test asks for one of the fixtures.
"""

from __future__ import annotations

import secrets
import typing as t
from pathlib import Path

import pytest

if t.TYPE_CHECKING:
    from flask import Flask

    from .inprocess import KitClient

#: The task modes of ``@pytest.mark.kernkoa(tasks=...)``.
TASK_MODES = ("eager", "worker")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``kernkoa`` marker (so ``--strict-markers`` knows it)."""
    config.addinivalue_line(
        "markers",
        "kernkoa(tasks='eager'|'worker', settings={...}): how KernKoa's test kit builds "
        "the test's app; tasks='worker' runs _celery methods on a real worker")


def _marker_options(request: pytest.FixtureRequest) -> dict[str, t.Any]:
    options: dict[str, t.Any] = {}
    # The closest marker wins: a test's over its class's over its module's.
    for marker in reversed(list(request.node.iter_markers("kernkoa"))):
        if marker.args:
            raise pytest.UsageError("@pytest.mark.kernkoa takes keyword arguments only: "
                                    "tasks='eager'|'worker', settings={...}")
        options.update(marker.kwargs)
    unknown = set(options) - {"tasks", "settings"}
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.kernkoa: unknown option(s) {sorted(unknown)}; "
                                "it takes tasks= and settings=")
    if options.setdefault("tasks", "eager") not in TASK_MODES:
        raise pytest.UsageError(f"@pytest.mark.kernkoa(tasks={options['tasks']!r}): "
                                f"expected one of {TASK_MODES}")
    return options


@pytest.fixture
def kernkoa_project(request: pytest.FixtureRequest) -> Path:
    """The folder of the project under test (see the module docstring)."""
    from ..core.project import find_project

    return find_project(Path(request.config.rootpath))


@pytest.fixture
def kernkoa_settings() -> dict[str, t.Any]:
    """Settings of the test's app (none by default): override this fixture to change them."""
    return {}


@pytest.fixture
def kernkoa_app(request: pytest.FixtureRequest, kernkoa_project: Path,
                kernkoa_settings: dict[str, t.Any],
                tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Flask]:
    """The app over the project's catalog, with a temporary ``VAR`` holding the embedded
    broker and result store, ``DEBUG`` on (error bodies carry the controller's exception)
    and a fresh ``HMACKEY``; the test's settings may change any of them."""
    from ..app import create_app
    from ..core.settings import Settings
    from ..tasks.waiting import disconnect_result_store
    from .auth import seed_users
    from .worker import EmbeddedWorker

    options = _marker_options(request)
    var = tmp_path_factory.mktemp("kernkoa-var")
    # Each test on its own broker and store, whatever the developer's KERNKOA_* say.
    settings = {"path": str(kernkoa_project), "VAR": str(var), "DEBUG": True,
                "HMACKEY": secrets.token_hex(32), "BROKER_URL": "", "RESULT_BACKEND": "",
                **kernkoa_settings, **options.get("settings", {})}
    seed_users(Settings.load(settings))
    app = create_app(settings)
    app.config["KERNKOA_TASKS"] = options["tasks"]
    worker = None
    if options["tasks"] == "worker":
        worker = EmbeddedWorker(settings, var / "worker.log")
        worker.wait_ready()
    try:
        yield app
    finally:
        if worker is not None:
            worker.stop()
        disconnect_result_store(app)


@pytest.fixture
def kernkoa_client(kernkoa_app: Flask) -> t.Iterator[KitClient]:
    """A client of ``kernkoa_app`` in this process: ``call``, ``start``, ``get``,
    ``post``, ``with_token``, ``with_user`` (see :class:`kernel.testing.inprocess.KitClient`)."""
    from .inprocess import AppTransport
    from .inprocess import KitClient

    eager = kernkoa_app.config["KERNKOA_TASKS"] == "eager"
    with KitClient(kernkoa_app, AppTransport(kernkoa_app, eager)) as client:
        yield client

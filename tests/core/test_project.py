"""Where the project is: find_project, and the project's own config.py."""

from __future__ import annotations

from pathlib import Path

from kernel.core.project import find_project
from kernel.core.settings import PROJECT_ROOT
from kernel.core.settings import Settings


def test_the_nearest_folder_holding_a_catalog_or_config(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "catalog").mkdir(parents=True)
    (site / "tests" / "deep").mkdir(parents=True)
    assert find_project(site / "tests" / "deep", environ={}) == site
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "config.py").write_text("")
    assert find_project(other / "sub", environ={}) == other
    # A file named catalog marks nothing.
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "catalog").write_text("")
    assert find_project(lone, environ={}) != lone


def test_no_project_around_is_the_kernels(tmp_path: Path) -> None:
    found = find_project(tmp_path, environ={})
    assert found == PROJECT_ROOT or (found / "catalog").is_dir() or (found / "config.py").is_file()


def test_kernkoa_path_wins(tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    assert find_project(tmp_path, environ={"KERNKOA_PATH": "/srv/site"}) == Path("/srv/site")


def test_settings_read_the_projects_own_config_py(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("DEBUG = True\nMY_OWN = 'yes'\nCATALOG = 'cat'\n")
    settings = Settings.load({"path": str(tmp_path)}, environ={})
    assert settings.DEBUG is True and settings.MY_OWN == "yes"
    assert settings.CATALOG == tmp_path / "cat"
    # A setting the project's config.py leaves out has the field's default.
    assert settings.RELOAD is True
    from_env = Settings.load(environ={"KERNKOA_PATH": str(tmp_path), "KERNKOA_DEBUG": "no"})
    assert from_env.MY_OWN == "yes" and from_env.DEBUG is False
    assert from_env.path == str(tmp_path)


def test_a_project_without_config_py_takes_the_kernels(tmp_path: Path) -> None:
    settings = Settings.load({"path": str(tmp_path)}, environ={})
    assert settings.CATALOG == tmp_path / "catalog"
    assert settings.defaultDatabase == "maindb"

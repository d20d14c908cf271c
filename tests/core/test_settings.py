"""Settings from ``config.py``, ``KERNKOA_<NAME>`` variables and overrides."""

from __future__ import annotations

import dataclasses
import runpy
import stat
import typing as t
from pathlib import Path

import pytest
from flask import Flask

from kernel import create_app
from kernel.api.config import config
from kernel.core.errors import SettingsError
from kernel.core.secretkey import SECRET_FILE
from kernel.core.settings import PATH_SETTINGS
from kernel.core.settings import PROJECT_ROOT
from kernel.core.settings import Settings
from kernel.core.settings import parse_value
from tests.support.catalogs import ControllerTree


def test_defaults_come_from_config_py() -> None:
    settings = Settings.load(environ={})
    assert settings.DEBUG is False
    assert settings.RELOAD is True
    assert settings.url == "" and settings.base == ""
    assert settings.defaultDatabase == "maindb"
    assert settings.CATALOG == PROJECT_ROOT / "catalog"
    assert settings.TEMPLATES == PROJECT_ROOT / "templates"
    assert settings.VAR == PROJECT_ROOT / "var"
    assert settings.path == str(PROJECT_ROOT)
    assert "os" not in settings.as_dict()


@pytest.mark.parametrize(
    ("key", "raw", "name", "value"),
    [
        ("KERNKOA_url", "http://example.org/", "url", "http://example.org/"),
        ("KERNKOA_URL", "http://example.org", "url", "http://example.org"),
        ("KERNKOA_DEBUG", "true", "DEBUG", True),
        ("KERNKOA_debug", "Yes", "DEBUG", True),
        ("KERNKOA_Reload", "off", "RELOAD", False),
        ("KERNKOA_RELOAD", "0", "RELOAD", False),
        ("KERNKOA_PORT", "8123", "PORT", 8123),
        ("KERNKOA_session_TIMEOUT", "5", "session_timeout", 5),
        ("KERNKOA_DATABASES", '{"maindb": {"driver": "sqlite"}}', "databases",
         {"maindb": {"driver": "sqlite"}}),
        ("KERNKOA_DEFAULTDATABASE", "other", "defaultDatabase", "other"),
    ],
)
def test_environment_overrides(key: str, raw: str, name: str, value: t.Any) -> None:
    assert getattr(Settings.load(environ={key: raw}), name) == value


def test_unknown_and_unprefixed_variables_are_ignored() -> None:
    settings = Settings.load(environ={"KERNKOA_NO_SUCH": "1", "DEBUG": "true"})
    assert settings.DEBUG is False
    assert not hasattr(settings, "NO_SUCH")


@pytest.mark.parametrize(
    ("key", "raw", "fragment"),
    [
        ("KERNKOA_DEBUG", "maybe", "KERNKOA_DEBUG"),
        ("KERNKOA_PORT", "eighty", "KERNKOA_PORT"),
        ("KERNKOA_databases", "{not json", "KERNKOA_DATABASES"),
        ("KERNKOA_DATABASES", "[1, 2]", "JSON object"),
    ],
)
def test_bad_values_raise_a_clear_error(key: str, raw: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        Settings.load(environ={key: raw})


def test_bad_environment_stops_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERNKOA_MAX_PATH_DEPTH", "deep")
    with pytest.raises(SettingsError, match="KERNKOA_MAX_PATH_DEPTH"):
        create_app()


@pytest.mark.parametrize(
    ("raw", "default", "value"),
    [
        ("a, b,,c", ["x"], ["a", "b", "c"]),
        ("", ("x",), []),
        ("2.5", 1.0, 2.5),
        ("text", "default", "text"),
        ("", True, False),
    ],
)
def test_parse_value_by_type(raw: str, default: t.Any, value: t.Any) -> None:
    assert parse_value("name", raw, default) == value


def test_overrides_win_and_match_case() -> None:
    settings = Settings.load({"debug": True, "NEW_THING": 1}, environ={"KERNKOA_DEBUG": "no"})
    assert settings.DEBUG is True
    assert settings.NEW_THING == 1


def test_every_setting_of_config_py_is_a_field_with_its_default() -> None:
    shipped = {name: value for name, value in runpy.run_path(str(PROJECT_ROOT / "config.py"))
               .items() if not name.startswith("_")}
    defaults = Settings()
    fields = {field.name for field in dataclasses.fields(Settings)} - {"_extra"}
    assert set(shipped) == fields
    for name, value in shipped.items():
        expected = Path(value) if name in PATH_SETTINGS else value
        assert getattr(defaults, name) == expected, name


def test_settings_are_frozen_and_hide_their_values() -> None:
    settings = Settings.load({"secretKey": "do-not-print-me"}, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.DEBUG = True  # type: ignore[misc]
    assert "do-not-print-me" not in repr(settings)


@pytest.mark.parametrize(
    ("overrides", "name", "value"),
    [
        ({"MAX_FIELDS": "10"}, "MAX_FIELDS", 10),
        ({"PAGES": "off"}, "PAGES", False),
        ({"WORKER_LEASE": 2}, "WORKER_LEASE", 2.0),
        ({"TRUSTED_HOSTS": ("a.example",)}, "TRUSTED_HOSTS", ["a.example"]),
        ({"ADDONS": "cors, jwt_auth"}, "ADDONS", ["cors", "jwt_auth"]),
        ({"secretKey": None}, "secretKey", ""),
    ],
)
def test_values_take_the_type_of_their_setting(overrides: dict[str, t.Any], name: str,
                                              value: t.Any) -> None:
    loaded = getattr(Settings.load(overrides, environ={}), name)
    assert loaded == value and type(loaded) is type(value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"MAX_FIELDS": 1.5}, "MAX_FIELDS: expected an integer, got float"),
        ({"MAX_FIELDS": True}, "MAX_FIELDS: expected an integer, got bool"),
        ({"MAX_FIELDS": "many"}, "MAX_FIELDS: invalid literal"),
        ({"debug": 1}, "DEBUG: expected true or false, got int"),
        ({"ADDONS": [1]}, "ADDONS: expected a list of text, got list"),
        ({"databases": []}, "databases: expected a mapping, got list"),
        ({"VAR": 3}, "VAR: expected a folder, got int"),
    ],
)
def test_values_of_another_type_raise_a_clear_error(overrides: dict[str, t.Any],
                                                     message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(overrides, environ={})


def test_folder_variables(tmp_path: Path) -> None:
    settings = Settings.load(environ={
        "KERNKOA_CATALOG": str(tmp_path / "cat"),
        "KERNKOA_TEMPLATES": str(tmp_path / "tpl"),
        "KERNKOA_VAR": str(tmp_path / "var"),
        "KERNKOA_IMAGES": "relative/images",
    })
    assert settings.CATALOG == tmp_path / "cat"
    assert settings.TEMPLATES == tmp_path / "tpl"
    assert settings.VAR == tmp_path / "var"
    assert settings.IMAGES == PROJECT_ROOT / "relative" / "images"


def test_catalog_variable_reaches_the_app(tree: ControllerTree,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tree.write("only.py", "class C:\n    def m(self):\n        return 'from env catalog'\n")
    monkeypatch.setenv("KERNKOA_CATALOG", str(tree.root))
    assert create_app().test_client().get("/only/C/m").data == b"from env catalog"


def test_templates_variable_reaches_render(tree: ControllerTree, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "t.html").write_text("custom {{ x }}")
    tree.write("m.py", "from kernkoa import *\n\nclass C:\n"
                       "    def m(self):\n        return render('t.html', x=1)\n")
    monkeypatch.setenv("KERNKOA_TEMPLATES", str(tmp_path / "tpl"))
    monkeypatch.setenv("KERNKOA_CATALOG", str(tree.root))
    assert create_app().test_client().get("/m/C/m").data == b"custom 1"


URL = """
from kernkoa import *

class C:
    def url(self):
        return config.url

    def setting(self, name):
        return {"value": getattr(config, name)}
"""


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("", "http://localhost/"),
        ("https://example.org/app", "https://example.org/app/"),
        ("https://example.org/app/", "https://example.org/app/"),
    ],
)
def test_config_url(make_app: t.Callable[..., Flask], tree: ControllerTree, configured: str,
                    expected: str) -> None:
    tree.write("u.py", URL)
    client = make_app(url=configured).test_client()
    assert client.get("/u/C/url").text == expected


def test_config_url_follows_the_request_root(make_app: t.Callable[..., Flask],
                                             tree: ControllerTree) -> None:
    tree.write("u.py", URL)
    client = make_app().test_client()
    response = client.get("/u/C/url", base_url="https://shop.example:8443/prefix")
    assert response.text == "https://shop.example:8443/prefix/"


def test_config_url_includes_the_base_prefix(make_app: t.Callable[..., Flask],
                                            tree: ControllerTree) -> None:
    tree.write("u.py", URL)
    client = make_app(base="/api").test_client()
    assert client.get("/api/u/C/url").text == "http://localhost/api/"


def test_config_reads_the_current_app(make_app: t.Callable[..., Flask],
                                      tree: ControllerTree) -> None:
    tree.write("u.py", URL)
    client = make_app(defaultDatabase="current").test_client()
    assert client.get("/u/C/setting?name=defaultDatabase").get_json() == {"value": "current"}


def test_config_outside_an_app() -> None:
    assert config.url == "/"
    assert config.defaultDatabase == "maindb"
    assert repr(config) == "<kernkoa config>"


def test_debug_is_off_by_default(make_app: t.Callable[..., Flask]) -> None:
    assert make_app().debug is False
    assert make_app(DEBUG=True).debug is True


def test_generated_secret_is_private_and_reused(make_app: t.Callable[..., Flask],
                                                tmp_path: Path) -> None:
    first = make_app()
    secret = tmp_path / "var" / SECRET_FILE  # conftest points KERNKOA_VAR there
    assert secret.is_file()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32  # type: ignore[arg-type]
    assert make_app().secret_key == first.secret_key
    assert secret.read_text().strip() == first.secret_key
    assert [p.name for p in secret.parent.iterdir()] == [SECRET_FILE]


def test_configured_secret_is_used(make_app: t.Callable[..., Flask], tmp_path: Path) -> None:
    assert make_app(secretKey="configured-secret").secret_key == "configured-secret"
    assert not (tmp_path / "var" / SECRET_FILE).exists()


def test_other_var_gets_its_own_secret(make_app: t.Callable[..., Flask],
                                       tmp_path: Path) -> None:
    one = make_app().secret_key
    two = make_app(VAR=str(tmp_path / "other")).secret_key
    assert one != two

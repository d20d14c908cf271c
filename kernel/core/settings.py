"""Settings: the defaults in ``config.py``, overridden by ``KERNKOA_<NAME>`` variables.

``config.py`` at the project root is a plain module of documented settings. The
keys KernKoa controllers already read keep their lower-case names (``url``,
``base``, ``path``, ``databases``...); settings new to this kernel are upper
case. An environment variable ``KERNKOA_<NAME>`` overrides the setting of that
name, matched without regard to case, and is parsed by the type of the default.
"""

from __future__ import annotations

import json
import os
import runpy
import typing as t
from pathlib import Path

from .errors import SettingsError

#: The project root: the folder holding ``kernel/``, ``catalog/`` and ``config.py``.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Prefix of the environment variables that override settings.
ENV_PREFIX = "KERNKOA_"

#: Settings holding a folder; relative values are taken from the project root.
PATH_SETTINGS = ("CATALOG", "TEMPLATES", "VAR", "IMAGES", "PDFS")

#: Words read as true and as false, in settings and in request fields.
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_value(name: str, raw: str, default: t.Any) -> t.Any:
    """Parse the string ``raw`` into the type of ``default``.

    Booleans take ``true/false/yes/no/on/off/1/0``, lists are comma-separated,
    dicts are JSON; anything else stays a string.
    """
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in TRUE_WORDS:
                return True
            if lowered in FALSE_WORDS or not lowered:  # an empty variable means off
                return False
            raise ValueError(f"expected true or false, got {raw!r}")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, (list, tuple)):
            return [item.strip() for item in raw.split(",") if item.strip()]
        if isinstance(default, dict):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except ValueError as error:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {error}") from None
    return raw


def _defaults() -> dict[str, t.Any]:
    values = runpy.run_path(str(PROJECT_ROOT / "config.py"))
    return {k: v for k, v in values.items() if not k.startswith("_") and not callable(v)
            and not isinstance(v, type(os))}


class Settings:
    """One resolved set of settings, read as attributes (``settings.DEBUG``).

    Build it with :meth:`load`; tests pass ``overrides`` instead of editing
    ``config.py`` or the environment.
    """

    def __init__(self, values: dict[str, t.Any]) -> None:
        self.__dict__.update(values)

    @classmethod
    def load(
        cls,
        overrides: t.Mapping[str, t.Any] | None = None,
        environ: t.Mapping[str, str] | None = None,
    ) -> Settings:
        """Read ``config.py``, apply ``KERNKOA_*`` variables, then ``overrides``."""
        values = _defaults()
        by_lower = {name.lower(): name for name in values}
        environ = os.environ if environ is None else environ
        for key, raw in environ.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = by_lower.get(key[len(ENV_PREFIX):].lower())
            if name is not None:
                values[name] = parse_value(name, raw, values[name])
        for key, value in (overrides or {}).items():
            values[by_lower.get(key.lower(), key)] = value
        root = Path(values.get("path") or PROJECT_ROOT)
        values["path"] = str(root)
        for name in PATH_SETTINGS:
            values[name] = (root / values[name]).resolve()
        return cls(values)

    def as_dict(self) -> dict[str, t.Any]:
        """Every setting, as a plain dict."""
        return dict(self.__dict__)

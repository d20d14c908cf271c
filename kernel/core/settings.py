"""Settings: the defaults in ``config.py``, overridden by ``KERNKOA_<NAME>`` variables.

``config.py`` at the project root is a plain module of documented settings. The
keys KernKoa controllers already read keep their lower-case names (``url``,
``base``, ``path``, ``databases``...); settings new to this kernel are upper
case. An environment variable ``KERNKOA_<NAME>`` overrides the setting of that
name, matched without regard to case, and is parsed by the type of the default.

:class:`Settings` has one typed field per setting: a value that does not fit
its field stops the app at load with a :class:`SettingsError` naming it.
"""

from __future__ import annotations

import dataclasses
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


def _parse(raw: str, default: t.Any) -> t.Any:
    """``raw`` in the type of ``default``; :class:`ValueError` when it does not fit."""
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
    return raw


def parse_value(name: str, raw: str, default: t.Any) -> t.Any:
    """Parse the string ``raw`` into the type of ``default``.

    Booleans take ``true/false/yes/no/on/off/1/0``, lists are comma-separated,
    dicts are JSON; anything else stays a string.

    :raises SettingsError: naming the variable ``KERNKOA_<NAME>``.
    """
    try:
        return _parse(raw, default)
    except ValueError as error:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {error}") from None


def _defaults(root: Path) -> dict[str, t.Any]:
    config_file = root / "config.py"
    if not config_file.is_file():
        config_file = PROJECT_ROOT / "config.py"
    values = runpy.run_path(str(config_file))
    return {k: v for k, v in values.items() if not k.startswith("_") and not callable(v)
            and not isinstance(v, type(os))}


# The settings are documented in config.py, which users edit; each field below
# repeats its default (tests/test_settings.py checks they agree), so that the
# kernel still starts on a config.py that lacks a setting.
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Settings:
    """One resolved set of settings, read as attributes (``settings.DEBUG``).

    Build it with :meth:`load`; tests pass ``overrides`` instead of editing
    ``config.py`` or the environment. Every setting the kernel reads is a typed
    field (see ``config.py`` for what each one does); a name ``config.py`` or the
    overrides add besides (a setting of the catalog's own) is read as an
    attribute too, untyped. Equality is identity and the repr shows no value:
    settings hold secrets, and are keys of weak caches.
    """

    # --- Settings KernKoa controllers know ---------------------------------
    #: Absolute base URL of the site ("": taken from each request).
    url: str = ""
    #: URL prefix of controller and static URLs ("" or "/api").
    base: str = ""
    #: Project root; :meth:`load` fills it in (the folder holding config.py).
    path: str = ""
    #: Secret for signed session cookies ("": generated into VAR and kept).
    secretKey: str = ""
    #: Lifetime of a session cookie, in minutes.
    session_timeout: int = 60
    #: Databases for ``dbs[name]``, by name.
    databases: dict[str, dict[str, t.Any]] = dataclasses.field(default_factory=lambda: {
        "maindb": {"driver": "sqlite", "host": "maindb.sqlite3", "user": "", "password": "",
                   "database": ""},
    })
    #: Name of the database models use when they name none.
    defaultDatabase: str = "maindb"

    # --- Kernel settings -----------------------------------------------------
    #: Debug mode: tracebacks and resolution details in error bodies.
    DEBUG: bool = False
    #: Catalog root (controller/, model/, print/); absolute once loaded.
    CATALOG: Path = Path("catalog")
    #: Jinja2 templates for ``render``; absolute once loaded.
    TEMPLATES: Path = Path("templates")
    #: Runtime data (generated secret, embedded broker, SQLite files); absolute once loaded.
    VAR: Path = Path("var")
    #: Folder served read-only at /images/<file>; absolute once loaded.
    IMAGES: Path = Path("images")
    #: Folder served read-only at /pdfs/<file>; absolute once loaded.
    PDFS: Path = Path("pdfs")
    #: Run a controller file's new code on the next request after it changes.
    RELOAD: bool = True
    #: What "/" calls: module path, class and method under catalog/controller/.
    INDEX_ROUTE: str = "index/index/index"
    #: First path segment of the kernel's own pages (/_kernkoa/...).
    RESERVED_PREFIX: str = "_kernkoa"
    #: Serve the kernel's pages (/_kernkoa/endpoints, /info, /openapi.json, /docs).
    PAGES: bool = True
    #: Put the kernel pages behind the enabled auth add-on even when AUTH_DEFAULT is "open".
    PAGES_AUTH: bool = False
    #: Serve /_kernkoa/health and /_kernkoa/health/tasks.
    HEALTH: bool = True
    #: Seconds /_kernkoa/health waits for the broker and result-store checks at most.
    HEALTH_TIMEOUT: float = 3.0
    #: Count requests, tasks and reloads, served at /_kernkoa/metrics (Prometheus).
    METRICS: bool = False
    #: Most seconds a request's counts wait in its process before the files have them.
    METRICS_FLUSH_SECONDS: float = 0.5
    #: Longest accepted URL path, in characters.
    MAX_PATH_LENGTH: int = 1024
    #: Most path segments in a URL.
    MAX_PATH_DEPTH: int = 32
    #: Longest path segment, in characters.
    MAX_SEGMENT_LENGTH: int = 128
    #: Largest request body, in bytes.
    MAX_CONTENT_LENGTH: int = 16 * 1024 * 1024
    #: Most fields in a query string, form or top-level JSON object.
    MAX_FIELDS: int = 1000
    #: Largest form text held in memory (Flask's MAX_FORM_MEMORY_SIZE).
    MAX_FORM_MEMORY_SIZE: int = 500_000
    #: Most arrays and objects in a JSON body.
    MAX_JSON_CONTAINERS: int = 100_000
    #: Deepest nesting of arrays and objects in a JSON body.
    MAX_JSON_DEPTH: int = 64
    #: How many resolved URLs each process remembers.
    ROUTE_CACHE_SIZE: int = 4096
    #: Add-ons to enable, by module name in ADDONS_FOLDER, in hook order.
    ADDONS: list[str] = dataclasses.field(default_factory=list)
    #: Folder of the add-on modules, relative to the project root.
    ADDONS_FOLDER: str = "system/addons"
    #: How log lines are written: "text" or "json" (one JSON object per line).
    LOG_FORMAT: str = "text"

    # --- Access ------------------------------------------------------------------
    #: "open" or "required": whether routes need the auth add-on unless marked.
    AUTH_DEFAULT: str = "open"
    #: Realm named in the WWW-Authenticate challenges.
    AUTH_REALM: str = "kernkoa"
    #: jwt_auth: file holding the shared HS256 key (relative to the project root).
    HMACKEY_FILE: str = "hmackey"
    #: jwt_auth: the shared HS256 key itself, when set; wins over HMACKEY_FILE.
    HMACKEY: str = ""
    #: jwt_auth: the audience tokens must name in "aud" ("": not checked).
    JWT_AUDIENCE: str = ""
    #: jwt_auth: seconds of clock skew tolerated on "exp" and "nbf".
    JWT_LEEWAY: float = 0.0
    #: basic_auth: the users file ("": VAR/users.json).
    USERS_FILE: str = ""
    #: Proxies whose X-Forwarded-For is believed, as addresses or networks.
    TRUSTED_PROXIES: list[str] = dataclasses.field(default_factory=list)
    #: cors: origins allowed to call the API from a browser ("*": any).
    CORS_ORIGINS: list[str] = dataclasses.field(default_factory=list)
    #: cors: methods a preflight may ask for.
    CORS_METHODS: list[str] = dataclasses.field(default_factory=lambda: [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    #: cors: request headers a preflight may ask for.
    CORS_HEADERS: list[str] = dataclasses.field(default_factory=lambda: [
        "Authorization", "Content-Type"])
    #: cors: whether browsers may send cookies and credentials cross-origin.
    CORS_ALLOW_CREDENTIALS: bool = False
    #: cors: seconds a browser may cache a preflight answer.
    CORS_MAX_AGE: int = 600
    #: Host names the site answers to (Flask's TRUSTED_HOSTS; empty: any).
    TRUSTED_HOSTS: list[str] = dataclasses.field(default_factory=list)
    #: Address of ``kernkoa serve``.
    HOST: str = "127.0.0.1"
    #: Port of ``kernkoa serve``.
    PORT: int = 5000

    # --- Long work (Celery) ------------------------------------------------------
    #: Task broker URL ("": the embedded broker, files under VAR/celery/).
    BROKER_URL: str = ""
    #: Where task states and results are kept ("": BROKER_URL when Redis, else files).
    RESULT_BACKEND: str = ""
    #: Request headers copied into a task's message.
    TASK_HEADERS: list[str] = dataclasses.field(default_factory=lambda: [
        "Accept", "Accept-Language", "User-Agent", "Referer", "Origin", "X-Requested-With",
        "X-Request-Id"])
    #: Seconds a task may run before it is stopped with a FAILURE (0: no limit).
    TASK_SOFT_TIME_LIMIT: int = 3600
    #: Seconds after which a task's worker process is killed (0: no limit).
    TASK_TIME_LIMIT: int = 3660
    #: Seconds before Redis hands an unacknowledged task to another worker (0: derived).
    VISIBILITY_TIMEOUT: int = 0
    #: Seconds between two heartbeats of a worker.
    WORKER_HEARTBEAT: float = 10.0
    #: Seconds a heartbeat holds a worker's tasks.
    WORKER_LEASE: float = 30.0
    #: Seconds task states, results and task records are kept.
    RESULT_EXPIRES: int = 86400
    #: Tasks the recent-tasks index keeps for ``/_kernkoa/tasks`` (0: none).
    RECENT_TASKS: int = 200
    #: Seconds between two stored progress reports of the same state.
    PROGRESS_INTERVAL: float = 0.5
    #: Seconds the web process waits to connect to the broker or result store.
    BROKER_TIMEOUT: float = 1.0
    #: Seconds the web process answers 503 at once after a broker failure.
    BROKER_COOLDOWN: float = 2.0
    #: Longest wait of a long poll, GET /status/<id>?wait=<seconds> (0: never wait).
    STATUS_WAIT_MAX: float = 30.0
    #: Seconds between two looks at the embedded broker's queue folder.
    BROKER_POLLING_INTERVAL: float = 0.05
    #: Task processes of a worker (0: Celery's default, one per CPU).
    WORKER_CONCURRENCY: int = 0
    #: Time zone of ``@cron`` schedules (an IANA name: ``Europe/Paris``).
    SCHEDULE_TIMEZONE: str = "UTC"
    #: Seconds a ``kernkoa beat`` holds the deployment's beat lock without renewing
    #: it; another beat takes over after that (Redis; the embedded lock dies with
    #: its process).
    BEAT_LEASE: float = 10.0
    #: Port where ``kernkoa worker`` serves its metrics (0: none; --metrics-port wins).
    WORKER_METRICS_PORT: int = 0
    #: Address of that port (--metrics-host wins).
    WORKER_METRICS_HOST: str = "127.0.0.1"

    #: Names besides the fields, from ``config.py`` or the overrides, untyped.
    _extra: t.Mapping[str, t.Any] = dataclasses.field(default_factory=dict)

    if not t.TYPE_CHECKING:
        # At run time only: to the type checker a name that is no field stays
        # an error, so a misspelt setting in the kernel is caught.
        def __getattr__(self, name: str) -> t.Any:
            try:
                return self.__dict__["_extra"][name]
            except KeyError:
                raise AttributeError(f"no setting {name!r}") from None

    @classmethod
    def load(
        cls,
        overrides: t.Mapping[str, t.Any] | None = None,
        environ: t.Mapping[str, str] | None = None,
    ) -> Settings:
        """Read ``config.py``, apply ``KERNKOA_*`` variables, then ``overrides``.

        ``config.py`` is the project's: the one in the folder ``path`` names
        (given by ``overrides`` or ``KERNKOA_PATH``) when it holds one, else the
        kernel's own (:data:`PROJECT_ROOT`).

        A variable is parsed by the type of the value ``config.py`` gives (the
        field's default when it gives none). A value of ``config.py`` or of
        ``overrides`` that is a string where the setting is not is parsed the
        same way; ``None`` for a text setting is ``""``.

        :raises SettingsError: naming the setting whose value does not fit.
        """
        environ = os.environ if environ is None else environ
        values = _defaults(_given_root(overrides or {}, environ))
        defaults = {name: getattr(_DEFAULTS, name) for name in _FIELD_TYPES}
        by_lower = {name.lower(): name for name in (*defaults, *values)}
        for key, raw in environ.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = by_lower.get(key[len(ENV_PREFIX):].lower())
            if name is not None:
                values[name] = parse_value(name, raw, values.get(name, defaults.get(name)))
        for key, value in (overrides or {}).items():
            values[by_lower.get(key.lower(), key)] = value
        fields = {name: _coerce(name, values.pop(name, default), _FIELD_TYPES[name], default)
                  for name, default in defaults.items()}
        root = Path(fields["path"] or PROJECT_ROOT)
        fields["path"] = str(root)
        for name in PATH_SETTINGS:
            fields[name] = (root / fields[name]).resolve()
        return cls(**fields, _extra=values)

    def as_dict(self) -> dict[str, t.Any]:
        """Every setting, as a plain dict."""
        return {**{name: getattr(self, name) for name in _FIELD_TYPES}, **self._extra}


def _given_root(overrides: t.Mapping[str, t.Any], environ: t.Mapping[str, str]) -> Path:
    """The project root ``overrides`` or ``KERNKOA_PATH`` name, else :data:`PROJECT_ROOT`."""
    given = next((v for k, v in overrides.items() if k.lower() == "path"), None)
    if given is None:
        given = next((v for k, v in environ.items() if k.upper() == f"{ENV_PREFIX}PATH"), None)
    return Path(given) if given else PROJECT_ROOT


#: Every setting's declared type, by name.
_FIELD_TYPES: dict[str, t.Any] = {
    name: hint for name, hint in t.get_type_hints(Settings).items() if not name.startswith("_")}

#: The defaults of the fields, from which the types of the values are checked.
_DEFAULTS = Settings()


def _coerce(name: str, value: t.Any, hint: t.Any, default: t.Any) -> t.Any:
    """``value`` as the setting ``name`` of type ``hint`` holds it.

    :raises SettingsError: when it does not fit.
    """
    kind = t.get_origin(hint) or hint
    if isinstance(value, str) and kind not in (str, Path):
        try:
            value = _parse(value, default)
        except ValueError as error:
            raise SettingsError(f"{name}: {error}") from None
    if kind is str and value is None:
        return ""
    if kind is Path and isinstance(value, (str, os.PathLike)):
        return Path(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        pass  # True is an int to Python, never a count to a setting
    elif kind is list and isinstance(value, (list, tuple)):
        if all(isinstance(item, str) for item in value):
            return list(value)
    elif kind is dict and isinstance(value, t.Mapping):
        return dict(value)
    elif kind in (str, bool, int, float) and isinstance(value, kind):
        return value
    expected = {str: "text", bool: "true or false", int: "an integer", float: "a number",
                Path: "a folder", list: "a list of text", dict: "a mapping"}[kind]
    raise SettingsError(f"{name}: expected {expected}, got {type(value).__name__}")

"""``dbs[name]``: the databases of ``config.databases``, on SQLAlchemy.

Each entry of ``config.databases`` is either KernKoa's shape::

    {"driver": "sqlite", "host": "maindb.sqlite3"}             # file under VAR
    {"driver": "postgresql", "host": "127.0.0.1", "port": 5432,
     "user": "app", "password": "...", "database": "app"}

or any SQLAlchemy URL: ``{"url": "postgresql+psycopg://app@db/app"}``. An optional
``"options"`` dict is passed to :func:`sqlalchemy.create_engine`.

Importing this module, building ``dbs`` or even ``dbs["maindb"]`` opens no
connection: the engine (and its pool) is created on first use, once per
process. A process forked after that (uWSGI without ``lazy-apps``) notices the
new pid and builds its own engine instead of sharing the parent's sockets.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import os
import threading
import typing as t
import weakref
from pathlib import Path

from ..core.errors import DatabaseConfigError
from ..core.errors import UnknownDatabase
from ..core.lazy import LazyModule
from ..core.settings import Settings
from ..web.state import current_settings

if t.TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine import Engine

#: SQLAlchemy, imported with the first database used: importing it costs every
#: worker process ~14 MiB and ~120 ms, and most never touch a database.
sa = LazyModule("sqlalchemy")

#: KernKoa ``driver`` names and the SQLAlchemy dialect+driver each maps to.
DRIVERS = {
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "pgsql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mysqldb": "mysql+pymysql",
}

#: How long an SQLite connection waits for another process's write lock, in seconds.
SQLITE_BUSY_TIMEOUT = 30.0

#: Bound parameters: one mapping, or a sequence of them (run once per mapping).
Params = t.Mapping[str, t.Any] | t.Sequence[t.Mapping[str, t.Any]] | None


#: What :meth:`Database.execute` returns: column names (or ``None``), rows, rowcount.
Outcome = tuple[list[str] | None, list[tuple[t.Any, ...]], int]


def database_url(name: str, entry: t.Mapping[str, t.Any], var: Path) -> URL:
    """The SQLAlchemy URL of one ``config.databases`` entry.

    A relative SQLite file is taken from ``var``; ``":memory:"`` stays in memory.

    :raises DatabaseConfigError: for an unknown driver or a malformed entry.
    """
    if not isinstance(entry, cabc.Mapping):
        raise DatabaseConfigError(f"databases[{name!r}] must be a dict, not {type(entry).__name__}")
    url: URL
    if entry.get("url"):
        try:
            url = sa.make_url(str(entry["url"]))
        except sa.exc.ArgumentError as error:
            raise DatabaseConfigError(f"databases[{name!r}]: {error}") from None
    else:
        driver = str(entry.get("driver") or "sqlite").lower()
        if driver not in DRIVERS:
            raise DatabaseConfigError(
                f"databases[{name!r}]: unknown driver {driver!r}; use one of "
                f"{', '.join(sorted(DRIVERS))} or give an SQLAlchemy 'url'"
            )
        drivername = DRIVERS[driver]
        if drivername == "sqlite":
            database = str(entry.get("host") or f"{name}.sqlite3")
            url = sa.engine.URL.create("sqlite", database=database)
        else:
            port = entry.get("port")
            url = sa.engine.URL.create(
                drivername,
                username=entry.get("user") or None,
                password=entry.get("password") or None,
                host=entry.get("host") or None,
                port=int(port) if port else None,
                database=entry.get("database") or None,
            )
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        file = Path(url.database)
        if not file.is_absolute():
            url = url.set(database=str(var / file))
    return url


def _prepare_sqlite(dbapi_connection: t.Any, _record: t.Any) -> None:
    # WAL lets readers run beside one writer; busy_timeout makes a writer wait
    # for the lock instead of failing at once with "database is locked".
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def create_engine(url: URL, options: t.Mapping[str, t.Any] | None = None) -> Engine:
    """An engine for ``url``, with the SQLite settings KernKoa needs.

    Creating it opens no connection.
    """
    kwargs: dict[str, t.Any] = {"pool_pre_ping": url.get_backend_name() != "sqlite"}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    kwargs.update(options or {})
    engine: Engine = sa.create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _prepare_sqlite)
    return engine


class Database:
    """One configured database: a lazily built, fork-aware engine and KernKoa's helpers.

    Every helper runs in its own transaction on a pooled connection: committed
    when the statement succeeds, rolled back when it fails, and the connection
    goes back to the pool either way (so a failed statement never leaves a lock).

    :param name: the name in ``config.databases``.
    :param url: where the database is.
    :param options: extra :func:`sqlalchemy.create_engine` options.
    """

    def __init__(self, name: str, url: URL, options: t.Mapping[str, t.Any] | None = None) -> None:
        self.name = name
        self.url = url
        self.options = dict(options or {})
        self._engine: Engine | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Database {self.name!r} {self.url.render_as_string(hide_password=True)}>"

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine of this process, created on first use."""
        engine = self._engine
        if engine is not None and self._pid == os.getpid():
            return engine
        with self._lock:
            if self._engine is not None and self._pid != os.getpid():
                # Inherited through fork: the parent's pooled sockets and file
                # handles belong to the parent; drop them without closing them.
                self._engine.dispose(close=False)
                self._engine = None
            if self._engine is None:
                self._engine = create_engine(self.url, self.options)
                self._pid = os.getpid()
            return self._engine

    def dispose(self) -> None:
        """Close every pooled connection of this process (the next use reconnects)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose(close=self._pid == os.getpid())
                self._engine = None

    @contextlib.contextmanager
    def transaction(self) -> t.Iterator[Connection]:
        """A connection in a transaction, for several statements that belong together::

            with dbs["maindb"].transaction() as conn:
                conn.execute(sa.text("UPDATE ..."), {...})

        Committed when the block ends, rolled back if it raises.
        """
        with self.engine.begin() as connection:
            yield connection

    def execute(self, sql: str, params: Params = None) -> Outcome:
        """Run one statement with bound ``:name`` parameters, committed.

        :returns: the column names (``None`` when the statement returns no
            rows), the rows, and the rowcount.
        """
        statement = sa.text(sql)
        with self.engine.begin() as connection:
            if params is None:
                result = connection.execute(statement)
            elif isinstance(params, cabc.Mapping):
                result = connection.execute(statement, dict(params))
            else:
                result = connection.execute(statement, [dict(p) for p in params])
            if result.returns_rows:
                return list(result.keys()), [tuple(row) for row in result], result.rowcount
            return None, [], result.rowcount

    def query(self, sql: str, params: Params = None) -> list[t.Any] | int:
        """Run ``sql`` with bound ``:name`` parameters, the KernKoa way.

        A statement that returns rows (``SELECT``, ``... RETURNING``, ``PRAGMA``)
        gives a list whose first item is the tuple of column names, followed
        by one tuple per row. Any other statement gives its rowcount (the rows
        changed by ``INSERT``/``UPDATE``/``DELETE``; -1 where the driver does
        not know, as for DDL). Either way the work is committed.
        """
        columns, rows, rowcount = self.execute(sql, params)
        if columns is None:
            return rowcount
        return [tuple(columns), *rows]

    def getDictionary(
        self, sql: str, params: Params = None, column: str | None = None
    ) -> dict[t.Any, t.Any] | t.Literal[False]:
        """Rows as dicts.

        Without ``column``: the one row the query returns, as a dict of column
        to value, or ``False`` unless exactly one row came back (KernKoa's
        contract). With ``column``: a dict keyed by that column's value, each
        value the row as a dict, in query order.
        """
        columns, rows, _ = self.execute(sql, params)
        if columns is None:
            raise ValueError("getDictionary needs a statement that returns rows")
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        if column is None:
            return records[0] if len(records) == 1 else False
        if column not in columns:
            raise KeyError(f"the query returns no column {column!r} (it has {columns})")
        return {record[column]: record for record in records}

    def getValue(self, sql: str, params: Params = None) -> t.Any:
        """The first column of the first row, or ``None`` when there is no row."""
        columns, rows, _ = self.execute(sql, params)
        if columns is None:
            raise ValueError("getValue needs a statement that returns rows")
        return rows[0][0] if rows else None

    def checkTable(self, name: str, schema: str | None = None) -> bool:
        """Whether a table of that name exists (names are never put into SQL text)."""
        with self.engine.connect() as connection:
            return bool(sa.inspect(connection).has_table(name, schema=schema))


#: Every Database built in this process, by URL and options: one engine per database.
_shared: dict[tuple[str, str], Database] = {}
_shared_lock = threading.Lock()


def _shared_database(name: str, url: URL, options: t.Mapping[str, t.Any]) -> Database:
    key = (url.render_as_string(hide_password=False), repr(sorted(options.items())))
    with _shared_lock:
        database = _shared.get(key)
        if database is None:
            database = _shared[key] = Database(name, url, options)
        return database


class _SettingsDatabases(cabc.Mapping[str, Database]):
    """The names and the default of the databases of some settings'
    ``config.databases``; a subclass says whose settings and builds ``[name]``."""

    def _settings(self) -> Settings:
        raise NotImplementedError

    def _entries(self) -> t.Mapping[str, t.Any]:
        # A databases setting that is no dict stops the app at load (SettingsError).
        return self._settings().databases

    def __iter__(self) -> t.Iterator[str]:
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())

    @property
    def default(self) -> Database:
        """The database named by ``config.defaultDatabase``."""
        return self[self._settings().defaultDatabase]


class Databases(_SettingsDatabases):
    """The databases of one set of settings, by name (``dbs[name]``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[str, Database] = {}

    def _settings(self) -> Settings:
        return self.settings

    def __getitem__(self, name: str) -> Database:
        database = self._built.get(name)
        if database is not None:
            return database
        entries = self._entries()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise UnknownDatabase(f"no database {name!r} in config.databases (known: {known})")
        entry = entries[name]
        url = database_url(name, entry, self.settings.VAR)
        options = entry.get("options") or {}
        database = self._built[name] = _shared_database(name, url, options)
        return database


_by_settings: weakref.WeakKeyDictionary[Settings, Databases] = weakref.WeakKeyDictionary()


def databases_for(settings: Settings) -> Databases:
    """The :class:`Databases` of one set of settings (built once, kept while they live)."""
    databases = _by_settings.get(settings)
    if databases is None:
        databases = _by_settings[settings] = Databases(settings)
    return databases


class DatabasesProxy(_SettingsDatabases):
    """What controllers see as ``dbs``: the databases of the current app's settings,
    or of ``config.py`` outside an app."""

    def _settings(self) -> Settings:
        return current_settings()

    def __getitem__(self, name: str) -> Database:
        # The engines built for these settings, kept while they live.
        return databases_for(self._settings())[name]

    def __repr__(self) -> str:
        return "<kernkoa dbs>"


def dispose_all() -> None:
    """Close every pooled connection of every database in this process."""
    with _shared_lock:
        databases = list(_shared.values())
    for database in databases:
        database.dispose()


#: The ``dbs`` object exported to controllers.
dbs = DatabasesProxy()

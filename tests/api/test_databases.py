"""``dbs``: KernKoa's database helpers on SQLAlchemy, with SQLite files and a real PostgreSQL."""

from __future__ import annotations

import getpass
import os
import sqlite3
import subprocess
import sys
import typing as t
import uuid
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa

from kernel import create_app
from kernel.api.databases import Database
from kernel.api.databases import database_url
from kernel.api.databases import dbs
from kernel.api.databases import dispose_all
from kernel.core.errors import DatabaseConfigError
from kernel.core.errors import UnknownDatabase
from kernel.core.settings import PROJECT_ROOT

INJECTIONS = [
    "'); DROP TABLE items; --",
    "x' OR '1'='1",
    "SELECT * FROM items",
    "\"; DELETE FROM items; --",
    "Robert'); DROP TABLE students;--",
]


@pytest.fixture(autouse=True)
def _close_engines() -> t.Iterator[None]:
    """Every pooled connection a test opened is closed when it ends."""
    yield
    dispose_all()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    """An SQLite database in the test's folder with a table ``items``."""
    database = Database("test", database_url("test", {"driver": "sqlite"}, tmp_path))
    database.query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER)")
    return database


# --- configuration -----------------------------------------------------------


def test_sqlite_file_is_under_var(tmp_path: Path) -> None:
    url = database_url("maindb", {"driver": "sqlite", "host": "main.sqlite3"}, tmp_path)
    assert url.get_backend_name() == "sqlite"
    assert url.database == str(tmp_path / "main.sqlite3")


def test_sqlite_defaults_and_absolute_paths(tmp_path: Path) -> None:
    assert database_url("x", {}, tmp_path).database == str(tmp_path / "x.sqlite3")
    assert database_url("x", {"host": "/abs/x.db"}, tmp_path).database == "/abs/x.db"
    assert database_url("x", {"url": "sqlite:///:memory:"}, tmp_path).database == ":memory:"
    assert database_url("x", {"url": "sqlite:///rel.db"}, tmp_path).database == str(
        tmp_path / "rel.db")


def test_kernkoa_shape_for_postgresql_and_mysql(tmp_path: Path) -> None:
    url = database_url("pg", {"driver": "postgresql", "host": "db", "port": "5433",
                              "user": "app", "password": "s3cret", "database": "shop"},
                       tmp_path)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db", 5433, "app", "s3cret", "shop")
    assert database_url("m", {"driver": "mysql", "host": "h"}, tmp_path).drivername == \
        "mysql+pymysql"


@pytest.mark.parametrize("entry", [{"driver": "oracle"}, {"url": "not a url"}, "sqlite"])
def test_bad_entries_are_clear_errors(tmp_path: Path, entry: t.Any) -> None:
    with pytest.raises(DatabaseConfigError, match="databases\\['x'\\]"):
        database_url("x", entry, tmp_path)


def test_unknown_name_is_a_clear_error() -> None:
    with create_app().app_context(), pytest.raises(UnknownDatabase, match="nosuchdb.*maindb"):
        dbs["nosuchdb"]


def test_maindb_ships_and_opens_nothing_until_used(tmp_path: Path) -> None:
    app = create_app()
    with app.app_context():
        assert "maindb" in dbs
        database = dbs["maindb"]
        assert dbs.default is database
        assert not Path(database.url.database).exists()  # no connection yet
        assert database.getValue("SELECT 1") == 1
        assert Path(database.url.database).parent == tmp_path / "var"


def test_importing_opens_no_connection(tmp_path: Path) -> None:
    code = ("import kernkoa; from kernkoa import dbs; d = dbs['maindb']; "
            "import sqlalchemy; print(d._engine)")
    env = {**os.environ, "KERNKOA_VAR": str(tmp_path / "v")}
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "None"
    assert not (tmp_path / "v" / "maindb.sqlite3").exists()


def test_databases_setting_accepts_urls(tmp_path: Path) -> None:
    target = tmp_path / "other.db"
    app = create_app({"databases": {"other": {"url": f"sqlite:///{target}"}}})
    with app.app_context():
        dbs["other"].query("CREATE TABLE t (x INTEGER)")
    assert target.exists()


# --- the helpers ---------------------------------------------------------------


def test_query_returns_header_then_rows(db: Database) -> None:
    assert db.query("INSERT INTO items (name, n) VALUES (:name, :n)", {"name": "a", "n": 1}) == 1
    assert db.query("INSERT INTO items (name, n) VALUES (:name, :n)",
                    [{"name": "b", "n": 2}, {"name": "c", "n": 3}]) == 2
    assert db.query("SELECT name, n FROM items ORDER BY n") == [
        ("name", "n"), ("a", 1), ("b", 2), ("c", 3)]
    assert db.query("SELECT name FROM items WHERE n > :n", {"n": 5}) == [("name",)]
    assert db.query("UPDATE items SET n = n + 1 WHERE n >= :n", {"n": 2}) == 2
    assert db.query("DELETE FROM items WHERE name = :name", {"name": "a"}) == 1


def test_rows_or_count_is_decided_by_the_result_not_the_text(db: Database) -> None:
    # KernKoa looked for the substring "SELECT": this INSERT returned rows there.
    assert db.query("INSERT INTO items (name) VALUES (:name)", {"name": "SELECT me"}) == 1
    rows = db.query("INSERT INTO items (name) VALUES (:name) RETURNING id, name",
                    {"name": "returned"})
    assert rows == [("id", "name"), (2, "returned")]
    assert db.getValue("SELECT count(*) FROM items") == 2  # RETURNING was committed too


def test_get_dictionary_and_get_value(db: Database) -> None:
    db.query("INSERT INTO items (name, n) VALUES (:name, :n)",
             [{"name": "a", "n": 1}, {"name": "b", "n": 2}])
    assert db.getDictionary("SELECT name, n FROM items WHERE n = :n", {"n": 2}) == {
        "name": "b", "n": 2}
    assert db.getDictionary("SELECT name, n FROM items") is False  # not exactly one row
    assert db.getDictionary("SELECT name, n FROM items WHERE n = 9") is False
    keyed = db.getDictionary("SELECT name, n FROM items ORDER BY n", column="name")
    assert keyed == {"a": {"name": "a", "n": 1}, "b": {"name": "b", "n": 2}}
    assert list(keyed) == ["a", "b"]
    assert db.getValue("SELECT n FROM items WHERE name = :name", {"name": "b"}) == 2
    assert db.getValue("SELECT n FROM items WHERE name = 'zzz'") is None
    with pytest.raises(KeyError, match="nope"):
        db.getDictionary("SELECT name FROM items", column="nope")


def test_check_table(db: Database) -> None:
    assert db.checkTable("items") is True
    assert db.checkTable("missing") is False
    assert db.checkTable("items; DROP TABLE items") is False
    assert db.checkTable("items") is True


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_lands_as_plain_text(db: Database, payload: str) -> None:
    db.query("INSERT INTO items (name) VALUES (:name)", {"name": payload})
    assert db.getValue("SELECT name FROM items WHERE name = :name", {"name": payload}) == payload
    assert db.getValue("SELECT count(*) FROM items") == 1
    assert db.checkTable("items")


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(db: Database) -> None:
    assert db.getValue("PRAGMA journal_mode") == "wal"
    assert db.getValue("PRAGMA busy_timeout") >= 1000


# --- failures --------------------------------------------------------------------


def test_failed_statement_rolls_back_and_frees_the_connection(db: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        db.query("INSERT INTO items (name) VALUES (:name)", {"name": None})
    with pytest.raises(sa.exc.OperationalError):
        db.query("INSERT INTO nowhere VALUES (1)")
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as conn:
        conn.execute(sa.text("INSERT INTO items (name) VALUES ('kept?')"))
        conn.execute(sa.text("INSERT INTO items (name) VALUES (NULL)"))
    assert db.getValue("SELECT count(*) FROM items") == 0  # the whole transaction went
    # Another connection that refuses to wait at all can write: nobody holds a lock.
    other = sqlite3.connect(db.url.database, timeout=0)
    try:
        other.execute("INSERT INTO items (name) VALUES ('from outside')")
        other.commit()
    finally:
        other.close()
    assert db.query("SELECT name FROM items") == [("name",), ("from outside",)]


def test_forked_child_builds_its_own_engine(db: Database) -> None:
    db.query("INSERT INTO items (name) VALUES ('parent')")
    parent_engine = db.engine
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() beside threads; this test has none of its own.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report and leave without running any test machinery
        code = 1
        try:
            child_engine = db.engine
            db.query("INSERT INTO items (name) VALUES ('child')")
            code = 0 if child_engine is not parent_engine else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    try:
        result = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert result == b"\x00"
    assert db.engine is parent_engine
    assert db.query("SELECT name FROM items ORDER BY id") == [("name",), ("parent",), ("child",)]


# --- PostgreSQL -------------------------------------------------------------------


def _postgres_entry() -> dict[str, t.Any]:
    url = os.environ.get("TEST_POSTGRES_URL")
    if url:
        return {"url": url}
    return {"driver": "postgresql", "host": os.environ.get("PGHOST", "127.0.0.1"),
            "port": int(os.environ.get("PGPORT", "5432")),
            "user": os.environ.get("PGUSER") or getpass.getuser(),
            "password": os.environ.get("PGPASSWORD", ""),
            "database": os.environ.get("PGDATABASE", "test"),
            "options": {"connect_args": {"connect_timeout": 3}}}


@pytest.mark.postgres
def test_postgresql(tmp_path: Path) -> None:
    """The helpers against a real PostgreSQL (TEST_POSTGRES_URL, or PG* variables,
    or a trust-auth server at 127.0.0.1:5432 with a database ``test``)."""
    app = create_app({"databases": {"pg": _postgres_entry()}})
    with app.app_context():
        pg = dbs["pg"]
        try:
            pg.getValue("SELECT 1")
        except sa.exc.OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
            print(f"PostgreSQL test skipped: no server at {pg.url!r}: {reason}")
            pytest.skip(f"no PostgreSQL server reachable at {pg!r}: {reason}")
        table = f"kernkoa_test_{uuid.uuid4().hex[:12]}"
        assert not pg.checkTable(table)
        # The table name is ours (no user input); values are always bound.
        pg.query(f"CREATE TABLE {table} (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
        try:
            assert pg.checkTable(table)
            assert pg.query(f"INSERT INTO {table} (name) VALUES (:name)",
                            [{"name": p} for p in INJECTIONS]) == len(INJECTIONS)
            names = [row[0] for row in pg.query(f"SELECT name FROM {table} ORDER BY id")[1:]]
            assert names == INJECTIONS
            assert pg.query(f"INSERT INTO {table} (name) VALUES (:n) RETURNING name",
                            {"n": "ret"}) == [("name",), ("ret",)]
            assert pg.getDictionary(f"SELECT id, name FROM {table} WHERE name = :n",
                                    {"n": "ret"})["name"] == "ret"
            with pytest.raises(sa.exc.IntegrityError):
                pg.query(f"INSERT INTO {table} (name) VALUES (NULL)")
            assert pg.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            assert pg.query(f"UPDATE {table} SET name = :n WHERE name = :o",
                            {"n": "new", "o": "ret"}) == 1
            assert pg.getValue(f"SELECT count(*) FROM {table}") == len(INJECTIONS) + 1
        finally:
            pg.query(f"DROP TABLE IF EXISTS {table}")
        assert not pg.checkTable(table)

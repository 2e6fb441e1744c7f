"""Engine, sessions and migrations from a URL; driver errors become `models.errors` here, once.

SQLite (the embedded default) runs in WAL mode with a busy timeout (30 s, or
$INITSWEEP_SQLITE_BUSY_TIMEOUT seconds) and foreign keys on, and every transaction starts with
BEGIN IMMEDIATE: concurrent writers then queue on the busy timeout instead of failing when a
reader upgrades to a writer.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, exc, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from models.errors import SchemaError, StoreError, TransientStoreError

if TYPE_CHECKING:  # alembic is imported on first use: processes that never migrate skip it
    from alembic.config import Config

ENV_URL = "INITSWEEP_DATABASE_URL"
ENV_BUSY_TIMEOUT = "INITSWEEP_SQLITE_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT_S = 30.0
DEFAULT_URL = "sqlite:///./initsweep.db"
MIGRATIONS_PACKAGE = "models.migrations"  # the repository's alembic/ folder, as installed
# pg_advisory_xact_lock key that serialises concurrent `ensure_schema` calls ("initswp").
_MIGRATION_LOCK = 0x696E6974737770
_VERSION_TABLE = "alembic_version"  # alembic's default, which env.py keeps


def resolve_url(db: str | None) -> str:
    """The database URL: `db` (a URL or a file path) > $INITSWEEP_DATABASE_URL > ./initsweep.db."""
    value = db or os.environ.get(ENV_URL) or DEFAULT_URL
    if "://" not in value:
        return f"sqlite:///{os.path.expanduser(value)}"
    scheme, rest = value.split("://", 1)
    if scheme in ("postgres", "postgresql"):  # psycopg 3 is the driver we ship, not psycopg2
        return f"postgresql+psycopg://{rest}"
    return value


def busy_timeout_s() -> float:
    """SQLite's busy timeout: $INITSWEEP_SQLITE_BUSY_TIMEOUT seconds (positive), else 30."""
    raw = os.environ.get(ENV_BUSY_TIMEOUT, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_BUSY_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1e6:
        raise StoreError(f"{ENV_BUSY_TIMEOUT}: expected seconds > 0. Received: {raw[:40]!r}")
    return value


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for `url`: SQLite tuned for concurrent processes, servers with pre-ping.

    `read_only` (the commands that only read): SQLite opens the file in mode=ro (never creates
    it, never writes) with deferred transactions, so a long report never holds the write lock
    the workers need; PostgreSQL transactions are READ ONLY.
    """
    url = resolve_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True)
        return engine.execution_options(postgresql_readonly=True) if read_only else engine
    if read_only:
        path = parsed.database or ""
        if not path or path == ":memory:" or not Path(path).is_file():
            raise StoreError(f"no such database file: {path or '(none)'}")
        uri = "file:" + quote(str(Path(path).resolve())) + "?mode=ro"
        timeout = busy_timeout_s()
        # check_same_thread=False as SQLAlchemy sets for the pools it creates itself: the pool
        # hands a connection to one thread at a time, and a threaded server (`initsweep ui`)
        # closes them from another at shutdown
        engine = create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(
                uri, uri=True, timeout=timeout, check_same_thread=False
            ),
        )
        event.listen(engine, "connect", _sqlite_on_connect_read_only)
        event.listen(engine, "begin", _sqlite_on_begin_read)
        return engine
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s()})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to SQLAlchemy (pysqlite's own BEGIN breaks SAVEPOINTs).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s() * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_s() * 1000)}")


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_on_begin_read(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")  # deferred: a shared lock while reading, never the write lock


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to `engine` (objects stay readable after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: Callable[[], Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error; driver errors translated."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException as e:
        session.rollback()
        translated = translate_error(e)
        if translated is None:
            raise
        raise translated from e
    finally:
        session.close()


def translate_error(e: BaseException) -> StoreError | None:
    """The `models.errors` class for a SQLAlchemy/driver error, or None to let it through."""
    if isinstance(e, StoreError | exc.IntegrityError):
        return None
    message = _first_line(getattr(e, "orig", None) or e)
    if isinstance(e, exc.OperationalError) and "no such table" in message:
        return SchemaError(f"database schema: expected the migration head. Received: {message}")
    if isinstance(e, exc.OperationalError | exc.TimeoutError | exc.DisconnectionError):
        return TransientStoreError(f"database: {message}")
    if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
        return TransientStoreError(f"database connection lost: {message}")
    return None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def migrations_dir() -> Path:
    """The folder of the migration scripts, found through the installed distribution.

    A wheel carries the repository's alembic/ folder as the data package `models.migrations`.
    An editable install maps that package to the source folder, which the import system cannot
    see for a folder without `__init__.py` (it must not be importable as `alembic`), so there
    the distribution's own record of its source (PEP 610 `direct_url.json`) locates it.
    """
    import importlib.util
    import json
    from importlib import metadata
    from urllib.parse import unquote, urlparse

    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "env.py").is_file():
                return Path(location)
    for dist in metadata.distributions(name="initsweep"):  # a source tree's egg-info has none
        direct = dist.read_text("direct_url.json")
        if not direct:
            continue
        info = json.loads(direct)
        if info.get("dir_info", {}).get("editable") and info.get("url", "").startswith("file:"):
            source = Path(unquote(urlparse(info["url"]).path)) / "alembic"
            if (source / "env.py").is_file():
                return source
    raise SchemaError(
        f"{MIGRATIONS_PACKAGE}: expected the migration scripts in the installed package. "
        "Received: none (reinstall initsweep)"
    )


def alembic_config(url: str | None = None) -> Config:
    """An alembic Config for the installed migrations, from any working directory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["embedded"] = True  # env.py leaves the application's logging alone
    if url is not None:
        config.attributes["url"] = resolve_url(url)
    return config


# The head revision of the migration scripts, known without reading them (alembic and the
# scripts cost a command about 0.25 s to import); tests/db/test_migrations.py checks it.
SCHEMA_HEAD = "0008"


def head_revision() -> str:
    """The single head revision of the migration scripts, read from them."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError(f"{migrations_dir()}: expected migration scripts. Received: none")
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision`."""
    from alembic import command

    with _translated("upgrade"):
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at `url` down to `revision` (`base` drops everything)."""
    from alembic import command

    with _translated("downgrade"):
        command.downgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (alembic's version table, read without alembic), None
    when it has never been migrated."""
    with _translated("read the schema revision"), engine.connect() as conn:
        if not inspect(conn).has_table(_VERSION_TABLE):
            return None
        versions = conn.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    if len(versions) > 1:
        raise SchemaError(f"{_VERSION_TABLE}: expected one revision. Received: {versions}")
    return versions[0] if versions else None


def ensure_schema(engine: Engine) -> str:
    """Upgrade to head when the database is not there (safe if several processes race)."""
    if current_revision(engine) == SCHEMA_HEAD:  # the usual case: no alembic, no lock
        return SCHEMA_HEAD
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = head_revision()
    with _translated("migrate"), migration_connection(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return head
        if current is not None and current not in {s.revision for s in script.walk_revisions()}:
            raise SchemaError(
                f"database revision: expected one of this code's migrations. Received: {current} "
                "(the database is newer than the code)"
            )
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return head


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for migrations; SQLite foreign keys off meanwhile.

    SQLite batch migrations copy and drop tables; with foreign keys on, dropping a parent table
    would cascade-delete its children's rows (alembic cookbook).
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # a PRAGMA is ignored inside a transaction: run it before BEGIN
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                yield conn
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except Exception as e:
        util = sys.modules.get("alembic.util")  # not imported: no alembic error can be raised
        if util is not None and isinstance(e, util.CommandError):
            raise SchemaError(f"{action}: {e}") from e
        translated = translate_error(e)
        if translated is None:
            raise
        raise type(translated)(f"{action}: {translated}") from e

"""Database fixtures: every `db`/`empty_url` test runs on SQLite and on PostgreSQL.

SQLite gets a file per test (copied from a migrated template); PostgreSQL gets a database per
test created from a migrated template database in the session's cluster (`tests.pg`), so the
cluster starts once and each test still sees a clean schema.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from models.db import make_engine, make_session_factory, upgrade

BACKENDS = ["sqlite", "postgresql"]


@dataclass(frozen=True)
class Db:
    """A migrated database of one backend, with an engine and a session factory."""

    backend: str
    url: str
    engine: sa.Engine
    factory: sessionmaker[Session]


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class PgDatabases:
    """Creates and drops databases on the test cluster."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def create(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        clause = f" TEMPLATE {template}" if template else ""
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}{clause}")
        return name

    def drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url_of(self, name: str) -> str:
        return _with_database(self.url, name)


@pytest.fixture(scope="session")
def pg_databases(pg_url: str) -> Iterator[PgDatabases]:
    """Database factory on the session's PostgreSQL, with a migrated template database."""
    dbs = PgDatabases(pg_url)
    yield dbs
    dbs.admin.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_databases: PgDatabases) -> Iterator[str]:
    """Name of a PostgreSQL database at the migration head, to clone per test."""
    name = pg_databases.create()
    upgrade(pg_databases.url_of(name))
    yield name
    pg_databases.drop(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the migration head, to copy per test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")  # disposes its engine: the WAL is checkpointed into the file
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database (no tables)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    dbs: PgDatabases = request.getfixturevalue("pg_databases")
    name = dbs.create()
    yield dbs.url_of(name)
    dbs.drop(name)


@pytest.fixture
def db(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """A fresh database at the migration head."""
    name = None
    if backend == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        dbs: PgDatabases = request.getfixturevalue("pg_databases")
        name = dbs.create(template=request.getfixturevalue("pg_template"))
        url = dbs.url_of(name)
    engine = make_engine(url)
    yield Db(backend, url, engine, make_session_factory(engine))
    engine.dispose()
    if name is not None:
        request.getfixturevalue("pg_databases").drop(name)

"""Migrations on SQLite and PostgreSQL: one head, up/down/up, and models equal to migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import models
from models.base import Base
from models.db import (
    alembic_config,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    make_engine,
    upgrade,
)
from models.errors import SchemaError
from worker import contract

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "sweeps",
    "configurations",
    "sweep_configurations",
    "chunks",
    "chunk_stats",
    "layer_stats",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diffs(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert heads == [head_revision()]


def test_metadata_has_every_table() -> None:
    assert set(Base.metadata.tables) == TABLES


def test_observables_mirror_the_contract() -> None:
    assert models.OBSERVABLES == contract.OBSERVABLES


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert current_revision(engine) is None
        upgrade(empty_url)
        assert current_revision(engine) == head_revision()
        assert _tables(empty_url) == TABLES
        downgrade(empty_url, "base")
        assert current_revision(engine) is None
        assert _tables(empty_url) == set()
        upgrade(empty_url, "head")
        assert current_revision(engine) == head_revision()
        assert _tables(empty_url) == TABLES
    finally:
        engine.dispose()


def test_models_match_migrations(empty_url: str) -> None:
    upgrade(empty_url)
    assert _diffs(empty_url) == []


def test_ensure_schema_migrates_once(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert ensure_schema(engine) == head_revision()
        assert ensure_schema(engine) == head_revision()  # already there: no-op
        assert current_revision(engine) == head_revision()
        assert _tables(empty_url) == TABLES
    finally:
        engine.dispose()


def test_ensure_schema_refuses_a_newer_database(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
        with pytest.raises(SchemaError, match="newer than the code"):
            ensure_schema(engine)
    finally:
        engine.dispose()


def test_alembic_cli_from_another_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "INITSWEEP_DATABASE_URL": url}
    cmd = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _tables(url) == TABLES
    assert _diffs(url) == []

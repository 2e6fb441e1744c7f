"""Read-only engines: SQLite readers never take the write lock, and never write or create."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from models.db import ensure_schema, make_engine, make_session_factory, session_scope
from models.errors import StoreError

pytestmark = pytest.mark.db


def test_a_long_read_does_not_block_a_writer(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    writer = make_engine(f"sqlite:///{db}")
    ensure_schema(writer)
    reader = make_engine(f"sqlite:///{db}", read_only=True)
    with session_scope(make_session_factory(reader)) as session:
        assert session.execute(sa.text("SELECT count(*) FROM sweeps")).scalar() == 0
        # while the read transaction is open, another process writes at once
        other = sqlite3.connect(db, timeout=0.5, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            session.execute(sa.text("DELETE FROM sweeps"))
    writer.dispose()
    reader.dispose()


def test_a_missing_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such database file"):
        make_engine(f"sqlite:///{tmp_path / 'nope.db'}", read_only=True)
    assert not (tmp_path / "nope.db").exists()

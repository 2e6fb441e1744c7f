"""Bulk inserts of many rows into one table: PostgreSQL's COPY, Core executemany elsewhere.

SQLAlchemy's executemany on psycopg renders a multi-row INSERT per 1,000 rows and psycopg
re-parses its placeholders each time (about 1 ms of CPU per row of a 30-column table); COPY
sends the rows as one stream (microseconds a row). The rows run in the session's transaction
either way, and a driver error is SQLAlchemy's class for it either way (a unique violation an
`sqlalchemy.exc.IntegrityError`, a lost server an `OperationalError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

__all__ = ["insert_rows", "insert_rows_returning_ids"]

BATCH = 5000  # rows per executemany with RETURNING (the Core path)


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys, in any order) into `table`, in the session's
    transaction."""
    if not rows:
        return
    if _copies(session):
        columns = list(rows[0])
        _copy(session, table, columns, [tuple(r[c] for c in columns) for r in rows])
        return
    session.execute(insert(table), list(rows))  # one cursor.executemany


def insert_rows_returning_ids(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], key: str
) -> dict[Any, int]:
    """INSERT `rows` into `table` (its integer primary key `id` from its sequence): row[key]
    (unique among `rows`) -> the id it got."""
    if not rows:
        return {}
    if _copies(session):
        ids = session.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": len(rows)},
        ).scalars()
        columns = list(rows[0])
        with_ids = [(id_, *(r[c] for c in columns)) for id_, r in zip(ids, rows, strict=True)]
        _copy(session, table, ["id", *columns], with_ids)
        return {r[key]: int(row[0]) for r, row in zip(rows, with_ids, strict=True)}
    found: dict[Any, int] = {}
    # RETURNING in any order, matched by key: with sort_by_parameter_order SQLite would insert
    # one row per statement
    returning = insert(table).returning(table.c[key], table.c.id)
    for i in range(0, len(rows), BATCH):
        batch = rows[i : i + BATCH]
        found.update({k: int(id_) for k, id_ in session.execute(returning, list(batch))})
    if len(found) != len(rows) or any(r[key] not in found for r in rows):
        raise AssertionError(f"{table.name}: RETURNING did not give one id per inserted row")
    return found


def _copies(session: Session) -> bool:
    """Whether the session's rows go by COPY: PostgreSQL through psycopg 3 (the shipped driver)."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def _copy(session: Session, table: Table, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """COPY `rows` (values in `columns` order) into `table` over the session's connection; a
    driver error is raised as SQLAlchemy's class for it (as executemany would raise it)."""
    import psycopg

    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    driver = cast(psycopg.Connection[Any], session.connection().connection.driver_connection)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as e:
        raise DBAPIError.instance(statement, None, e, psycopg.Error) from e

"""Declarative base: constraint naming convention, UTC timestamps and float64 columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Double, Integer, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so migrations (and SQLite batch mode) can address them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def status_check(statuses: tuple[str, ...]) -> str:
    """SQL text of a CHECK that `status` is one of `statuses`."""
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the backend stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime. Received: {value!r}")
        value = value.astimezone(UTC)
        # SQLite keeps no offset: store naive UTC and re-attach UTC on the way back.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Float64(TypeDecorator[float]):
    """An IEEE double stored exactly (PostgreSQL DOUBLE PRECISION, SQLite REAL); finite only.

    Every finite value round-trips bit for bit except the sign of zero: SQLite writes integral
    REALs as integers and returns -0.0 as 0.0, so -0.0 is stored as 0.0 on every backend alike.
    NaN and inf are refused: non-finite outcomes are counted, never stored as values.
    """

    impl = Double
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        if value is None:
            return None
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"expected a finite float. Received: {value}")
        return value + 0.0  # -0.0 + 0.0 == +0.0; every other value is unchanged


class Base(DeclarativeBase):
    """Base of every ORM class; `Base.metadata` is alembic's target."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy at class creation
        datetime: UTCDateTime(),
        float: Float64(),
        int: Integer(),
    }


__all__ = ["NAMING_CONVENTION", "Base", "Float64", "UTCDateTime", "status_check", "utcnow"]

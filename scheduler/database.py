"""The database edge: open a URL at the schema head; failures become one clear error, once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from scheduler.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


@contextmanager
def open_database(
    db: str | None, *, create: bool = True, read_only: bool = False
) -> Iterator[sessionmaker[Session]]:
    """A session factory for `db` (URL or SQLite path), schema at head when `create`.

    `read_only`: nothing is created or migrated, every transaction is read-only, and a database
    that does not exist or is not at the schema head is a DatabaseUnavailableError.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import (
        current_revision,
        ensure_schema,
        head_revision,
        make_engine,
        make_session_factory,
        resolve_url,
    )
    from models.errors import StoreError

    url = resolve_url(db)
    if read_only:
        _require_sqlite_file(url)
    try:
        engine = make_engine(url, read_only=read_only)
        if read_only:
            revision, head = current_revision(engine), head_revision()
            if revision != head:
                engine.dispose()
                raise DatabaseUnavailableError(
                    f"database {redact(url)}: expected the schema at revision {head}. Received: "
                    f"{revision or 'no initsweep schema'} (run `initsweep db upgrade`)"
                )
        elif create:
            ensure_schema(engine)
        else:
            with engine.connect():
                pass
    except (SQLAlchemyError, StoreError, OSError) as exc:
        raise DatabaseUnavailableError(
            f"cannot open database {redact(url)}: {first_line(exc)}"
        ) from exc
    try:
        yield make_session_factory(engine)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError(f"database {redact(url)} failed: {first_line(exc)}") from exc
    finally:
        engine.dispose()


def _require_sqlite_file(url: str) -> None:
    """A read-only SQLite database must exist already (nothing may create it)."""
    import os

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    path = parsed.database
    sqlite_file = parsed.get_backend_name() == "sqlite" and path and path != ":memory:"
    if sqlite_file and not os.path.exists(str(path)):
        raise DatabaseUnavailableError(
            f"database {redact(url)}: no such file (nothing is created read-only; "
            "run a sweep first, or name the file with --db)"
        )


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (of the driver's error when it wraps one)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

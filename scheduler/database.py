"""The database edge: open a URL at the schema head; failures become one clear error, once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from scheduler.errors import DatabaseUnavailableError, UnknownSweepError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


@contextmanager
def open_database(
    db: str | None, *, create: bool = True, read_only: bool = False
) -> Iterator[sessionmaker[Session]]:
    """A session factory for `db` (URL or SQLite path), schema at head when `create`.

    `read_only`: nothing is created or migrated, a missing SQLite file or a database without
    this schema is an error, and the engine only reads (`models.db.make_engine`). An unknown
    sweep id is reported with the database it was looked up in.
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
    where = redact(url)
    choose = "choose another with --db or $INITSWEEP_DATABASE_URL"
    try:
        engine = make_engine(url, read_only=read_only)
    except (SQLAlchemyError, StoreError, OSError, ValueError) as exc:
        raise DatabaseUnavailableError(
            f"cannot open database {where}: {first_line(exc)}; {choose}"
        ) from exc
    try:
        if read_only:
            revision = current_revision(engine)
            if revision != head_revision():
                raise DatabaseUnavailableError(
                    f"database {where}: expected an initsweep database at schema "
                    f"{head_revision()}. Received: "
                    + ("no initsweep schema" if revision is None else f"schema {revision}")
                    + f" (`initsweep db upgrade --db ...` migrates it; or {choose})"
                )
        elif create:
            ensure_schema(engine)
        else:
            with engine.connect():
                pass
    except (SQLAlchemyError, StoreError, OSError) as exc:
        engine.dispose()
        raise DatabaseUnavailableError(f"cannot open database {where}: {first_line(exc)}") from exc
    except BaseException:
        engine.dispose()
        raise
    try:
        yield make_session_factory(engine)
    except UnknownSweepError as exc:
        raise UnknownSweepError(f"{exc} in {where}; {choose}") from exc
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError(f"database {where} failed: {first_line(exc)}") from exc
    finally:
        engine.dispose()


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

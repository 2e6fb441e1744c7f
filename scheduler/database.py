"""The database edge: open a URL at the schema head; failures become one clear error, once."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from scheduler.errors import DatabaseUnavailableError, OptionError, UnknownSweepError

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
        SCHEMA_HEAD,
        current_revision,
        ensure_schema,
        make_engine,
        make_session_factory,
    )
    from models.errors import StoreError

    url = database_url(db)
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
            if revision != SCHEMA_HEAD:
                raise DatabaseUnavailableError(
                    f"database {where}: expected an initsweep database at schema "
                    f"{SCHEMA_HEAD}. Received: "
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
    """The URL with its password replaced by `***`, robust to URLs that do not parse: the
    userinfo runs from `://` to the last `@`, and its password from the first `:` in it (an
    unencoded `/`, `#`, `?` or `@` in a password stays hidden). `password=` query values are
    masked too, and characters that are not printable are escaped."""
    from scheduler.formatting import printable

    scheme, sep, rest = url.partition("://")
    if sep:
        at = rest.rfind("@")
        if at > 0 and not rest.startswith("/"):  # sqlite:////path@x.db has no userinfo
            user, colon, _ = rest[:at].partition(":")
            if colon:
                rest = f"{user}:***{rest[at:]}"
        rest = _PASSWORD_PARAM.sub(r"\1=***", rest)
    return printable(f"{scheme}{sep}{rest}")


_PASSWORD_PARAM = re.compile(r"(?i)\b(password|passwd|pwd)=[^&;]*")


def database_url(db: str | None) -> str:
    """The database URL (`models.db.resolve_url`), checked: OptionError, naming where it came
    from, for a URL that does not parse, has a non-numeric port, a password with an unencoded
    `@`, or a driver that is not installed."""
    from models.db import ENV_URL, resolve_url

    url = resolve_url(db)
    where = "--db" if db else f"${ENV_URL}" if os.environ.get(ENV_URL) else "the default URL"
    problem = _database_url_problem(url)
    if problem is not None:
        raise OptionError(
            f"{where}: expected a database URL such as sqlite:///sweeps.db or "
            "postgresql://user:password@host:5432/name, or a SQLite file path. "
            f"Received: {redact(url)} ({problem})"
        )
    return url


def _database_url_problem(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    problem = _port_problem(url)
    if problem is not None:
        return problem
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        return first_line(exc)
    if _userinfo_password(url) not in (None, parsed.password):
        return "its password holds an unencoded '@': percent-encode it as %40"
    try:
        parsed.get_dialect().import_dbapi()
    except ArgumentError as exc:  # NoSuchModuleError: no such dialect or driver
        return first_line(exc)
    except ImportError as exc:
        return f"its driver is not installed: {first_line(exc)}"
    return None


def broker_problem(url: str) -> str | None:
    """Why the broker URL `url` is malformed (no scheme, a password character that must be
    percent-encoded, a port that is not a number), or None."""
    from urllib.parse import urlsplit

    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        return "expected a scheme, e.g. redis://"
    password = _userinfo_password(url, decode=False) or ""
    for char in "@/?#":
        if char in password:
            return (
                f"its password holds an unencoded {char!r}: percent-encode it as %{ord(char):02X}"
            )
    problem = _port_problem(url)
    if problem is not None:
        return problem
    try:
        _port = urlsplit(url).port  # parses the port, raising for one that is not a number
    except ValueError as exc:
        return first_line(exc)
    return None


def _port_problem(url: str) -> str | None:
    _, _, rest = url.partition("://")
    host = rest[rest.rfind("@") + 1 :].split("/", 1)[0]
    if ":" in host and not host.endswith("]"):
        port = host.rsplit(":", 1)[1]
        if port and not (port.isdigit() and int(port) < 65536):
            return f"port {printable_short(port)}: expected a number below 65536"
    return None


def _userinfo_password(url: str, *, decode: bool = True) -> str | None:
    """The password as `redact` delimits it (first `:` to the last `@`), percent-decoded."""
    from urllib.parse import unquote

    _, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at <= 0 or rest.startswith("/"):
        return None
    _, colon, password = rest[:at].partition(":")
    if not colon:
        return None
    return unquote(password) if decode else password


def printable_short(text: str, limit: int = 40) -> str:
    """`text` quoted, escaped and cut to `limit` characters, for messages."""
    from scheduler.formatting import printable

    shown = printable(text)
    return repr(shown if len(shown) <= limit else shown[: limit - 3] + "...")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (of the driver's error when it wraps one)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

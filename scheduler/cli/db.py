"""Database schema: `initsweep db upgrade|downgrade|current` (alembic migrations)."""

from __future__ import annotations

from collections.abc import Callable

import click

from scheduler.cli.options import DB_OPTION
from scheduler.database import database_url, first_line, redact
from scheduler.errors import DatabaseUnavailableError


@click.group("db")
def db_group() -> None:
    """Database schema (alembic migrations)."""


def _migrate(db: str | None, action: Callable[[str, str], None], revision: str) -> None:
    """Run an alembic `action` (upgrade or downgrade) to `revision`, errors made readable."""
    url = database_url(db)
    try:
        action(url, revision)
    except Exception as exc:
        raise DatabaseUnavailableError(f"cannot migrate {redact(url)}: {first_line(exc)}") from exc
    click.echo(f"{redact(url)}: at {revision}")


@db_group.command("upgrade")
@DB_OPTION
@click.option("--revision", default="head", show_default=True)
def db_upgrade(db: str | None, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from models.db import upgrade

    _migrate(db, upgrade, revision)


@db_group.command("downgrade")
@DB_OPTION
@click.argument("revision")
def db_downgrade(db: str | None, revision: str) -> None:
    """Revert migrations down to REVISION (`base` for an empty database)."""
    from models.db import downgrade

    _migrate(db, downgrade, revision)


@db_group.command("current")
@DB_OPTION
def db_current(db: str | None) -> None:
    """Print the database's migration revision."""
    from models.db import current_revision, make_engine

    url = database_url(db)
    try:
        rev = current_revision(make_engine(url))
    except Exception as exc:
        raise DatabaseUnavailableError(f"cannot open {redact(url)}: {first_line(exc)}") from exc
    click.echo(rev or "<empty>")

"""Options and output helpers shared by the command groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DB_OPTION = click.option(
    "--db",
    "db",
    default=None,
    metavar="URL",
    help="SQLAlchemy URL or SQLite file (default: $INITSWEEP_DATABASE_URL or ./initsweep.db).",
)
WORKERS_OPTION = click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    default=None,
    help="Local worker processes (default: one per core).",
)
QUIET_OPTION = click.option("-q", "--quiet", is_flag=True, help="Print only the sweep id.")

_POLICY_OPTIONS = (
    click.option(
        "--stale-after",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds without heartbeat before a running chunk is presumed lost.",
    ),
    click.option(
        "--requeue-after",
        type=float,
        default=900.0,
        show_default=True,
        help="Seconds before an enqueued, unclaimed chunk is sent again.",
    ),
    click.option(
        "--max-in-flight",
        type=click.IntRange(min=1),
        default=64,
        show_default=True,
        help="Chunks kept enqueued or running at once (bounds the broker queue).",
    ),
)


def policy_options(f: F) -> F:
    """The reconciler's --stale-after, --requeue-after and --max-in-flight."""
    for option in reversed(_POLICY_OPTIONS):
        f = option(f)
    return f


def policy(stale_after: float, requeue_after: float, max_in_flight: int) -> Any:
    """The ReconcilePolicy of those options."""
    from scheduler.reconcile import ReconcilePolicy

    return ReconcilePolicy(
        stale_after_s=stale_after, requeue_after_s=requeue_after, max_in_flight=max_in_flight
    )


def echo_error(message: str) -> None:
    """`initsweep: error: MESSAGE` on stderr."""
    click.echo(f"initsweep: error: {message}", err=True)

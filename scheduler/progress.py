"""The live progress table of sweeps (`initsweep status`), from `scheduler.query.sweep_progress`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from models.db import session_scope
from scheduler.formatting import clock, printable
from scheduler.query import sweep_progress

if TYPE_CHECKING:
    from rich.table import Table
    from sqlalchemy.orm import Session


def status_table(factory: Callable[[], Session], sweep_id: int | None) -> tuple[Table, bool]:
    """A rich table of one sweep's (or every sweep's) progress, and whether all are finished."""
    from rich.table import Table
    from rich.text import Text

    with session_scope(factory) as session:
        rows = sweep_progress(session=session, sweep_id=sweep_id)
    table = Table(
        "sweep",
        "name",
        "status",
        "pending",
        "running",
        "done",
        "failed",
        "trials",
        "trials/s",
        "ETA",
        "active workers",
    )
    for p in rows:
        table.add_row(
            str(p.sweep_id),
            Text(printable(p.name)),  # never markup, never raw control characters
            p.status,
            *(str(p.counts.get(k, 0)) for k in ("pending", "running", "done", "failed")),
            f"{p.trials_done}/{p.trials_total}",
            "—" if p.rate is None else f"{p.rate:,.0f}",
            clock(p.eta_s),
            Text(printable(", ".join(p.workers)) or "—"),
        )
    return table, all(p.finished for p in rows)

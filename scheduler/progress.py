"""Progress of sweeps, read from the database (the source of truth, not the broker)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from models import Chunk, SweepConfiguration, utcnow
from models.db import session_scope

if TYPE_CHECKING:
    from rich.table import Table
    from sqlalchemy.orm import Session

ACTIVE_WINDOW = timedelta(seconds=120)


@dataclass(frozen=True)
class SweepProgress:
    """Chunk counts, throughput and ETA of one sweep."""

    sweep_id: int
    name: str
    status: str
    counts: dict[str, int]
    trials_done: int
    trials_total: int
    rate: float | None  # trials/s since the first chunk of this sweep started
    eta_s: float | None
    workers: tuple[str, ...]  # workers that ran or finished a chunk in the last two minutes

    @property
    def finished(self) -> bool:
        return self.status in ("done", "partial", "failed", "cancelled")


def sweep_progress(session: Session, sweep_id: int, now: datetime | None = None) -> SweepProgress:
    """Progress of `sweep_id` (UnknownSweepError when absent)."""
    from scheduler.store import get_sweep

    info = get_sweep(session, sweep_id)
    now = now or utcnow()
    chunks = (
        select(Chunk)
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Chunk.configuration_id)
        .where(SweepConfiguration.sweep_id == sweep_id)
        .subquery()
    )
    first_start, done_trials = session.execute(
        select(
            func.min(chunks.c.started_at),
            func.coalesce(func.sum(chunks.c.n_trials).filter(chunks.c.status == "done"), 0),
        )
    ).one()
    recent = now - ACTIVE_WINDOW
    workers = session.scalars(
        select(chunks.c.worker)
        .where(chunks.c.worker.is_not(None))
        .where(
            (chunks.c.heartbeat_at >= recent)
            | (chunks.c.finished_at >= recent)
            | (chunks.c.started_at >= recent)
        )
        .distinct()
    ).all()
    rate = eta = None
    if first_start is not None and done_trials:
        start = first_start if first_start.tzinfo else first_start.replace(tzinfo=UTC)
        elapsed = max((now - start).total_seconds(), 1e-3)
        rate = done_trials / elapsed
        eta = (info.trials_total - info.trials_done) / rate if rate > 0 else None
    return SweepProgress(
        sweep_id=info.id,
        name=info.name,
        status=info.status,
        counts=dict(info.chunk_counts),
        trials_done=info.trials_done,
        trials_total=info.trials_total,
        rate=rate,
        eta_s=eta if info.status not in ("done", "partial", "cancelled") else None,
        workers=tuple(sorted(w for w in workers if w)),
    )


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


def status_table(factory: Callable[[], Session], sweep_id: int | None) -> tuple[Table, bool]:
    """A rich table of one sweep's (or every sweep's) progress, and whether all are finished."""
    from rich.table import Table

    from scheduler.store import list_sweeps

    with session_scope(factory) as session:
        ids = [sweep_id] if sweep_id is not None else [s.id for s in list_sweeps(session)]
        rows = [sweep_progress(session, i) for i in ids]
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
            p.name,
            p.status,
            *(str(p.counts.get(k, 0)) for k in ("pending", "running", "done", "failed")),
            f"{p.trials_done}/{p.trials_total}",
            "—" if p.rate is None else f"{p.rate:,.0f}",
            _fmt_eta(p.eta_s),
            ", ".join(p.workers) or "—",
        )
    return table, all(p.finished for p in rows)

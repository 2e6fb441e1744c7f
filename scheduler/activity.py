"""What a sweep's chunks are doing: when and where they ran, who runs them now, what failed.
Takes a Session; never commits. Read by `initsweep status` and the dashboard."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Chunk, Configuration, SweepConfiguration
from worker.contract import SimConfig

_IN_BATCH = 500  # bound IN (...) lists (SQLite's variable limit, planner-friendly sizes)


@dataclass(frozen=True)
class ChunkActivity:
    """When a sweep's chunks ran, how many trials are done, and who is running them now."""

    first_started: datetime | None
    last_finished: datetime | None
    trials_done: int
    live_workers: frozenset[str]  # workers holding a running chunk with a fresh heartbeat


def chunk_activity(
    *, session: Session, sweep_ids: Sequence[int], since: datetime
) -> dict[int, ChunkActivity]:
    """Per sweep: its chunks' activity; a worker is live when its heartbeat is after `since`."""
    spans: dict[int, tuple[datetime | None, datetime | None, int]] = {}
    workers: dict[int, set[str]] = {}
    link = SweepConfiguration.configuration_id == Chunk.configuration_id
    for i in range(0, len(sweep_ids), _IN_BATCH):
        batch = sweep_ids[i : i + _IN_BATCH]
        for sweep_id, first, last, done in session.execute(
            select(
                SweepConfiguration.sweep_id,
                func.min(Chunk.started_at),
                func.max(Chunk.finished_at).filter(Chunk.status == "done"),
                func.coalesce(func.sum(Chunk.n_trials).filter(Chunk.status == "done"), 0),
            )
            .join(Chunk, link)
            .where(SweepConfiguration.sweep_id.in_(batch))
            .group_by(SweepConfiguration.sweep_id)
        ):
            spans[sweep_id] = (first, last, int(done))
        for sweep_id, worker in session.execute(
            select(SweepConfiguration.sweep_id, Chunk.worker)
            .join(Chunk, link)
            .where(
                SweepConfiguration.sweep_id.in_(batch),
                Chunk.status == "running",
                Chunk.worker.is_not(None),
                Chunk.heartbeat_at >= since,
            )
            .distinct()
        ):
            if worker:
                workers.setdefault(sweep_id, set()).add(str(worker))
    return {
        sweep_id: ChunkActivity(first, last, done, frozenset(workers.get(sweep_id, ())))
        for sweep_id, (first, last, done) in spans.items()
    }


@dataclass(frozen=True)
class ChunkFailure:
    """A failed chunk of a sweep: where it ran, how often, and its error."""

    sweep_id: int
    chunk_id: int
    chunk_index: int
    attempts: int
    worker: str | None
    error: str | None
    finished_at: datetime | None
    config: SimConfig
    axes: dict[str, Any]


_FAILURE_COLUMNS = ("id", "chunk_index", "attempts", "worker", "error", "finished_at")


def chunk_failures(
    *, session: Session, sweep_ids: Sequence[int], per_sweep: int = 20
) -> dict[int, list[ChunkFailure]]:
    """Sweep id -> up to `per_sweep` of its failed chunks, latest first (one statement a batch)."""
    out: dict[int, list[ChunkFailure]] = {}
    for i in range(0, len(sweep_ids), _IN_BATCH):
        batch = sweep_ids[i : i + _IN_BATCH]
        order = (Chunk.finished_at.desc(), Chunk.id.desc())
        rank = func.row_number().over(partition_by=SweepConfiguration.sweep_id, order_by=order)
        inner = (
            select(
                SweepConfiguration.sweep_id,
                *(getattr(Chunk, c) for c in _FAILURE_COLUMNS),
                Configuration.config_json,
                SweepConfiguration.axes_json,
                rank.label("rank"),
            )
            .join(Chunk, Chunk.configuration_id == SweepConfiguration.configuration_id)
            .join(Configuration, Configuration.id == Chunk.configuration_id)
            .where(SweepConfiguration.sweep_id.in_(batch), Chunk.status == "failed")
            .subquery()
        )
        rows = session.execute(
            select(inner).where(inner.c.rank <= per_sweep).order_by(inner.c.sweep_id, inner.c.rank)
        )
        for r in rows:
            ids = (int(r.sweep_id), int(r.id), int(r.chunk_index), int(r.attempts or 0))
            config, axes = SimConfig.from_json(json.loads(r.config_json)), json.loads(r.axes_json)
            failure = ChunkFailure(*ids, r.worker, r.error, r.finished_at, config, axes)
            out.setdefault(failure.sweep_id, []).append(failure)
    return out


def chunk_provenance(*, session: Session, sweep_id: int) -> Sequence[Any]:
    """Provenance columns of every chunk of the sweep (one statement)."""
    return session.execute(
        select(
            Chunk.configuration_id,
            Chunk.status,
            Chunk.tf_version,
            Chunk.device,
            Chunk.sampler,
            Chunk.dtype,
            Chunk.worker,
            Chunk.seed_key,
            Chunk.duration_s,
            Chunk.attempts,
            Chunk.started_at,
            Chunk.finished_at,
        )
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Chunk.configuration_id)
        .where(SweepConfiguration.sweep_id == sweep_id)
    ).all()


def config_devices(*, session: Session, sweep_id: int) -> dict[str, str | None]:
    """config_hash -> the device most of its done chunks ran on (ties: the first name in
    order), for the configurations of the sweep with a done chunk that recorded a device: the
    one whose subnormal behaviour the theory assumes (`analysis.compare.device_predictor`)."""
    rows = session.execute(
        select(Configuration.config_hash, Chunk.device, func.count())
        .join(Chunk, Chunk.configuration_id == Configuration.id)
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Configuration.id)
        .where(SweepConfiguration.sweep_id == sweep_id, Chunk.status == "done")
        .where(Chunk.device.is_not(None))
        .group_by(Configuration.config_hash, Chunk.device)
    ).all()
    counts: dict[str, Counter[str]] = {}
    for config_hash, device, n in rows:
        counts.setdefault(config_hash, Counter())[str(device)] = int(n)
    return {h: min(c, key=lambda d: (-c[d], d)) for h, c in counts.items()}

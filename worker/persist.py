"""A worker's reads and writes of one chunk: claim, save (idempotent), fail. Never commits.

`save_outcome` writes the chunk's statistics and marks it done in one SAVEPOINT inside the
caller's transaction, so a duplicate run (redelivered message, two workers racing) records
nothing and leaves the caller's transaction usable: on PostgreSQL the chunk row is locked
(SELECT ... FOR UPDATE) so the second saver waits and then sees `done`; on SQLite writers are
serialised by BEGIN IMMEDIATE; and the unique key (chunk_id, layer, quantity) backs both.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Chunk, ChunkStat, utcnow
from scheduler.store import load_task, record_values
from worker.contract import ChunkOutcome, ChunkTask
from worker.errors import ChunkNotFoundError

MAX_CLAIMS = 8  # a chunk that kills its worker every time is failed, not redelivered forever


def claim_chunk(
    *, session: Session, chunk_id: int, worker: str, max_claims: int = MAX_CLAIMS
) -> ChunkTask | None:
    """Mark the chunk running for `worker` and return its task.

    None when the chunk is done or failed (a stale or duplicate message), or when it has been
    claimed `max_claims` times already, in which case it is marked failed: a chunk whose worker
    keeps dying (out of memory, a crash in native code) must not be redelivered forever.
    """
    now = utcnow()
    result = session.execute(
        update(Chunk)
        .where(
            Chunk.id == chunk_id,
            Chunk.status.in_(("pending", "running")),
            Chunk.attempts < max_claims,
        )
        .values(
            status="running",
            attempts=Chunk.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
        )
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount == 0:
        row = session.execute(
            select(Chunk.status, Chunk.attempts).where(Chunk.id == chunk_id)
        ).one_or_none()
        if row is None:
            raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
        if row.status in ("pending", "running"):
            mark_failed(
                session=session,
                chunk_id=chunk_id,
                error=f"abandoned after {row.attempts} attempts whose worker was lost",
                final=True,
            )
        return None
    return load_task(session, chunk_id)


def heartbeat(*, session: Session, chunk_id: int) -> None:
    """Touch heartbeat_at of a running chunk (long chunks, for the stale-chunk reconciler)."""
    session.execute(
        update(Chunk)
        .where(Chunk.id == chunk_id, Chunk.status == "running")
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def save_outcome(*, session: Session, chunk_id: int, outcome: ChunkOutcome, worker: str) -> bool:
    """Insert the chunk's stats and mark it done; False (nothing written) if already saved."""
    try:
        with session.begin_nested():
            chunk = session.scalars(
                select(Chunk)
                .where(Chunk.id == chunk_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one_or_none()
            if chunk is None:
                raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
            if chunk.status == "done":
                return False
            _check_outcome(chunk, outcome)
            rows = [{"chunk_id": chunk_id, **record_values(r)} for r in outcome.records]
            if rows:
                session.execute(insert(ChunkStat), rows)
            provenance = outcome.provenance
            chunk.status = "done"
            chunk.worker = worker
            chunk.tf_version = provenance.tf_version
            chunk.device = provenance.device
            chunk.sampler = provenance.sampler
            chunk.dtype = provenance.dtype
            chunk.duration_s = float(provenance.duration_s)
            chunk.finished_at = utcnow()
            chunk.error = None
            session.flush()
    except IntegrityError:  # the unique key: another worker recorded this chunk first
        return False
    return True


def _check_outcome(chunk: Chunk, outcome: ChunkOutcome) -> None:
    where = f"chunk {chunk.id}"
    if (outcome.chunk_index, outcome.n_trials) != (chunk.chunk_index, chunk.n_trials):
        raise ValueError(
            f"{where}: expected an outcome of chunk_index={chunk.chunk_index} with "
            f"n_trials={chunk.n_trials}. Received: chunk_index={outcome.chunk_index}, "
            f"n_trials={outcome.n_trials}"
        )
    if outcome.provenance.seed_key != chunk.seed_key:
        raise ValueError(
            f"{where}: expected seed_key={chunk.seed_key}. Received: {outcome.provenance.seed_key}"
        )
    keys = [r.key for r in outcome.records]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{where}: expected one record per (layer, quantity). Received: {keys}")


def mark_failed(*, session: Session, chunk_id: int, error: str, final: bool) -> None:
    """Record a failed attempt: final → failed; otherwise back to pending. A done chunk stays."""
    if session.scalar(select(Chunk.id).where(Chunk.id == chunk_id)) is None:
        raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
    session.execute(
        update(Chunk)
        .where(Chunk.id == chunk_id, Chunk.status != "done")
        .values(
            status="failed" if final else "pending",
            error=error,
            finished_at=utcnow() if final else None,
        )
        .execution_options(synchronize_session=False)
    )

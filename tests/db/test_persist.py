"""worker.persist: claim, idempotent save (also under concurrency), failures."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import Chunk, ChunkStat
from models.db import session_scope
from scheduler.store import chunk_ids, create_sweep
from tests.db.builders import config_plan, grid, outcome_for, sim_config, sweep_plan
from tests.db.conftest import Db
from worker.aggregate import chunk_records
from worker.contract import ChunkOutcome
from worker.errors import ChunkNotFoundError
from worker.execute import MAX_CLAIMS
from worker.persist import (
    claim_chunk,
    heartbeat,
    load_task,
    mark_failed,
    record_values,
    save_outcome,
)

pytestmark = pytest.mark.db


def _setup(db: Db, widths: tuple[int, ...] = (4,)) -> list[int]:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid(list(widths), trials=20, chunk_trials=10))
        )
        return chunk_ids(session=session, sweep_id=sweep_id)


def _chunk(session: Session, chunk_id: int) -> Chunk:
    chunk = session.get(Chunk, chunk_id)
    assert chunk is not None
    return chunk


def _n_stats(session: Session, chunk_id: int) -> int:
    query = sa.select(sa.func.count()).where(ChunkStat.chunk_id == chunk_id)
    return int(session.scalar(query) or 0)


def _outcome(db: Db, chunk_id: int, salt: int = 0) -> ChunkOutcome:
    with session_scope(db.factory) as session:
        return outcome_for(load_task(session=session, chunk_id=chunk_id), salt)


def test_claim(db: Db) -> None:
    chunk_id = _setup(db)[0]
    with session_scope(db.factory) as session:
        task = claim_chunk(session=session, chunk_id=chunk_id, worker="w1", max_claims=MAX_CLAIMS)
        assert task is not None and task.chunk_index == 0
    with session_scope(db.factory) as session:
        assert (
            claim_chunk(session=session, chunk_id=chunk_id, worker="w2", max_claims=MAX_CLAIMS)
            is not None
        )
        chunk = _chunk(session, chunk_id)
        assert (chunk.status, chunk.attempts, chunk.worker) == ("running", 2, "w2")
        assert chunk.started_at is not None and chunk.heartbeat_at is not None
        before = chunk.heartbeat_at
        heartbeat(session=session, chunk_id=chunk_id)
        session.expire_all()
        assert _chunk(session, chunk_id).heartbeat_at >= before  # type: ignore[operator]
        with pytest.raises(ChunkNotFoundError):
            claim_chunk(session=session, chunk_id=9999, worker="w1", max_claims=MAX_CLAIMS)


def test_save_is_idempotent(db: Db) -> None:
    chunk_id = _setup(db)[0]
    outcome = _outcome(db, chunk_id)
    with session_scope(db.factory) as session:
        claim_chunk(session=session, chunk_id=chunk_id, worker="w1", max_claims=MAX_CLAIMS)
    with session_scope(db.factory) as session:
        assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w1")
    with session_scope(db.factory) as session:
        other = _outcome(db, chunk_id, salt=1)  # a different result must not overwrite
        assert not save_outcome(session=session, chunk_id=chunk_id, outcome=other, worker="w2")
    with session_scope(db.factory) as session:
        assert _n_stats(session, chunk_id) == len(outcome.records)
        assert chunk_records(session=session, chunk_id=chunk_id) == list(outcome.records)
        chunk = _chunk(session, chunk_id)
        assert (chunk.status, chunk.worker, chunk.error) == ("done", "w1", None)
        assert (chunk.tf_version, chunk.device, chunk.sampler, chunk.dtype) == (
            "2.99.0-test",
            "/cpu:0",
            "dense",
            "float32",
        )
        assert chunk.duration_s == 0.125 and chunk.finished_at is not None
        assert (
            claim_chunk(session=session, chunk_id=chunk_id, worker="w3", max_claims=MAX_CLAIMS)
            is None
        )


def test_save_refuses_a_mismatched_outcome(db: Db) -> None:
    first, second = _setup(db)
    outcome = _outcome(db, second)
    with (
        pytest.raises(ValueError, match="expected an outcome of chunk_index=0"),
        session_scope(db.factory) as session,
    ):
        save_outcome(session=session, chunk_id=first, outcome=outcome, worker="w")
    with session_scope(db.factory) as session:
        assert _chunk(session, first).status == "pending"
        assert _n_stats(session, first) == 0
        with pytest.raises(ChunkNotFoundError):
            save_outcome(session=session, chunk_id=9999, outcome=outcome, worker="w")


def test_save_records_statistics_beyond_float64(db: Db) -> None:
    """Overflow is data: moments beyond float64 are saved (capped), never refused."""
    chunk_id = _setup(db)[0]
    outcome = _outcome(db, chunk_id)
    bad = outcome.records[-1]
    bad = type(bad)(**{**bad.__dict__, "std": type(bad.std)(bad.n_finite, 1.0, float("inf"))})
    extreme = ChunkOutcome(
        outcome.chunk_index, outcome.n_trials, (*outcome.records[:-1], bad), outcome.provenance
    )
    with session_scope(db.factory) as session:
        assert save_outcome(session=session, chunk_id=chunk_id, outcome=extreme, worker="w")
    with session_scope(db.factory) as session:
        assert _n_stats(session, chunk_id) == len(outcome.records)
        assert _chunk(session, chunk_id).status == "done"


def test_both_claimed_then_saved(db: Db) -> None:
    chunk_id = _setup(db)[0]
    outcome = _outcome(db, chunk_id)
    with session_scope(db.factory) as session:
        claim_chunk(session=session, chunk_id=chunk_id, worker="a", max_claims=MAX_CLAIMS)
    with session_scope(db.factory) as session:
        claim_chunk(session=session, chunk_id=chunk_id, worker="b", max_claims=MAX_CLAIMS)
    results = []
    for worker in ("b", "a"):
        with session_scope(db.factory) as session:
            results.append(
                save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker=worker)
            )
    assert results == [True, False]
    with session_scope(db.factory) as session:
        assert _n_stats(session, chunk_id) == len(outcome.records)
        assert _chunk(session, chunk_id).worker == "b"


def test_concurrent_saves_record_once(db: Db) -> None:
    """Threads with their own sessions save the same chunk at once: one wins, one set of rows."""
    chunk_id = _setup(db)[0]
    outcome = _outcome(db, chunk_id)
    n = 4
    barrier = threading.Barrier(n)
    results: list[bool] = []
    errors: list[BaseException] = []

    def save(worker: str) -> None:
        try:
            with session_scope(db.factory) as session:
                claim_chunk(
                    session=session, chunk_id=chunk_id, worker=worker, max_claims=MAX_CLAIMS
                )
            barrier.wait(timeout=30)
            with session_scope(db.factory) as session:
                results.append(
                    save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker=worker)
                )
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=save, args=(f"w{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == [False] * (n - 1) + [True]
    with session_scope(db.factory) as session:
        assert _n_stats(session, chunk_id) == len(outcome.records)
        assert _chunk(session, chunk_id).attempts == n


def test_unique_key_conflict_keeps_the_callers_transaction(db: Db) -> None:
    """A racer's rows already there (not yet seen as done): False, and the caller goes on."""
    first, second = _setup(db)
    outcome = _outcome(db, first)
    with session_scope(db.factory) as session:
        session.execute(
            sa.insert(ChunkStat), [{"chunk_id": first, **record_values(outcome.records[0])}]
        )
    with session_scope(db.factory) as session:
        mark_failed(session=session, chunk_id=second, error="before", final=False)
        assert not save_outcome(session=session, chunk_id=first, outcome=outcome, worker="w")
        mark_failed(session=session, chunk_id=second, error="after", final=True)
    with session_scope(db.factory) as session:
        assert _chunk(session, first).status == "pending"
        assert _n_stats(session, first) == 1
        assert (_chunk(session, second).status, _chunk(session, second).error) == (
            "failed",
            "after",
        )


def test_mark_failed(db: Db) -> None:
    first, second = _setup(db)
    with session_scope(db.factory) as session:
        claim_chunk(session=session, chunk_id=first, worker="w", max_claims=MAX_CLAIMS)
        mark_failed(session=session, chunk_id=first, error="oom", final=False)
    with session_scope(db.factory) as session:
        chunk = _chunk(session, first)
        assert (chunk.status, chunk.error, chunk.attempts) == ("pending", "oom", 1)
        mark_failed(session=session, chunk_id=first, error="oom again", final=True)
    with session_scope(db.factory) as session:
        chunk = _chunk(session, first)
        assert (chunk.status, chunk.error) == ("failed", "oom again")
        assert chunk.finished_at is not None
    outcome = _outcome(db, second)
    with session_scope(db.factory) as session:
        save_outcome(session=session, chunk_id=second, outcome=outcome, worker="w")
    with session_scope(db.factory) as session:  # a late failure of a duplicate run
        mark_failed(session=session, chunk_id=second, error="late", final=True)
    with session_scope(db.factory) as session:
        assert (_chunk(session, second).status, _chunk(session, second).error) == ("done", None)
        with pytest.raises(ChunkNotFoundError):
            mark_failed(session=session, chunk_id=9999, error="x", final=True)


def test_a_chunk_no_sweep_wants_is_not_claimed(db: Db) -> None:
    from scheduler.store import set_sweep_status

    with session_scope(db.factory) as session:
        first = create_sweep(session=session, plan=sweep_plan([config_plan(sim_config())]))
        chunk_id = chunk_ids(session=session, sweep_id=first)[0]
        set_sweep_status(session=session, sweep_id=first, status="cancelled")
    with session_scope(db.factory) as session:
        assert (
            claim_chunk(session=session, chunk_id=chunk_id, worker="w", max_claims=MAX_CLAIMS)
            is None
        )
        chunk = session.get(Chunk, chunk_id)
        assert chunk is not None and (chunk.status, chunk.attempts) == ("pending", 0)
    # another sweep linking the same configuration wants it again
    with session_scope(db.factory) as session:
        create_sweep(session=session, plan=sweep_plan([config_plan(sim_config())]))
    with session_scope(db.factory) as session:
        task = claim_chunk(session=session, chunk_id=chunk_id, worker="w", max_claims=MAX_CLAIMS)
        assert task is not None

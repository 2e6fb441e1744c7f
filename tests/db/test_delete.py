"""Deleting a sweep: its own configurations go with their chunks and statistics; shared ones stay."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import Chunk, ChunkStat, Configuration, LayerStat, Sweep, SweepConfiguration
from models.db import session_scope
from scheduler.errors import UnknownSweepError, UserError
from scheduler.store import chunk_ids, create_sweep, refresh_sweep_status
from scheduler.sweeps import delete, footprint
from tests.db.builders import grid, outcome_for, sweep_plan
from tests.db.conftest import Db
from worker.aggregate import aggregate_sweep
from worker.persist import load_task, save_outcome


def _counts(db: Db) -> dict[str, int]:
    with session_scope(db.factory) as session:
        return {
            table.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            for table in (Sweep, SweepConfiguration, Configuration, Chunk, ChunkStat, LayerStat)
        }


def _finished(db: Db, widths: list[int], name: str) -> int:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid(widths, trials=20, chunk_trials=10), name=name)
        )
    with session_scope(db.factory) as session:
        for chunk_id in chunk_ids(session=session, sweep_id=sweep_id):
            task = load_task(session=session, chunk_id=chunk_id)
            save_outcome(session=session, chunk_id=chunk_id, outcome=outcome_for(task), worker="w")
        aggregate_sweep(session=session, sweep_id=sweep_id)
        refresh_sweep_status(session=session, sweep_id=sweep_id)
    return sweep_id


def test_delete_keeps_what_another_sweep_links_to(db: Db) -> None:
    first = _finished(db, [4, 8, 16], "first")
    second = _finished(db, [8, 32], "second")  # width 8 is shared with the first
    before = _counts(db)
    assert before["configurations"] == 4 and before["chunks"] == 8

    plan = footprint(db.factory, first)
    assert (plan.configurations, plan.chunks, plan.kept) == (2, 4, 1)
    done = delete(db.factory, first)
    assert done == plan
    after = _counts(db)
    assert after["sweeps"] == 1 and after["sweep_configurations"] == 2
    assert after["configurations"] == 2 and after["chunks"] == 4
    per_chunk = before["chunk_stats"] // before["chunks"]
    per_config = before["layer_stats"] // before["configurations"]
    assert after["chunk_stats"] == 4 * per_chunk and after["layer_stats"] == 2 * per_config

    with pytest.raises(UnknownSweepError):
        delete(db.factory, first)
    assert delete(db.factory, second).configurations == 2
    assert set(_counts(db).values()) == {0}


def test_a_running_sweep_is_not_deleted(db: Db) -> None:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(grid([4]), name="live"))
        session.execute(sa.update(Sweep).where(Sweep.id == sweep_id).values(status="running"))
    before = _counts(db)
    with pytest.raises(UserError, match="initsweep cancel"):
        delete(db.factory, sweep_id)
    assert _counts(db) == before

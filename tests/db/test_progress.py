"""`status` figures are true: a rate over the time the sweep ran, live workers only."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Chunk, utcnow
from models.db import session_scope
from scheduler.query import sweep_progress
from scheduler.store import chunk_ids, create_sweep, set_sweep_status
from tests.db.builders import config_plan, outcome_for, sim_config, sweep_plan
from tests.db.conftest import Db
from worker.persist import load_task, save_outcome

pytestmark = pytest.mark.db


def test_rate_eta_and_workers(db: Db) -> None:
    now = utcnow()
    plan = sweep_plan([config_plan(sim_config(), trials=40, chunk_trials=10)])
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=plan)
        set_sweep_status(session=session, sweep_id=sweep_id, status="running")
        ids = chunk_ids(session=session, sweep_id=sweep_id)
        for chunk_id in ids[:2]:
            outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
            save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="old:1")

        def at(chunk_id: int, **values: object) -> None:
            session.execute(sa.update(Chunk).where(Chunk.id == chunk_id).values(**values))

        # two chunks of 10 trials ran from 100 s ago to 80 s ago: 20 trials in 20 s
        at(ids[0], started_at=now - timedelta(seconds=100), finished_at=now - timedelta(seconds=90))
        at(ids[1], started_at=now - timedelta(seconds=90), finished_at=now - timedelta(seconds=80))
        at(ids[2], status="running", worker="live:1", heartbeat_at=now - timedelta(seconds=5))
        at(ids[3], status="running", worker="dead:1", heartbeat_at=now - timedelta(seconds=600))

    with session_scope(db.factory) as session:
        (running,) = sweep_progress(session=session, sweep_id=sweep_id, now=now)
    assert running.rate == pytest.approx(20 / 100)  # still running: up to now
    assert running.eta_s == pytest.approx(20 / running.rate)
    assert running.workers == ("live:1",)  # the dead worker's chunk is stale
    assert not running.finished

    with session_scope(db.factory) as session:
        set_sweep_status(session=session, sweep_id=sweep_id, status="interrupted")
    later = now + timedelta(minutes=30)
    with session_scope(db.factory) as session:
        (stopped,) = sweep_progress(session=session, sweep_id=sweep_id, now=later)
    assert stopped.rate == pytest.approx(20 / 20)  # the time it ran, not the time since
    assert stopped.eta_s is None and stopped.workers == () and stopped.finished

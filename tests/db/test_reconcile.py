"""The reconciler against a real database (SQLite and PostgreSQL); the broker is a recorder."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from models import Chunk, utcnow
from models.db import session_scope
from scheduler.chunking import chunk_seconds, config_seconds_per_trial, group_tasks
from scheduler.reconcile import ReconcilePolicy, reconcile_once
from scheduler.store import chunk_configs, create_sweep, set_sweep_status
from tests.db.builders import grid, outcome_for, sweep_plan
from tests.db.conftest import Db
from worker.execute import MAX_CLAIMS
from worker.persist import claim_chunk, save_outcome

pytestmark = pytest.mark.db


class Recorder:
    """Stands in for Celery's send_task: records the tasks, and their (chunk_id, queue)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.tasks: list[tuple[tuple[int, ...], str]] = []

    def __call__(self, chunk_ids: Sequence[int], queue: str) -> None:
        self.tasks.append((tuple(chunk_ids), queue))
        self.sent.extend((chunk_id, queue) for chunk_id in chunk_ids)


def one_per_task(**kw: float) -> ReconcilePolicy:
    """A policy that sends every chunk in a task of its own (max_in_flight counts chunks)."""
    return ReconcilePolicy(task_seconds=0.0, **kw)  # type: ignore[arg-type]


def _sweep(db: Db, widths: list[int], trials: int = 100, chunk_trials: int = 10) -> int:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid(widths, trials=trials, chunk_trials=chunk_trials))
        )
        set_sweep_status(session=session, sweep_id=sweep_id, status="running")
    return sweep_id


def test_queue_stays_bounded_and_order_is_stable(db: Db) -> None:
    sweep_id = _sweep(db, [4, 8, 16], trials=200)  # 60 chunks
    send = Recorder()
    policy = one_per_task(max_in_flight=7)
    first = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert first.sent == 7 and len(send.sent) == 7
    again = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert again.sent == 0, "nothing more while 7 are in flight"
    with session_scope(db.factory) as session:
        order = session.scalars(
            select(Chunk.id).order_by(Chunk.configuration_id, Chunk.chunk_index)
        ).all()
    assert [c for c, _ in send.sent] == list(order[:7])


def test_finished_chunks_free_capacity_and_sweep_completes(db: Db) -> None:
    sweep_id = _sweep(db, [4], trials=30)  # 3 chunks
    send = Recorder()
    policy = one_per_task(max_in_flight=2)
    reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    for _ in range(4):
        for chunk_id, _ in list(send.sent):
            with session_scope(db.factory) as session:
                task = claim_chunk(
                    session=session, chunk_id=chunk_id, worker="w:1", max_claims=MAX_CLAIMS
                )
                if task is not None:
                    save_outcome(
                        session=session, chunk_id=chunk_id, outcome=outcome_for(task), worker="w:1"
                    )
        report = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert len({c for c, _ in send.sent}) == 3
    assert report.finished == [sweep_id] and report.aggregated == 0  # aggregated on the way
    with session_scope(db.factory) as session:
        assert set(session.scalars(select(Chunk.status))) == {"done"}


def test_stale_running_chunk_is_requeued(db: Db) -> None:
    sweep_id = _sweep(db, [4], trials=20)
    send = Recorder()
    policy = one_per_task(max_in_flight=1, stale_after_s=30)
    reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    ((chunk_id, _),) = send.sent
    with session_scope(db.factory) as session:
        claim_chunk(session=session, chunk_id=chunk_id, worker="dead:1", max_claims=MAX_CLAIMS)
        old = utcnow() - timedelta(seconds=120)
        session.execute(
            update(Chunk).where(Chunk.id == chunk_id).values(heartbeat_at=old, started_at=old)
        )
    report = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert report.stale == 1
    assert send.sent[-1][0] == chunk_id, "the lost chunk is sent again first"


def test_lost_message_is_sent_again(db: Db) -> None:
    sweep_id = _sweep(db, [4], trials=20)
    send = Recorder()
    policy = one_per_task(max_in_flight=1, requeue_after_s=60)
    reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    ((chunk_id, _),) = send.sent
    reconcile_once(
        db.factory, send, policy, sweep_ids=[sweep_id], now=utcnow() + timedelta(seconds=10)
    )
    assert len(send.sent) == 1, "not yet: the message may still be queued"
    later = utcnow() + timedelta(seconds=120)
    report = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id], now=later)
    assert report.requeued == 1 and send.sent[-1][0] == chunk_id


def test_cancelled_sweep_is_not_scheduled(db: Db) -> None:
    sweep_id = _sweep(db, [4], trials=20)
    with session_scope(db.factory) as session:
        set_sweep_status(session=session, sweep_id=sweep_id, status="cancelled")
    send = Recorder()
    reconcile_once(db.factory, send, ReconcilePolicy())
    assert send.sent == []


def _run(db: Db, chunk_ids: Sequence[int]) -> None:
    """Claim and save these chunks as a worker would."""
    for chunk_id in chunk_ids:
        with session_scope(db.factory) as session:
            task = claim_chunk(session=session, chunk_id=chunk_id, worker="w:1", max_claims=8)
            assert task is not None
            save_outcome(
                session=session, chunk_id=chunk_id, outcome=outcome_for(task), worker="w:1"
            )


def test_small_chunks_travel_in_tasks_and_in_flight_counts_tasks(db: Db) -> None:
    sweep_id = _sweep(db, [4, 8, 16], trials=200)  # 60 tiny chunks, in order
    with session_scope(db.factory) as session:
        order = list(
            session.scalars(select(Chunk.id).order_by(Chunk.configuration_id, Chunk.chunk_index))
        )
        work = [
            (cid, chunk_seconds(config_seconds_per_trial(text), n))
            for cid, n, text in chunk_configs(session=session, chunk_ids=order)
        ]
    policy = ReconcilePolicy(max_in_flight=2, task_seconds=0.049)
    expected = group_tasks(work, 0.049)
    assert 1 < len(expected[0]) < 60  # several chunks per task, several tasks
    send = Recorder()
    first = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert [t for t, _ in send.tasks] == expected[:2]
    assert (first.tasks, first.sent) == (2, len(expected[0]) + len(expected[1]))
    again = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert again.tasks == 0, "two tasks are in flight"
    _run(db, expected[0])
    third = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert [t for t, _ in send.tasks[2:]] == [expected[2]] and third.tasks == 1
    while len(send.tasks) < len(expected):
        _run(db, send.tasks[len(send.tasks) - 2][0])
        reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert [t for t, _ in send.tasks] == expected  # every chunk sent once, in order
    for task, _ in send.tasks[-2:]:
        _run(db, task)
    report = reconcile_once(db.factory, send, policy, sweep_ids=[sweep_id])
    assert report.finished == [sweep_id]


def test_a_chunk_of_a_task_seconds_is_a_task_of_its_own(db: Db) -> None:
    sweep_id = _sweep(db, [4], trials=30)  # 3 chunks of ~5 ms each (nominal)
    send = Recorder()
    reconcile_once(db.factory, send, ReconcilePolicy(task_seconds=0.001), sweep_ids=[sweep_id])
    assert [len(t) for t, _ in send.tasks] == [1, 1, 1]

"""The reconciler: make the broker agree with the database, over and over.

One pass, for every active sweep:
1. a `running` chunk whose heartbeat is older than `stale_after_s` belonged to a dead worker:
   back to `pending` (a late save by a worker that was only slow is still a harmless no-op);
2. a `pending` chunk enqueued more than `requeue_after_s` ago lost its message (Redis restart,
   purge): it is enqueued again;
3. up to `max_in_flight` tasks are kept enqueued-or-running: new chunks are sent in
   (sweep, position, chunk index) order, so a sweep of 10^5 chunks never floods the broker;
   a targeted configuration's chunks only up to its frontier (`scheduler.growth`);
   A task (one message) is one chunk, or consecutive small chunks of one queue grouped to
   about `task_seconds` of nominal work (`scheduler.chunking.group_tasks`); what is in flight
   is counted in tasks, each chunk as its share of one (`chunking.task_units`), so tiny
   chunks neither become a message each nor starve the workers;
4. configurations whose chunks are all done are aggregated (idempotent), and sweep statuses
   are refreshed (done, or partial when chunks failed for good).
Resume, retry and recovery after a lost message are this one mechanism. The enqueue time is
committed before the message is sent, so a crash between the two only delays a chunk.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from models import CONFIG_STATUSES, Chunk, Configuration, Sweep, SweepConfiguration, utcnow
from models.db import session_scope
from scheduler.chunking import (
    TASK_SECONDS,
    chunk_seconds,
    config_seconds_per_trial,
    group_tasks,
    max_task_chunks,
    task_units,
)
from scheduler.growth import within_frontier

log = logging.getLogger(__name__)

OPEN_CONFIG_STATUSES = tuple(s for s in CONFIG_STATUSES if s != "done")  # not aggregated
Send = Callable[[Sequence[int], str], None]  # (chunk ids of one task, queue)


@dataclass(frozen=True)
class ReconcilePolicy:
    """Timeouts and bounds of the reconciler."""

    stale_after_s: float = 60.0
    requeue_after_s: float = 900.0
    max_in_flight: int = 64  # tasks
    task_seconds: float = TASK_SECONDS  # 0: one chunk per task


@dataclass
class PassReport:
    """What one pass did."""

    stale: int = 0
    requeued: int = 0
    sent: int = 0  # chunks
    tasks: int = 0  # messages they were sent in
    aggregated: int = 0
    finished: list[int] = field(default_factory=list)


def active_sweep_ids(session: Session) -> list[int]:
    """Sweeps with work left."""
    return list(
        session.scalars(
            select(Sweep.id).where(Sweep.status.in_(("pending", "running"))).order_by(Sweep.id)
        )
    )


def _in_sweeps(sweep_ids: list[int]) -> ColumnElement[bool]:
    """SQL: the chunk's configuration is linked to one of `sweep_ids`.

    A correlated EXISTS, so the planner starts from the chunks the status index finds (the
    running or pending ones) and probes their links, never listing every chunk of the sweeps.
    """
    return (
        select(SweepConfiguration.configuration_id)
        .where(
            SweepConfiguration.configuration_id == Chunk.configuration_id,
            SweepConfiguration.sweep_id.in_(sweep_ids),
        )
        .exists()
    )


def reconcile_once(
    factory: Callable[[], Session],
    send: Send,
    policy: ReconcilePolicy,
    *,
    sweep_ids: list[int] | None = None,
    now: datetime | None = None,
) -> PassReport:
    """One reconciliation pass over `sweep_ids` (default: every active sweep)."""
    from scheduler.store import mark_enqueued, refresh_sweep_status
    from worker.aggregate import aggregate_config

    report = PassReport()
    now = now or utcnow()
    with session_scope(factory) as session:
        ids = sweep_ids if sweep_ids is not None else active_sweep_ids(session)
        if not ids:
            return report
        in_sweeps = _in_sweeps(ids)
        stale_before = now - timedelta(seconds=policy.stale_after_s)
        report.stale = _rowcount(
            session.execute(
                update(Chunk)
                .where(in_sweeps, Chunk.status == "running")
                .where(func.coalesce(Chunk.heartbeat_at, Chunk.started_at) < stale_before)
                .values(status="pending", enqueued_at=None, worker=None)
            )
        )
        lost_before = now - timedelta(seconds=policy.requeue_after_s)
        report.requeued = _rowcount(
            session.execute(
                update(Chunk)
                .where(in_sweeps, Chunk.status == "pending", Chunk.enqueued_at < lost_before)
                .values(enqueued_at=None)
            )
        )
        in_flight = session.execute(
            select(Chunk.n_trials, Configuration.config_hash)
            .join(Configuration, Configuration.id == Chunk.configuration_id)
            .where(
                in_sweeps,
                or_(
                    Chunk.status == "running",
                    and_(Chunk.status == "pending", Chunk.enqueued_at.is_not(None)),
                ),
            )
        ).all()
        per_trial = _seconds_per_trial(session, {h for _, h in in_flight})
        busy = sum(
            task_units(chunk_seconds(per_trial[h], n), policy.task_seconds) for n, h in in_flight
        )
        capacity = policy.max_in_flight - busy
        to_send: list[tuple[tuple[int, ...], str]] = []
        if capacity > 0:
            rows = session.execute(
                select(Chunk.id, Chunk.queue, Chunk.n_trials, Configuration.config_hash)
                .join(Configuration, Configuration.id == Chunk.configuration_id)
                .join(
                    SweepConfiguration,
                    SweepConfiguration.configuration_id == Chunk.configuration_id,
                )
                .where(
                    SweepConfiguration.sweep_id.in_(ids),
                    Chunk.status == "pending",
                    Chunk.enqueued_at.is_(None),
                    within_frontier(),
                )
                .order_by(
                    SweepConfiguration.sweep_id, SweepConfiguration.position, Chunk.chunk_index
                )
                .limit(math.ceil(capacity) * max_task_chunks(policy.task_seconds))
            ).all()
            to_send = _tasks(session, rows, policy.task_seconds, capacity)
            mark_enqueued(
                session=session, chunk_ids=[c for task, _ in to_send for c in task], now=now
            )
    for task, queue in to_send:
        send(task, queue)
    report.sent = sum(len(task) for task, _ in to_send)
    report.tasks = len(to_send)

    with session_scope(factory) as session:
        ready = session.scalars(_ready_configurations(ids)).all()
    for config_id in ready:
        with session_scope(factory) as session:
            report.aggregated += int(aggregate_config(session=session, configuration_id=config_id))
    with session_scope(factory) as session:
        for sweep_id in ids:
            if refresh_sweep_status(session=session, sweep_id=sweep_id) in (
                "done",
                "partial",
                "failed",
            ):
                report.finished.append(sweep_id)
    return report


def _ready_configurations(sweep_ids: list[int]) -> Select[Any]:
    """The configurations of `sweep_ids` worth aggregating now: not aggregated, and either
    with every chunk done or targeted (`aggregate_config` decides those). Found from the
    configuration status index, so the aggregated ones (most, late in a sweep) cost nothing."""
    unfinished = (
        select(Chunk.id)
        .where(Chunk.configuration_id == Configuration.id, Chunk.status != "done")
        .exists()
    )
    linked = (
        select(SweepConfiguration.configuration_id)
        .where(
            SweepConfiguration.configuration_id == Configuration.id,
            SweepConfiguration.sweep_id.in_(sweep_ids),
        )
        .exists()
    )
    return (
        select(Configuration.id)
        .where(Configuration.status.in_(OPEN_CONFIG_STATUSES), linked)
        .where(or_(~unfinished, Configuration.target_json.is_not(None)))
        .order_by(Configuration.id)
    )


# config_hash -> nominal seconds per trial: content-addressed, so right for any database
_PER_TRIAL: dict[str, float] = {}


def _seconds_per_trial(session: Session, hashes: set[str]) -> dict[str, float]:
    """Nominal seconds per trial of the configurations `hashes` (read once per process)."""
    missing = sorted(h for h in hashes if h not in _PER_TRIAL)
    for i in range(0, len(missing), 500):
        for h, text in session.execute(
            select(Configuration.config_hash, Configuration.config_json).where(
                Configuration.config_hash.in_(missing[i : i + 500])
            )
        ):
            _PER_TRIAL[h] = config_seconds_per_trial(text)
    return _PER_TRIAL


def _tasks(
    session: Session, rows: Sequence[Any], task_seconds: float, capacity: float
) -> list[tuple[tuple[int, ...], str]]:
    """The tasks to send: pending chunks `rows` (id, queue, n_trials, config_hash; a chunk of a
    configuration shared by two sweeps appears twice) grouped per queue in order, the first
    ones while their task units fit `capacity` (at least one task)."""
    per_trial = _seconds_per_trial(session, {row[3] for row in rows})
    seen: set[int] = set()
    work: dict[str, list[tuple[int, float]]] = {}
    position: dict[int, int] = {}
    for chunk_id, queue, n_trials, config_hash in rows:
        if chunk_id not in seen:
            seen.add(chunk_id)
            position[chunk_id] = len(position)
            work.setdefault(queue, []).append(
                (chunk_id, chunk_seconds(per_trial[config_hash], n_trials))
            )
    seconds = {cid: s for items in work.values() for cid, s in items}
    tasks = sorted(
        (
            (task, queue)
            for queue, items in work.items()
            for task in group_tasks(items, task_seconds)
        ),
        key=lambda tq: position[tq[0][0]],
    )
    chosen: list[tuple[tuple[int, ...], str]] = []
    used = 0.0
    for task, queue in tasks:
        if chosen and used >= capacity:
            break
        used += task_units(sum(seconds[c] for c in task), task_seconds)
        chosen.append((task, queue))
    return chosen


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def celery_sender() -> Send:
    """Send a task by name to its queue (no worker code imported): `run_chunk(chunk_id)` for one
    chunk, `run_chunks(chunk_ids)` for several."""
    from worker.celery_app import app
    from worker.contract import TASK_NAME, TASKS_NAME

    def send(chunk_ids: Sequence[int], queue: str) -> None:
        if len(chunk_ids) == 1:
            app.send_task(TASK_NAME, args=[chunk_ids[0]], queue=queue)
        else:
            app.send_task(TASKS_NAME, args=[list(chunk_ids)], queue=queue)

    return send


def serve(
    factory: Callable[[], Session],
    send: Send,
    policy: ReconcilePolicy,
    *,
    interval_s: float = 2.0,
    sweep_ids: list[int] | None = None,
    until_finished: bool = False,
    on_pass: Callable[[PassReport], None] | None = None,
) -> None:
    """Reconcile every `interval_s` seconds; with `until_finished`, stop once `sweep_ids` end.

    A pass that fails on a transient database or broker error is logged and retried next time.
    """
    from models.errors import StoreError

    while True:
        try:
            report = reconcile_once(factory, send, policy, sweep_ids=sweep_ids)
        except (StoreError, OSError, ConnectionError) as exc:
            log.warning("reconcile pass failed, retrying: %s", exc)
            report = None
        except Exception as exc:  # kombu/redis/sqlalchemy errors while a service restarts
            if not _transient(exc):
                raise
            log.warning("reconcile pass failed, retrying: %s", exc)
            report = None
        if report is not None:
            if on_pass is not None:
                on_pass(report)
            if until_finished and sweep_ids is not None and set(report.finished) >= set(sweep_ids):
                return
        time.sleep(interval_s)


def _transient(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import OutOfMemoryError
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, KombuOperationalError | OperationalError | OutOfMemoryError):
        return True  # OutOfMemoryError: Redis at maxmemory refuses the send until memory frees
    return isinstance(exc, DBAPIError) and exc.connection_invalidated

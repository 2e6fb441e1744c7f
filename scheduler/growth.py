"""Configurations that grow, and the chunks a targeted configuration wants now. Takes a Session;
never commits.

Growth: a configuration is keyed by (config_hash, seed, target), never by its trial count, so a
sweep asking T_new trials of one that has T_old < T_new appends chunks covering [T_old, T_new)
(chunk_index continuing; sized by `chunking.plan_chunk_trials` for the T_new - T_old new
trials), sets its trials to T_new and its status back to pending: it is aggregated again, in
chunk_index (= trial) order, once the new chunks are done. T_new <= T_old computes nothing: its
results cover every trial it has (their `n_trials` says how many). A targeted configuration whose
target is already met keeps its result: the new chunks are `skipped` at once (k* depends only on
chunks 0..k*, which do not change).

Frontier: a targeted configuration's chunks past `Configuration.frontier` are not sent yet
(`worker.target.frontier`, moved on by the aggregation after every save); `wanted_chunk_ids`
is what a local run or the reconciler may send now. It changes how much work is wasted past
the stopping chunk, never a result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Chunk, Configuration, SweepConfiguration
from models.errors import TransientStoreError
from scheduler.chunking import plan_chunk_trials, split_trials
from scheduler.plan import ConfigPlan
from worker.target import frontier

_IN_BATCH = 500  # bound IN (...) lists (SQLite's variable limit)


def first_frontier(plan: ConfigPlan) -> int | None:
    """The frontier of a new configuration: None (every chunk) unless it is targeted."""
    if plan.target is None:
        return None
    return frontier(plan.target, [c.n_trials for c in plan.chunks], [])


def grow_configurations(
    *, session: Session, plans: Mapping[int, ConfigPlan], chunk_trials: int | None
) -> int:
    """Append the chunks that existing configurations (id -> this sweep's plan of it) lack for
    the plan's trials (module doc); `chunk_trials` is the spec's (None: sized automatically).
    Returns the trials added. Two submissions growing one configuration at once collide on the
    chunks' unique key: the loser gets a TransientStoreError (`sweeps.record` retries it)."""
    ids = list(plans)
    added = 0
    for i in range(0, len(ids), _IN_BATCH):
        batch = ids[i : i + _IN_BATCH]
        rows = session.execute(
            select(Configuration.id, Configuration.trials, Configuration.stop_chunk)
            .where(Configuration.id.in_(batch))
            .with_for_update()
        ).all()
        short = [(cid, t, stop) for cid, t, stop in rows if plans[cid].trials > t]
        if not short:
            continue
        last = dict(
            session.execute(
                select(Chunk.configuration_id, func.max(Chunk.chunk_index))
                .where(Chunk.configuration_id.in_([cid for cid, _, _ in short]))
                .group_by(Chunk.configuration_id)
            ).all()
        )
        chunks: list[dict[str, Any]] = []
        for cid, trials, stop in short:
            plan = plans[cid]
            size = plan_chunk_trials(plan.config, plan.trials - trials, chunk_trials, plan.target)
            first = int(last.get(cid, -1)) + 1
            status = "pending" if stop is None else "skipped"
            chunks.extend(
                {
                    "configuration_id": cid,
                    "chunk_index": c.chunk_index,
                    "trial_start": c.trial_start,
                    "n_trials": c.n_trials,
                    "status": status,
                    "attempts": 0,
                    "queue": plan.queue,
                    "seed_key": plan.seed_key,
                }
                for c in split_trials(plan.trials, size, start=trials, first_index=first)
            )
            values: dict[str, Any] = {"trials": plan.trials}
            if stop is None:
                values["status"] = "pending"
                if plan.target is not None:  # the new first chunk and the next may start
                    values["frontier"] = first + 1
            session.execute(
                update(Configuration)
                .where(Configuration.id == cid)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            added += plan.trials - trials
        try:
            with session.begin_nested():
                session.execute(insert(cast(Table, Chunk.__table__)), chunks)
        except IntegrityError as e:
            raise TransientStoreError(
                "a concurrent submission grew the same configurations; retry"
            ) from e
    return added


def within_frontier() -> ColumnElement[bool]:
    """SQL: the chunk is at or before its configuration's frontier (Configuration joined)."""
    return or_(Configuration.frontier.is_(None), Chunk.chunk_index <= Configuration.frontier)


def wanted_chunk_ids(*, session: Session, sweep_id: int, exclude: Iterable[int] = ()) -> list[int]:
    """Pending chunks of the sweep within their configuration's frontier, not in `exclude`, by
    (configuration position, chunk_index)."""
    skip = set(exclude)
    rows = session.scalars(
        select(Chunk.id)
        .join(Configuration, Configuration.id == Chunk.configuration_id)
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Chunk.configuration_id)
        .where(SweepConfiguration.sweep_id == sweep_id, Chunk.status == "pending")
        .where(within_frontier())
        .order_by(SweepConfiguration.position, Chunk.chunk_index)
    )
    return [cid for cid in rows if cid not in skip]

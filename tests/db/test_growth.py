"""scheduler.growth and targeted aggregation: raising trials appends chunks (only the new trials
run), and a precision target stops a configuration at k*, decided on its prefix of chunks."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import sqlalchemy as sa

from models import Chunk, Configuration
from models.db import session_scope
from scheduler.growth import wanted_chunk_ids
from scheduler.plan import SweepPlan
from scheduler.store import chunk_ids, create_sweep, get_sweep, refresh_sweep_status
from tests.db.builders import grid, outcome_for, sweep_plan
from tests.db.conftest import Db
from worker.aggregate import aggregate_config, chunk_records, config_records
from worker.contract import ChunkTask, LayerRecord, merge_records
from worker.persist import chunk_configuration_id, claim_chunk, load_task, save_outcome
from worker.target import Target

pytestmark = pytest.mark.db


def _plan(trials: int, *, name: str, target: Target | None = None) -> SweepPlan:
    """One width-4 configuration, `trials` trials in chunks of 100 (the spec's chunk_trials)."""
    (config,) = grid([4], trials=trials, chunk_trials=100)
    plan = sweep_plan([replace(config, target=target)], name=name)
    return replace(plan, spec_json={**plan.spec_json, "chunk_trials": 100})


def _run(db: Db, chunk_id: int) -> bool:
    """Claim, simulate (builders' records), save and aggregate one chunk, as a worker does."""
    with session_scope(db.factory) as session:
        task = claim_chunk(session=session, chunk_id=chunk_id, worker="w", max_claims=8)
    if task is None:
        return False
    with session_scope(db.factory) as session:
        saved = save_outcome(
            session=session, chunk_id=chunk_id, outcome=outcome_for(task), worker="w"
        )
        if saved:
            config_id = chunk_configuration_id(session=session, chunk_id=chunk_id)
            aggregate_config(session=session, configuration_id=config_id)
    return saved


def _chunks(db: Db) -> list[tuple[int, int, int, int, str, int]]:
    """(id, chunk_index, trial_start, n_trials, status, attempts) of every chunk, by index."""
    with session_scope(db.factory) as session:
        rows = session.execute(
            sa.select(
                Chunk.id, Chunk.chunk_index, Chunk.trial_start, Chunk.n_trials, Chunk.status,
                Chunk.attempts,
            ).order_by(Chunk.chunk_index)
        )  # fmt: skip
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_raising_trials_runs_only_the_new_trials(db: Db) -> None:
    with session_scope(db.factory) as session:
        first = create_sweep(session=session, plan=_plan(200, name="first"))
        old = chunk_ids(session=session, sweep_id=first, statuses=("pending",))
    assert all(_run(db, cid) for cid in old)

    with session_scope(db.factory) as session:
        second = create_sweep(session=session, plan=_plan(400, name="second"))
        new = chunk_ids(session=session, sweep_id=second, statuses=("pending",))
        (config,) = session.scalars(sa.select(Configuration)).all()
        assert (config.trials, config.status) == (400, "pending")  # aggregated again when done
        info = get_sweep(session=session, sweep_id=second)
        assert (info.trials_done, info.trials_total) == (200, 400)
    assert [(i, s, n) for _, i, s, n, _, _ in _chunks(db)][2:] == [(2, 200, 100), (3, 300, 100)]
    ran = [cid for cid in new if _run(db, cid)]
    assert len(ran) == 2 and set(ran).isdisjoint(old)  # exactly the chunks of [200, 400)
    assert [a for *_, a in _chunks(db)] == [1, 1, 1, 1]  # every trial simulated once

    with session_scope(db.factory) as session:
        config_id = session.scalar(sa.select(Configuration.id))
        assert config_id is not None
        merged = config_records(session=session, configuration_id=config_id)
        parts = [chunk_records(session=session, chunk_id=cid) for cid in [*old, *new]]
        assert session.scalar(sa.select(Configuration.status)) == "done"
    assert merged == merge_records(parts)  # bit for bit: the old chunks then the new
    assert {r.n_trials for r in merged} == {400}

    with session_scope(db.factory) as session:  # fewer trials: nothing new, results kept
        third = create_sweep(session=session, plan=_plan(300, name="third"))
        assert chunk_ids(session=session, sweep_id=third, statuses=("pending",)) == []
        assert session.scalar(sa.select(Configuration.trials)) == 400
        assert refresh_sweep_status(session=session, sweep_id=third) == "done"
    assert len(_chunks(db)) == 4


def _se(records: list[LayerRecord], target: Target, depth: int) -> float:
    """The SE of the target's statistic over `records` (merged in order), computed by hand."""
    (record,) = [r for r in merge_records([records]) if r.key == (depth, target.quantity)]
    m = getattr(record, target.statistic)
    return math.sqrt(m.m2 / (m.n - 1) / m.n) * 2.0**m.exp2


def _k_star(parts: list[list[LayerRecord]], target: Target, depth: int) -> int | None:
    for k in range(len(parts)):
        merged = merge_records(parts[: k + 1])
        n = sum(p[0].n_trials for p in parts[: k + 1])
        if n >= target.min_trials and _se(merged, target, depth) <= target.goal:
            return k
    return None


@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_a_target_stops_at_k_star_whatever_the_order(db: Db, order: str) -> None:
    probe = Target("std", "activation", None, se=1.0, rel_se=None, min_trials=200)
    (plan,) = _plan(1000, name="t", target=probe).configs
    tasks = [
        ChunkTask(plan.config, plan.seed_key, c.chunk_index, c.trial_start, c.n_trials)
        for c in plan.chunks
    ]
    depth = plan.config.depth
    parts = [list(outcome_for(t).records) for t in tasks]
    # a goal the prefix 0..5 meets: k* is at most 5, and at least 1 (min_trials = 200)
    goal = _se([r for p in parts[:6] for r in p], probe, depth)
    target = replace(probe, se=goal)
    k_star = _k_star(parts, target, depth)
    assert k_star is not None and 1 <= k_star <= 5

    with session_scope(db.factory) as session:
        sweep = create_sweep(session=session, plan=_plan(1000, name="t", target=target))
        ids = chunk_ids(session=session, sweep_id=sweep, statuses=("pending",))
        assert wanted_chunk_ids(session=session, sweep_id=sweep) == ids[:2]  # min_trials first
    saved = 0
    for cid in reversed(ids) if order == "reversed" else ids:
        saved += _run(db, cid)
    chunks = _chunks(db)
    statuses = [s for *_, s, _ in chunks]
    if order == "in_order":  # decided when chunk k* was saved: nothing after it ran
        assert saved == k_star + 1
        assert statuses == ["done"] * (k_star + 1) + ["skipped"] * (len(ids) - k_star - 1)
    else:  # every chunk finished before chunk 0 decided: all done, those after k* unmerged
        assert saved == len(ids) and statuses == ["done"] * len(ids)
    with session_scope(db.factory) as session:
        config = session.scalars(sa.select(Configuration)).one()
        assert (config.status, config.stop_chunk) == ("done", k_star)
        merged = config_records(session=session, configuration_id=config.id)
        assert refresh_sweep_status(session=session, sweep_id=sweep) == "done"
    assert merged == merge_records(parts[: k_star + 1])
    assert {r.n_trials for r in merged} == {100 * (k_star + 1)}
    assert _se(merged, target, depth) <= goal
    if order == "in_order":  # a late save of a skipped chunk writes nothing
        with session_scope(db.factory) as session:
            task = load_task(session=session, chunk_id=ids[-1])
            assert not save_outcome(
                session=session, chunk_id=ids[-1], outcome=outcome_for(task), worker="late"
            )


def test_an_unreachable_target_merges_every_chunk_and_grows(db: Db) -> None:
    target = Target("std", "activation", 2, se=1e-12, rel_se=None, min_trials=100)
    with session_scope(db.factory) as session:
        sweep = create_sweep(session=session, plan=_plan(300, name="t", target=target))
    rounds = []  # the frontier moves as the prefix completes
    while True:
        with session_scope(db.factory) as session:
            wanted = wanted_chunk_ids(session=session, sweep_id=sweep)
        if not wanted:
            break
        rounds.append(len(wanted))
        for cid in wanted:
            _run(db, cid)
    assert rounds == [2, 1]
    with session_scope(db.factory) as session:
        config = session.scalars(sa.select(Configuration)).one()
        assert (config.status, config.stop_chunk, config.trials) == ("done", None, 300)
        records = config_records(session=session, configuration_id=config.id)
    assert {r.n_trials for r in records} == {300}

    plan = _plan(500, name="more", target=target)
    assert plan.configs[0].run_key == _plan(300, name="x", target=target).configs[0].run_key
    with session_scope(db.factory) as session:
        more = create_sweep(session=session, plan=plan)
        assert len(wanted_chunk_ids(session=session, sweep_id=more)) == 2
        assert session.scalar(sa.select(Configuration.status)) == "pending"
    assert [(i, s, status) for _, i, s, _, status, _ in _chunks(db)][3:] == [
        (3, 300, "pending"),
        (4, 400, "pending"),
    ]


def test_a_met_target_grows_by_skipped_chunks(db: Db) -> None:
    target = Target("std", "activation", None, se=1e300, rel_se=None, min_trials=100)
    with session_scope(db.factory) as session:
        sweep = create_sweep(session=session, plan=_plan(300, name="t", target=target))
        first = chunk_ids(session=session, sweep_id=sweep, statuses=("pending",))[0]
    assert _run(db, first)
    with session_scope(db.factory) as session:
        assert session.scalar(sa.select(Configuration.stop_chunk)) == 0
        more = create_sweep(session=session, plan=_plan(600, name="more", target=target))
        assert chunk_ids(session=session, sweep_id=more, statuses=("pending",)) == []
        assert refresh_sweep_status(session=session, sweep_id=more) == "done"
        info = get_sweep(session=session, sweep_id=more)
    assert info.chunk_counts["skipped"] == 5 and info.trials_total == info.trials_done == 100

"""scheduler.store: one-transaction sweep creation, reuse by run_key, status and task loading."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import cast

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import Chunk, Configuration, Sweep, SweepConfiguration
from models.bulk import insert_rows
from models.db import session_scope
from models.errors import TransientStoreError
from scheduler.errors import SpecError, UnknownSweepError
from scheduler.plan import ChunkPlan
from scheduler.store import (
    chunk_ids,
    create_sweep,
    get_sweep,
    list_sweeps,
    refresh_sweep_status,
    reset_chunks,
    set_sweep_status,
    sweep_config_rows,
)
from tests.db.builders import config_plan, grid, sim_config, sweep_plan
from tests.db.conftest import Db
from worker.errors import ChunkNotFoundError
from worker.persist import chunk_configuration_id, load_task

pytestmark = pytest.mark.db


def _count(session: Session, model: type[object]) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def _set_status(session: Session, ids: list[int], status: str) -> None:
    session.execute(sa.update(Chunk).where(Chunk.id.in_(ids)).values(status=status))


def test_create_sweep_writes_everything(db: Db) -> None:
    plans = grid([4, 8, 16], trials=25, chunk_trials=10)
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans, name="widths"))
    with session_scope(db.factory) as session:
        info = get_sweep(session=session, sweep_id=sweep_id)
        assert (info.id, info.name, info.seed, info.status) == (sweep_id, "widths", 7, "pending")
        assert info.n_configs == 3
        assert info.chunk_counts == {
            "pending": 9,
            "running": 0,
            "done": 0,
            "failed": 0,
            "skipped": 0,
        }
        assert info.n_chunks == 9
        assert (info.trials_done, info.trials_total) == (0, 75)
        assert info.spec_yaml.startswith("name: widths")
        assert info.created_at.utcoffset() is not None and info.finished_at is None
        chunks = session.scalars(sa.select(Chunk).order_by(Chunk.id)).all()
        assert [(c.chunk_index, c.trial_start, c.n_trials) for c in chunks[:3]] == [
            (0, 0, 10),
            (1, 10, 10),
            (2, 20, 5),
        ]
        assert {c.status for c in chunks} == {"pending"}
        assert {c.attempts for c in chunks} == {0}
        configs = session.scalars(sa.select(Configuration).order_by(Configuration.id)).all()
        assert [c.width for c in configs] == [4, 8, 16]
        first = configs[0]
        assert first.run_key == plans[0].run_key and first.config_hash == plans[0].config_hash
        assert first.config_json == plans[0].config.canonical_json()
        assert (first.init_name, first.activation_label, first.dtype) == (
            "he_normal",
            "tanh",
            "float32",
        )
        assert first.seed_key == plans[0].seed_key
        assert {c.seed_key for c in chunks if c.configuration_id == first.id} == {first.seed_key}


def test_failure_mid_way_leaves_nothing(db: Db) -> None:
    with session_scope(db.factory) as session:
        create_sweep(session=session, plan=sweep_plan(grid([4])))
    good, bad = grid([8, 16])
    bad = replace(bad, chunks=(ChunkPlan(0, 0, 10), ChunkPlan(0, 10, 10)))  # duplicate index
    with pytest.raises(sa.exc.IntegrityError), session_scope(db.factory) as session:
        create_sweep(session=session, plan=sweep_plan([good, bad]))
    with session_scope(db.factory) as session:
        assert _count(session, Sweep) == 1
        assert _count(session, Configuration) == 1
        assert _count(session, SweepConfiguration) == 1
        assert _count(session, Chunk) == 4


def test_chunk_unique_key(db: Db) -> None:
    with session_scope(db.factory) as session:
        create_sweep(session=session, plan=sweep_plan(grid([4])))
    with pytest.raises(sa.exc.IntegrityError), session_scope(db.factory) as session:
        chunk = session.scalars(sa.select(Chunk).where(Chunk.chunk_index == 1)).one()
        session.add(
            Chunk(
                configuration_id=chunk.configuration_id,
                chunk_index=1,
                trial_start=10,
                n_trials=10,
                status="pending",
                queue="cpu",
                seed_key=chunk.seed_key,
            )
        )


def test_configurations_are_reused_by_run_key(db: Db) -> None:
    a, b, c = grid([4, 8, 16])
    with session_scope(db.factory) as session:
        first = create_sweep(session=session, plan=sweep_plan([a, b], name="first"))
        done = chunk_ids(session=session, sweep_id=first, statuses=("pending",))[
            :4
        ]  # every chunk of `a`
        _set_status(session, done, "done")
    with session_scope(db.factory) as session:
        second = create_sweep(session=session, plan=sweep_plan([c, a], name="second"))
    with session_scope(db.factory) as session:
        assert _count(session, Configuration) == 3
        assert _count(session, Chunk) == 12  # a's chunks were not created again
        info = get_sweep(session=session, sweep_id=second)
        assert info.n_configs == 2
        assert info.chunk_counts == {
            "pending": 4,
            "running": 0,
            "done": 4,
            "failed": 0,
            "skipped": 0,
        }
        assert info.trials_done == 40
        rows = sweep_config_rows(session=session, sweep_id=second)
        assert [(r.config.width, r.position) for r in rows] == [(16, 0), (4, 1)]
        assert chunk_ids(session=session, sweep_id=second, statuses=("done",)) == done


def test_a_run_key_listed_twice_is_linked_once(db: Db) -> None:
    (a,) = grid([4])
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan([a, a]))
    with session_scope(db.factory) as session:
        assert get_sweep(session=session, sweep_id=sweep_id).n_configs == 1
        assert _count(session, Chunk) == 4


def test_a_different_seed_is_a_different_configuration(db: Db) -> None:
    config = sim_config(width=4)
    with session_scope(db.factory) as session:
        create_sweep(session=session, plan=sweep_plan([config_plan(config, seed=1)], seed=1))
        create_sweep(session=session, plan=sweep_plan([config_plan(config, seed=2)], seed=2))
    with session_scope(db.factory) as session:
        assert _count(session, Configuration) == 2
        hashes = session.scalars(sa.select(Configuration.config_hash)).all()
        assert len(set(hashes)) == 1


def test_seed_must_fit_a_bigint(db: Db) -> None:
    plan = replace(sweep_plan(grid([4])), seed=2**63)
    with (
        pytest.raises(SpecError, match=r"seed: expected an integer in \[0, 2\*\*63\)"),
        session_scope(db.factory) as session,
    ):
        create_sweep(session=session, plan=plan)


def test_unknown_sweep(db: Db) -> None:
    with session_scope(db.factory) as session:
        with pytest.raises(UnknownSweepError, match=r"^sweep 42: no such sweep$"):
            get_sweep(session=session, sweep_id=42)
        for call in (chunk_ids, refresh_sweep_status, reset_chunks, sweep_config_rows):
            with pytest.raises(UnknownSweepError):
                call(session=session, sweep_id=42)
        with pytest.raises(UnknownSweepError):
            set_sweep_status(session=session, sweep_id=42, status="running")


def test_list_sweeps(db: Db) -> None:
    with session_scope(db.factory) as session:
        assert list_sweeps(session=session) == []
        ids = [
            create_sweep(session=session, plan=sweep_plan(grid([w]), name=f"s{w}")) for w in (4, 8)
        ]
    with session_scope(db.factory) as session:
        infos = list_sweeps(session=session)
        assert [(i.id, i.name, i.n_configs, i.n_chunks) for i in infos] == [
            (ids[0], "s4", 1, 4),
            (ids[1], "s8", 1, 4),
        ]
        assert infos == [get_sweep(session=session, sweep_id=i) for i in ids]


def test_chunk_ids_follow_position_then_index(db: Db) -> None:
    plans = grid([16, 4, 8], trials=30, chunk_trials=10)
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans))
    with session_scope(db.factory) as session:
        ids = chunk_ids(session=session, sweep_id=sweep_id)
        order = [
            session.execute(
                sa.select(Configuration.width, Chunk.chunk_index)
                .join(Chunk, Chunk.configuration_id == Configuration.id)
                .where(Chunk.id == i)
            ).one()
            for i in ids
        ]
        assert [tuple(r) for r in order] == [(w, i) for w in (16, 4, 8) for i in range(3)]
        _set_status(session, ids[:2], "done")
        _set_status(session, ids[2:3], "failed")
    with session_scope(db.factory) as session:
        assert chunk_ids(session=session, sweep_id=sweep_id) == ids[2:]
        assert chunk_ids(session=session, sweep_id=sweep_id, statuses=("done",)) == ids[:2]
        with pytest.raises(ValueError, match="statuses: expected one of"):
            chunk_ids(session=session, sweep_id=sweep_id, statuses=("finished",))


def test_load_task(db: Db) -> None:
    (plan,) = grid([8], trials=25, chunk_trials=10)
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan([plan], budget=123_456_789))
    with session_scope(db.factory) as session:
        last = chunk_ids(session=session, sweep_id=sweep_id)[-1]
        task = load_task(session=session, chunk_id=last)
        assert task.config == plan.config
        assert task.config.config_hash == plan.config_hash
        assert (task.chunk_index, task.trial_start, task.n_trials) == (2, 20, 5)
        assert task.seed_key == plan.seed_key
        assert task.memory_budget_bytes == 123_456_789
        assert chunk_configuration_id(session=session, chunk_id=last) == session.scalar(
            sa.select(Configuration.id)
        )
        with pytest.raises(ChunkNotFoundError, match="chunk 9999: no such chunk"):
            load_task(session=session, chunk_id=9999)
        with pytest.raises(ChunkNotFoundError):
            chunk_configuration_id(session=session, chunk_id=9999)
    with session_scope(db.factory) as session:  # the newest sweep's budget applies
        create_sweep(session=session, plan=sweep_plan([plan], budget=2**40))
    with session_scope(db.factory) as session:
        assert load_task(session=session, chunk_id=last).memory_budget_bytes == 2**40


def test_statuses(db: Db) -> None:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid([4, 8], trials=20, chunk_trials=10))
        )
    with session_scope(db.factory) as session:
        ids = chunk_ids(session=session, sweep_id=sweep_id)
        assert refresh_sweep_status(session=session, sweep_id=sweep_id) == "running"
        _set_status(session, ids[:3], "done")
        _set_status(session, ids[3:], "failed")
        assert refresh_sweep_status(session=session, sweep_id=sweep_id) == "partial"
        info = get_sweep(session=session, sweep_id=sweep_id)
        assert info.status == "partial" and info.finished_at is not None
        assert reset_chunks(session=session, sweep_id=sweep_id) == 1
        assert refresh_sweep_status(session=session, sweep_id=sweep_id) == "running"
        assert get_sweep(session=session, sweep_id=sweep_id).finished_at is None
        set_sweep_status(session=session, sweep_id=sweep_id, status="cancelled")
        assert refresh_sweep_status(session=session, sweep_id=sweep_id) == "cancelled"
        _set_status(session, ids[3:], "done")
        assert refresh_sweep_status(session=session, sweep_id=sweep_id) == "done"
        assert get_sweep(session=session, sweep_id=sweep_id).status == "done"
        with pytest.raises(ValueError, match="status: expected one of"):
            set_sweep_status(session=session, sweep_id=sweep_id, status="finished")


def test_reset_chunks(db: Db) -> None:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid([4], trials=40, chunk_trials=10))
        )
    with session_scope(db.factory) as session:
        ids = chunk_ids(session=session, sweep_id=sweep_id)
        _set_status(session, ids[:1], "done")
        _set_status(session, ids[1:2], "failed")
        _set_status(session, ids[2:3], "running")
    with session_scope(db.factory) as session:
        assert reset_chunks(session=session, sweep_id=sweep_id, statuses=("failed",)) == 1
        assert reset_chunks(session=session, sweep_id=sweep_id) == 1
        assert reset_chunks(session=session, sweep_id=sweep_id) == 0
        assert chunk_ids(session=session, sweep_id=sweep_id, statuses=("pending",)) == ids[1:]
        assert chunk_ids(session=session, sweep_id=sweep_id, statuses=("done",)) == ids[:1]


def test_sweep_config_rows(db: Db) -> None:
    plans = [
        config_plan(sim_config(width=8), axes={"width": 8, "label": "wide"}),
        config_plan(sim_config(width=4, activation="relu"), axes={"width": 4}),
    ]
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans))
    with session_scope(db.factory) as session:
        rows = sweep_config_rows(session=session, sweep_id=sweep_id)
    assert [(r.position, r.axes, r.status) for r in rows] == [
        (0, {"width": 8, "label": "wide"}, "pending"),
        (1, {"width": 4}, "pending"),
    ]
    assert [r.config for r in rows] == [p.config for p in plans]
    assert [r.config_hash for r in rows] == [p.config_hash for p in plans]
    assert [r.run_key for r in rows] == [p.run_key for p in plans]


def test_bulk_rows_keep_every_character(db: Db) -> None:
    """Axes and labels with tabs, newlines, backslashes, quotes and non-ASCII text come back as
    written (PostgreSQL's rows go through COPY's text format, SQLite's through executemany)."""
    awkward = "tab\tnew\nline back\\slash 'q' \"dq\" \\N é σ_w %s"
    plans = [
        config_plan(sim_config(width=8), axes={"label": awkward, awkward: [1.5, None]}),
        config_plan(sim_config(width=4), axes={"label": "\\."}),
    ]
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans))
    with session_scope(db.factory) as session:
        rows = sweep_config_rows(session=session, sweep_id=sweep_id)
        configs = session.scalars(sa.select(Configuration).order_by(Configuration.id)).all()
    assert [r.axes for r in rows] == [p.axes for p in plans]
    assert [c.config_json for c in configs] == [p.config.canonical_json() for p in plans]
    assert [c.run_key for c in configs] == [p.run_key for p in plans]


def test_a_bulk_row_breaking_a_unique_key_is_an_integrity_error(db: Db) -> None:
    """The bulk path (COPY on PostgreSQL) raises SQLAlchemy's IntegrityError, as executemany
    does, and the transaction leaves nothing behind."""
    with session_scope(db.factory) as session:
        create_sweep(session=session, plan=sweep_plan(grid([4], trials=10, chunk_trials=10)))
    with session_scope(db.factory) as session:
        (chunk,) = session.execute(sa.select(Chunk.__table__)).mappings().all()
    duplicate = {k: v for k, v in chunk.items() if k != "id"}
    with pytest.raises(sa.exc.IntegrityError), session_scope(db.factory) as session:
        insert_rows(session, cast(sa.Table, Chunk.__table__), [duplicate])
    with session_scope(db.factory) as session:
        assert _count(session, Chunk) == 1


def test_concurrent_sweeps_sharing_a_configuration(db: Db) -> None:
    """A second submission racing the first one either reuses or fails transiently, never twice."""
    (plan,) = grid([4])
    outcome: list[object] = []

    def second() -> None:
        for _ in range(3):  # what a caller does with a TransientStoreError: retry
            try:
                with session_scope(db.factory) as session:
                    outcome.append(
                        create_sweep(session=session, plan=sweep_plan([plan], name="second"))
                    )
                return
            except TransientStoreError as e:
                outcome.append(e)

    with session_scope(db.factory) as session:
        create_sweep(
            session=session, plan=sweep_plan([plan], name="first")
        )  # flushed, not committed
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)  # let the second submission reach its INSERT (PostgreSQL) or BEGIN
    thread.join(timeout=60)
    assert isinstance(outcome[-1], int), outcome
    assert all(isinstance(o, TransientStoreError) for o in outcome[:-1])
    with session_scope(db.factory) as session:
        assert _count(session, Sweep) == 2
        assert _count(session, Configuration) == 1
        assert _count(session, Chunk) == 4


def test_bulk_rows_with_keys_in_any_order_land_in_their_columns(db: Db) -> None:
    """A row's values go to the columns its keys name, whatever the order of its keys (COPY
    takes the columns of the first row)."""
    with session_scope(db.factory) as session:
        create_sweep(session=session, plan=sweep_plan(grid([4], trials=10, chunk_trials=10)))
    with session_scope(db.factory) as session:
        (chunk,) = session.execute(sa.select(Chunk.__table__)).mappings().all()
    first = {k: v for k, v in chunk.items() if k != "id"} | {"chunk_index": 7, "trial_start": 70}
    second = dict(reversed(list((first | {"chunk_index": 8, "trial_start": 80}).items())))
    with session_scope(db.factory) as session:
        insert_rows(session, cast(sa.Table, Chunk.__table__), [first, second])
    with session_scope(db.factory) as session:
        got = session.execute(
            sa.select(Chunk.chunk_index, Chunk.trial_start, Chunk.n_trials).order_by(Chunk.id)
        ).all()
    assert [tuple(r) for r in got] == [(0, 0, 10), (7, 70, 10), (8, 80, 10)]

"""Migrations on SQLite and PostgreSQL: one head, up/down/up, and models equal to migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import models
from models.base import Base
from models.db import (
    SCHEMA_HEAD,
    alembic_config,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    make_engine,
    make_session_factory,
    session_scope,
    upgrade,
)
from models.errors import SchemaError
from scheduler.store import chunk_ids, create_sweep
from tests.db.builders import grid, outcome_for, sweep_plan
from worker import contract
from worker.aggregate import aggregate_config, chunk_records, config_records
from worker.persist import chunk_configuration_id, load_task, save_outcome

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "sweeps",
    "configurations",
    "sweep_configurations",
    "chunks",
    "chunk_stats",
    "layer_stats",
    "layer_stat_packs",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diffs(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert heads == [head_revision()] == [SCHEMA_HEAD]


def test_metadata_has_every_table() -> None:
    assert set(Base.metadata.tables) == TABLES


def test_observables_mirror_the_contract() -> None:
    assert models.OBSERVABLES == contract.OBSERVABLES


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert current_revision(engine) is None
        upgrade(empty_url)
        assert current_revision(engine) == head_revision()
        assert _tables(empty_url) == TABLES
        downgrade(empty_url, "base")
        assert current_revision(engine) is None
        assert _tables(empty_url) == set()
        upgrade(empty_url, "head")
        assert current_revision(engine) == head_revision()
        assert _tables(empty_url) == TABLES
    finally:
        engine.dispose()


def test_models_match_migrations(empty_url: str) -> None:
    upgrade(empty_url)
    assert _diffs(empty_url) == []


def test_ensure_schema_migrates_once(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert ensure_schema(engine) == head_revision()
        assert ensure_schema(engine) == head_revision()  # already there: no-op
        assert current_revision(engine) == head_revision()
        assert _tables(empty_url) == TABLES
    finally:
        engine.dispose()


def test_ensure_schema_refuses_a_newer_database(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_future'"))
        with pytest.raises(SchemaError, match="newer than the code"):
            ensure_schema(engine)
    finally:
        engine.dispose()


def test_alembic_cli_from_another_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "INITSWEEP_DATABASE_URL": url}
    cmd = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _tables(url) == TABLES
    assert _diffs(url) == []


def _columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


DIST_COLUMNS = {
    "log_mean_sq_n",
    "log_mean_sq_mean",
    "log_mean_sq_m2",
    "log_mean_sq_m3",
    "log_mean_sq_m4",
    "mean_hist",
    "std_hist",
    "mean_sq_hist",
}


def test_0003_keeps_saved_statistics_and_marks_them_without_distribution(empty_url: str) -> None:
    """Rows saved before 0003 come back with no distribution; a configuration merging one of
    them has none either (never a distribution of part of its trials); down to 0002 and up
    again keeps every other statistic."""
    upgrade(empty_url)
    engine = make_engine(empty_url)
    factory = make_session_factory(engine)
    try:
        with session_scope(factory) as session:
            sweep = create_sweep(
                session=session, plan=sweep_plan(grid([4], trials=20, chunk_trials=10))
            )
            first, second = chunk_ids(session=session, sweep_id=sweep)
            outcome = outcome_for(load_task(session=session, chunk_id=first))
            assert save_outcome(session=session, chunk_id=first, outcome=outcome, worker="w")
        with session_scope(factory) as session:
            saved = chunk_records(session=session, chunk_id=first)
        assert saved == list(outcome.records) and all(r.dist is not None for r in saved)

        downgrade(empty_url, "0002")
        for table in ("chunk_stats", "layer_stats"):
            assert not DIST_COLUMNS & _columns(empty_url, table)
        upgrade(empty_url)
        assert _columns(empty_url, "chunk_stats") >= DIST_COLUMNS
        with session_scope(factory) as session:
            old = chunk_records(session=session, chunk_id=first)
        assert old == [replace(r, dist=None) for r in saved]

        with session_scope(factory) as session:
            task = load_task(session=session, chunk_id=second)
            save_outcome(session=session, chunk_id=second, outcome=outcome_for(task), worker="w")
            config_id = chunk_configuration_id(session=session, chunk_id=second)
            assert aggregate_config(session=session, configuration_id=config_id)
        with session_scope(factory) as session:
            merged = config_records(session=session, configuration_id=config_id)
        assert merged and all(r.dist is None for r in merged)
        assert [r.n_trials for r in merged] == [20] * len(merged)
    finally:
        engine.dispose()


def test_0006_rekeys_old_configurations_which_then_grow(empty_url: str) -> None:
    """A database of 0004 (keys hashing trials and chunking) opens at 0006 and answers as it
    did; of two rows of one (config_hash, seed), the one with more trials takes the new key
    and grows when a later sweep asks more trials; the other keeps its key (never reused)."""
    import hashlib

    from scheduler.plan import run_key
    from scheduler.store import sweep_config_rows

    upgrade(empty_url)
    engine = make_engine(empty_url)
    factory = make_session_factory(engine)
    try:
        with session_scope(factory) as session:
            plan = grid([4], trials=20, chunk_trials=10)
            sweep = create_sweep(session=session, plan=sweep_plan(plan))
            for chunk_id in chunk_ids(session=session, sweep_id=sweep):
                outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
                save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
                aggregate_config(session=session, configuration_id=1)
        with session_scope(factory) as session:
            before = config_records(session=session, configuration_id=1)

        downgrade(empty_url, "0004")
        config_hash = plan[0].config_hash
        with engine.begin() as conn:
            key = conn.execute(sa.text("SELECT run_key FROM configurations")).scalar_one()
            assert key == hashlib.sha256(f"{config_hash}:7:20:10".encode()).hexdigest()
            names = [c["name"] for c in sa.inspect(conn).get_columns("configurations")]
            copied = [n for n in names if n not in ("id", "run_key", "trials")]
            conn.execute(
                sa.text(
                    f"INSERT INTO configurations (run_key, trials, {', '.join(copied)}) "
                    f"SELECT 'an-older-key', 10, {', '.join(copied)} FROM configurations"
                )
            )
        upgrade(empty_url)
        with engine.begin() as conn:
            keys = dict(conn.execute(sa.text("SELECT trials, run_key FROM configurations")).all())
        assert keys == {20: run_key(config_hash, 7), 10: "an-older-key"}
        with session_scope(factory) as session:
            assert config_records(session=session, configuration_id=1) == before
            grown = create_sweep(session=session, plan=sweep_plan(grid([4], trials=40)))
            rows = sweep_config_rows(session=session, sweep_id=grown)
            assert [(r.id, r.trials, r.status) for r in rows] == [(1, 40, "pending")]
            (new,) = chunk_ids(session=session, sweep_id=grown, statuses=("pending",))
            task = load_task(session=session, chunk_id=new)  # [20, 40), sized for 20 trials
            assert (task.chunk_index, task.trial_start, task.n_trials) == (2, 20, 20)
    finally:
        engine.dispose()


def test_0007_fills_the_input_geometry_of_stored_configurations(empty_url: str) -> None:
    """Configurations stored before 0007 get input_q and input_corr from their JSON (NULL for
    i.i.d. inputs), so the streamed export's columns match a parse of the JSON."""
    from scheduler.store import sweep_config_refs
    from tests.db.builders import config_plan, sim_config

    upgrade(empty_url, "0006")
    engine = make_engine(empty_url)
    factory = make_session_factory(engine)
    try:
        geometry = sim_config(width=4, batch=2, input_q=1.5, input_corr=0.25)
        plans = [config_plan(geometry), config_plan(sim_config(width=5))]
        with engine.begin() as conn:  # rows as 0006 code wrote them: no input columns
            conn.execute(
                sa.text(
                    "INSERT INTO configurations (run_key, config_hash, config_json, seed, "
                    "seed_key, trials, chunk_trials, queue, init_name, init_label, "
                    "activation_name, activation_label, depth, width, input_dim, batch, dtype, "
                    "bias_std, sampler, status) VALUES (:key, :hash, :json, 7, 1, 40, 10, 'cpu', "
                    "'he_normal', :init, 'tanh', :act, :depth, :width, :input_dim, :batch, "
                    ":dtype, :bias, :sampler, 'pending')"
                ),
                [
                    {
                        "key": p.run_key,
                        "hash": p.config.config_hash,
                        "json": p.config.canonical_json(),
                        "init": p.config.init.label,
                        "act": p.config.activation.label,
                        "depth": p.config.depth,
                        "width": p.config.width,
                        "input_dim": p.config.input_dim,
                        "batch": p.config.batch,
                        "dtype": p.config.dtype,
                        "bias": p.config.bias_std,
                        "sampler": p.config.sampler,
                    }
                    for p in plans
                ],
            )
        upgrade(empty_url)
        with engine.begin() as conn:
            found = conn.execute(
                sa.text("SELECT width, input_q, input_corr FROM configurations ORDER BY width")
            ).all()
        assert [tuple(r) for r in found] == [(4, 1.5, 0.25), (5, None, None)]
        assert not _diffs(empty_url)
        with session_scope(factory) as session:  # a new sweep links them; refs carry them
            sweep = create_sweep(session=session, plan=sweep_plan(plans))
            refs = sweep_config_refs(session=session, sweep_id=sweep)
        assert [r.params[-2:] for r in refs] == [(1.5, 0.25), (None, None)]
    finally:
        engine.dispose()

"""worker.aggregate: chunk statistics merged in chunk-index order, deterministic, idempotent."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from models import ChunkStat, Configuration, LayerStat, LayerStatPack
from models.db import session_scope
from scheduler.store import chunk_ids, create_sweep
from tests.db.builders import config_plan, grid, outcome_for, sim_config, sweep_plan
from tests.db.conftest import Db
from worker.aggregate import (
    STAT_ROW,
    aggregate_config,
    aggregate_sweep,
    chunk_records,
    config_records,
    layer_stat_rows,
)
from worker.contract import QUANTITIES, LayerRecord, merge_records
from worker.persist import (
    PAIR_FIELDS,
    chunk_configuration_id,
    load_task,
    quantile_values,
    record_values,
    save_outcome,
)
from worker.stat_columns import (
    LAYOUT,
    PACK_DTYPE,
    STAT_FLOAT_COLUMNS,
    STAT_INT_COLUMNS,
    StatColumnReader,
    layer_stat_columns,
    write_packs,
)
from worker.stats import Moments

pytestmark = pytest.mark.db


def _save(db: Db, chunk_id: int) -> None:
    with session_scope(db.factory) as session:
        outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
        assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")


def _layer_rows(session: Session, config_id: int) -> list[tuple[object, ...]]:
    columns = [c for c in LayerStat.__table__.columns if c.name != "id"]
    rows = session.execute(
        sa.select(*columns)
        .where(LayerStat.configuration_id == config_id)
        .order_by(LayerStat.layer, LayerStat.quantity)
    )
    return [tuple(struct.pack("<d", v) if isinstance(v, float) else v for v in r) for r in rows]


def _bits(records: list[LayerRecord]) -> list[tuple[object, ...]]:
    out = []
    for r in records:
        moments = [getattr(r, o) for o in ("mean", "std", "mean_sq")]
        out.append(
            (
                r.layer,
                r.quantity,
                r.n_trials,
                r.n_finite,
                r.n_first_nonfinite,
                r.n_collapsed,
                *(struct.pack("<d", x) for m in moments for x in (m.mean, m.m2)),
                *(m.n for m in moments),
            )
        )
    return out


def test_aggregate_merges_in_chunk_index_order(db: Db) -> None:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid([8], trials=53, chunk_trials=10))
        )
        ids = chunk_ids(session=session, sweep_id=sweep_id)
        config_id = chunk_configuration_id(session=session, chunk_id=ids[0])
    assert len(ids) == 6
    for chunk_id in (ids[4], ids[1], ids[5], ids[0], ids[3]):  # finish out of order
        _save(db, chunk_id)
        with session_scope(db.factory) as session:
            assert not aggregate_config(session=session, configuration_id=config_id)
            assert session.scalar(sa.select(sa.func.count()).select_from(LayerStat)) == 0
    _save(db, ids[2])
    with session_scope(db.factory) as session:
        assert aggregate_config(session=session, configuration_id=config_id)
    with session_scope(db.factory) as session:
        got = config_records(session=session, configuration_id=config_id)
        expected = merge_records([chunk_records(session=session, chunk_id=i) for i in ids])
        configuration = session.get(Configuration, config_id)
        assert configuration is not None
        assert configuration.status == "done" and configuration.aggregated_at is not None
        first_rows = _layer_rows(session, config_id)
    assert _bits(got) == _bits(expected)
    assert sum(r.n_trials for r in got if r.layer == 0) == 53
    for record in got:
        assert record.mean.n == record.std.n == record.mean_sq.n == record.n_finite

    with session_scope(db.factory) as session:  # idempotent: identical rows
        assert aggregate_config(session=session, configuration_id=config_id)
    with session_scope(db.factory) as session:
        assert _layer_rows(session, config_id) == first_rows


def test_aggregate_equals_pooled_moments(db: Db) -> None:
    """The merged moments are those of all trials at once (up to rounding)."""
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid([4], trials=30, chunk_trials=7))
        )
        ids = chunk_ids(session=session, sweep_id=sweep_id)
        config_id = chunk_configuration_id(session=session, chunk_id=ids[0])
    for chunk_id in ids:
        _save(db, chunk_id)
    with session_scope(db.factory) as session:
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 1
        merged = config_records(session=session, configuration_id=config_id)
        per_chunk = [chunk_records(session=session, chunk_id=i) for i in ids]
    pooled = Moments()
    for records in per_chunk:
        pooled = pooled.merge(records[-1].mean)
    assert merged[-1].mean.n == pooled.n
    assert merged[-1].mean.mean == pytest.approx(pooled.mean, rel=1e-12, abs=1e-12)
    assert merged[-1].mean.m2 == pytest.approx(pooled.m2, rel=1e-12)


def test_aggregate_sweep_counts_ready_configurations(db: Db) -> None:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid([4, 8], trials=20, chunk_trials=10))
        )
        ids = chunk_ids(session=session, sweep_id=sweep_id)
    with session_scope(db.factory) as session:
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 0
    for chunk_id in ids[:2]:
        _save(db, chunk_id)
    with session_scope(db.factory) as session:
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 1
    with session_scope(db.factory) as session:
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 0
        assert aggregate_sweep(session=session, sweep_id=sweep_id, force=True) == 1
        statuses = session.scalars(sa.select(Configuration.status).order_by(Configuration.id)).all()
        assert list(statuses) == ["done", "pending"]
        assert (
            config_records(
                session=session,
                configuration_id=chunk_configuration_id(session=session, chunk_id=ids[2]),
            )
            == []
        )


def test_reused_configuration_keeps_its_results(db: Db) -> None:
    a, b = grid([4, 8], trials=20, chunk_trials=10)
    with session_scope(db.factory) as session:
        first = create_sweep(session=session, plan=sweep_plan([a]))
        ids = chunk_ids(session=session, sweep_id=first)
        config_id = chunk_configuration_id(session=session, chunk_id=ids[0])
    for chunk_id in ids:
        _save(db, chunk_id)
    with session_scope(db.factory) as session:
        assert aggregate_sweep(session=session, sweep_id=first) == 1
        before = _layer_rows(session, config_id)
    with session_scope(db.factory) as session:
        second = create_sweep(session=session, plan=sweep_plan([b, a]))
    with session_scope(db.factory) as session:
        assert chunk_ids(session=session, sweep_id=second, statuses=("done",)) == ids
        assert (
            aggregate_sweep(session=session, sweep_id=second) == 0
        )  # b not finished, a already aggregated
        assert _layer_rows(session, config_id) == before


def _one_chunk_with_a_dead_record(db: Db, trials: int) -> tuple[int, int, Any]:
    """A one-chunk sweep and its outcome, whose last (layer, quantity) saw every trial overflow
    (n_finite 0, no distribution); (sweep id, chunk id, outcome), nothing saved."""
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(
            session=session, plan=sweep_plan(grid([4], trials=trials, chunk_trials=trials))
        )
        (chunk_id,) = chunk_ids(session=session, sweep_id=sweep_id)
        outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
    record = outcome.records[-1]
    empty = Moments(0, float("nan"), float("nan"))
    dead = LayerRecord(record.layer, record.quantity, trials, 0, 0, 0, empty, empty, empty)
    outcome = type(outcome)(
        outcome.chunk_index, outcome.n_trials, (*outcome.records[:-1], dead), outcome.provenance
    )
    return sweep_id, chunk_id, outcome


def test_empty_samples_store_zeros(db: Db) -> None:
    """A (layer, quantity) where every trial overflowed: n_finite 0, moments stored as 0.0."""
    sweep_id, chunk_id, outcome = _one_chunk_with_a_dead_record(db, 10)
    with session_scope(db.factory) as session:
        assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 1
    with session_scope(db.factory) as session:
        last = config_records(
            session=session,
            configuration_id=chunk_configuration_id(session=session, chunk_id=chunk_id),
        )[-1]
    assert (last.n_trials, last.n_finite) == (10, 0)
    assert last.mean == last.std == last.mean_sq == Moments(0, 0.0, 0.0)


def test_one_chunk_configuration_stores_what_the_merge_would(db: Db) -> None:
    """A configuration of one chunk copies its chunk's columns (the fast path) and reads the
    quantiles from the stored bytes: every layer_stats column equals `record_values` and
    `quantile_values` of the chunk's records, bit for bit, a record without a distribution
    included."""
    sweep_id, chunk_id, outcome = _one_chunk_with_a_dead_record(db, 30)
    with session_scope(db.factory) as session:
        assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
        config_id = chunk_configuration_id(session=session, chunk_id=chunk_id)
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 1
        stored = chunk_records(session=session, chunk_id=chunk_id)
        got = _layer_rows(session, config_id)
    names = [c.name for c in LayerStat.__table__.columns if c.name != "id"]
    want = []
    for r in sorted(stored, key=lambda r: (r.layer, r.quantity)):
        values = {"configuration_id": config_id, **record_values(r), **quantile_values(r)}
        want.append(
            tuple(
                struct.pack("<d", v) if isinstance(v, float) else v
                for v in (values[n] for n in names)
            )
        )
    assert got == want
    assert any(row[names.index("mean_median")] is None for row in got)  # the dead record


def test_pair_observables_round_trip_and_merge(db: Db) -> None:
    """Batch 3: cross and corr are saved and read back exactly, and the aggregate is their
    merge in chunk-index order, bit for bit; a chunk without them (saved before migration 0005)
    makes the aggregate have none, never a merge of part of the trials."""
    from tests.db.builders import config_plan, sim_config

    plan = config_plan(sim_config(width=6, batch=3), trials=35, chunk_trials=10)
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan([plan]))
        ids = chunk_ids(session=session, sweep_id=sweep_id)
        config_id = chunk_configuration_id(session=session, chunk_id=ids[0])
    outcomes = {}
    for chunk_id in reversed(ids):
        with session_scope(db.factory) as session:
            outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
            assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
            outcomes[chunk_id] = outcome
    with session_scope(db.factory) as session:
        saved = [chunk_records(session=session, chunk_id=i) for i in ids]
        assert saved == [list(outcomes[i].records) for i in ids]  # exact, cross/corr included
        assert aggregate_config(session=session, configuration_id=config_id)
    with session_scope(db.factory) as session:
        got = config_records(session=session, configuration_id=config_id)
    expected = merge_records(saved)
    assert got == expected
    assert all(r.corr is not None and r.cross is not None for r in got)
    assert any(r.corr is not None and r.corr.n < r.n_finite for r in got)

    with session_scope(db.factory) as session:  # a chunk saved before the columns existed
        session.execute(
            sa.update(ChunkStat)
            .where(ChunkStat.chunk_id == ids[1])
            .values(dict.fromkeys(PAIR_FIELDS))
        )
        assert aggregate_config(session=session, configuration_id=config_id)
    with session_scope(db.factory) as session:
        got = config_records(session=session, configuration_id=config_id)
    assert all(r.corr is None and r.cross is None for r in got)
    assert [r.mean for r in got] == [r.mean for r in expected]


def test_stat_columns_are_the_stat_rows_bit_for_bit(db: Db) -> None:
    """`layer_stat_columns` holds exactly the values `layer_stat_rows` reads, NULL as NaN, for
    awkward doubles too (subnormals, the largest double, values whose text form needs 17
    digits; -0.0 is stored as 0.0 by `models.base.Float64`), in 3 batches: from rows
    (PostgreSQL: packed on the server; SQLite: fetched) where a configuration has no pack, and
    from the packs `write_packs` makes of them."""
    awkward = [5e-324, -2.5e-310, 1.7976931348623157e308, 0.1 + 0.2, -1 / 3, None]
    plans = [config_plan(sim_config(depth=2, width=4, batch=2), trials=4, chunk_trials=2)]
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans))
        for chunk_id in chunk_ids(session=session, sweep_id=sweep_id):
            outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
            assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
        aggregate_sweep(session=session, sweep_id=sweep_id)
        source = session.scalars(sa.select(Configuration)).one()
        config = {c.name: getattr(source, c.name) for c in Configuration.__table__.columns}
        del config["id"]
        session.execute(  # 1200 more configurations (3 batches of ids), copies under new keys
            sa.insert(Configuration),
            [{**config, "config_hash": f"{i:064x}", "run_key": f"{i:064x}"} for i in range(1200)],
        )
        ids = sorted(session.scalars(sa.select(Configuration.id)))
        stat_columns = [c for c in LayerStat.__table__.columns if c.name != "id"]
        base = (
            session.execute(sa.select(*stat_columns).where(LayerStat.configuration_id == source.id))
            .mappings()
            .all()
        )
        floats = [c for c in STAT_FLOAT_COLUMNS if isinstance(base[0][c], float)]
        rows = []
        for i, config_id in enumerate(ids[1:]):
            for k, template in enumerate(base):
                row = {**template, "configuration_id": config_id}
                for j, name in enumerate(floats):
                    value = awkward[(i + j + k) % len(awkward)]
                    nullable = LayerStat.__table__.columns[name].nullable
                    row[name] = 0.0 if value is None and not nullable else value
                rows.append(row)
        session.execute(sa.insert(LayerStat), rows)
        mixed = layer_stat_columns(session=session, configuration_ids=ids)  # 1 pack, 1200 not
        write_packs(session=session, configuration_ids=ids[1:])
        n_packs = session.scalar(sa.select(sa.func.count()).select_from(LayerStatPack))
        packed = layer_stat_columns(session=session, configuration_ids=ids)
        read = layer_stat_rows(session=session, configuration_ids=ids, histograms=False)
    assert n_packs == 1201
    index = {q: i for i, q in enumerate(QUANTITIES)}
    at = {name: STAT_ROW.index(name) for name in STAT_ROW}
    want = sorted(read, key=lambda r: (r[0], r[at["layer"]], index[r[at["quantity"]]]))
    for columns in (mixed, packed):
        assert len(read) == len(columns["layer"]) == len(base) * 1201
        order = np.lexsort((columns["quantity"], columns["layer"], columns["configuration_id"]))
        for name in (*STAT_INT_COLUMNS, *STAT_FLOAT_COLUMNS):
            got = columns[name][order]
            if name == "quantity":
                assert got.tolist() == [index[r[at[name]]] for r in want]
            elif name in STAT_INT_COLUMNS:
                assert got.dtype == np.int64 and got.tolist() == [r[at[name]] for r in want], name
            else:
                values = [np.nan if r[at[name]] is None else float(r[at[name]]) for r in want]
                assert got.dtype == np.float64, name
                assert got.tobytes() == np.array(values, dtype=np.float64).tobytes(), name
    stored = {
        np.float64(r[at[f]]).view(np.int64).item()
        for r in read
        for f in floats
        if r[at[f]] is not None
    }
    missing = [v for v in awkward[:-1] if np.float64(v).view(np.int64).item() not in stored]
    assert not missing, missing  # every awkward double was stored somewhere, and read back


def test_a_reader_gives_each_batch_its_own_columns(db: Db) -> None:
    """`StatColumnReader`: each batch's columns are `layer_stat_columns`' bit for bit, whether
    it was read ahead (PostgreSQL), announced as next and then not asked for, or not announced."""
    plans = [config_plan(sim_config(depth=1 + i % 2, width=3 + i), trials=2) for i in range(6)]
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans))
        for chunk_id in chunk_ids(session=session, sweep_id=sweep_id):
            outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
            assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 6
        ids = sorted(session.scalars(sa.select(Configuration.id)))
        batches = [ids[0:2], ids[2:4], ids[4:6]]
        want = [layer_stat_columns(session=session, configuration_ids=b) for b in batches]
        reader = StatColumnReader(session)
        try:
            got = [
                reader.read(batches[0], batches[1]),  # the next one is read ahead
                reader.read(batches[1], batches[0]),  # announced, then not asked for
                reader.read(batches[2]),
            ]
            again = reader.read(batches[0], batches[2])
        finally:
            reader.close()
    for w, g in zip([*want, want[0]], [*got, again], strict=True):
        assert list(g) == list(w) and all(g[c].tobytes() == w[c].tobytes() for c in w)
        assert len(g["layer"]) > 0


def test_aggregation_packs_its_rows_and_reads_only_packs_of_this_layout(db: Db) -> None:
    """Aggregating writes each configuration's pack (`LAYOUT`, its rows' count) in the same
    transaction, aggregating again replaces it, and a read takes a configuration's rows where its
    pack is of another layout; a pack that does not hold its configuration's rows is refused."""
    plans = [
        config_plan(sim_config(depth=1 + i, width=3), trials=4, chunk_trials=2) for i in range(3)
    ]
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans))
        for chunk_id in chunk_ids(session=session, sweep_id=sweep_id):
            outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
            assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 3
        ids = sorted(session.scalars(sa.select(Configuration.id)))
        packs = {p.configuration_id: p for p in session.scalars(sa.select(LayerStatPack))}
        counts = dict(
            session.execute(
                sa.select(LayerStat.configuration_id, sa.func.count()).group_by(
                    LayerStat.configuration_id
                )
            ).all()
        )
        assert sorted(packs) == ids
        assert all(p.layout == LAYOUT and p.n_rows == counts[i] for i, p in packs.items())
        before = {i: p.data for i, p in packs.items()}
        assert aggregate_sweep(session=session, sweep_id=sweep_id, force=True) == 3
        session.expire_all()
        again = {p.configuration_id: p.data for p in session.scalars(sa.select(LayerStatPack))}
        assert again == before
        want = layer_stat_columns(session=session, configuration_ids=ids)
        other = sa.update(LayerStatPack).where(LayerStatPack.configuration_id == ids[0])
        session.execute(other.values(layout=LAYOUT + 1, data=b"\0" * len(before[ids[0]])))
        got = layer_stat_columns(session=session, configuration_ids=ids)
        assert _sorted_bytes(got) == _sorted_bytes(want)
        shifted = np.frombuffer(before[ids[1]], dtype=PACK_DTYPE).copy()
        shifted["configuration_id"] = ids[2]
        wrong = sa.update(LayerStatPack).where(LayerStatPack.configuration_id == ids[1])
        session.execute(wrong.values(data=shifted.tobytes()))
        with pytest.raises(ValueError, match="does not hold its rows"):
            layer_stat_columns(session=session, configuration_ids=ids)
        session.rollback()


def _sorted_bytes(columns: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Each of `layer_stat_columns`' columns in (configuration, layer, quantity) order, as bytes."""
    order = np.lexsort((columns["quantity"], columns["layer"], columns["configuration_id"]))
    return {c: columns[c][order].tobytes() for c in columns}

"""Streamed reads and exports: the same rows as one read, in batches, typed; results(columns, configs)."""

from __future__ import annotations

import dataclasses
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import event

from models.db import session_scope
from scheduler import export, query
from scheduler.errors import UnknownSweepError, UserError
from scheduler.export import write_jsonl, write_parquet
from scheduler.plan import ConfigPlan
from scheduler.query import StatBatch, result_set, result_stream, results
from scheduler.store import chunk_ids, create_sweep, sweep_config_refs
from tests.db.builders import (
    config_plan,
    outcome_for,
    sim_config,
    sweep_plan,
    varied_configs,
)
from tests.db.conftest import Db
from tests.rows import assert_same_rows, typed
from worker.aggregate import aggregate_sweep
from worker.contract import INIT_SCHEMES, canonical_scheme
from worker.persist import load_task, save_outcome

pytestmark = pytest.mark.db

N_CONFIGS = 7


def _axes(i: int) -> dict[str, Any]:
    """Axis values of configuration i: one int/float column, one of mixed kinds, one sometimes
    absent, one bool, one list."""
    axes: dict[str, Any] = {
        "depth": 2,
        "sigma_w": 1 if i % 2 else 1.25 + i,  # ints and floats: float64
        "tag": "a" if i % 3 else 7,  # str and int: string ("7")
        "flag": i % 2 == 0,
        "pair": [i, "x"],
    }
    if i != 3:
        axes["label"] = f"c{i}"  # absent from configuration 3: null there
    return axes


@pytest.fixture
def sweep(db: Db) -> int:
    """A sweep of N_CONFIGS configurations: most aggregated, two with only some chunks done, one
    with none; few trials per chunk, so some statistics are None (n_finite < 2; with seed 12 a
    partial configuration has such a record, which the test asserts)."""
    plans = [
        config_plan(
            sim_config(activation="tanh" if i % 2 else "relu", depth=2, width=3 + i),
            seed=12,
            trials=6,
            chunk_trials=2,
            axes=_axes(i),
        )
        for i in range(N_CONFIGS)
    ]
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans, seed=12))
        ids = chunk_ids(session=session, sweep_id=sweep_id)
    skip = {ids[3 * 2 + 1], ids[3 * 4 + 0], ids[3 * 4 + 2], *ids[3 * 5 : 3 * 6]}
    with session_scope(db.factory) as session:
        for chunk_id in ids:
            if chunk_id not in skip:
                outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
                assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == N_CONFIGS - 3
    return sweep_id


def _complete_sweep(db: Db, plans: list[ConfigPlan], *, seed: int, salt: int = 0) -> int:
    """A sweep of `plans` with every chunk saved (`outcome_for`, `salt`) and every configuration
    aggregated; its id."""
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans, seed=seed))
        for chunk_id in chunk_ids(session=session, sweep_id=sweep_id):
            outcome = outcome_for(load_task(session=session, chunk_id=chunk_id), salt=salt)
            assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == len(plans)
    return sweep_id


def _streamed(db: Db, sweep_id: int, **kw: Any) -> tuple[list[dict[str, Any]], Any]:
    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, **kw)
        rows = [dict(r) for batch in stream for r in batch]
    return rows, stream


def _one_read(db: Db, sweep_id: int, **kw: Any) -> Any:
    with session_scope(db.factory) as session:
        return result_set(session=session, sweep_id=sweep_id, **kw)


@pytest.mark.parametrize(
    "filters",
    [{}, {"theory": True}, {"quantity": "gradient", "where": {"tag": "a"}}, {"layer": 0}],
    ids=["all", "theory", "filtered", "layer"],
)
def test_batches_give_the_rows_of_one_read(db: Db, sweep: int, filters: dict[str, Any]) -> None:
    found = _one_read(db, sweep, **filters)
    want = [dict(r) for r in found.records]
    assert want
    for batch_size in (1, 3, 500):  # 7, 3 and 1 batches
        rows, stream = _streamed(db, sweep, batch_size=batch_size, **filters)
        assert stream.columns == found.columns
        assert_same_rows(want, rows, {c: "json" for c in stream.columns})
        assert [list(r) for r in rows] == [list(r) for r in want]  # same keys, same order
        assert (stream.n_configs, stream.n_complete, stream.n_with_trials) == (
            found.n_configs,
            found.n_complete,
            found.n_with_trials,
        )
    assert any(r["complete"] is False for r in want)
    if "layer" not in filters:  # layer 0 is always finite
        assert any(v is None for r in want for v in r.values())


def test_each_batch_costs_a_few_statements(db: Db, sweep: int) -> None:
    sent: list[str] = []

    def on_execute(*args: Any) -> None:
        sent.append(args[2])

    event.listen(db.engine, "before_cursor_execute", on_execute)
    try:
        counts = {}
        for batch_size in (1, 7):
            sent.clear()
            _streamed(db, sweep, batch_size=batch_size)
            counts[batch_size] = len(sent)
    finally:
        event.remove(db.engine, "before_cursor_execute", on_execute)
    # the sweep and its references once, then at most 3 statements per batch
    assert counts[7] <= 6, counts
    assert counts[1] - counts[7] <= 3 * (N_CONFIGS - 1), counts


def test_columns_have_one_kind(db: Db, sweep: int) -> None:
    _, stream = _streamed(db, sweep, theory=True)
    kinds = stream.kinds
    assert kinds["sigma_w"] == "float" and kinds["tag"] == "str" and kinds["pair"] == "str"
    assert kinds["flag"] == "bool" and kinds["label"] == "str"
    assert kinds["n_trials"] == "int" and kinds["std_se"] == "float"
    assert kinds["theory_exact"] == "bool" and kinds["finite_width"] == "str"


@pytest.mark.parametrize("theory", [False, True])
def test_parquet_and_jsonl_hold_the_json_values(
    db: Db, sweep: int, tmp_path: Path, theory: bool
) -> None:
    found = _one_read(db, sweep, theory=theory)
    as_json = json.loads(json.dumps(found.records, indent=1, allow_nan=False))

    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep, theory=theory, batch_size=2)
        kinds = stream.kinds
        parts = [type(p) for p in stream.parts()]
        # complete batches come unbuilt to the columnar writer, with theory or without
        assert StatBatch in parts and list in parts
        stream = result_stream(session=session, sweep_id=sweep, theory=theory, batch_size=2)
        n = write_parquet(stream, tmp_path / "out.parquet")
    assert n == len(as_json)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.names == found.columns
    assert table.schema.field("tag").type == pa.string()
    assert table.schema.field("sigma_w").type == pa.float64()
    assert table.schema.field("n_collapsed").type == pa.int64()
    want = typed(as_json, kinds)
    assert_same_rows(want, table.to_pylist(), kinds, found.columns)
    assert {r["tag"] for r in want} == {"a", "7"} and want[0]["pair"] == '[0, "x"]'
    frame = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert_same_rows(want, frame.to_dict("records"), kinds, found.columns)
    assert frame["std_se"].isna().any()  # None is NaN in pandas, and only there
    assert frame["std_se"].isna().sum() == sum(r["std_se"] is None for r in as_json)

    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep, theory=theory, batch_size=3)
        text = io.StringIO()
        assert write_jsonl(stream, text) == len(as_json)
    lines = text.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == as_json
    assert_same_rows(as_json, [json.loads(line) for line in lines], {c: "json" for c in kinds})


def test_a_sweep_with_nothing_done_exports_its_schema(db: Db, tmp_path: Path) -> None:
    plans = [config_plan(sim_config(width=4), axes={"sigma_w": 1.5})]
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans))
    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id)
        assert write_parquet(stream, tmp_path / "empty.parquet") == 0
        assert stream.n_with_trials == 0 and not stream.complete
    table = pq.read_table(tmp_path / "empty.parquet")
    assert table.num_rows == 0 and table.schema.names == _one_read(db, sweep_id).columns
    assert table.schema.field("sigma_w").type == pa.float64()
    with session_scope(db.factory) as session, pytest.raises(UnknownSweepError):
        result_stream(session=session, sweep_id=sweep_id + 1)


def test_a_failed_export_leaves_no_file(db: Db, sweep: int, tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep)

    class Failing:  # a stream whose second batch fails
        columns, kinds = stream.columns, stream.kinds

        def __iter__(self) -> Iterator[list[Any]]:
            yield []
            raise Boom

        def parts(self) -> Iterator[list[Any]]:
            return iter(self)

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.jsonl").write_text("old\n")
    with pytest.raises(Boom):
        write_jsonl(Failing(), out / "old.jsonl")  # type: ignore[arg-type]
    with pytest.raises(Boom):
        write_parquet(Failing(), out / "new.parquet")  # type: ignore[arg-type]
    assert [p.name for p in out.iterdir()] == ["old.jsonl"]
    assert (out / "old.jsonl").read_text() == "old\n"


def test_results_reads_some_columns_of_some_configurations(db: Db, sweep: int) -> None:
    full = results(sweep, db=db.url)
    hashes = list(dict.fromkeys(full["config_hash"]))
    assert len(hashes) == N_CONFIGS - 1  # one configuration has no chunk done: no rows
    some = [hashes[4], hashes[1]]
    columns = ["config_hash", "layer", "quantity", "std", "sigma_w"]
    frame = results(sweep, db=db.url, columns=columns, configs=some)
    assert list(frame.columns) == columns
    assert list(dict.fromkeys(frame["config_hash"])) == [hashes[1], hashes[4]]  # sweep order
    expected = full[full["config_hash"].isin(some)][columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)

    filtered = results(sweep, db=db.url, columns=["layer"], configs=some, quantity="gradient")
    assert set(filtered["layer"]) == {1, 2} and list(filtered.columns) == ["layer"]
    theory = results(sweep, db=db.url, configs=some[:1], theory=True)
    assert "z_mean_sq" in theory.columns and set(theory["config_hash"]) == {hashes[4]}
    assert results(sweep, db=db.url, configs=[]).empty
    assert list(results(sweep, db=db.url, columns=["layer"], configs=[]).columns) == ["layer"]

    with pytest.raises(UserError, match="'nope' is not a column"):
        results(sweep, db=db.url, columns=["layer", "nope"])
    with pytest.raises(UserError, match="'abc' is not a configuration of sweep"):
        results(sweep, db=db.url, configs=[hashes[0], "abc"])
    with pytest.raises(TypeError):
        results(sweep, db=db.url, columns="layer")


def test_a_batch_holds_about_export_rows_whatever_the_depth(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its first configuration a batch holds at most `EXPORT_ROWS` rows, so deep
    configurations come fewer to a batch; the batches together are the records, in order."""
    monkeypatch.setattr(query, "EXPORT_ROWS", 40)
    depths = [1 + (5 * i) % 9 for i in range(12)]  # 6 to 27 rows each, mixed
    plans = [config_plan(sim_config(depth=d, width=3 + i), trials=2) for i, d in enumerate(depths)]
    sweep_id = _complete_sweep(db, plans, seed=1, salt=2)
    found = _one_read(db, sweep_id)
    with session_scope(db.factory) as session:
        parts = list(result_stream(session=session, sweep_id=sweep_id).parts())
        stream = result_stream(session=session, sweep_id=sweep_id)
        assert write_parquet(stream, tmp_path / "all.parquet") == len(found.records)
    assert all(isinstance(p, StatBatch) for p in parts)
    sizes = [len(p.config_ids) for p in parts]
    rows = [len(p.columns["layer"]) for p in parts]
    assert sum(sizes) == len(plans) and len(parts) >= 5
    assert all(n <= 40 or k == 1 for n, k in zip(rows, sizes, strict=True))
    assert [i for p in parts for i in p.config_ids] == [r.id for r in stream_refs(db, sweep_id)]
    table = pq.read_table(tmp_path / "all.parquet")
    as_json = json.loads(json.dumps(found.records, allow_nan=False))
    assert_same_rows(typed(as_json, stream.kinds), table.to_pylist(), stream.kinds, found.columns)


def stream_refs(db: Db, sweep_id: int) -> list[Any]:
    """The sweep's configuration references in position order."""
    with session_scope(db.factory) as session:
        return sweep_config_refs(session=session, sweep_id=sweep_id)


@pytest.mark.parametrize("batch_size", [1, 4, 500])
def test_columnar_batches_are_the_records_bit_for_bit(
    db: Db, tmp_path: Path, batch_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every configuration complete: the Parquet comes from `StatBatch`es (numpy), never from
    records, and still holds exactly the JSON values, None included; JSON lines written in
    pieces that split configurations give the same text."""
    monkeypatch.setattr(export, "LINE_ROWS", 5 if batch_size == 500 else 1 << 13)
    plans = [
        config_plan(
            sim_config(activation="relu", depth=3, width=2 + i, batch=1 + (i % 3 == 0)),
            seed=3,
            trials=1 if i % 2 else 5,  # one trial: no SE, and no mean where it overflowed
            chunk_trials=1 + i % 3,
            axes={"sigma_w": 0.5 * i, "label": None if i == 2 else f'l{i}·é"%s'},
        )
        for i in range(10)
    ]
    sweep_id = _complete_sweep(db, plans, seed=3, salt=5)
    found = _one_read(db, sweep_id)
    as_json = json.loads(json.dumps(found.records, allow_nan=False))
    assert any(r["mean"] is None for r in as_json) and any(r["mean_se"] is None for r in as_json)
    assert any(r["corr"] is None for r in as_json) and any(r["corr_se"] for r in as_json)
    assert any(r["cross"] is not None and r["n_corr"] < r["n_finite"] for r in as_json)
    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, batch_size=batch_size)
        assert all(isinstance(p, StatBatch) for p in stream.parts())
        stream = result_stream(session=session, sweep_id=sweep_id, batch_size=batch_size)
        assert write_parquet(stream, tmp_path / "all.parquet") == len(as_json)
        assert stream.complete and stream.n_with_trials == 10
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.schema.names == found.columns
    assert_same_rows(typed(as_json, stream.kinds), table.to_pylist(), stream.kinds, found.columns)

    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, batch_size=batch_size)
        text = io.StringIO()
        assert write_jsonl(stream, text) == len(as_json)
    lines = [json.loads(line) for line in text.getvalue().splitlines()]
    assert lines == as_json and [list(r) for r in lines] == [list(r) for r in as_json]
    assert_same_rows(as_json, lines, dict.fromkeys(found.columns, "json"))
    assert text.getvalue() == "".join(
        json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in found.records
    )


@pytest.mark.parametrize(
    "where",
    [
        "activation=tanh",
        "sigma_w>1 layer=last",
        "tag=a flag=true",
        "label=none",
        "width>=5 quantity=gradient",
        "complete=false",
    ],
)
def test_configuration_terms_choose_configurations_before_reading(
    db: Db, sweep: int, tmp_path: Path, where: str
) -> None:
    """Terms on configuration columns pick configurations from their references, before any
    statistic is read; the rows, the columns and the completeness counts are those of one
    read filtered row by row, and the exports hold the same values."""
    found = _one_read(db, sweep, where=where)
    as_json = json.loads(json.dumps(found.records, allow_nan=False))
    assert as_json
    rows, stream = _streamed(db, sweep, where=where, batch_size=2)
    assert stream.columns == found.columns
    assert [list(r) for r in rows] == [list(r) for r in as_json]
    assert_same_rows(as_json, rows, {c: "json" for c in stream.columns})
    counts = (stream.n_configs, stream.n_complete, stream.n_with_trials)
    assert counts == (found.n_configs, found.n_complete, found.n_with_trials)

    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep, where=where, batch_size=2)
        assert write_parquet(stream, tmp_path / "w.parquet") == len(as_json)
        stream = result_stream(session=session, sweep_id=sweep, where=where, batch_size=3)
        text = io.StringIO()
        assert write_jsonl(stream, text) == len(as_json)
    assert [json.loads(line) for line in text.getvalue().splitlines()] == as_json
    table = pq.read_table(tmp_path / "w.parquet")
    assert_same_rows(typed(as_json, stream.kinds), table.to_pylist(), stream.kinds, found.columns)
    frame = results(sweep, db=db.url, where=where)
    assert len(frame) == len(as_json)


def test_only_the_chosen_configurations_are_read(db: Db, sweep: int) -> None:
    """`configs=` and configuration terms read the statistics of the chosen configurations
    only (one configuration: a handful of statements, whatever the sweep's size)."""
    full = results(sweep, db=db.url)
    one = full["config_hash"].iloc[0]
    sent: list[tuple[str, Any]] = []

    def on_execute(*args: Any) -> None:
        sent.append((args[2], args[3]))

    event.listen(db.engine, "before_cursor_execute", on_execute)
    try:
        with session_scope(db.factory) as session:
            stream = result_stream(session=session, sweep_id=sweep, configs=[one])
            rows = [r for batch in stream for r in batch]
    finally:
        event.remove(db.engine, "before_cursor_execute", on_execute)
    assert {r["config_hash"] for r in rows} == {one}
    statements = [sql for sql, _ in sent if not sql.startswith("BEGIN")]
    # the sweep, the ids of the hashes, references, configuration, rows
    assert len(statements) <= 5, statements
    stats = [p for sql, p in sent if "FROM layer_stats" in sql]
    assert len(stats) == 1  # one configuration's rows, by its id


def test_the_input_geometry_columns_are_bit_for_bit(db: Db, tmp_path: Path) -> None:
    """A complete sweep with correlated inputs: the columnar export's configuration columns
    (typed columns, not the parsed JSON) are the JSON path's, input_q and input_corr too."""
    plans = [
        config_plan(
            sim_config(depth=2, width=3, batch=2, input_q=q, input_corr=c),
            seed=4,
            trials=3,
            chunk_trials=3,
            axes={"q": q},
        )
        for q, c in ((None, None), (0.5, None), (2.0, -0.25))
    ]
    sweep_id = _complete_sweep(db, plans, seed=4)
    found = _one_read(db, sweep_id)
    as_json = json.loads(json.dumps(found.records, allow_nan=False))
    assert {(r["input_q"], r["input_corr"]) for r in as_json} == {
        (None, None),
        (0.5, None),
        (2.0, -0.25),
    }
    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id)
        assert all(isinstance(p, StatBatch) for p in stream.parts())
        stream = result_stream(session=session, sweep_id=sweep_id)
        assert write_parquet(stream, tmp_path / "g.parquet") == len(as_json)
        stream = result_stream(session=session, sweep_id=sweep_id)
        text = io.StringIO()
        write_jsonl(stream, text)
    assert [json.loads(line) for line in text.getvalue().splitlines()] == as_json
    table = pq.read_table(tmp_path / "g.parquet")
    assert_same_rows(typed(as_json, stream.kinds), table.to_pylist(), stream.kinds, found.columns)


def test_columnar_theory_is_the_records_theory_bit_for_bit(
    db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Complete configurations of batch 1 in every activation, dtype and regime (overflow and
    collapse within the depth, orthogonal and non-centred kernels, input_q, the exact log laws
    of linear and relu): the theory columns of a `StatBatch` (`theory_columns`) are exactly
    `with_theory`'s of the records, in Parquet and byte for byte in JSON lines (written in
    pieces of 11 lines)."""
    gaussian = {"distribution": "untruncated_normal"}
    exact = [
        dataclasses.replace(
            sim_config(activation=name, depth=4, width=8),
            init=canonical_scheme(INIT_SCHEMES, "variance_scaling", {**gaussian, **p}),
        )
        for name, p in (("relu", {"scale": 2.0}), ("linear", {"scale": 1.0}))
    ]
    configs = {c.config_hash: c for c in [*exact, *varied_configs(40, random.Random(3))]}
    plans = [
        config_plan(c, seed=4, trials=3, chunk_trials=2, axes={"i": i})
        for i, c in enumerate(configs.values())
        if c.batch == 1
    ]
    sweep_id = _complete_sweep(db, plans, seed=4, salt=2)
    found = _one_read(db, sweep_id, theory=True)
    records = found.records
    monkeypatch.setattr(export, "LINE_ROWS", 11)
    for key in ("theory_log_mean_sq", "theory_p_overflow_hi", "theory_p_collapse_hi", "z_std"):
        assert any(r[key] is not None for r in records), key
    assert any(r["theory_overflow_layer"] is not None for r in records)
    assert any(r["theory_exact"] for r in records) and any(r["finite_width"] for r in records)
    as_json = json.loads(json.dumps(records, allow_nan=False))
    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, theory=True, batch_size=7)
        assert all(isinstance(p, StatBatch) for p in stream.parts())
        stream = result_stream(session=session, sweep_id=sweep_id, theory=True, batch_size=7)
        assert write_parquet(stream, tmp_path / "theory.parquet") == len(as_json)
    table = pq.read_table(tmp_path / "theory.parquet")
    assert table.schema.names == found.columns
    assert_same_rows(typed(as_json, stream.kinds), table.to_pylist(), stream.kinds, found.columns)
    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, theory=True, batch_size=7)
        text = io.StringIO()
        assert write_jsonl(stream, text) == len(as_json)
    assert text.getvalue() == "".join(
        json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in records
    )


@pytest.mark.parametrize("batch_size", [3, 500])
def test_open_configurations_with_nothing_done_keep_batches_columnar(
    db: Db, tmp_path: Path, batch_size: int
) -> None:
    """A batch whose open configurations have no chunk done holds only its complete ones' rows:
    it comes as a `StatBatch`, and the exports, their configuration columns of every kind with
    their nulls (an axis some configurations lack), and the completeness counts are those of
    one read."""
    plans = []
    for i in range(8):
        axes: dict[str, Any] = {"sigma_w": 1 if i % 3 else 0.25 * i, "flag": i % 2 == 0}
        axes.update({"n": i, "x": -0.0 if i == 6 else 1.5 * i, "s": f"v{i}"})
        for key, absent in (("flag", 1), ("n", 4), ("x", 5), ("s", 7)):
            if i == absent:
                del axes[key]
        plans.append(
            config_plan(sim_config(depth=2, width=3 + i), trials=3, chunk_trials=3, axes=axes)
        )
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans, seed=5))
        ids = chunk_ids(session=session, sweep_id=sweep_id)
        for i, chunk_id in enumerate(ids):
            if i not in (2, 6):  # configurations 2 and 6: nothing done
                outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
                assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == 6
    found = _one_read(db, sweep_id)
    as_json = json.loads(json.dumps(found.records, allow_nan=False))
    assert {r["config_hash"] for r in as_json} and found.n_complete == 6
    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, batch_size=batch_size)
        assert all(isinstance(p, StatBatch) for p in stream.parts())
        counts = (stream.n_configs, stream.n_complete, stream.n_with_trials)
        assert counts == (found.n_configs, found.n_complete, found.n_with_trials)
        stream = result_stream(session=session, sweep_id=sweep_id, batch_size=batch_size)
        assert write_parquet(stream, tmp_path / "o.parquet") == len(as_json)
        kinds = stream.kinds
        stream = result_stream(session=session, sweep_id=sweep_id, batch_size=batch_size)
        text = io.StringIO()
        assert write_jsonl(stream, text) == len(as_json)
    assert [kinds[k] for k in ("sigma_w", "flag", "n", "x", "s")] == [
        "float",
        "bool",
        "int",
        "float",
        "str",
    ]
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.schema.names == found.columns
    assert all(table.column(k).null_count for k in ("flag", "n", "x", "s"))
    assert_same_rows(typed(as_json, kinds), table.to_pylist(), kinds, found.columns)
    assert text.getvalue() == "".join(
        json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in found.records
    )


def test_a_batch_with_the_correlation_map_keeps_its_records_with_theory(
    db: Db, tmp_path: Path
) -> None:
    """With theory, a batch holding a configuration of batch > 1 (whose correlation map is per
    record) comes as records, the others as `StatBatch`es; the export holds the records' values,
    the correlation map's columns included."""
    plans = [
        config_plan(
            sim_config(activation="tanh", depth=2, width=3 + i, batch=2 if i == 4 else 1),
            seed=6,
            trials=4,
            chunk_trials=2,
            axes={"i": i},
        )
        for i in range(6)
    ]
    sweep_id = _complete_sweep(db, plans, seed=6)
    found = _one_read(db, sweep_id, theory=True)
    assert any(r["theory_corr"] is not None for r in found.records)
    as_json = json.loads(json.dumps(found.records, allow_nan=False))
    with session_scope(db.factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, theory=True, batch_size=3)
        assert [type(p) for p in stream.parts()] == [StatBatch, list]
        stream = result_stream(session=session, sweep_id=sweep_id, theory=True, batch_size=3)
        assert write_parquet(stream, tmp_path / "pairs.parquet") == len(as_json)
        stream = result_stream(session=session, sweep_id=sweep_id, theory=True, batch_size=3)
        text = io.StringIO()
        assert write_jsonl(stream, text) == len(as_json)
    table = pq.read_table(tmp_path / "pairs.parquet")
    assert_same_rows(typed(as_json, stream.kinds), table.to_pylist(), stream.kinds, found.columns)
    assert text.getvalue() == "".join(
        json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in found.records
    )

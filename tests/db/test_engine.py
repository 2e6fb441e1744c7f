"""models.db: URL resolution, SQLite settings, transactions, error translation, exact values."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from models import ChunkStat, Sweep
from models.db import make_engine, make_session_factory, resolve_url, session_scope
from models.errors import SchemaError, TransientStoreError
from scheduler.store import create_sweep
from tests.db.builders import grid, sweep_plan
from tests.db.conftest import Db
from worker.contract import LayerRecord
from worker.persist import CAP, load_task, record_from_row, record_values
from worker.stats import Moments

pytestmark = pytest.mark.db


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def test_resolve_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INITSWEEP_DATABASE_URL", raising=False)
    assert resolve_url(None) == "sqlite:///./initsweep.db"
    monkeypatch.setenv("INITSWEEP_DATABASE_URL", "sqlite:////tmp/env.db")
    assert resolve_url(None) == "sqlite:////tmp/env.db"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    assert resolve_url("runs/a.db") == "sqlite:///runs/a.db"
    assert resolve_url("/abs/a.db") == "sqlite:////abs/a.db"
    assert resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_sqlite_settings(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_session_scope_commits_and_rolls_back(db: Db) -> None:
    plan = sweep_plan(grid([4]))
    with session_scope(db.factory) as session:
        create_sweep(session=session, plan=plan)
    with pytest.raises(RuntimeError, match="boom"), session_scope(db.factory) as session:
        create_sweep(session=session, plan=plan)
        raise RuntimeError("boom")
    with session_scope(db.factory) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Sweep)) == 1


def test_unreachable_server_is_transient() -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    try:
        with (
            pytest.raises(TransientStoreError, match="database") as info,
            session_scope(make_session_factory(engine)) as session,
        ):
            session.execute(sa.text("SELECT 1"))
        assert isinstance(info.value.__cause__, sa.exc.OperationalError)
    finally:
        engine.dispose()


def test_missing_schema_is_a_schema_error(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/blank.db")
    try:
        with pytest.raises(SchemaError), session_scope(make_session_factory(engine)) as session:
            load_task(session=session, chunk_id=1)
    finally:
        engine.dispose()


def test_timestamps_are_utc_aware(db: Db) -> None:
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(grid([4])))
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
        sweep.finished_at = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with session_scope(db.factory) as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
        assert sweep.created_at.tzinfo is not None
        assert sweep.created_at.utcoffset() == timedelta(0)
        assert sweep.finished_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_naive_timestamps_are_refused(db: Db) -> None:
    with (
        pytest.raises(sa.exc.StatementError, match="timezone-aware"),
        session_scope(db.factory) as session,
    ):
        sweep_id = create_sweep(session=session, plan=sweep_plan(grid([4])))
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
        sweep.finished_at = datetime(2024, 5, 1, 12, 0)
        session.flush()


def _tricky_floats() -> np.ndarray:
    rng = np.random.default_rng(2024)
    patterns = rng.integers(0, 2**64, size=4000, dtype=np.uint64, endpoint=False)
    randoms = patterns.view(np.float64)
    randoms = randoms[np.isfinite(randoms)]
    edges = np.array(
        [
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            2.2250738585072014e-308,
            2.225073858507201e-308,
            1.7976931348623157e308,
            -1.7976931348623157e308,
            0.1,
            1 / 3,
            np.pi,
            np.nextafter(1.0, 2.0),
            np.nextafter(1.0, 0.0),
            1e-300 * 1e-10,
            123456789.123456789,
        ]
    )
    return np.concatenate([edges, randoms, rng.standard_normal(1000) * 1e3])


def test_float64_round_trip_is_bit_identical(db: Db) -> None:
    values = _tricky_floats()
    with session_scope(db.factory) as session:
        create_sweep(session=session, plan=sweep_plan(grid([4], trials=10, chunk_trials=10)))
    columns = ["mean_mean", "mean_m2", "std_mean", "std_m2", "mean_sq_mean", "mean_sq_m2"]
    rows: list[dict[str, Any]] = []
    for i in range(0, len(values) - len(columns) + 1, len(columns)):
        chunk = dict(zip(columns, map(float, values[i : i + len(columns)]), strict=True))
        rows.append(
            {
                "chunk_id": 1,
                "layer": i,
                "quantity": "activation",
                "n_trials": 1,
                "n_finite": 1,
                "n_first_nonfinite": 0,
                "n_collapsed": 0,
                **chunk,
                # scaled moments' exponents (worker.stats.Moments.exp2), beyond +-float64
                "mean_exp2": -(i % 3000),
                "std_exp2": 0,
                "mean_sq_exp2": i % 3001,
            }
        )
    with session_scope(db.factory) as session:
        session.execute(sa.insert(ChunkStat), rows)
    with session_scope(db.factory) as session:
        stored = {r.layer: r for r in session.scalars(sa.select(ChunkStat))}
    assert len(stored) == len(rows)
    for row in rows:
        back = stored[row["layer"]]
        for column in columns:
            # bit for bit; only the sign of zero is normalised (-0.0 is stored as 0.0 everywhere)
            assert _bits(getattr(back, column)) == _bits(row[column] + 0.0), (column, row[column])
        for column in ("mean_exp2", "std_exp2", "mean_sq_exp2"):
            assert getattr(back, column) == row[column]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_float_columns_refuse_non_finite_values(db: Db, value: float) -> None:
    with (
        pytest.raises(sa.exc.StatementError, match="expected a finite float"),
        session_scope(db.factory) as session,
    ):
        create_sweep(session=session, plan=sweep_plan(grid([4], trials=10, chunk_trials=10)))
        session.execute(
            sa.insert(ChunkStat),
            [
                {
                    "chunk_id": 1,
                    "layer": 0,
                    "quantity": "activation",
                    "n_trials": 1,
                    "n_finite": 1,
                    "n_first_nonfinite": 0,
                    "n_collapsed": 0,
                    "mean_mean": value,
                    "mean_m2": 0.0,
                    "std_mean": 0.0,
                    "std_m2": 0.0,
                    "mean_sq_mean": 0.0,
                    "mean_sq_m2": 0.0,
                }
            ],
        )


# Finite floats below the cap (+-CAP is the stored flag "exceeds float64", read back as +-inf).
finite = st.floats(min_value=-CAP, max_value=CAP, exclude_min=True, exclude_max=True)


class _Row:
    """A stand-in for a chunk_stats row (the conversion reads attributes only)."""

    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)


@given(
    n=st.integers(0, 10**6),
    extra=st.integers(0, 10),
    values=st.lists(finite, min_size=6, max_size=6),
    exps=st.lists(st.integers(-3000, 3000), min_size=3, max_size=3),
    layer=st.integers(0, 100),
    quantity=st.sampled_from(["preactivation", "activation", "gradient"]),
)
def test_record_conversion_round_trips(
    n: int, extra: int, values: list[float], exps: list[int], layer: int, quantity: str
) -> None:
    """Scaled moments (`Moments.exp2`, beyond float64's range) round-trip exactly too."""
    moments = [Moments(n, values[2 * i], values[2 * i + 1], exps[i]) for i in range(3)]
    record = LayerRecord(layer, quantity, n + extra, n, extra, min(n, 3), *moments)
    back = record_from_row(_Row(record_values(record)))  # type: ignore[arg-type]
    if n:
        assert back == record
        assert [_bits(getattr(back, o).m2) for o in ("mean", "std", "mean_sq")] == [
            _bits(values[1]),
            _bits(values[3]),
            _bits(values[5]),
        ]
    else:  # an empty sample stores 0.0, whatever it held
        assert back.mean == back.std == back.mean_sq == Moments(0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("moments", "stored", "back"),
    [
        (Moments(3, float("inf"), float("nan")), (CAP, CAP), (math.inf, math.inf)),
        (Moments(3, -float("inf"), 1.0), (-CAP, 1.0), (-math.inf, 1.0)),
        (Moments(3, 1e300, float("inf")), (1e300, CAP), (1e300, math.inf)),
    ],
)
def test_moments_beyond_float64_are_stored_capped(
    moments: Moments, stored: tuple[float, float], back: tuple[float, float]
) -> None:
    """Overflow is data: a moment beyond float64 is stored as +-CAP and read back as +-inf."""
    record = LayerRecord(
        layer=1,
        quantity="preactivation",
        n_trials=4,
        n_finite=3,
        n_first_nonfinite=1,
        n_collapsed=0,
        mean=Moments(3, 0.5, 1.0),
        std=Moments(3, 0.5, 1.0),
        mean_sq=moments,
    )
    values = record_values(record)
    assert (values["mean_sq_mean"], values["mean_sq_m2"]) == stored
    got = record_from_row(_Row(values)).mean_sq  # type: ignore[arg-type]
    assert (got.mean, got.m2) == back


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"mean_sq": Moments(2, 1.0, 1.0)}, r"expected mean_sq.n == n_finite == 3"),
        ({"quantity": "weights"}, "expected a quantity in"),
        ({"n_finite": 9}, r"expected counts in \[0, n_trials=4\]"),
    ],
)
def test_record_values_refuses_bad_records(bad: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "layer": 1,
        "quantity": "activation",
        "n_trials": 4,
        "n_finite": 3,
        "n_first_nonfinite": 1,
        "n_collapsed": 0,
        "mean": Moments(3, 0.5, 1.0),
        "std": Moments(3, 0.5, 1.0),
        "mean_sq": Moments(3, 0.5, 1.0),
    }
    with pytest.raises(ValueError, match=message):
        record_values(LayerRecord(**{**base, **bad}))  # type: ignore[arg-type]


def test_busy_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from models.db import busy_timeout_s
    from models.errors import StoreError

    assert busy_timeout_s() == 30.0
    monkeypatch.setenv("INITSWEEP_SQLITE_BUSY_TIMEOUT", "2.5")
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    engine.dispose()
    for bad in ("0", "-1", "soon", "1e9"):
        monkeypatch.setenv("INITSWEEP_SQLITE_BUSY_TIMEOUT", bad)
        with pytest.raises(StoreError, match="INITSWEEP_SQLITE_BUSY_TIMEOUT"):
            busy_timeout_s()

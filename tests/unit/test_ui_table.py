"""scheduler.ui.table: the dashboard's columnar results equal the records of `initsweep results`,
and its filters, sorts and pages do what the sweep page says they do."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from scheduler.analysis.compare import with_theory
from scheduler.analysis.records import ConfigResults, config_columns, result_rows
from scheduler.analysis.theory import predict
from scheduler.errors import UserError
from scheduler.formatting import config_label
from scheduler.ui.table import (
    DASHBOARD_OMITS,
    RAW_COLUMNS,
    ROW_THEORY,
    ConfigEntry,
    ResultTable,
    stat_columns,
    theory_block,
)
from worker.contract import ACTIVATIONS, INIT_SCHEMES, QUANTITIES, LayerRecord, SimConfig
from worker.contract import canonical_scheme as scheme
from worker.stats import Moments

pytestmark = pytest.mark.unit


def _config(init: str, activation: str, depth: int, width: int, **params: Any) -> SimConfig:
    return SimConfig(
        init=scheme(INIT_SCHEMES, init, params),
        activation=scheme(ACTIVATIONS, activation, {}),
        depth=depth,
        width=width,
        input_dim=width,
    )


def _records(config: SimConfig, seed: int) -> list[LayerRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for layer in range(config.depth + 1):
        for quantity in ("activation",) if layer == 0 else QUANTITIES:
            n_finite = int(rng.choice([0, 1, 12, 12, 12]))
            moments = [
                Moments.of(rng.normal(1.0 + layer, 0.5, n_finite)) if n_finite else Moments()
                for _ in range(3)
            ]
            out.append(
                LayerRecord(
                    layer=layer,
                    quantity=quantity,
                    n_trials=12,
                    n_finite=n_finite,
                    n_first_nonfinite=int(rng.integers(0, 2)),
                    n_collapsed=0,
                    mean=moments[0],
                    std=moments[1],
                    mean_sq=moments[2],
                )
            )
    return out


def _raw(records: list[LayerRecord]) -> np.ndarray[Any, Any]:
    return np.array(
        [
            [
                r.layer,
                QUANTITIES.index(r.quantity),
                r.n_trials,
                r.n_finite,
                r.n_first_nonfinite,
                r.n_collapsed,
                *(x for m in (r.mean, r.std, r.mean_sq) for x in (m.mean, m.m2)),
                *(m.exp2 for m in (r.mean, r.std, r.mean_sq)),
            ]
            for r in records
        ],
        dtype=np.float64,
    )


CONFIGS = [
    (_config("he_normal", "tanh", 3, 8), {"init": "he_normal", "width": 8}),
    (_config("normal", "tanh", 3, 16, std=0.5), {"init": {"name": "normal"}, "width": 16}),
    (_config("normal", "relu", 2, 16, std=0.5), {"width": 16}),
]


@pytest.fixture(scope="module")
def table() -> tuple[ResultTable, list[dict[str, Any]]]:
    entries, raw, theory, heads, results = [], {}, {}, {}, []
    for i, (config, axes) in enumerate(CONFIGS):
        columns = config_columns(config, {"width": axes["width"]})
        entry = ConfigEntry(i + 1, i, config.config_hash, config, columns, config_label(columns))
        records = _records(config, seed=i)
        entries.append(entry)
        raw[i] = _raw(records)
        theory[i], heads[i] = theory_block(entry, raw[i], predict(config))
        results.append(ConfigResults(config.config_hash, config, {"width": axes["width"]}, records))
    want = [dict(r) for r in with_theory(result_rows(7, results))]
    return ResultTable(7, entries, raw, theory, heads), want


def _equal(a: Any, b: Any) -> bool:
    if isinstance(b, float):
        return isinstance(a, float) and math.isclose(a, b, rel_tol=1e-12)
    return bool(a == b)


def test_raw_columns_are_the_stored_statistics_in_their_order() -> None:
    from worker.aggregate import STAT_ROW

    assert STAT_ROW[1 : 1 + len(RAW_COLUMNS)] == RAW_COLUMNS


def test_rows_are_the_records_of_initsweep_results(table: Any) -> None:
    t, want = table
    assert t.n_rows == len(want)
    for i, record in enumerate(want):
        expected = {k: v for k, v in record.items() if k not in DASHBOARD_OMITS}
        got = t.record(i)
        assert set(got) == {*expected, "abs_z"}
        for key, value in expected.items():
            assert _equal(got[key], value), (i, key, got[key], value)
        zs = [abs(z) for z in (expected["z_mean"], expected["z_mean_sq"]) if z is not None]
        assert _equal(got["abs_z"], max(zs)) if zs else got["abs_z"] is None


def test_configurations_whose_theory_is_not_computed_yet_have_none(table: Any) -> None:
    t, want = table
    waiting = ResultTable(7, t.entries, t.raw, {0: t.theory[0]}, {0: t.theory_heads[0]})
    assert waiting.n_rows == t.n_rows and not waiting.theory_complete
    first = len(t.raw[0])
    for i in range(t.n_rows):
        got = waiting.record(i)
        if i < first:
            assert _equal(got["z_mean"], want[i]["z_mean"]) or got["z_mean"] is None
            assert _equal(got["theory_mean_sq"], want[i]["theory_mean_sq"])
        else:  # no theory yet: every theory column is missing, the statistics are there
            assert all(got[k] is None for k in ROW_THEORY)
            assert _equal(got["mean_sq"], want[i]["mean_sq"])


def test_stat_columns_follow_moments_for_empty_and_single_samples() -> None:
    records = _records(_config("he_normal", "linear", 4, 8), seed=3)
    columns = stat_columns(_raw(records))
    for i, r in enumerate(records):
        for name in ("mean", "std", "mean_sq"):
            m = getattr(r, name)
            assert math.isnan(columns[name][i]) if not m.n else columns[name][i] == m.mean
            if m.n < 2:
                assert math.isnan(columns[f"{name}_se"][i])
            else:
                assert columns[f"{name}_se"][i] == m.sem


@pytest.mark.parametrize(
    ("where", "count"),
    [
        ("", None),
        ("init=normal", lambda r: r["init"].startswith("normal(")),
        ("init!=normal activation=tanh", lambda r: r["init"] == "he_normal"),
        ("activation=relu,tanh quantity=gradient", lambda r: r["quantity"] == "gradient"),
        (
            "layer=last quantity=activation",
            lambda r: r["layer"] == r["depth"] and r["quantity"] == "activation",
        ),
        ("width >= 16 layer<2", lambda r: r["width"] >= 16 and r["layer"] < 2),
        ('init="normal(mean=0, std=0.5)"', lambda r: r["init"] == "normal(mean=0, std=0.5)"),
        ("init~NORMAL", lambda r: "normal" in r["init"]),
        ("std>1.5", lambda r: r["std"] is not None and r["std"] > 1.5),
        ("abs_z>=0", lambda r: r["z_mean"] is not None or r["z_mean_sq"] is not None),
    ],
)
def test_filters(table: Any, where: str, count: Any) -> None:
    t, want = table
    page = t.page(where=where, sort=[], offset=0, limit=500)
    expected = [r for r in want if count is None or count(r)]
    assert page["total"] == len(expected) > 0
    assert [(r["config_hash"], r["layer"], r["quantity"]) for r in page["rows"]] == [
        (r["config_hash"], r["layer"], r["quantity"]) for r in expected
    ]


def test_sorts_are_stable_multi_key_and_put_missing_values_last(table: Any) -> None:
    t, _ = table
    rows = t.page(where="", sort=["-std"], offset=0, limit=500)["rows"]
    values = [r["std"] for r in rows]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True) and values[len(present) :] == [None] * (
        len(values) - len(present)
    )
    rows = t.page(where="", sort=["activation", "-layer"], offset=0, limit=500)["rows"]
    keys = [(r["activation"], -r["layer"]) for r in rows]
    assert keys == sorted(keys)


def test_pages_cover_the_rows_once(table: Any) -> None:
    t, want = table
    seen = []
    for offset in range(0, t.n_rows, 7):
        page = t.page(where="", sort=["-mean"], offset=offset, limit=7)
        assert page["total"] == len(want)
        seen += [(r["config_hash"], r["layer"], r["quantity"]) for r in page["rows"]]
    assert len(seen) == len(set(seen)) == len(want)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("actvation=relu", "did you mean 'activation'"),
        ("layer>deep", "expected a number"),
        ("relu", "COLUMN OP VALUE"),
        ("layer~3", "text columns"),
        ('init="unclosed', "closing quotation"),
    ],
)
def test_bad_filters_are_user_errors(table: Any, where: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        table[0].page(where=where, sort=[], offset=0, limit=10)

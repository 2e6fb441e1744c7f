"""Each result column has one kind for typed exports; axis columns get theirs from their values."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.analysis.compare import THEORY_KEYS, THEORY_KINDS
from scheduler.analysis.records import (
    COLUMN_KINDS,
    KINDS,
    PARAM_KEYS,
    RECORD_KEYS,
    STAT_KEYS,
    axis_kind,
    column_kinds,
    columns_for_axes,
    kind_value,
    record_columns,
    record_row,
)
from worker.contract import LayerRecord
from worker.stats import Moments

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, 2, None], "int"),
        ([1.5, None, 2.0], "float"),
        ([1, 1.5], "float"),  # numbers together: float64, exact
        ([1, 2**60], "int"),
        ([1.5, 2**60], "str"),  # an int a float64 cannot hold exactly
        ([2**70], "str"),  # beyond int64
        ([True, False], "bool"),
        ([True, 1], "str"),  # a bool is not a number here
        (["a", None], "str"),
        (["a", 7], "str"),
        ([[1, 2]], "str"),
        ([{"a": 1}], "str"),
        ([float("inf")], "str"),
        ([None, None], "str"),
        ([], "str"),
    ],
)
def test_axis_kind(values: list[Any], kind: str) -> None:
    assert axis_kind(values) == kind


def test_kind_value() -> None:
    assert kind_value(None, "str") is None and kind_value(None, "float") is None
    assert kind_value(1, "float") == 1.0 and isinstance(kind_value(1, "float"), float)
    assert kind_value(7, "str") == "7" and kind_value(True, "str") == "true"
    assert kind_value("a", "str") == "a" and kind_value([1, "x"], "str") == '[1, "x"]'
    assert kind_value({"b": 1, "a": 2}, "str") == '{"a": 2, "b": 1}'
    assert kind_value(3, "int") == 3 and kind_value(False, "bool") is False


def test_every_column_has_a_kind() -> None:
    fixed = ("sweep_id", "config_hash", *PARAM_KEYS, "complete", "layer", "quantity", *STAT_KEYS)
    assert set(COLUMN_KINDS) == set(fixed)
    assert set(THEORY_KINDS) == set(THEORY_KEYS)
    assert set(COLUMN_KINDS.values()) | set(THEORY_KINDS.values()) <= set(KINDS)


def test_columns_follow_the_axes_in_first_seen_order() -> None:
    axes = [{"width": 4, "sigma_w": 1.0}, {"sigma_w": 2, "label": "b"}, {}]
    columns = columns_for_axes(axes)
    head = ["sweep_id", "config_hash", *PARAM_KEYS, "sigma_w", "complete", "label"]
    assert columns == [*head, "layer", "quantity", *STAT_KEYS]
    kinds = column_kinds(columns, axes)
    assert kinds["sigma_w"] == "float" and kinds["label"] == "str" and kinds["width"] == "int"
    assert column_kinds(["x"], [{"x": 1}], known={"x": "str"}) == {"x": "str"}


def test_record_keys_are_record_row_in_order() -> None:
    m = Moments(2, 1.0, 0.5)
    record = LayerRecord(1, "activation", 3, 2, 1, 0, m, m, m)
    assert tuple(record_row(record)) == RECORD_KEYS


def test_record_row_of_a_mean_beyond_the_square_root_of_float64() -> None:
    """A mean of 1e200 (a float64 network past overflow of its squares): no exception, the
    pooled std is no value (its square is beyond float64) and the mean itself is kept."""
    from worker.contract import LayerRecord
    from worker.stats import Moments

    big = Moments.of([1e200, 2e200])
    record = LayerRecord(layer=3, quantity="activation", n_trials=2, n_finite=2,
                         n_first_nonfinite=0, n_collapsed=0, mean=big, std=big,
                         mean_sq=Moments(2, float("inf"), 0.0))  # fmt: skip
    row = record_row(record)
    assert row["mean"] == 1.5e200 and row["pooled_std"] is None


def test_values_beyond_float64_print_as_no_value_and_pooled_std_as_a_float() -> None:
    """Issue 10 item 4: a float64 layer with values ~2^-1000 has mean_sq ~2^-2000, no float64:
    it prints as None (never a false 0), its pooled std 2^-1000 as a float."""
    mean = Moments(4, 0.0, 0.0)
    std = Moments(4, 0.5, 0.01, -999)  # 2^-1000
    mean_sq = Moments(4, 0.5, 0.01, -1999)  # 2^-2000
    row = record_row(LayerRecord(900, "preactivation", 4, 4, 0, 0, mean, std, mean_sq))
    assert row["mean_sq"] is None and row["mean_sq_se"] is None
    assert row["std"] == 2.0**-1000 and row["mean"] == 0.0
    assert row["pooled_std"] == 2.0**-1000
    huge = Moments(4, 0.5, 0.01, 1999)
    row = record_row(LayerRecord(900, "preactivation", 4, 4, 0, 0, mean, std, huge))
    assert row["mean_sq"] is None and row["pooled_std"] == 2.0**999  # sqrt(2^1998)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.floats(-2, 2),
            st.floats(0, 4),
            st.sampled_from([0, 0, -2000, -1100, -600, 600, 1100]),
        ),
        min_size=3,
        max_size=3,
    )
)
def test_record_columns_have_record_row_bits_for_scaled_moments(
    parts: list[tuple[int, float, float, int]],
) -> None:
    n = parts[0][0]
    ms = [Moments(n, mean, m2, e) if n else Moments() for _, mean, m2, e in parts]
    row = record_row(LayerRecord(1, "gradient", n, n, 0, 0, *ms))
    arrays = {
        name: (np.array([m.mean]), np.array([m.m2]), np.array([m.exp2]))
        for name, m in zip(("mean", "std", "mean_sq"), ms, strict=True)
    }
    cols = record_columns(np.array([n]), arrays)
    for key, (values, shown) in cols.items():
        want = row[key]
        if want is None:
            assert not shown[0], key
        else:
            assert shown[0] and struct.pack("<d", values[0]) == struct.pack("<d", want), key

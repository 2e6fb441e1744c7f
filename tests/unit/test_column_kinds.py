"""Each result column has one kind for typed exports; axis columns get theirs from their values."""

from __future__ import annotations

from typing import Any

import pytest

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

"""Mergeable moments: split-and-merge equals the whole, associativity, masks, LayerRecord.merge."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.contract import LayerRecord, merge_records
from worker.stats import (
    Moments,
    MomentsArray,
    moments_columns,
    pooled_std,
    pooled_std_array,
    scale_float,
)

pytestmark = pytest.mark.unit

REL = 1e-9
values = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=0,
    max_size=60,
)


def assert_moments_close(a: Moments, b: Moments, data: list[float]) -> None:
    """Equal counts; mean and m2 (unscaled) within REL of the data's scale (float64 rounding)."""
    assert a.n == b.n
    scale = max((abs(x) for x in data), default=0.0)
    assert abs(a.value - b.value) <= REL * scale + 1e-300
    m2_a, m2_b = (scale_float(m.m2, 2 * m.exp2) for m in (a, b))
    assert abs(m2_a - m2_b) <= REL * (scale * scale * max(a.n, 1)) + 1e-300


@settings(max_examples=300, deadline=None)
@given(values, values)
def test_merge_of_split_equals_whole(a: list[float], b: list[float]) -> None:
    merged = Moments.of(a).merge(Moments.of(b))
    assert_moments_close(merged, Moments.of(a + b), a + b)


@settings(max_examples=200, deadline=None)
@given(values, values, values)
def test_merge_is_associative(a: list[float], b: list[float], c: list[float]) -> None:
    ma, mb, mc = Moments.of(a), Moments.of(b), Moments.of(c)
    assert_moments_close(ma.merge(mb).merge(mc), ma.merge(mb.merge(mc)), a + b + c)


@settings(max_examples=100, deadline=None)
@given(values, st.integers(min_value=1, max_value=7))
def test_merging_many_pieces_in_order_equals_whole(data: list[float], pieces: int) -> None:
    cuts = np.array_split(np.array(data, dtype=np.float64), pieces)
    total = Moments()
    for part in cuts:
        total = total.merge(Moments.of(part))
    assert_moments_close(total, Moments.of(data), data)


def test_empty_is_the_identity() -> None:
    m = Moments.of([1.0, 2.0, 4.0])
    assert m.merge(Moments()) == m
    assert Moments().merge(m) == m
    assert Moments.of([]) == Moments()


def test_known_values_and_small_n() -> None:
    m = Moments.of([1.0, 2.0, 3.0, 4.0])
    assert (m.n, m.mean, m.m2) == (4, 2.5, 5.0)
    assert m.variance == pytest.approx(5 / 3)
    assert m.sem == pytest.approx(math.sqrt(5 / 3 / 4))
    one = Moments.of([7.0])
    assert math.isnan(one.variance) and math.isnan(one.std) and math.isnan(one.sem)


def test_merge_is_stable_for_a_large_offset() -> None:
    """Chan's update keeps the variance of 1e9 + noise; sum(x^2) - n mean^2 would not."""
    rng = np.random.default_rng(0)
    x = 1e9 + rng.standard_normal(10_000)
    parts = np.array_split(x, 13)
    total = Moments()
    for p in parts:
        total = total.merge(Moments.of(p))
    assert total.variance == pytest.approx(np.var(x, ddof=1), rel=1e-6)


def test_moments_columns_masks_nonfinite_rows() -> None:
    vals = np.array([[1.0, np.inf], [2.0, 5.0], [np.nan, 7.0], [4.0, np.nan]])
    mask = np.isfinite(vals)
    cols = moments_columns(vals, mask)
    assert cols[0] == Moments.of([1.0, 2.0, 4.0])
    assert cols[1] == Moments.of([5.0, 7.0])
    none = moments_columns(np.full((3, 1), np.nan), np.zeros((3, 1), dtype=bool))
    assert none == [Moments()]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=1, max_size=30),
    st.data(),
)
def test_moments_columns_equals_moments_of(data: list[float], draw: st.DataObject) -> None:
    mask = np.array(draw.draw(st.lists(st.booleans(), min_size=len(data), max_size=len(data))))
    col = moments_columns(np.array(data)[:, None], mask[:, None])[0]
    want = Moments.of(np.array(data)[mask])
    assert_moments_close(col, want, data)


def record(layer: int, quantity: str, data: list[float], bad: int = 0) -> LayerRecord:
    m = Moments.of(data)
    return LayerRecord(layer, quantity, len(data) + bad, len(data), bad, 0, m, m, m)


def test_layer_record_merge_adds_counts_and_pools_moments() -> None:
    a = record(3, "gradient", [1.0, 2.0], bad=1)
    b = record(3, "gradient", [3.0, 4.0, 5.0])
    ab = a.merge(b)
    assert (ab.n_trials, ab.n_finite, ab.n_first_nonfinite, ab.n_collapsed) == (6, 5, 1, 0)
    assert_moments_close(ab.mean, Moments.of([1.0, 2.0, 3.0, 4.0, 5.0]), [5.0])
    with pytest.raises(ValueError):
        a.merge(record(4, "gradient", [1.0]))
    with pytest.raises(ValueError):
        a.merge(record(3, "activation", [1.0]))


@settings(max_examples=100, deadline=None)
@given(values, values, values)
def test_layer_record_merge_is_associative(a: list[float], b: list[float], c: list[float]) -> None:
    ra, rb, rc = record(1, "activation", a), record(1, "activation", b), record(1, "activation", c)
    left, right = ra.merge(rb).merge(rc), ra.merge(rb.merge(rc))
    assert left.n_trials == right.n_trials == len(a + b + c)
    for name in ("mean", "std", "mean_sq"):
        assert_moments_close(getattr(left, name), getattr(right, name), a + b + c)


def test_merge_records_groups_and_orders() -> None:
    chunk1 = [
        record(1, "gradient", [1.0]),
        record(0, "activation", [2.0]),
        record(1, "preactivation", [3.0]),
    ]
    chunk2 = [
        record(1, "preactivation", [5.0]),
        record(0, "activation", [4.0]),
        record(1, "gradient", [6.0]),
    ]
    merged = merge_records([chunk1, chunk2])
    assert [r.key for r in merged] == [(0, "activation"), (1, "preactivation"), (1, "gradient")]
    assert [r.n_trials for r in merged] == [2, 2, 2]
    assert merged[1].mean.mean == 4.0


# --- scaled form: samples beyond float64's range (issue 10, item 4) ---


def _exact(mantissas: np.ndarray, exps: np.ndarray) -> tuple[Fraction, Fraction]:
    """Exact mean and M2 of the sample m_i 2^e_i."""
    xs = [Fraction(float(m)) * Fraction(2) ** int(e) for m, e in zip(mantissas, exps, strict=True)]
    mean = sum(xs, Fraction(0)) / len(xs)
    return mean, sum(((x - mean) ** 2 for x in xs), Fraction(0))


def _scaled(m: Moments) -> tuple[Fraction, Fraction]:
    two = Fraction(2)
    return Fraction(m.mean) * two**m.exp2, Fraction(m.m2) * two ** (2 * m.exp2)


@pytest.mark.parametrize("center", [-2000, -1100, -500, 0, 500, 1100, 2000])
def test_moments_of_values_beyond_float64_are_exact(center: int) -> None:
    rng = np.random.default_rng(center + 5000)
    mant = rng.uniform(0.5, 4.0, size=(40, 1))
    exps = (center + rng.integers(-3, 4, size=(40, 1))).astype(np.float64)
    mask = rng.random((40, 1)) < 0.8
    got = moments_columns(mant, mask, exps)[0]
    mean, m2 = _exact(mant[mask[:, 0], 0], exps[mask[:, 0], 0])
    g_mean, g_m2 = _scaled(got)
    assert got.n == int(mask.sum())
    assert abs(g_mean - mean) <= Fraction(1e-14) * mean
    assert abs(g_m2 - m2) <= Fraction(1e-12) * m2
    assert abs(got.exp2 - center) <= 8 or center == 0  # scaled near its values


def test_merge_across_exponents_equals_the_whole() -> None:
    rng = np.random.default_rng(3)
    mant = rng.uniform(0.5, 2.0, size=(30, 1))
    exps = np.full((30, 1), -1500.0)
    exps[:10] = -1490.0
    whole = moments_columns(mant, np.ones((30, 1), bool), exps)[0]
    a = moments_columns(mant[:10], np.ones((10, 1), bool), exps[:10])[0]
    b = moments_columns(mant[10:], np.ones((20, 1), bool), exps[10:])[0]
    for merged in (a.merge(b), b.merge(a)):
        (m1, v1), (m2, v2) = _scaled(merged), _scaled(whole)
        assert abs(m1 - m2) <= Fraction(1e-14) * m2 and abs(v1 - v2) <= Fraction(1e-12) * v2


def test_zeros_merged_with_tiny_values_keep_the_tiny_values() -> None:
    zeros = Moments.of([0.0, 0.0])
    tiny = Moments(2, 0.75, 0.125, -1500)
    for merged in (zeros.merge(tiny), tiny.merge(zeros)):
        assert merged.exp2 == -1500 and merged.mean == 0.375 and merged.n == 4


def test_ordinary_moments_keep_their_bits() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 3)) * np.array([1.0, 1e-100, 1e100])
    got = moments_columns(x, np.ones(x.shape, bool))
    mean = x.sum(axis=0) / 50  # the unscaled two-pass column sums, as before the scaled form
    m2 = ((x - mean) ** 2).sum(axis=0)
    assert [(m.exp2, m.mean, m.m2) for m in got] == list(zip([0] * 3, mean, m2, strict=True))


moments_st = st.builds(
    Moments,
    st.integers(min_value=0, max_value=5),
    st.floats(min_value=-4, max_value=4),
    st.floats(min_value=0, max_value=16),
    st.sampled_from([0, 0, -3, 7, -1500, 1200]),
).map(lambda m: m if m.n else Moments())


def _array(ms: list[Moments]) -> MomentsArray:
    return MomentsArray(
        np.array([m.n for m in ms], dtype=np.int64),
        np.array([m.mean for m in ms]),
        np.array([m.m2 for m in ms]),
        np.array([m.exp2 for m in ms], dtype=np.int64),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(moments_st, moments_st), min_size=1, max_size=8))
def test_vectorised_merge_and_pooled_std_have_the_scalar_bits(
    pairs: list[tuple[Moments, Moments]],
) -> None:
    a, b = _array([p[0] for p in pairs]), _array([p[1] for p in pairs])
    got = a.merge(b).items()
    assert got == [x.merge(y) for x, y in pairs]
    arr = pooled_std_array((a.mean, a.exp2), (b.mean, b.exp2))
    want = [pooled_std(x, y) for x, y in pairs]
    assert [struct.pack("<d", v) for v in arr] == [struct.pack("<d", v) for v in want]

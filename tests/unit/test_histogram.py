"""Log-spaced histograms and fourth-order moments: exact merges, storage, quantile guarantees."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.histogram import (
    BINS_PER_OCTAVE,
    DTYPE_EXPONENTS,
    K_MIN,
    Histogram,
    batch_quantiles,
    bin_index,
    decode_many,
    histogram_columns,
    k_span,
    keys,
    many_quantiles,
)
from worker.stats import Moments4, moments4_columns

pytestmark = pytest.mark.unit

R = BINS_PER_OCTAVE
signed = st.floats(allow_nan=False, allow_infinity=False, width=64)
samples = st.lists(signed, min_size=0, max_size=80)


def exact_bin(x: float, per_octave: int = R) -> int:
    """floor(per_octave log2 x) exactly: x = M 2^E (M an integer), so
    floor(log2 x^R) = bit_length(M^R) - 1 + E R."""
    mantissa, exponent = Fraction(x).as_integer_ratio()
    shift = exponent.bit_length() - 1  # the denominator is a power of two
    return (mantissa**per_octave).bit_length() - 1 - shift * per_octave


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=5e-324, max_value=1.7e308))
def test_bin_index_is_floor_of_r_log2(x: float) -> None:
    # bin edges are the float64 values nearest 2^(j/R) (times 2^e): only an edge itself that
    # lies below the true 2^(j/R) may be a bin above the exact floor
    k, exact = int(bin_index([x])[0]), exact_bin(x)
    assert k == exact or (k == exact + 1 and bin_index([np.nextafter(x, 0.0)])[0] == exact)


def test_each_edge_opens_its_bin_and_is_the_nearest_float() -> None:
    for j in range(1, R):
        t = bin_index([2.0 ** (j / R)], R)[0]
        lo = float(np.nextafter(2.0 ** (j / R), 0.0))
        assert bin_index([lo])[0] <= t
        # the threshold used is the float nearest the true 2^(j/R): no float between
        true = Fraction(2) ** j
        cands = [
            np.nextafter(2.0 ** (j / R), -1.0),
            2.0 ** (j / R),
            np.nextafter(2.0 ** (j / R), 3.0),
        ]
        best = min(cands, key=lambda c: abs(Fraction(float(c)) ** R - true))
        assert bin_index([float(best)])[0] == j
        assert bin_index([float(np.nextafter(best, 0.0))])[0] == j - 1


def test_bin_index_of_the_root_bins_the_square() -> None:
    rng = np.random.default_rng(3)
    rms = np.exp(rng.uniform(-700, 700, 2000))
    for r, k in zip(rms, bin_index(rms, 2 * R), strict=True):
        assert k == exact_bin(float(r), 2 * R)  # floor(2R log2 r) = floor(R log2 r^2)


@settings(max_examples=300, deadline=None)
@given(samples, samples)
def test_merge_of_split_equals_whole_exactly(a: list[float], b: list[float]) -> None:
    ka, kb = keys(a, "float64"), keys(b, "float64")
    whole = Histogram.of_keys(np.concatenate([ka, kb]))
    assert Histogram.of_keys(ka).merge(Histogram.of_keys(kb)) == whole
    assert Histogram.of_keys(kb).merge(Histogram.of_keys(ka)) == whole
    assert whole.n == len(a) + len(b)


@settings(max_examples=200, deadline=None)
@given(samples)
def test_encode_decode_round_trip(a: list[float]) -> None:
    h = Histogram.of_keys(keys(a, "float64"))
    assert Histogram.decode(h.encode()) == h


def test_large_counts_and_keys_round_trip() -> None:
    h = Histogram((-(1 << 20), -3, 0, 5, 1 << 21), (1, 10**9, 128, 300, 2**40))
    assert Histogram.decode(h.encode()) == h
    assert Histogram.decode(Histogram().encode()) == Histogram()


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x02\x00\x00",
        b"\x01\x00",
        b"\x01\x00\x02\x05",
        b"\x01\x80",
        b"\x01\x02\x02\x00\x01\x01",
    ],
)
def test_decode_refuses_bytes_it_did_not_write(blob: bytes) -> None:
    with pytest.raises(ValueError, match="histogram"):
        Histogram.decode(blob)


@settings(max_examples=100, deadline=None)
@given(st.lists(samples, min_size=0, max_size=12))
def test_decode_many_is_decode_of_each(arrays: list[list[float]]) -> None:
    hists = [Histogram.of_keys(keys(a, "float64")) for a in arrays]
    hists.append(Histogram((-(1 << 20), -3, 0, 5, 1 << 21), (1, 10**9, 128, 300, 2**40)))
    blobs = [h.encode() for h in hists]
    assert decode_many(blobs) == [Histogram.decode(b) for b in blobs]


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x02\x00\x00",
        b"\x01",
        b"\x01\x00",
        b"\x01\x00\x02\x05",
        b"\x01\x80",
        b"\x01\x02\x02\x00\x01\x01",
        b"\x01\x02\x02\x00\x01\x81",  # the last count runs into the next histogram
    ],
)
def test_decode_many_refuses_any_bytes_decode_refuses(blob: bytes) -> None:
    good = Histogram((1, 4), (2, 3)).encode()
    with pytest.raises(ValueError, match="histogram"):
        decode_many([good, blob, good])


def test_keys_order_like_values() -> None:
    values = np.array([-1e300, -2.0, -1.99, -1e-300, 0.0, 1e-300, 1.0, 1.02, 7.0, 1e300])
    k = keys(values, "float64")
    assert (np.diff(k) > 0).all()
    assert k[4] == 0


def test_storage_is_about_two_bytes_per_bin() -> None:
    x = np.random.default_rng(0).chisquare(256, 1000) / 256
    h = Histogram.of_keys(keys(x, "float32"))
    assert len(h.encode()) <= 2 * len(h.keys) + 8


@pytest.mark.parametrize("dtype", list(DTYPE_EXPONENTS))
def test_dtype_span_holds_the_dtypes_range_and_clips_beyond(dtype: str) -> None:
    s, e = DTYPE_EXPONENTS[dtype]
    lo, hi = k_span(dtype)
    assert lo >= K_MIN
    largest_sq = float(np.ldexp(1.0 - 2.0**-8, 2 * e - 1)) if e < 512 else 1.7e308
    inside = [2.0 ** (2 * s - 64) if 2 * s - 64 > -1074 else 5e-324, largest_sq]
    k = bin_index(inside)
    assert lo <= k[0] and k[1] <= hi
    if e < 512:  # float64's span is every float64
        clipped = keys([2.0 ** (2 * e + 1), -(2.0 ** (2 * e + 1))], dtype)
        assert clipped[0] == hi - K_MIN + 1 and clipped[1] == -(hi - K_MIN + 1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e200, max_value=1e200), min_size=1, max_size=200),
    st.floats(min_value=0.001, max_value=0.999),
)
def test_quantile_lies_in_the_bin_of_the_order_statistic(a: list[float], p: float) -> None:
    x = np.sort(np.array(a))
    h = Histogram.of_keys(keys(x, "float64"))
    q = h.quantile(p)
    order_stat = float(x[math.ceil(p * len(x)) - 1])
    if order_stat == 0.0:
        assert q == 0.0
    else:  # same sign, within a factor 2^(1/R) (the bin, closed)
        assert np.sign(q) == np.sign(order_stat)
        assert abs(math.log2(abs(q) / abs(order_stat))) <= 1.0 / R + 1e-12


@settings(max_examples=200, deadline=None)
@given(st.lists(signed, min_size=1, max_size=100), signed)
def test_tail_bounds_hold_the_exact_fraction(a: list[float], x: float) -> None:
    h = Histogram.of_keys(keys(a, "float64"))
    lo, hi = h.tail(x)
    exact = float(np.mean(np.array(a) > x))
    assert lo <= exact <= hi


def test_quantile_and_tail_of_nothing_and_bad_p() -> None:
    assert math.isnan(Histogram().quantile(0.5))
    assert all(math.isnan(v) for v in Histogram().tail(1.0))
    with pytest.raises(ValueError, match="0 < p < 1"):
        Histogram.of_keys([5]).quantile(1.0)


def test_histogram_columns_match_one_column_at_a_time() -> None:
    rng = np.random.default_rng(5)
    k = keys(rng.standard_normal((50, 7)) * np.exp(rng.normal(0, 30, (50, 7))), "float64")
    mask = rng.random((50, 7)) < 0.8
    mask[:, 3] = False
    cols = histogram_columns(k, mask)
    for j in range(7):
        assert cols[j] == Histogram.of_keys(k[mask[:, j], j])
    assert cols[3] == Histogram()


# --- Moments4 ---

finite = st.lists(st.floats(min_value=-1e4, max_value=1e4), min_size=0, max_size=60)


def close(a: Moments4, b: Moments4, data: list[float]) -> None:
    assert a.n == b.n
    scale = max((abs(x) for x in data), default=0.0) + 1.0
    for k, part in enumerate(("mean", "m2", "m3", "m4"), start=1):
        bound = 1e-8 * scale**k * max(a.n, 1)
        assert abs(getattr(a, part) - getattr(b, part)) <= bound, part


@settings(max_examples=300, deadline=None)
@given(finite, finite)
def test_moments4_merge_of_split_equals_whole(a: list[float], b: list[float]) -> None:
    close(Moments4.of(a).merge(Moments4.of(b)), Moments4.of(a + b), a + b)


def test_moments4_known_values_and_columns() -> None:
    x = [1.0, 2.0, 4.0, 9.0]
    m = Moments4.of(x)
    d = np.array(x) - 4.0
    assert (m.n, m.mean, m.m2, m.m3, m.m4) == (4, 4.0, *(float((d**k).sum()) for k in (2, 3, 4)))
    values = np.array([x, [0.0, 1.0, 2.0, 3.0]]).T
    cols = moments4_columns(values, np.array([[1, 1], [1, 1], [1, 0], [1, 1]], dtype=bool))
    assert cols[0] == m and cols[1] == Moments4.of([0.0, 1.0, 3.0])
    assert math.isnan(Moments4.of([1.0, 2.0, 3.0]).variance_se)


def test_variance_se_matches_the_spread_of_the_sample_variance() -> None:
    """Gaussian samples: Var[s^2] = 2 sigma^4 / (n - 1); the estimate's average agrees."""
    rng = np.random.default_rng(7)
    n, sigma = 200, 1.5
    ses = [Moments4.of(rng.normal(0.0, sigma, n)).variance_se for _ in range(400)]
    exact = math.sqrt(2.0 * sigma**4 / (n - 1))
    assert abs(float(np.mean(ses)) - exact) < 0.05 * exact


def test_batch_quantiles_are_the_per_record_quantiles_bit_for_bit() -> None:
    rng = np.random.default_rng(9)
    ps = [0.05, 0.5, 0.95, 0.999]
    hists = [
        Histogram.of_keys(keys(rng.standard_normal(n) * np.exp(rng.normal(0, s, n)), "float64"))
        for n, s in ((1, 0.0), (7, 1.0), (300, 0.1), (2000, 50.0), (40, 0.0))
    ]
    hists.insert(2, Histogram())
    hists.append(Histogram((1, 5), (10**6, 3)))  # counts of several bytes
    blobs: list[bytes | None] = [h.encode() for h in hists]
    blobs.insert(1, None)
    values, valid = batch_quantiles(blobs, ps)
    expected = [hists[0], None, *hists[1:]]
    for row, (hist, got, ok) in enumerate(zip(expected, values, valid, strict=True)):
        if hist is None or not hist.keys:
            assert not ok.any(), row
            continue
        want = hist.quantiles(ps)
        assert ok.all() and [float(g) for g in got] == want, row
    with pytest.raises(ValueError, match="histogram"):
        batch_quantiles([b"\x01\x00\x05"], ps)


def test_many_quantiles_are_each_histograms_quantiles_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    ps = [0.05, 0.5, 0.95]
    hists = [
        Histogram.of_keys(keys(rng.standard_normal(n) * np.exp(rng.normal(0, s, n)), "float64"))
        for n, s in ((1, 0.0), (9, 2.0), (500, 0.3), (64, 30.0))
    ]
    hists.insert(1, Histogram())
    hists.append(Histogram((-3, 0, 7), (2, 10**5, 1)))
    found = many_quantiles(hists, ps)
    assert found.shape == (len(hists), len(ps))
    assert np.isnan(found[1]).all()
    for row, hist in enumerate(hists):
        if hist.keys:
            assert found[row].tolist() == hist.quantiles(ps), row
    assert many_quantiles([], ps).shape == (0, 3)

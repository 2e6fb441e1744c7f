"""Fixed log-spaced histograms of per-trial observables: integer counts, merged by addition.

The lattice (one for every dtype, so histograms of any two chunks of a configuration share
their bins and merge exactly, by adding counts, in any order and for any sub-batching):

    R = BINS_PER_OCTAVE = 64 bins per factor of two
    v != 0 falls in bin k = floor(R log2 |v|):  2^(k/R) <= |v| < 2^((k+1)/R)
    (relative bin width 2^(1/R) - 1 = 1.09%, the log-bucket design of DDSketch: Masson, Rim &
    Lee 2019, "DDSketch: a fast and fully-mergeable quantile sketch with relative-error
    guarantees", without its bucket collapsing: a dtype's range is finite)

A bin is named by one signed integer key, ordered like the values it holds:

    key = 0 for v == 0,   key = +(k - K_MIN + 1) for v > 0,   key = -(k - K_MIN + 1) for v < 0

`K_MIN` is below every k a float64 value (or the mean_sq of one) can have. k is computed with
no transcendental function deciding it: frexp splits |v| = m 2^e exactly (m in [1, 2)) and the
bin inside the octave is the number of thresholds 2^(j/R) (j = 1..R-1) at or below m
(log2 guesses it, comparisons with the thresholds settle it). The thresholds are the correctly rounded float64 values
of 2^(j/R), computed once with `decimal`, so a value's key is the same on every machine and in
every array, whatever its length or position (no SIMD-tail effect; docs/core.md, "Seeding").

Dtype-aware span: a finite trial of a dtype with smallest subnormal 2^s and largest finite
value below 2^E has observables |v| < 2^E and mean_sq < 2^(2E), and any nonzero mean, std or
mean_sq is at least 2^(2s - 64) (a mean of batch x units <= 2^36 values on the 2^s grid);
`k_span(dtype)` is that range of k, and `keys` clips into it (the first and last bins of the
span hold everything at or beyond it, which values of that dtype never reach).

Storage (`Histogram.encode`): a version byte, then unsigned LEB128 integers: the first key
(zigzag), the number of bins n, the n - 1 gaps between consecutive keys, the n counts. Bins
hold ~1 byte of gap and ~1 byte of count each, and only nonzero bins are stored, so a record
costs about 2 bytes per occupied bin (a few hundred bytes for 1000 trials), not the span.

Reading (`Histogram.quantile`): the p-quantile is read at rank t = p N in the bin whose
cumulative count first reaches t, interpolated linearly between that bin's edges (`edges`:
the thresholds, so exact); that bin holds the order statistic X_(ceil(t)), so the estimate is
within a factor 2^(1/R) of it. `batch_quantiles` reads many stored histograms at once.
`tail(x)` bounds the fraction of trials above x exactly (the bin of x is the only unknown).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np
import numpy.typing as npt

__all__ = [
    "BINS_PER_OCTAVE",
    "DTYPE_EXPONENTS",
    "K_MIN",
    "Histogram",
    "batch_quantiles",
    "bin_index",
    "bin_values",
    "decode_many",
    "edges",
    "histogram_columns",
    "k_span",
    "keys",
    "keys_from_index",
    "many_quantiles",
]

BINS_PER_OCTAVE = 64
VERSION = 1
# (s, E): smallest subnormal 2^s and the bound 2^E on finite values of each compute dtype.
DTYPE_EXPONENTS: dict[str, tuple[int, int]] = {
    "float16": (-24, 16),
    "bfloat16": (-133, 128),
    "float32": (-149, 128),
    "float64": (-1074, 1024),
}
K_MIN = BINS_PER_OCTAVE * (2 * DTYPE_EXPONENTS["float64"][0] - 64)


def _thresholds(per_octave: int) -> npt.NDArray[np.float64]:
    """Correctly rounded 2^(j/per_octave) for j = 1..per_octave-1 (decimal, machine-free)."""
    with localcontext() as ctx:
        ctx.prec = 40
        return np.array(
            [float(Decimal(2) ** (Decimal(j) / Decimal(per_octave))) for j in range(1, per_octave)]
        )


_THRESHOLDS = {r: _thresholds(r) for r in (BINS_PER_OCTAVE, 2 * BINS_PER_OCTAVE)}
_TABLES = {r: np.concatenate(([1.0], t, [2.0])) for r, t in _THRESHOLDS.items()}


def bin_index(x: npt.ArrayLike, per_octave: int = BINS_PER_OCTAVE) -> npt.NDArray[np.int64]:
    """floor(per_octave * log2 x) of finite x > 0 (exact: frexp and comparisons decide).

    `per_octave` is BINS_PER_OCTAVE, or twice it: the bin of x^2 is `bin_index(x, 2 R)`, which
    bins a mean_sq from its root where the mean_sq itself is beyond float64. log2 of the
    mantissa only guesses the bin (it is off by at most one); comparisons with the table of
    edges then settle it, so the result is the same whatever log2's last bit.
    """
    a = np.asarray(x, dtype=np.float64)
    m, e = np.frexp(a)  # a = m 2^e, m in [0.5, 1)
    m = 2.0 * m  # in [1, 2), exact
    table = _TABLES[per_octave]  # edges 2^(j/R), j = 0..R
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = np.floor(per_octave * np.log2(m))
    j = np.clip(np.nan_to_num(guess), 0, per_octave - 1).astype(np.int64)
    j -= m < table[j]
    j += m >= table[j + 1]
    return per_octave * (e.astype(np.int64) - 1) + j


def k_span(dtype: str) -> tuple[int, int]:
    """The bins k a finite trial of `dtype` can occupy, inclusive (module docstring)."""
    s, e = DTYPE_EXPONENTS[dtype]
    return BINS_PER_OCTAVE * (2 * s - 64), BINS_PER_OCTAVE * 2 * e - 1


def keys_from_index(
    k: npt.NDArray[np.int64], sign: npt.NDArray[np.float64], dtype: str
) -> npt.NDArray[np.int64]:
    """Keys of values with bin k (clipped to the dtype's span) and sign (0 gives key 0)."""
    lo, hi = k_span(dtype)
    magnitude = np.clip(k, lo, hi) - K_MIN + 1
    return np.where(sign > 0, magnitude, np.where(sign < 0, -magnitude, 0)).astype(np.int64)


def keys(values: npt.ArrayLike, dtype: str) -> npt.NDArray[np.int64]:
    """The key of each finite value (any shape; module docstring)."""
    v = np.asarray(values, dtype=np.float64)
    mag = np.abs(v)
    k = bin_index(np.where(mag > 0.0, mag, 1.0))
    return keys_from_index(k, np.sign(v), dtype)


_EDGES = np.concatenate(([1.0], _THRESHOLDS[BINS_PER_OCTAVE]))  # 2^(j/R), j = 0..R-1


def edges(k: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The lower edge of bin k: the threshold 2^(j/R) of `bin_index`, times 2^(k div R)
    (exact: a table and ldexp; +inf beyond float64)."""
    kk = np.asarray(k, dtype=np.int64)
    with np.errstate(over="ignore"):
        return np.ldexp(_EDGES[kk % BINS_PER_OCTAVE], (kk // BINS_PER_OCTAVE).astype(np.int32))


def bin_values(bin_keys: npt.ArrayLike, positions: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The value at `positions` in [0, 1] through the bins of `bin_keys`, in ascending order of
    value: lo + position (hi - lo) between the bin's edges (0 for key 0).

    Elementwise IEEE arithmetic only, so a value is the same bit for bit whatever the array
    (one record's quantiles and a whole export batch's agree)."""
    key = np.asarray(bin_keys, dtype=np.int64)
    pos = np.asarray(positions, dtype=np.float64)
    k = np.abs(key) - 1 + K_MIN
    lo, hi = edges(k), edges(k + 1)
    with np.errstate(invalid="ignore", over="ignore"):
        up = lo + pos * (hi - lo)
        down = -(hi - pos * (hi - lo))
    return np.where(key > 0, up, np.where(key < 0, down, 0.0))


def _uleb(values: Iterable[int]) -> bytes:
    out = bytearray()
    for value in values:
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


_SMALL = 64  # bytes: below, a plain loop decodes faster than the vectorised path starts


def _unuleb(data: bytes) -> npt.NDArray[np.int64]:
    """Every unsigned LEB128 integer of `data` (vectorised; one byte each is the common case)."""
    if len(data) <= _SMALL:
        try:
            return np.array(_unuleb_small(data), dtype=np.int64)
        except OverflowError:
            raise ValueError("histogram: integer too large") from None
    a = np.frombuffer(data, dtype=np.uint8)
    if a.size and a[-1] >= 0x80:
        raise ValueError("histogram: truncated integer")
    if not (a >= 0x80).any():
        return a.astype(np.int64)
    ends = np.flatnonzero(a < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    if (ends - starts).max() > 8:
        raise ValueError("histogram: integer too long")
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    shift = 7 * (np.arange(a.size) - starts[group])
    parts = (a & 0x7F).astype(np.int64) << shift
    return np.bitwise_or.reduceat(parts, starts)


def _unuleb_small(data: bytes) -> list[int]:
    """`_unuleb` of a few bytes, byte by byte (the same integers and the same errors)."""
    out: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            out.append(value)
            value = shift = 0
        else:
            shift += 7
            if shift > 56:
                raise ValueError("histogram: integer too long")
    if shift:
        raise ValueError("histogram: truncated integer")
    return out


@dataclass(frozen=True)
class Histogram:
    """Counts of trials per bin: `keys` sorted ascending and distinct, `counts` positive."""

    keys: tuple[int, ...] = ()
    counts: tuple[int, ...] = ()

    @classmethod
    def of_keys(cls, trial_keys: npt.ArrayLike) -> Histogram:
        """The histogram of trials with these keys."""
        k, c = np.unique(np.asarray(trial_keys, dtype=np.int64), return_counts=True)
        return cls(tuple(k.tolist()), tuple(c.tolist()))

    @property
    def n(self) -> int:
        return sum(self.counts)

    def merge(self, other: Histogram) -> Histogram:
        """The histogram of the union of two disjoint sets of trials (exact integer sums)."""
        if not other.keys:
            return self
        if not self.keys:
            return other
        total = dict(zip(self.keys, self.counts, strict=True))
        for key, count in zip(other.keys, other.counts, strict=True):
            total[key] = total.get(key, 0) + count
        ordered = sorted(total)
        return Histogram(tuple(ordered), tuple(total[k] for k in ordered))

    def encode(self) -> bytes:
        """The storage bytes (module docstring)."""
        if not self.keys:
            return bytes([VERSION, 0, 0])
        first = self.keys[0]
        zigzag = 2 * first if first >= 0 else -2 * first - 1
        gaps = (b - a for a, b in zip(self.keys, self.keys[1:], strict=False))
        return bytes([VERSION]) + _uleb([zigzag, len(self.keys), *gaps, *self.counts])

    @classmethod
    def decode(cls, data: bytes) -> Histogram:
        """The histogram of `encode`'s bytes; ValueError for bytes it did not write."""
        if not data or data[0] != VERSION:
            raise ValueError(f"histogram: expected version {VERSION}. Received: {data[:1]!r}")
        values = _unuleb(data[1:])
        if values.size < 2:
            raise ValueError("histogram: expected at least 2 integers")
        zigzag, n = int(values[0]), int(values[1])
        if values.size != 2 * n + 1 + (n == 0):
            raise ValueError(f"histogram: expected {2 * n} integers after the header")
        if n == 0:
            return cls()
        first = zigzag // 2 if zigzag % 2 == 0 else -(zigzag + 1) // 2
        gaps, counts = values[2 : n + 1], values[n + 1 :]
        if (gaps <= 0).any() or (counts <= 0).any():
            raise ValueError("histogram: expected positive gaps and counts")
        found = first + np.concatenate(([0], np.cumsum(gaps)))
        return cls(tuple(found.tolist()), tuple(counts.tolist()))

    def quantile(self, p: float) -> float:
        """The p-quantile (0 < p < 1) of the trials, log-interpolated in its bin; nan if empty.

        Within a factor 2^(1/R) of the order statistic X_(ceil(p N)) (module docstring).
        """
        return self.quantiles([p])[0]

    def quantiles(self, ps: Sequence[float]) -> list[float]:
        """`quantile` of each of `ps`, in one pass over the bins."""
        _check_ps(ps)
        if not self.keys:
            return [math.nan] * len(ps)
        found = _quantiles(np.asarray(self.keys), np.asarray(self.counts), np.array([0]), ps)
        return [float(v) for v in found[0]]

    def tail(self, x: float) -> tuple[float, float]:
        """Bounds (lo, hi) on the fraction of trials whose value exceeds x; nans if empty."""
        if not self.keys:
            return math.nan, math.nan
        if math.isnan(x):
            raise ValueError("x: expected a number. Received: nan")
        n = self.n
        if math.isinf(x):
            return (0.0, 0.0) if x > 0 else (1.0, 1.0)
        key = int(keys([x], "float64")[0])
        pairs = list(zip(self.keys, self.counts, strict=True))
        above = sum(c for k, c in pairs if k > key)
        # the bin of x may hold trials on either side of x; the zero bin holds exactly 0 = x
        at = 0 if key == 0 else sum(c for k, c in pairs if k == key)
        return above / n, (above + at) / n


def _check_ps(ps: Sequence[float]) -> None:
    if any(not 0.0 < p < 1.0 for p in ps):
        raise ValueError(f"p: expected 0 < p < 1. Received: {list(ps)}")


def _quantiles(
    bin_keys: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    ps: Sequence[float],
) -> npt.NDArray[np.float64]:
    """Quantiles (histograms x ps) of nonempty histograms laid end to end: histogram i holds
    bins starts[i]..starts[i+1]-1 of `bin_keys`/`counts` (module docstring, "Reading")."""
    cum = np.cumsum(counts)
    ends = np.append(starts[1:], len(counts)) - 1
    base = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0)
    total = cum[ends] - base
    t = total[:, None].astype(np.float64) * np.asarray(ps, dtype=np.float64)[None, :]
    at = np.searchsorted(cum, base[:, None] + t, side="left")  # first bin with cum >= t
    at = np.minimum(at, ends[:, None])
    below = np.where(at > 0, cum[np.maximum(at - 1, 0)], 0) - base[:, None]
    position = np.clip((t - below) / counts[at], 0.0, 1.0)
    return bin_values(bin_keys[at], position)


def many_quantiles(hists: Sequence[Histogram], ps: Sequence[float]) -> npt.NDArray[np.float64]:
    """`h.quantiles(ps)` of each of `hists` at once (one search over all bins), bit for bit:
    (hists x ps), nan rows for empty histograms."""
    _check_ps(ps)
    out = np.full((len(hists), len(ps)), np.nan)
    rows = [i for i, h in enumerate(hists) if h.keys]
    if not rows:
        return out
    sizes = np.array([len(hists[i].keys) for i in rows])
    bin_keys = np.fromiter(
        itertools.chain.from_iterable(hists[i].keys for i in rows), np.int64, int(sizes.sum())
    )
    counts = np.fromiter(
        itertools.chain.from_iterable(hists[i].counts for i in rows), np.int64, int(sizes.sum())
    )
    out[rows] = _quantiles(bin_keys, counts, np.cumsum(sizes) - sizes, ps)
    return out


@dataclass(frozen=True)
class _Bins:
    """Many stored histograms decoded end to end: histogram i holds bins starts[i]..starts[i] +
    sizes[i] - 1 of `keys`/`counts` (sizes[i] = 0: empty)."""

    sizes: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    keys: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]


def _decode_bins(datas: Sequence[bytes]) -> _Bins:
    """`Histogram.decode` of each of `datas` at once (one LEB128 pass over all their bytes),
    the same bins; ValueError if any of them is not bytes `encode` wrote."""
    if any(len(d) < 2 or d[0] != VERSION for d in datas):
        raise ValueError(f"histogram: expected version {VERSION} and integers in every one")
    payload = b"".join(d[1:] for d in datas)
    raw = np.frombuffer(payload, dtype=np.uint8)
    lengths = np.array([len(d) - 1 for d in datas], dtype=np.int64)
    first_byte = np.cumsum(lengths) - lengths
    if (raw[first_byte + lengths - 1] >= 0x80).any():
        raise ValueError("histogram: truncated integer")  # no integer runs into the next one
    values = _unuleb(payload)
    # integers per histogram: its bytes below 0x80 (each integer ends with one)
    ints = np.add.reduceat((raw < 0x80).astype(np.int64), first_byte)
    if (ints < 2).any():
        raise ValueError("histogram: expected at least 2 integers")
    offsets = np.cumsum(ints) - ints
    n = values[offsets + 1]
    if not np.array_equal(ints, np.where(n > 0, 2 * n + 1, 2)):
        raise ValueError("histogram: expected 2n + 1 integers in every stored histogram")
    zz = values[offsets]
    first = np.where(zz % 2 == 0, zz // 2, -(zz + 1) // 2)
    sizes = np.where(n > 0, n, 0)
    starts = np.cumsum(sizes) - sizes
    seg = np.repeat(np.arange(sizes.size), sizes)
    within = np.arange(int(sizes.sum())) - starts[seg]
    gap_at = offsets[seg] + 1 + within  # gap i-1 of a bin i > 0 at offset + 2 + (i - 1)
    gaps = np.where(within > 0, values[gap_at], 0)
    cum_gaps = np.cumsum(gaps)
    head = within == 0
    keys = first[seg] + cum_gaps - np.repeat((cum_gaps - gaps)[head], sizes[sizes > 0])
    counts = values[offsets[seg] + 1 + sizes[seg] + within]
    if (gaps[~head] <= 0).any() or (counts <= 0).any():
        raise ValueError("histogram: expected positive gaps and counts")
    return _Bins(sizes, starts, keys, counts)


def decode_many(blobs: Sequence[bytes]) -> list[Histogram]:
    """`[Histogram.decode(b) for b in blobs]`, vectorised (the same histograms)."""
    if not blobs:
        return []
    bins = _decode_bins([bytes(b) for b in blobs])
    keys, counts = bins.keys.tolist(), bins.counts.tolist()
    out = []
    for a, size in zip(bins.starts.tolist(), bins.sizes.tolist(), strict=True):
        out.append(Histogram(tuple(keys[a : a + size]), tuple(counts[a : a + size])))
    return out


def batch_quantiles(
    blobs: Sequence[bytes | None], ps: Sequence[float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """`Histogram.decode(blob).quantiles(ps)` of many stored histograms at once (vectorised:
    one decode and one search for all), bit for bit; (values (blobs x ps), where present:
    not None and not empty)."""
    _check_ps(ps)
    out = np.full((len(blobs), len(ps)), np.nan)
    present = [i for i, b in enumerate(blobs) if b is not None]
    if not present:
        return out, np.zeros(out.shape, dtype=bool)
    bins = _decode_bins([bytes(blobs[i]) for i in present])  # type: ignore[arg-type]
    rows = np.flatnonzero(bins.sizes > 0)
    found = (
        _quantiles(bins.keys, bins.counts, bins.starts[rows], ps)
        if rows.size
        else np.zeros((0, len(ps)))
    )
    index = np.array(present)[rows]
    out[index] = found
    valid = np.zeros(out.shape, dtype=bool)
    valid[index] = np.isfinite(found)
    return out, valid


def histogram_columns(
    trial_keys: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]
) -> list[Histogram]:
    """One Histogram per column of `trial_keys` (trials x columns) over the rows where `mask`."""
    k = np.asarray(trial_keys, dtype=np.int64)
    m = np.asarray(mask, dtype=bool)
    n_cols = k.shape[1]
    column = np.broadcast_to(np.arange(n_cols), k.shape)[m]
    span = np.int64(1) << 40  # > 2 |key| for every key
    codes, counts = np.unique(column * span + (k[m] + span // 2), return_counts=True)
    cols = codes // span
    found = codes % span - span // 2
    cuts = np.searchsorted(cols, np.arange(n_cols + 1))
    return [
        Histogram(tuple(found[a:b].tolist()), tuple(counts[a:b].tolist()))
        for a, b in itertools.pairwise(cuts.tolist())
    ]

"""Mergeable sufficient statistics of a scalar over trials (count, mean, M2), in float64, in a
scaled form that represents samples beyond float64's range.

`Moments(n, mean, m2, exp2)` stands for a sample with mean `mean * 2^exp2` and sum of squared
deviations M2 = sum_i (x_i - mean)^2 = `m2 * 4^exp2`. `exp2` is 0 for every sample whose values
lie in [SAFE_LO, SAFE_HI] (or are 0): then (n, mean, m2) are the plain float64 moments, bit for
bit. A sample outside that range (float64 activations past ~400 layers of growth or decay, or
their mean_sq, whose per-trial value x_i = m_i 2^{e_i} need not be a float64 at all) is scaled by
a power of two 2^-exp2 near 1/max|x| (exact) first, so no square, sum or variance overflows or
underflows before the values do.

Two disjoint samples merge exactly (Chan, Golub & LeVeque 1979, "Updating formulae and a
pairwise algorithm for computing sample variances"), once both are on one exponent:

    delta = mean_b - mean_a,  n = n_a + n_b
    mean  = mean_a + delta * n_b / n
    m2    = m2_a + m2_b + delta^2 * n_a * n_b / n

The merge is associative up to float rounding and deterministic for a fixed order, so the
aggregate of a configuration merged in chunk-index order is bit-identical however the chunks were
scheduled. A variance is never computed as sum(x^2) - n mean^2 (catastrophic cancellation).
`MomentsArray` is the same arithmetic on arrays (one entry per layer), operation for operation,
so a vectorised merge has the bits of the scalar one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Samples whose max |x| lies in [SAFE_LO, SAFE_HI] (or is 0) are reduced unscaled: n * max|x|^2
# neither overflows nor underflows in float64 for any n < 2^60.
SAFE_LO = 2.0**-400
SAFE_HI = 2.0**480


def scale_float(x: float, e: int) -> float:
    """x * 2^e as a float64: +-inf beyond float64, 0 (or subnormal) below it; never raises."""
    if x == 0.0 or not math.isfinite(x):
        return x
    _, k = math.frexp(x)
    if k + e > 1024:
        return math.copysign(math.inf, x)
    return math.ldexp(x, max(e, -2200))


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of a sample, scaled by 2^exp2 (see module)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    exp2: int = 0

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Moments:
        """Two-pass moments of a 1-D sample of ordinary float64 values (exp2 = 0)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if x.size == 0:
            return cls()
        mean = float(x.mean())
        with np.errstate(over="ignore"):  # beyond float64: an infinite M2, as the values say
            return cls(int(x.size), mean, float(np.sum((x - mean) ** 2)))

    def _magnitude(self) -> float:
        """log2-ish size of the sample (-inf when every value is 0)."""
        top = max(abs(self.mean), math.sqrt(self.m2) if self.m2 > 0 else 0.0)
        return -math.inf if top == 0.0 else self.exp2 + math.frexp(top)[1]

    def _at(self, exp2: int) -> tuple[float, float]:
        """(mean, m2) rescaled to exponent exp2 (exact unless the result underflows)."""
        d = self.exp2 - exp2
        return scale_float(self.mean, d), scale_float(self.m2, 2 * d)

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of two disjoint samples (Chan et al.), on the exponent of the
        larger of the two (the other rescaled by a power of two: exact, or negligible)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        if self.exp2 == other.exp2:
            e = self.exp2
            (mean_a, m2_a), (mean_b, m2_b) = (self.mean, self.m2), (other.mean, other.m2)
        else:
            e = self.exp2 if self._magnitude() >= other._magnitude() else other.exp2
            (mean_a, m2_a), (mean_b, m2_b) = self._at(e), other._at(e)
        n = self.n + other.n
        delta = mean_b - mean_a
        mean = mean_a + delta * (other.n / n)
        m2 = m2_a + m2_b + delta * delta * (self.n * other.n / n)
        return Moments(n, mean, m2, e)

    @property
    def value(self) -> float:
        """The sample mean as a float64 (+-inf beyond float64's range, 0 below it)."""
        return scale_float(self.mean, self.exp2)

    @property
    def representable(self) -> bool:
        """The sample mean is a finite float64 (it neither overflows nor flushes to 0)."""
        v = self.value
        return math.isfinite(v) and (v != 0.0 or self.mean == 0.0)

    @property
    def variance(self) -> float:
        """Unbiased sample variance (ddof=1); nan when n < 2."""
        return scale_float(self.m2 / (self.n - 1), 2 * self.exp2) if self.n > 1 else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1) of the trial values."""
        if self.n < 2:
            return math.nan
        return scale_float(math.sqrt(self.m2 / (self.n - 1)), self.exp2)

    @property
    def sem(self) -> float:
        """Standard error of the mean, sqrt(var / n); nan when n < 2."""
        if self.n < 2:
            return math.nan
        return scale_float(math.sqrt(self.m2 / (self.n - 1) / self.n), self.exp2)


def _scale_array(x: npt.NDArray[np.float64], e: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """x * 2^e elementwise (inf beyond float64, 0 below it), as `scale_float`."""
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(x, np.clip(e, -2200, 2200).astype(np.int32))


@dataclass(frozen=True)
class MomentsArray:
    """`Moments` of many samples (one per column, e.g. per layer): arrays of one shape."""

    n: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    m2: npt.NDArray[np.float64]
    exp2: npt.NDArray[np.int64]

    @classmethod
    def of(
        cls,
        values: npt.NDArray[np.float64],
        mask: npt.NDArray[np.bool_],
        exps: npt.NDArray[np.float64] | None = None,
    ) -> MomentsArray:
        """Two-pass moments of each column of `values` (trials x columns) over the rows where
        `mask` is True; row i's value is values[i] * 2^exps[i] (exps: integers, default 0).

        A column whose masked values are all of exponent 0 and in [SAFE_LO, SAFE_HI] (or 0) is
        reduced as it is (exp2 = 0); any other is first scaled by 2^-exp2, exp2 the largest
        binary exponent of its values, so every scaled value is below 1 in magnitude.
        Masked-out entries never enter the sums (they may be inf/nan).
        """
        x = np.asarray(values, dtype=np.float64)
        m = np.asarray(mask, dtype=bool)
        safe = np.where(m, x, 0.0)
        e = np.zeros(x.shape, np.int64) if exps is None else np.where(m, exps, 0).astype(np.int64)
        peak = np.abs(safe).max(axis=0, initial=0.0)
        ordinary = ~(e != 0).any(axis=0) & ((peak == 0.0) | ((peak >= SAFE_LO) & (peak <= SAFE_HI)))
        _, k = np.frexp(safe)
        low = np.iinfo(np.int64).min
        top = np.where(safe != 0.0, k + e, low).max(axis=0, initial=low)
        col_e = np.where(ordinary | (peak == 0.0), 0, top).astype(np.int64)
        scaled = np.where(ordinary, safe, _scale_array(safe, e - col_e))
        n = m.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = np.where(n > 0, scaled.sum(axis=0) / np.maximum(n, 1), 0.0)
            dev = np.where(m, scaled - mean, 0.0)
            m2 = (dev * dev).sum(axis=0)
        return cls(n.astype(np.int64), mean, m2, col_e)

    def merge(self, other: MomentsArray) -> MomentsArray:
        """Elementwise `Moments.merge` (the same operations, hence the same bits)."""
        a_empty, b_empty = self.n == 0, other.n == 0

        def magnitude(s: MomentsArray) -> npt.NDArray[np.float64]:
            top = np.maximum(np.abs(s.mean), np.sqrt(np.maximum(s.m2, 0.0)))
            _, k = np.frexp(top)
            return np.where(top == 0.0, -np.inf, s.exp2 + k)

        same = self.exp2 == other.exp2
        e = np.where(same | (magnitude(self) >= magnitude(other)), self.exp2, other.exp2).astype(
            np.int64
        )
        mean_a = np.where(same, self.mean, _scale_array(self.mean, self.exp2 - e))
        m2_a = np.where(same, self.m2, _scale_array(self.m2, 2 * (self.exp2 - e)))
        mean_b = np.where(same, other.mean, _scale_array(other.mean, other.exp2 - e))
        m2_b = np.where(same, other.m2, _scale_array(other.m2, 2 * (other.exp2 - e)))
        n = self.n + other.n
        nn = np.maximum(n, 1).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            delta = mean_b - mean_a
            mean = mean_a + delta * (other.n / nn)
            m2 = m2_a + m2_b + delta * delta * ((self.n * other.n) / nn)
        pick = [b_empty, a_empty]
        return MomentsArray(
            n,
            np.select(pick, [self.mean, other.mean], mean),
            np.select(pick, [self.m2, other.m2], m2),
            np.select(pick, [self.exp2, other.exp2], e).astype(np.int64),
        )

    def item(self, j: int) -> Moments:
        """The `Moments` of column j."""
        return Moments(int(self.n[j]), float(self.mean[j]), float(self.m2[j]), int(self.exp2[j]))

    def items(self) -> list[Moments]:
        """The `Moments` of every column."""
        return [self.item(j) for j in range(self.n.shape[0])]


def moments_columns(
    values: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    exps: npt.NDArray[np.float64] | None = None,
) -> list[Moments]:
    """`MomentsArray.of(values, mask, exps).items()`: one `Moments` per column."""
    return MomentsArray.of(values, mask, exps).items()


def pooled_std(mean: Moments, mean_sq: Moments) -> float:
    """sqrt(max(E_t[mean_sq] - E_t[mean]^2, 0)) of the same trials, from the scaled forms (exact
    where it is a float64 even when E_t[mean_sq] is not). Plain float64 for exp2 = 0."""
    if mean.exp2 == 0 and mean_sq.exp2 == 0:
        # mean * mean, not mean**2: a mean beyond 1.34e154 squares to inf, where ** would raise
        return math.sqrt(max(mean_sq.mean - mean.mean * mean.mean, 0.0))
    e = mean_sq.exp2
    spread = mean_sq.mean - scale_float(mean.mean * mean.mean, 2 * mean.exp2 - e)
    if not spread > 0.0:
        return 0.0 if spread <= 0.0 else math.nan
    return scale_float(math.sqrt(math.ldexp(spread, e % 2)), e // 2)


def scaled_values(
    mean: npt.NDArray[np.float64], exp2: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Elementwise `Moments.value` and `Moments.representable` of scaled means."""
    v = _scale_array(mean, exp2)
    return v, np.isfinite(v) & ((v != 0.0) | (mean == 0.0))


def pooled_std_array(
    mean: tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]],
    mean_sq: tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]],
) -> npt.NDArray[np.float64]:
    """Elementwise `pooled_std` of (mean, exp2) pairs, operation for operation."""
    (m, em), (q, eq) = mean, mean_sq
    with np.errstate(invalid="ignore", over="ignore"):
        plain_spread = q - m * m  # pooled_std's mean * mean, the same correctly rounded square
        plain = np.sqrt(np.where(plain_spread < 0.0, 0.0, plain_spread))  # max(spread, 0.0)
        spread = q - _scale_array(m * m, 2 * em - eq)
        root = np.sqrt(np.where(spread > 0.0, np.ldexp(spread, (eq % 2).astype(np.int32)), 0.0))
        scaled = np.where(spread > 0.0, _scale_array(root, eq // 2), 0.0)
        scaled = np.where(np.isnan(spread), np.nan, scaled)
    return np.where((em == 0) & (eq == 0), plain, scaled)


@dataclass(frozen=True)
class Moments4:
    """Count, mean and central sums m_k = sum_i (x_i - mean)^k, k = 2, 3, 4 (float64).

    Two disjoint samples merge exactly (Pébay 2008, "Formulas for robust, one-pass parallel
    computation of covariances and arbitrary-order statistical moments", eqs. 3.1-3.3), with
    delta = mean_b - mean_a, n = n_a + n_b:

        m2 = m2_a + m2_b + delta^2 n_a n_b / n
        m3 = m3_a + m3_b + delta^3 n_a n_b (n_a - n_b) / n^2 + 3 delta (n_a m2_b - n_b m2_a) / n
        m4 = m4_a + m4_b + delta^4 n_a n_b (n_a^2 - n_a n_b + n_b^2) / n^3
             + 6 delta^2 (n_a^2 m2_b + n_b^2 m2_a) / n^2 + 4 delta (n_a m3_b - n_b m3_a) / n

    m4 gives the standard error of the variance: Var[s^2] = mu_4 / n - sigma^4 (n - 3) / (n (n - 1)).
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Moments4:
        """Two-pass moments of a 1-D sample (float64)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if x.size == 0:
            return cls()
        mean = float(x.mean())
        d = x - mean
        d2 = d * d
        return cls(
            int(x.size), mean, float(d2.sum()), float((d2 * d).sum()), float((d2 * d2).sum())
        )

    def merge(self, other: Moments4) -> Moments4:
        """Moments of the union of two disjoint samples (Pébay 2008)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = other.mean - self.mean
        d_n = delta / n
        mean = self.mean + d_n * nb
        m2 = self.m2 + other.m2 + delta * d_n * na * nb
        m3 = (
            self.m3
            + other.m3
            + delta * d_n * d_n * na * nb * (na - nb)
            + 3.0 * d_n * (na * other.m2 - nb * self.m2)
        )
        m4 = (
            self.m4
            + other.m4
            + delta * d_n * d_n * d_n * na * nb * (na * na - na * nb + nb * nb)
            + 6.0 * d_n * d_n * (na * na * other.m2 + nb * nb * self.m2)
            + 4.0 * d_n * (na * other.m3 - nb * self.m3)
        )
        return Moments4(self.n + other.n, mean, m2, m3, m4)

    @property
    def variance(self) -> float:
        """Unbiased sample variance s^2 (ddof=1); nan when n < 2."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @property
    def sem(self) -> float:
        """Standard error of the mean, sqrt(s^2 / n); nan when n < 2."""
        return math.sqrt(self.variance / self.n) if self.n > 1 else math.nan

    @property
    def variance_se(self) -> float:
        """Standard error of s^2: sqrt(m4/n^2 - s^4 (n - 3) / (n (n - 1))); nan when n < 4."""
        if self.n < 4:
            return math.nan
        n = float(self.n)
        s2 = self.variance
        return math.sqrt(max(0.0, self.m4 / (n * n) - s2 * s2 * (n - 3.0) / (n * (n - 1.0))))


@dataclass(frozen=True)
class Moments4Array:
    """`Moments4` of many samples (one per column, e.g. per layer): arrays of one shape."""

    n: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    m2: npt.NDArray[np.float64]
    m3: npt.NDArray[np.float64]
    m4: npt.NDArray[np.float64]

    @classmethod
    def of(cls, values: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]) -> Moments4Array:
        """Two-pass moments of each column of `values` (trials x columns) over the rows where
        `mask` is True (masked-out entries, which may be inf/nan, never enter the sums)."""
        x = np.asarray(values, dtype=np.float64)
        m = np.asarray(mask, dtype=bool)
        n = m.sum(axis=0)
        safe = np.where(m, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mean = np.where(n > 0, safe.sum(axis=0) / np.maximum(n, 1), 0.0)
            d = np.where(m, x - mean, 0.0)
            d2 = d * d
            m2, m3, m4 = d2.sum(axis=0), (d2 * d).sum(axis=0), (d2 * d2).sum(axis=0)
        return cls(n.astype(np.int64), mean, m2, m3, m4)

    def merge(self, other: Moments4Array) -> Moments4Array:
        """Elementwise `Moments4.merge` (the same operations, hence the same bits)."""
        na, nb = self.n.astype(np.float64), other.n.astype(np.float64)
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            delta = other.mean - self.mean
            d_n = delta / np.where(n > 0, n, 1.0)
            mean = self.mean + d_n * nb
            m2 = self.m2 + other.m2 + delta * d_n * na * nb
            m3 = (
                self.m3
                + other.m3
                + delta * d_n * d_n * na * nb * (na - nb)
                + 3.0 * d_n * (na * other.m2 - nb * self.m2)
            )
            m4 = (
                self.m4
                + other.m4
                + delta * d_n * d_n * d_n * na * nb * (na * na - na * nb + nb * nb)
                + 6.0 * d_n * d_n * (na * na * other.m2 + nb * nb * self.m2)
                + 4.0 * d_n * (na * other.m3 - nb * self.m3)
            )
        pick = [other.n == 0, self.n == 0]
        return Moments4Array(
            self.n + other.n,
            *(
                np.select(pick, [a, b], merged)
                for a, b, merged in (
                    (self.mean, other.mean, mean),
                    (self.m2, other.m2, m2),
                    (self.m3, other.m3, m3),
                    (self.m4, other.m4, m4),
                )
            ),
        )

    def items(self) -> list[Moments4]:
        """The `Moments4` of every column."""
        return [
            Moments4(int(n), float(a), float(b), float(c), float(d))
            for n, a, b, c, d in zip(
                self.n.tolist(), self.mean, self.m2, self.m3, self.m4, strict=True
            )
        ]


def moments4_columns(
    values: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]
) -> list[Moments4]:
    """`Moments4Array.of(values, mask).items()`: one `Moments4` per column."""
    return Moments4Array.of(values, mask).items()

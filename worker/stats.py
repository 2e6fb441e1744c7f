"""Mergeable sufficient statistics of a scalar over trials (count, mean, M2), in float64.

`Moments(n, mean, m2)` with m2 = sum_i (x_i - mean)^2. Two disjoint samples merge exactly
(Chan, Golub & LeVeque 1979, "Updating formulae and a pairwise algorithm for computing sample
variances"):

    delta = mean_b - mean_a,  n = n_a + n_b
    mean  = mean_a + delta * n_b / n
    m2    = m2_a + m2_b + delta^2 * n_a * n_b / n

The merge is associative up to float rounding and deterministic for a fixed order, so the
aggregate of a configuration merged in chunk-index order is bit-identical however the chunks were
scheduled. A variance is never computed as sum(x^2) - n mean^2 (catastrophic cancellation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of a sample (float64)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Moments:
        """Two-pass moments of a 1-D sample (float64)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if x.size == 0:
            return cls()
        mean = float(x.mean())
        return cls(int(x.size), mean, float(np.sum((x - mean) ** 2)))

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of two disjoint samples (Chan et al.)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta * delta * (self.n * other.n / n)
        return Moments(n, mean, m2)

    @property
    def variance(self) -> float:
        """Unbiased sample variance (ddof=1); nan when n < 2."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1) of the trial values."""
        return math.sqrt(self.variance) if self.n > 1 else math.nan

    @property
    def sem(self) -> float:
        """Standard error of the mean, sqrt(var / n); nan when n < 2."""
        return math.sqrt(self.variance / self.n) if self.n > 1 else math.nan


def moments_columns(values: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]) -> list[Moments]:
    """Moments of each column of `values` (trials x columns) over the rows where `mask` is True.

    Two-pass per column in float64; masked-out entries never enter the sums (they may be inf/nan).
    """
    x = np.asarray(values, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    n = m.sum(axis=0)
    safe = np.where(m, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.where(n > 0, safe.sum(axis=0) / np.maximum(n, 1), 0.0)
        dev = np.where(m, x - mean, 0.0)
        m2 = (dev * dev).sum(axis=0)
    return [Moments(int(n[j]), float(mean[j]), float(m2[j])) for j in range(x.shape[1])]


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


def moments4_columns(
    values: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_]
) -> list[Moments4]:
    """`Moments4` of each column of `values` (trials x columns) over the rows where `mask`."""
    x = np.asarray(values, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    n = m.sum(axis=0)
    safe = np.where(m, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.where(n > 0, safe.sum(axis=0) / np.maximum(n, 1), 0.0)
        d = np.where(m, x - mean, 0.0)
        d2 = d * d
        m2, m3, m4 = d2.sum(axis=0), (d2 * d).sum(axis=0), (d2 * d2).sum(axis=0)
    return [
        Moments4(int(n[j]), float(mean[j]), float(m2[j]), float(m3[j]), float(m4[j]))
        for j in range(x.shape[1])
    ]

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

"""An activation's Gaussian moments tabulated on a grid of log q, with bounds of the error.

`MomentTable(activation)` evaluates `gaussian.moments_at_log_qs` once on the grid
lambda_k = LO + k h (h = STEP, LO <= lambda <= HI) and interpolates each field linearly in
between. For a field f, twice continuously differentiable in lambda, the linear interpolant is
within h^2 max|f''| / 8 of f; the second differences of the grid, f_{k+1} - 2 f_k + f_{k-1}
= h^2 f''(xi), estimate h^2 |f''| where it is measured, and `error[field]` is SAFETY times the
largest of them over 8 (the bound with its estimate's margin). `slope_bound[field]` is the
largest |f_{k+1} - f_k| / h plus that error over h: how fast the field can move per unit of
lambda (a Lipschitz bound for propagating an error in lambda itself).

The table is for screening many walks at once (`spec.exactness`): a decision that clears a
threshold by more than the propagated error bound is the decision of the exact moments; one
that does not is taken again with them. A homogeneous activation (phi = a+ u, u > 0; a- u,
u < 0) needs no grid: its fields are closed forms at every log q (`gaussian`'s; errors 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from scheduler.analysis.theory.gaussian import (
    ActivationMoments,
    FloatArray,
    activation_fns,
    moments_at_log_qs,
)
from worker.contract import Scheme

__all__ = ["FIELDS", "HI", "LO", "STEP", "MomentTable", "OutOfTable", "moment_table"]

STEP = 1.0 / 16.0
LO, HI = -40.0, 40.0
SAFETY = 4.0
# ActivationMoments' fields, and log E[phi'^2] (tabulated too: gradients add its logarithm)
FIELDS = (
    "mean",
    "mean_sq",
    "deriv_sq",
    "curvature",
    "kurtosis",
    "log_mean_sq",
    "log_slope",
    "log_deriv_sq",
)


class OutOfTable(ValueError):
    """A log q outside [LO, HI], or a field that is not finite on the table."""


class MomentTable:
    """`moments_at_log_qs(activation, .)` on the grid, interpolated (module docstring)."""

    def __init__(self, activation: Scheme) -> None:
        self.activation = activation
        self.homogeneous = activation_fns(activation).homogeneous
        self.grid: FloatArray = np.arange(LO, HI + STEP / 2.0, STEP)
        self.lo, self.hi = (-np.inf, np.inf) if self.homogeneous else (LO, HI)
        self.columns: dict[str, FloatArray] = {}
        self.error: dict[str, float] = {}
        self.slope_bound: dict[str, float] = {}
        self._m2n = self._kurtosis = 0.0
        if self.homogeneous is not None:
            self.error = dict.fromkeys(FIELDS, 0.0)
            self.slope_bound = dict.fromkeys(FIELDS, 0.0)
            self.slope_bound["log_mean_sq"] = 1.0  # log E phi^2 = log m + log q
            a_pos, a_neg = self.homogeneous
            self._m2n = (a_pos**2 + a_neg**2) / 2.0
            self._kurtosis = moments_at_log_qs(activation, [0.0])[0].kurtosis
            return
        exact = moments_at_log_qs(activation, self.grid.tolist())
        columns = {name: np.array([getattr(m, name) for m in exact]) for name in FIELDS[:-1]}
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["log_deriv_sq"] = np.log(columns["deriv_sq"])
        self.columns = columns
        for name, f in columns.items():
            if not np.all(np.isfinite(f)):
                self.error[name] = self.slope_bound[name] = float("inf")
                continue
            second = np.abs(np.diff(f, 2))
            self.error[name] = SAFETY * float(second.max(initial=0.0)) / 8.0
            step = float(np.abs(np.diff(f)).max(initial=0.0))
            self.slope_bound[name] = (step + 2.0 * self.error[name]) / STEP

    def field(self, name: str, log_qs: Sequence[float] | FloatArray) -> FloatArray:
        """Field `name` interpolated at each log q (any shape); OutOfTable outside [lo, hi]."""
        x = np.asarray(log_qs, dtype=np.float64)
        if x.size and not (float(x.min()) >= self.lo and float(x.max()) <= self.hi):
            raise OutOfTable(f"log q outside the table [{LO:g}, {HI:g}]")
        if self.homogeneous is not None:
            return self._closed_form(name, x)
        out: FloatArray = np.interp(x, self.grid, self.columns[name])
        return out

    def clamped(self, name: str, log_qs: FloatArray) -> FloatArray:
        """`field` at log q clipped into [lo, hi] (NaN read as lo): a walk that leaves the
        table is its caller's to refuse."""
        x = np.clip(np.nan_to_num(log_qs, nan=LO), self.lo, self.hi)
        return self.field(name, x)

    def _closed_form(self, name: str, x: FloatArray) -> FloatArray:
        """A homogeneous activation's field at log q = x (`gaussian._homogeneous_moments`)."""
        a_pos, a_neg = self.homogeneous or (1.0, 1.0)
        m2n, ones = self._m2n, np.ones_like(x)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            q = np.exp(x)
            values = {
                "mean": (a_pos - a_neg) * np.sqrt(q) / math.sqrt(2.0 * math.pi),
                "mean_sq": m2n * q,
                "deriv_sq": m2n * ones,
                "curvature": 0.0 * ones,
                "kurtosis": self._kurtosis * ones,
                "log_mean_sq": (math.log(m2n) if m2n > 0 else -math.inf) + x,
                "log_slope": ones,
                "log_deriv_sq": (math.log(m2n) if m2n > 0 else -math.inf) * ones,
            }
        return values[name]

    def moments_at(self, activation: Scheme, log_qs: Sequence[float]) -> list[ActivationMoments]:
        """ActivationMoments interpolated at each log q, clamped into [LO, HI] (a `norm_walks`
        moments rule; a walk that leaves the table is its caller's to refuse)."""
        if activation != self.activation:
            raise OutOfTable(f"a table of {self.activation.label}, asked for {activation.label}")
        x = np.clip(np.asarray(log_qs, dtype=np.float64), self.lo, self.hi)
        values = [self.field(name, x).tolist() for name in FIELDS[:-1]]
        return [ActivationMoments(*row) for row in zip(*values, strict=True)]


@lru_cache(maxsize=32)
def moment_table(activation: Scheme) -> MomentTable:
    """The table of `activation`, built once per process."""
    return MomentTable(activation)

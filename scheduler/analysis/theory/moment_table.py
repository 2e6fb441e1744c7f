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
that does not is taken again with them. Homogeneous activations have closed forms and are not
tabulated.
"""

from __future__ import annotations

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
        if activation_fns(activation).homogeneous is not None:
            raise OutOfTable(f"{activation.label}: homogeneous, its moments are closed forms")
        self.activation = activation
        self.grid: FloatArray = np.arange(LO, HI + STEP / 2.0, STEP)
        exact = moments_at_log_qs(activation, self.grid.tolist())
        columns = {name: np.array([getattr(m, name) for m in exact]) for name in FIELDS[:-1]}
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["log_deriv_sq"] = np.log(columns["deriv_sq"])
        self.columns = columns
        self.error: dict[str, float] = {}
        self.slope_bound: dict[str, float] = {}
        for name, f in columns.items():
            if not np.all(np.isfinite(f)):
                self.error[name] = self.slope_bound[name] = float("inf")
                continue
            second = np.abs(np.diff(f, 2))
            self.error[name] = SAFETY * float(second.max(initial=0.0)) / 8.0
            step = float(np.abs(np.diff(f)).max(initial=0.0))
            self.slope_bound[name] = (step + 2.0 * self.error[name]) / STEP

    def field(self, name: str, log_qs: Sequence[float] | FloatArray) -> FloatArray:
        """Field `name` interpolated at each log q; OutOfTable outside [LO, HI]."""
        x = np.asarray(log_qs, dtype=np.float64)
        if x.size and not (float(x.min()) >= LO and float(x.max()) <= HI):
            raise OutOfTable(f"log q outside the table [{LO:g}, {HI:g}]")
        out: FloatArray = np.interp(x, self.grid, self.columns[name])
        return out

    def moments_at(self, activation: Scheme, log_qs: Sequence[float]) -> list[ActivationMoments]:
        """ActivationMoments interpolated at each log q, clamped into [LO, HI] (a `norm_walks`
        moments rule; a walk that leaves the table is its caller's to refuse)."""
        if activation != self.activation:
            raise OutOfTable(f"a table of {self.activation.label}, asked for {activation.label}")
        x = np.clip(np.asarray(log_qs, dtype=np.float64), LO, HI)
        values = [self.field(name, x).tolist() for name in FIELDS[:-1]]
        return [ActivationMoments(*row) for row in zip(*values, strict=True)]


@lru_cache(maxsize=32)
def moment_table(activation: Scheme) -> MomentTable:
    """The table of `activation`, built once per process (OutOfTable for closed forms)."""
    return MomentTable(activation)

"""Depth scales from data: xi_c from the decay of |c^l - c*|, xi_grad from the gradient's growth.

Both are weighted least-squares lines through the logarithm of a measured per-layer value y_l
with standard error s_l, on layer l, with the delta method's errors sigma_l = s_l / |y_l| for
log|y_l| (first order in s_l / |y_l|; the log's bias -sigma_l^2 / 2 is below 0.03 where the
rules below keep a layer). With weights w_l = 1 / sigma_l^2, S = sum w, Sx = sum w l,
Sxx = sum w l^2, Sy = sum w log|y|, Sxy = sum w l log|y| and Delta = S Sxx - Sx^2:

    slope b = (S Sxy - Sx Sy) / Delta,   SE(b) = sqrt(S / Delta) * max(1, sqrt(chi^2 / (k - 2)))

over k layers (chi^2 = sum w (log|y| - a - b l)^2: the SE is inflated by the Birge ratio where
the points scatter more than their errors, never deflated; with k = 2 it is not inflated).

Correlation (Schoenholz et al. 2017, eq. 8): c^l - c* ~ A exp(-l / xi_c), so b = -1 / xi_c and

    xi_c = -1 / b,   SE(xi_c) = SE(b) / b^2   (delta method).

Layers kept: the first layer where |c^l - c*| >= 4 SE and every following one while that holds
with the same sign; the run ends at the first layer that fails (the deviation is then lost in
noise, and a later layer above 4 SE by chance would bias the slope). c* is the theory's
(`correlation.CorrelationTheory.c_star`); the fit tests the decay rate, not the fixed point.

Gradient (Schoenholz et al. 2017, eq. 15): E[|g^l|^2] ~ chi_1^(D - l), so log mean_sq^l =
const - l log chi_1 and b = -log chi_1 = 1 / xi_grad:

    xi_grad = 1 / b,   SE(xi_grad) = SE(b) / b^2

(xi_grad > 0: gradients vanish towards the input; < 0: they explode). Layers kept: every one
whose mean_sq is positive and finite with a relative SE below 1/4.

Theory beside data. Only near c* is the C-map linear, so the asymptotic xi_c describes the
measured decay only where c^l is close to c* (and q^l to q*: otherwise the q-map's transient,
rate xi_q, adds to it); from a c^0 far from c* the first layers, which weigh most, decay at
another rate. `fit_like` fits the theory's own per-layer values (`correlation.correlation_map`,
or `meanfield.predict`'s gradient mean_sq) on exactly the layers and SEs of a data fit: the two
slopes then differ only where the data disagree with the map, z = (xi_data - xi_theory) / SE.

Both fits give no value, with the reason, where the decay is not measurable: fewer than 3 layers
kept, or a slope within 2 SE of 0 (the depth scale is then long against the layers measured;
the reason states the bound |xi| > 1 / (|b| + 2 SE(b))), or a correlation slope that is not a
decay (b >= 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MIN_LAYERS",
    "THRESHOLD",
    "DepthFit",
    "fit_depth_scale",
    "fit_gradient_scale",
    "fit_like",
]

# A layer's deviation must be this many standard errors from 0 to be fitted (and the gradient's
# relative SE below 1 / THRESHOLD).
THRESHOLD = 4.0
# Fewest layers a fit uses.
MIN_LAYERS = 3
# A slope within this many standard errors of 0 is no measurable decay.
_SIGNIFICANT = 2.0


@dataclass(frozen=True)
class DepthFit:
    """A fitted depth scale: xi +- se from slope +- slope_se of log|y| on layer (module
    docstring), over `layers`, with the fit's chi^2 on dof = k - 2 degrees of freedom. xi and
    se are None when the decay is not measurable; `reason` then says why (None when fitted)."""

    xi: float | None
    se: float | None
    slope: float | None
    slope_se: float | None
    intercept: float | None
    layers: tuple[int, ...]
    chi2: float | None
    dof: int
    reason: str | None


def _arrays(*values: Sequence[float]) -> list[np.ndarray]:
    arrays = [np.asarray(v, dtype=np.float64) for v in values]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError(
            "layers: expected one value and one SE per layer. Received shapes "
            + ", ".join(str(a.shape) for a in arrays)
        )
    return arrays


def _no_fit(layers: Sequence[int], reason: str, line: tuple[float, ...] = ()) -> DepthFit:
    slope, slope_se, intercept, chi2 = line if line else (None, None, None, None)
    dof = max(0, len(layers) - 2)
    return DepthFit(None, None, slope, slope_se, intercept, tuple(layers), chi2, dof, reason)


def _line(x: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> tuple[float, float, float, float]:
    """(slope, slope SE, intercept, chi^2) of the weighted line of the module docstring."""
    w = 1.0 / (sigma * sigma)
    s, sx, sxx = w.sum(), (w * x).sum(), (w * x * x).sum()
    sy, sxy = (w * y).sum(), (w * x * y).sum()
    delta = s * sxx - sx * sx
    slope = (s * sxy - sx * sy) / delta
    intercept = (sxx * sy - sx * sxy) / delta
    chi2 = float((w * (y - intercept - slope * x) ** 2).sum())
    inflate = max(1.0, math.sqrt(chi2 / (x.size - 2))) if x.size > 2 else 1.0
    return float(slope), math.sqrt(s / delta) * inflate, float(intercept), chi2


def _fit(x: np.ndarray, y: np.ndarray, sigma: np.ndarray, sign: float) -> DepthFit:
    """The line through (x, log|y|) and xi = sign / slope (sign -1: a decay must have b < 0)."""
    layers = tuple(int(v) for v in x)
    if x.size < MIN_LAYERS:
        return _no_fit(
            layers, f"decay not measurable: {x.size} layer(s) kept, at least {MIN_LAYERS} needed."
        )
    line = _line(x, np.log(np.abs(y)), sigma)
    slope, slope_se = line[0], line[1]
    bound = 1.0 / (abs(slope) + _SIGNIFICANT * slope_se)
    if abs(slope) < _SIGNIFICANT * slope_se:
        return _no_fit(
            layers,
            f"decay not measurable: slope {slope:.3g} +- {slope_se:.2g} is within "
            f"{_SIGNIFICANT:g} SE of 0 (|xi| > {bound:.3g} layers).",
            line,
        )
    if sign < 0 and slope >= 0.0:
        return _no_fit(layers, f"no decay: |c - c*| grows (slope {slope:.3g}).", line)
    xi = sign / slope
    se = slope_se / (slope * slope)
    return DepthFit(xi, se, slope, slope_se, line[2], layers, line[3], x.size - 2, None)


def fit_depth_scale(
    layers: Sequence[float],
    c_mean: Sequence[float],
    c_se: Sequence[float],
    c_star: float,
    *,
    threshold: float = THRESHOLD,
) -> DepthFit:
    """xi_c from measured per-layer correlations c_mean +- c_se and the fixed point c*.

    Layers are used in the order given (increasing depth); the rule, formulas and the cases
    without a value are in the module docstring.
    """
    x, c, se = _arrays(layers, c_mean, c_se)
    d = c - c_star
    ok = np.isfinite(d) & np.isfinite(se) & (se > 0.0) & (np.abs(d) >= threshold * se)
    start = int(np.argmax(ok)) if ok.any() else x.size
    stop = start
    while stop < x.size and ok[stop] and np.sign(d[stop]) == np.sign(d[start]):
        stop += 1
    keep = slice(start, stop)
    return _fit(x[keep], d[keep], se[keep] / np.abs(d[keep]), -1.0)


def fit_gradient_scale(
    layers: Sequence[float],
    mean_sq: Sequence[float],
    mean_sq_se: Sequence[float],
    *,
    threshold: float = THRESHOLD,
) -> DepthFit:
    """xi_grad from measured per-layer gradient mean_sq +- SE (module docstring)."""
    x, m, se = _arrays(layers, mean_sq, mean_sq_se)
    with np.errstate(all="ignore"):
        rel = se / m
    ok = np.isfinite(m) & (m > 0.0) & np.isfinite(rel) & (rel > 0.0) & (rel * threshold < 1.0)
    return _fit(x[ok], m[ok], rel[ok], 1.0)


def fit_like(
    fit: DepthFit,
    layers: Sequence[float],
    values: Sequence[float],
    se: Sequence[float],
    *,
    c_star: float | None = None,
) -> DepthFit:
    """The same line as `fit` through other values (the theory's) on exactly `fit.layers`,
    weighted by the same SEs: a correlation fit when `c_star` is given, else a gradient fit."""
    x, y, s = _arrays(layers, values, se)
    keep = np.isin(x, np.asarray(fit.layers, dtype=np.float64))
    x, y, s = x[keep], y[keep], s[keep]
    if c_star is not None:
        y = y - c_star
    with np.errstate(all="ignore"):
        sigma = s / np.abs(y)
    return _fit(x, y, sigma, -1.0 if c_star is not None else 1.0)

"""The bounded excuses of `compare.check`: how far finite width, heavy tails and censoring can
move a statistic from its mean-field prediction (the module docstring of
`scheduler.analysis.compare` states each bound)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scheduler.analysis.records import config_of
from scheduler.analysis.theory import DTYPE_LIMITS, FINITE_WIDTH_MULTIPLE
from scheduler.analysis.verdict import CENSORED, FINITE_WIDTH, HEAVY_TAIL, UNEXPLAINED

# Activations whose E[mean] is fixed by symmetry (phi(-u) = 2 phi(0) - phi(u)) at any width.
_SYMMETRIC_MEAN = ("linear", "tanh", "sigmoid")


def _activation_name(record: Mapping[str, Any]) -> str | None:
    """The activation's scheme name, from the configuration the record carries."""
    config = config_of(record)
    return None if config is None else config.activation.name


def _genuine_zeros(record: Mapping[str, Any]) -> bool:
    """relu zeroes a whole layer for real when every unit is negative (a common mode of
    non-centred weights, or a narrow layer): those zeros are samples, not censoring, when the
    signal is far above the dtype's underflow scale."""
    predicted = record.get("theory_mean_sq")
    tiny = DTYPE_LIMITS.get(str(record.get("dtype", "float32")), DTYPE_LIMITS["float32"])[1]
    return (
        _activation_name(record) == "relu"
        and predicted is not None
        and predicted > (1e6 * tiny) ** 2
    )


def censored(record: Mapping[str, Any]) -> bool:
    """Fewer than 2 finite trials: no estimate and no standard error (skipped)."""
    return int(record.get("n_finite") or 0) < 2


def _censoring(record: Mapping[str, Any]) -> tuple[float, float]:
    """(p_over, p_collapse): the share of trials non-finite at this layer, and of finite trials
    collapsed to exactly 0 (0 for genuine relu zeros)."""
    n_trials = int(record.get("n_trials") or 0)
    n_finite = int(record.get("n_finite") or 0)
    p_over = 1.0 - n_finite / n_trials if n_trials else 0.0
    collapsed = int(record.get("n_collapsed") or 0)
    p_collapse = collapsed / n_finite if n_finite and not _genuine_zeros(record) else 0.0
    return p_over, p_collapse


def truncation(p: float, s: float) -> float:
    """E[X | X below its (1 - p) quantile] / E[X] for log-normal X with Var[log X] = s^2:
    Phi(Phi^{-1}(1 - p) - s) / (1 - p) (what removing the largest p of the trials leaves)."""
    from scipy import special

    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return float(special.ndtr(special.ndtri(1.0 - p) - s)) / (1.0 - p)


def _censored_bounds(
    record: Mapping[str, Any], statistic: str, bounds: tuple[float, float]
) -> tuple[float, float]:
    """`bounds` of E[statistic] widened by exactly what the record's censoring can do.

    Overflow removes the largest share p of the trials: for X >= 0 (mean_sq, std) the finite
    average lies in [lo rho, hi / (1 - p)], rho = `truncation(p, s)` with s^2 = log(1 + d) of
    the per-trial dispersion d (std: square roots); a symmetric mean is unbiased. Collapse sets
    a share of the finite trials to 0: the interval extends down to 0.
    """
    if statistic == "corr":  # over the trials with no zero vector; bounded by 1: no widening
        return bounds
    p_over, p_collapse = _censoring(record)
    lo, hi = bounds
    dispersion = record.get("theory_dispersion")
    s = math.sqrt(math.log1p(dispersion)) if dispersion is not None else math.inf
    root = statistic == "std"
    if statistic == "mean" and _symmetric_mean(record):
        return lo, hi
    if p_over > 0.0:
        rho = truncation(p_over, s / 2.0 if statistic == "mean" else s) if math.isfinite(s) else 0.0
        up = 1.0 / (1.0 - p_over) if p_over < 1.0 else math.inf
        if root:
            rho, up = math.sqrt(rho), math.sqrt(up)
        ends = (lo * rho, lo * up, hi * rho, hi * up)
        lo, hi = min(ends), max(ends)
    if p_collapse > 0.0:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return lo, hi


def _symmetric_mean(record: Mapping[str, Any]) -> bool:
    """E[mean] is fixed by symmetry: preactivations, gradients, linear/tanh/sigmoid activations."""
    return str(record["quantity"]) != "activation" or _activation_name(record) in _SYMMETRIC_MEAN


def distance(x: float, lo: float, hi: float, se: float) -> float:
    return (x - hi) / se if x > hi else (lo - x) / se if x < lo else 0.0


def _sampled(
    record: Mapping[str, Any], statistic: str, bounds: tuple[float, float]
) -> tuple[float, float]:
    """`bounds` with the heavy tail a sample of N trials typically misses: a log-normal X with
    Var[log X] = s^2 = log(1 + d) (d the theory's per-trial dispersion, Hanin & Nica 2019)
    averaged over N trials rarely sees values beyond its 1 - 1/N quantile, so the average is
    typically E[X] `truncation(1/N, s)` (s/2 for std and means, which grow like sqrt(q))."""
    dispersion = record.get("theory_dispersion")
    n = int(record.get("n_finite") or 0)
    if dispersion is None or n < 2 or statistic == "corr":  # a correlation is bounded
        return bounds
    if statistic == "mean" and _symmetric_mean(record):
        return bounds
    s = math.sqrt(math.log1p(dispersion)) / (1.0 if statistic == "mean_sq" else 2.0)
    rho = truncation(1.0 / n, s)
    lo, hi = bounds
    return min(lo, lo * rho), max(hi, hi * rho)


def explain(record: Mapping[str, Any], statistic: str, threshold: float) -> tuple[str, float]:
    """(explanation, the |z| left after it) of a statistic whose |z| exceeds the threshold.

    The finite-width interval of the theory (`theory_<statistic>_lo/hi`), then that interval
    widened by the record's censoring (`_censored_bounds`): the first within `threshold` SEs
    explains the deviation; else UNEXPLAINED with the distance from the widest interval.
    """
    x, se = float(record[statistic]), float(record[f"{statistic}_se"])
    point = record.get(f"theory_{statistic}")
    lo, hi = record.get(f"theory_{statistic}_lo"), record.get(f"theory_{statistic}_hi")
    if point is None:
        return UNEXPLAINED, math.inf
    # an interval that does not hold the prediction (an inconsistent injected theory) is none
    p = float(point)
    ok = lo is not None and hi is not None and lo <= p <= hi
    bounds: tuple[float, float] = (float(lo), float(hi)) if ok else (p, p)  # type: ignore[arg-type]
    point = p
    width_z = distance(x, bounds[0], bounds[1], se)
    if width_z <= threshold and bounds != (point, point):
        ratio = int(record["depth"]) / int(record["width"])
        return FINITE_WIDTH.format(ratio=ratio, k=FINITE_WIDTH_MULTIPLE), width_z
    sampled = _sampled(record, statistic, bounds)
    width_z = distance(x, sampled[0], sampled[1], se)
    if width_z <= threshold and sampled != bounds:
        spread = math.log1p(float(record["theory_dispersion"]))
        return HEAVY_TAIL.format(n=int(record["n_finite"]), s2=spread), width_z
    bounds = sampled
    p_over, p_collapse = _censoring(record)
    if p_over > 0.0 or p_collapse > 0.0:
        wide = _censored_bounds(record, statistic, (bounds[0], bounds[1]))
        censored_z = distance(x, wide[0], wide[1], se)
        if censored_z <= threshold:
            share = f"{max(p_over, p_collapse):.3g}"
            return CENSORED.format(share=share), censored_z
        return UNEXPLAINED, censored_z
    return UNEXPLAINED, width_z

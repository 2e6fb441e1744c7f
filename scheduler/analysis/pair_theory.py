"""The correlation map beside measured pair observables, and depth scales fitted from them.

For a configuration of batch >= 2 (`theory.predict_correlations`), each (layer, quantity)
record gets:

    theory_corr, theory_cross          mean-field E[corr] = c^l and E[cross] = q_ab^l
    theory_corr_lo, theory_corr_hi     c^l -+ FINITE_WIDTH_MULTIPLE (1 - (c^l)^2) k / (2 width),
                                       k = layer (forward) or depth (gradient): the sample
                                       correlation's O(1/width) bias at layer 1 (Olkin & Pratt
                                       1958), which the O(k/width) fluctuation of q^l grows
    theory_cross_lo, theory_cross_hi   q_ab^l shifted by the half-width of the same record's
                                       E[mean_sq] interval (`corrections`), or the point

and, per configuration, on every one of its records:

    theory_c_star, theory_xi_c, theory_xi_grad   c*, xi_c = -1/log chi_c, xi_grad = -1/log chi_1
    xi_c_fit, xi_c_fit_se                        xi fitted from the measured preactivation
                                                 |c^l - c*| decay (`theory.fit_depth_scale`)
    xi_c_fit_theory                              the same fit through the theory's c^l on the
                                                 same layers and SEs (`theory.fit_like`): what
                                                 xi_c_fit estimates at this depth and c^0
    xi_grad_fit, xi_grad_fit_se, xi_grad_fit_theory
                                                 the same for the gradient mean_sq decay

References: Poole et al. 2016, "Exponential expressivity in deep neural networks through
transient chaos"; Schoenholz et al. 2017, "Deep information propagation" (docs/correlations.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.analysis.theory import (
    FINITE_WIDTH_MULTIPLE,
    CorrelationTheory,
    DepthFit,
    LayerCorrelation,
    fit_depth_scale,
    fit_gradient_scale,
    fit_like,
    predict_correlations,
)
from worker.contract import SimConfig

PAIR_THEORY_KEYS: tuple[str, ...] = (
    "theory_corr",
    "theory_corr_lo",
    "theory_corr_hi",
    "theory_cross",
    "theory_cross_lo",
    "theory_cross_hi",
    "theory_c_star",
    "theory_xi_c",
    "theory_xi_grad",
    "xi_c_fit",
    "xi_c_fit_se",
    "xi_c_fit_theory",
    "xi_grad_fit",
    "xi_grad_fit_se",
    "xi_grad_fit_theory",
)


def pair_theory(
    config: SimConfig, rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, float | None]]:
    """The `PAIR_THEORY_KEYS` of each of `rows` (one configuration's records, with their
    `theory_mean_sq_lo/hi` where predicted): all None for batch 1 or where theory has none."""
    out: list[dict[str, float | None]] = [dict.fromkeys(PAIR_THEORY_KEYS) for _ in rows]
    if config.batch < 2:
        return out
    theory = predict_correlations(config)
    by_key = {(t.layer, t.quantity): t for t in theory.layers}
    fits = _fits(theory, by_key, rows)
    for row, values in zip(rows, out, strict=True):
        values.update(fits)
        layer, quantity = int(row["layer"]), str(row["quantity"])
        pred = by_key.get((layer, quantity))
        if pred is None:
            continue
        if pred.corr is not None:
            k = config.depth if quantity == "gradient" else max(1, layer)
            half = FINITE_WIDTH_MULTIPLE * (1.0 - pred.corr**2) * k / (2.0 * config.width)
            values["theory_corr"] = pred.corr
            values["theory_corr_lo"] = max(-1.0, pred.corr - half)
            values["theory_corr_hi"] = min(1.0, pred.corr + half)
        if pred.cross is not None:
            lo, hi, point = (row.get(f"theory_mean_sq{s}") for s in ("_lo", "_hi", ""))
            half = (hi - lo) / 2.0 if lo is not None and hi is not None and point else 0.0
            values["theory_cross"] = pred.cross
            values["theory_cross_lo"] = pred.cross - half
            values["theory_cross_hi"] = pred.cross + half
    return out


def _fits(
    theory: CorrelationTheory,
    by_key: Mapping[tuple[int, str], LayerCorrelation],
    rows: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The per-configuration columns: theory's depth scales and the fits of both decays."""
    out: dict[str, Any] = {
        "theory_c_star": theory.c_star,
        "theory_xi_c": theory.xi_c,
        "theory_xi_grad": theory.xi_grad,
    }
    pre = _series(rows, "preactivation", "corr")
    if theory.c_star is not None and pre is not None:
        layers, values, se = pre
        fit = fit_depth_scale(layers, values, se, theory.c_star)
        predicted = [_corr(by_key.get((int(layer), "preactivation"))) for layer in layers]
        like = _like(fit, layers, predicted, se, c_star=theory.c_star)
        out.update(_columns("xi_c_fit", fit, like))
    grad = _series(rows, "gradient", "mean_sq")
    if grad is not None:
        layers, values, se = grad
        fit = fit_gradient_scale(layers, values, se)
        by_layer = {
            int(r["layer"]): r.get("theory_mean_sq") for r in rows if r["quantity"] == "gradient"
        }
        predicted = [by_layer.get(int(layer)) for layer in layers]
        out.update(_columns("xi_grad_fit", fit, _like(fit, layers, predicted, se)))
    return out


def _series(
    rows: Sequence[Mapping[str, Any]], quantity: str, statistic: str
) -> tuple[list[float], list[float], list[float]] | None:
    """(layers, values, SEs) of one quantity's statistic over layers 1.., where measured."""
    found = sorted(
        (int(r["layer"]), float(r[statistic]), float(r[f"{statistic}_se"]))
        for r in rows
        if r["quantity"] == quantity
        and int(r["layer"]) >= 1
        and r.get(statistic) is not None
        and r.get(f"{statistic}_se") is not None
    )
    if len(found) < 3:
        return None
    return [float(f[0]) for f in found], [f[1] for f in found], [f[2] for f in found]


def _corr(pred: LayerCorrelation | None) -> float | None:
    return None if pred is None else pred.corr


def _like(
    fit: DepthFit,
    layers: list[float],
    predicted: list[float | None],
    se: list[float],
    *,
    c_star: float | None = None,
) -> DepthFit | None:
    """`fit_like` through the theory's values, None where theory misses a fitted layer."""
    if fit.xi is None or any(p is None for p in predicted):
        return None
    return fit_like(fit, layers, [float(p) for p in predicted if p is not None], se, c_star=c_star)


def _columns(prefix: str, fit: DepthFit, like: DepthFit | None) -> dict[str, float | None]:
    return {
        prefix: fit.xi,
        f"{prefix}_se": fit.se,
        f"{prefix}_theory": None if like is None else like.xi,
    }

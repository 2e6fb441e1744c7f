"""Measured correlations follow the mean-field correlation map; measured depth scales its xi_c.

Per layer, the simulator's E[corr] of preactivations, activations and gradients between two
inputs of prescribed geometry (q^0 = 1, c^0) lies within 4 SE of `predict_correlations`
(Poole et al. 2016; Schoenholz et al. 2017) for tanh in the ordered and chaotic phases and at
criticality, relu, and the erf-like gelu and sigmoid, from several c^0. Wide networks
(conditional sampler, width 2048) keep the O(layer/width) finite-width bias of the sample
correlation well under the SE. The depth scale fitted from the measured |c^l - c*| decay
matches the same fit through the theory's map within 4 of its SEs, where xi_c is finite and
well below depth; a wrong sigma_w is detected.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.analysis.theory import (
    critical_sigma_w,
    fit_depth_scale,
    fit_like,
    predict_correlations,
)
from worker.contract import (
    ACTIVATIONS,
    INIT_SCHEMES,
    ChunkTask,
    LayerRecord,
    Scheme,
    SimConfig,
    canonical_scheme,
)
from worker.sim import simulate_chunk

pytestmark = pytest.mark.sim

WIDTH = 2048
TRIALS = 200


def _config(act: str, sigma_w: float, sigma_b: float, c0: float, depth: int) -> SimConfig:
    init = canonical_scheme(
        INIT_SCHEMES,
        "variance_scaling",
        {"scale": sigma_w**2, "mode": "fan_in", "distribution": "untruncated_normal"},
    )
    bias = Scheme("normal", (("std", sigma_b),)) if sigma_b else Scheme("zeros")
    return SimConfig(
        init=init,
        activation=canonical_scheme(ACTIVATIONS, act, {}),
        depth=depth,
        width=WIDTH,
        input_dim=WIDTH,
        batch=2,
        bias=bias,
        sampler="conditional",
        input_q=1.0,
        input_corr=c0,
    )


def _records(config: SimConfig, trials: int = TRIALS) -> list[LayerRecord]:
    task = ChunkTask(config, seed_key=20261202, chunk_index=0, trial_start=0, n_trials=trials)
    return list(simulate_chunk(task).records)


_TANH_CRITICAL = critical_sigma_w(0.05, Scheme("tanh"))
assert _TANH_CRITICAL is not None
CASES = [
    ("tanh", 0.9, 0.3, 0.2),  # ordered: c -> 1
    ("tanh", 0.9, 0.3, -0.4),
    ("tanh", 2.5, 0.1, 0.9),  # chaotic: c -> c* < 1
    ("tanh", 2.5, 0.1, 0.5),
    ("tanh", _TANH_CRITICAL, 0.05, 0.6),  # critical
    ("relu", math.sqrt(2.0), 0.0, 0.3),
    ("relu", 1.2, 0.2, 0.8),
    ("gelu", 1.6, 0.1, 0.5),
    ("sigmoid", 3.0, 0.2, 0.1),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-w{c[1]:.3g}-b{c[2]}-c{c[3]}")
def test_measured_correlations_follow_the_map(case: tuple[str, float, float, float]) -> None:
    config = _config(*case, depth=12)
    theory = {(t.layer, t.quantity): t.corr for t in predict_correlations(config).layers}
    failures = []
    n_compared = 0
    for record in _records(config):
        predicted = theory.get((record.layer, record.quantity))
        assert record.corr is not None and predicted is not None, record.key
        if record.layer == 0:  # the inputs: c0 in every trial, to float32 rounding
            assert record.corr.value == pytest.approx(predicted, abs=1e-6)
            continue
        z = (record.corr.value - predicted) / record.corr.sem
        n_compared += 1
        if abs(z) > 4.0:
            failures.append(
                f"layer {record.layer} {record.quantity}: corr {record.corr.value:.5f} "
                f"± {record.corr.sem:.1e} vs map {predicted:.5f} (z = {z:.1f})"
            )
    assert n_compared == 3 * config.depth
    assert not failures, failures


def _decay(config: SimConfig, trials: int) -> tuple[list[float], list[float], list[float]]:
    records = [r for r in _records(config, trials) if r.quantity == "preactivation"]
    records.sort(key=lambda r: r.layer)
    assert all(r.corr is not None for r in records)
    return (
        [float(r.layer) for r in records],
        [r.corr.value for r in records if r.corr is not None],
        [r.corr.sem for r in records if r.corr is not None],
    )


@pytest.mark.parametrize(
    "case", [("tanh", 2.0, 0.3, 0.1), ("tanh", 0.8, 0.5, -0.1)], ids=["chaotic", "ordered"]
)
def test_fitted_depth_scale_matches_the_map(case: tuple[str, float, float, float]) -> None:
    """c0 = c* + offset. The fitted scale is compared with the same fit through the map
    (`fit_like`: the decay at these layers, which is xi_c only once c^l is near c*); in the
    ordered phase the decay from c* - 0.1 is already the asymptotic xi_c."""
    act, sigma_w, sigma_b, offset = case
    c_star = predict_correlations(_config(act, sigma_w, sigma_b, 0.5, 30)).c_star
    assert c_star is not None
    case = (act, sigma_w, sigma_b, c_star + offset)
    config = _config(*case, depth=30)
    theory = predict_correlations(config)
    assert theory.c_star is not None and theory.xi_c is not None
    assert 0.0 < theory.xi_c < config.depth / 3  # finite and well below depth
    layers, corr, se = _decay(config, 300)
    fit = fit_depth_scale(layers, corr, se, theory.c_star)
    assert fit.xi is not None and fit.se is not None, fit.reason
    by_layer = {t.layer: t.corr for t in theory.layers if t.quantity == "preactivation"}
    like = fit_like(
        fit, layers, [float(by_layer[int(x)] or 0.0) for x in layers], se, c_star=theory.c_star
    )
    assert like.xi is not None
    assert abs(fit.xi - like.xi) <= 4.0 * fit.se, (fit.xi, fit.se, like.xi, theory.xi_c)
    if theory.phase == "ordered":  # the asymptotic xi_c = -1/log chi_c itself
        assert abs(fit.xi - theory.xi_c) <= 4.0 * fit.se + 0.05 * theory.xi_c, (fit, theory.xi_c)
    # a sigma_w 15% off moves the theory's fitted scale by many of the measurement's SEs
    wrong = predict_correlations(_config(case[0], case[1] * 1.15, case[2], case[3], 30))
    assert wrong.c_star is not None
    wrong_layer = {t.layer: t.corr for t in wrong.layers if t.quantity == "preactivation"}
    wrong_like = fit_like(
        fit, layers, [float(wrong_layer[int(x)] or 0.0) for x in layers], se, c_star=wrong.c_star
    )
    assert (
        wrong_like.xi is None
        or abs(fit.xi - wrong_like.xi) > 4.0 * fit.se
        or (
            np.max(
                np.abs(np.array([wrong_layer[int(x)] or 0.0 for x in layers]) - np.array(corr))
                / np.array(se)
            )
            > 10.0
        )
    )

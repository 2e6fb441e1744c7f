"""The exact law of log mean_sq (linear and relu, Gaussian weights, no bias) against a numpy
network oracle (matrices drawn and multiplied, no shared code), and where it does not apply."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import special

from scheduler.analysis.theory import exact_log_mean_sq
from scheduler.analysis.theory.finite_width import log_chi2_moments, log_relu_chi2_moments
from worker.contract import ACTIVATIONS, INIT_SCHEMES, Scheme, SimConfig, canonical_scheme

pytestmark = pytest.mark.unit


def config(activation: str, init: Scheme, **kw: object) -> SimConfig:
    base = SimConfig(
        init=init,
        activation=canonical_scheme(ACTIVATIONS, activation, {}),
        depth=3,
        width=8,
        input_dim=5,
        batch=1,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


GAUSS = canonical_scheme(INIT_SCHEMES, "normal", {"std": 0.4})


def oracle(cfg: SimConfig, trials: int, seed: int) -> dict[tuple[int, str], np.ndarray]:
    """log mean_sq per trial of a numpy network with N(0, 0.4^2) weights (what GAUSS draws)."""
    rng = np.random.default_rng(seed)
    relu = cfg.activation.name == "relu"
    x = rng.standard_normal((trials, cfg.input_dim))
    out = {(0, "activation"): x}
    h, kernels = x, []
    for layer in range(1, cfg.depth + 1):
        w = 0.4 * rng.standard_normal((trials, *cfg.fans(layer)))
        kernels.append(w)
        z = np.einsum("ti,tij->tj", h, w)
        h = np.maximum(z, 0.0) if relu else z
        out[(layer, "preactivation")], out[(layer, "activation")] = z, h
    if not relu:
        g = rng.standard_normal((trials, cfg.width))
        out[(cfg.depth, "gradient")] = g
        for layer in range(cfg.depth - 1, 0, -1):
            g = np.einsum("tj,tij->ti", g, kernels[layer])
            out[(layer, "gradient")] = g
    with np.errstate(divide="ignore"):
        return {k: np.log(np.mean(v * v, axis=1)) for k, v in out.items()}


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_exact_law_matches_a_numpy_network(activation: str) -> None:
    cfg = config(activation, GAUSS)
    exact = exact_log_mean_sq(cfg)
    assert exact is not None
    samples = oracle(cfg, 40_000, seed=1)
    assert set(exact) == set(samples)
    for key, (mean, var) in exact.items():
        x = samples[key]
        x = x[np.isfinite(x)]  # relu trials whose layer died: the law is conditioned on K >= 1
        n = x.size
        s2 = float(x.var(ddof=1))
        mu4 = float(np.mean((x - x.mean()) ** 4))
        var_se = math.sqrt((mu4 - s2 * s2 * (n - 3) / (n - 1)) / n)
        assert abs(float(x.mean()) - mean) <= 4.0 * math.sqrt(s2 / n), key
        assert abs(s2 - var) <= 4.0 * var_se, key


def test_chi2_and_relu_factor_moments() -> None:
    mean, var = log_chi2_moments(2)  # chi^2_2 / 2 is Exp(1): E log = -gamma, Var = pi^2/6
    assert mean - math.log(2.0) == pytest.approx(-np.euler_gamma, abs=1e-14)
    assert var == pytest.approx(math.pi**2 / 6, abs=1e-14)
    assert log_relu_chi2_moments(1) == pytest.approx(log_chi2_moments(1), abs=1e-14)  # K = 1
    # n = 2: K = 1 w.p. 2/3, K = 2 w.p. 1/3 given K >= 1
    (m1, v1), (m2, v2) = log_chi2_moments(1), log_chi2_moments(2)
    mix = 2 / 3 * m1 + 1 / 3 * m2
    mix_var = 2 / 3 * (v1 + m1**2) + 1 / 3 * (v2 + m2**2) - mix**2
    assert log_relu_chi2_moments(2) == pytest.approx((mix, mix_var), abs=1e-13)
    # wide: E psi(K/2) = psi(n/4) + psi''(n/4) Var(K/2) / 2 + ... = psi(n/4) - 1/(2n) + O(n^-2)
    n = 1 << 16
    wide = log_relu_chi2_moments(n)
    assert wide[0] == pytest.approx(
        float(special.digamma(n / 4)) + math.log(2.0) - 1.0 / (2 * n), abs=1e-9
    )


@pytest.mark.parametrize(
    "change",
    [
        {"activation": canonical_scheme(ACTIVATIONS, "tanh", {})},
        {"batch": 2},
        {"bias": canonical_scheme({"normal": {"std": 0.0}}, "normal", {"std": 0.1})},
        {"init": canonical_scheme(INIT_SCHEMES, "he_normal", {})},  # truncated
        {"init": canonical_scheme(INIT_SCHEMES, "normal", {"mean": 0.1, "std": 0.4})},
        {"init": canonical_scheme(INIT_SCHEMES, "orthogonal", {})},
    ],
)
def test_no_exact_law_outside_its_assumptions(change: dict[str, object]) -> None:
    assert exact_log_mean_sq(dataclasses.replace(config("relu", GAUSS), **change)) is None  # type: ignore[arg-type]


def test_with_theory_adds_the_exact_log_columns_and_z_scores() -> None:
    from scheduler.analysis.compare import with_theory
    from scheduler.analysis.records import Record

    cfg = config("linear", GAUSS)
    mean, var = exact_log_mean_sq(cfg)[(2, "activation")]  # type: ignore[index]
    row = {"config_hash": "h", "layer": 2, "quantity": "activation", "dtype": "float32"}
    measured = {"log_mean_sq": mean + 0.3, "log_mean_sq_se": 0.1}
    measured |= {"log_mean_sq_var": var - 0.2, "log_mean_sq_var_se": 0.05}
    (out,) = with_theory([Record({**row, **measured}, cfg)])
    assert out["theory_log_mean_sq"] == mean and out["theory_log_mean_sq_var"] == var
    assert out["z_log_mean_sq"] == pytest.approx(3.0)
    assert out["z_log_mean_sq_var"] == pytest.approx(-4.0)
    tanh = dataclasses.replace(cfg, activation=canonical_scheme(ACTIVATIONS, "tanh", {}))
    (none,) = with_theory([Record({**row, **measured}, tanh)])
    assert none["theory_log_mean_sq"] is None and none["z_log_mean_sq"] is None

"""Second moments of pre-activations and gradients against the mean-field recursions.

Forward (Poole et al. 2016, "Exponential expressivity in deep neural networks through transient
chaos"; Schoenholz et al. 2017, "Deep information propagation"), with W_ij ~ N(0, sigma_w^2 /
fan_in) (variance_scaling untruncated_normal, scale = sigma_w^2), b ~ N(0, sigma_b^2), x ~ N(0, I):

    q^1 = sigma_w^2 * E[x^2] + sigma_b^2 = sigma_w^2 + sigma_b^2
    q^l = sigma_w^2 * E_{z ~ N(0, q^{l-1})}[phi(z)^2] + sigma_b^2

Backward, L = <r, h^D>, r ~ N(0, I), square layers:

    E[g_D^2] = E[phi'(z^D)^2],   E[g_l^2] = sigma_w^2 * E[phi'(z^l)^2] * E[g_{l+1}^2]

Expectations by Gauss-Hermite quadrature (numpy, 200 nodes, even so no node sits on the relu
kink). The measured value is the mean over trials of the per-trial `mean_sq` (over units) and is
compared layer by layer within 4 SE (`Moments.sem`).

Finite width: for linear and relu the recursions hold exactly in expectation at any width
(E[z^2 | h] = sigma_w^2 mean(h^2); E[relu(z)^2 | q_hat] = q_hat / 2 is linear in q_hat), so
width 128 suffices. For tanh, gelu and selu, E[f(q_hat)] != f(E q_hat) gives an O(depth/width)
bias, measured at width 256 and 3000 trials: q^l about -0.4% (tanh, selu); the ratio bias / SE
scales as sqrt(trials) / width, so width 512 with 100-200 trials puts it near 0.1-0.2 SE (on
five seeds every layer stayed within 3 SE). gelu has a bias so that q^l has a stable fixed point
(without one it is unstable and its finite-width bias grows to many SE). Gradients are asserted
for linear, relu and tanh; those of gelu and selu carry 2-6% of finite-width bias at width 256
(the gradient-independence assumption of the backward recursion), too close to 4 SE.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import special

from worker.contract import (
    ACTIVATIONS,
    INIT_SCHEMES,
    ChunkTask,
    Scheme,
    SimConfig,
    canonical_scheme,
)
from worker.sim import simulate_chunk

pytestmark = pytest.mark.sim

DEPTH = 10
NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(200)  # probabilists' Hermite: weight e^{-x^2/2}
WEIGHTS = WEIGHTS / np.sqrt(2 * np.pi)
SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772

Pair = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]
PHI: dict[str, Pair] = {
    "linear": (lambda z: z, np.ones_like),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "gelu": (
        lambda z: z * special.ndtr(z),
        lambda z: special.ndtr(z) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi),
    ),
    "selu": (
        lambda z: SELU_L * np.where(z > 0, z, SELU_A * np.expm1(np.minimum(z, 0))),
        lambda z: SELU_L * np.where(z > 0, 1.0, SELU_A * np.exp(np.minimum(z, 0))),
    ),
}


def gauss(f: Callable[[np.ndarray], np.ndarray], q: float) -> float:
    """E[f(z)], z ~ N(0, q)."""
    return float(np.sum(WEIGHTS * f(np.sqrt(q) * NODES)))


def theory(name: str, sw2: float, sb: float, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(q^1..q^D, E[g_1^2]..E[g_D^2]) from the recursions in the module docstring."""
    phi, dphi = PHI[name]
    q = [sw2 + sb * sb]
    for _ in range(1, depth):
        q.append(sw2 * gauss(lambda z: phi(z) ** 2, q[-1]) + sb * sb)
    d2 = [gauss(lambda z: dphi(z) ** 2, ql) for ql in q]
    g = [0.0] * depth
    g[-1] = d2[-1]
    for i in range(depth - 2, -1, -1):
        g[i] = sw2 * d2[i] * g[i + 1]
    return np.array(q), np.array(g)


CASES = [
    # (activation, sigma_w^2, sigma_b, width, trials, check gradients)
    ("linear", 1.0, 0.3, 128, 400, True),
    ("relu", 2.0, 0.0, 128, 400, True),
    ("tanh", 1.0, 0.1, 512, 200, True),
    ("gelu", 1.0, 0.7, 512, 100, False),
    ("selu", 1.0, 0.0, 512, 100, False),
]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def measured(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    name, sw2, sb, width, n, _ = request.param
    init = canonical_scheme(
        INIT_SCHEMES,
        "variance_scaling",
        {"scale": sw2, "mode": "fan_in", "distribution": "untruncated_normal"},
    )
    bias = (
        canonical_scheme({"normal": {"std": 0.0}}, "normal", {"std": sb}) if sb else Scheme("zeros")
    )
    cfg = SimConfig(
        init=init,
        activation=canonical_scheme(ACTIVATIONS, name, {}),
        bias=bias,
        depth=DEPTH,
        width=width,
        input_dim=width,
    )
    out = simulate_chunk(ChunkTask(cfg, seed_key=1, chunk_index=0, trial_start=0, n_trials=n))
    return request.param, out


def _z_scores(out, quantity: str, want: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    recs = [r for r in out.records if r.quantity == quantity and r.layer >= 1]
    assert [r.layer for r in recs] == list(range(1, DEPTH + 1))
    assert all(r.n_finite == r.n_trials for r in recs)
    return np.array([(r.mean_sq.mean - w) / r.mean_sq.sem for r, w in zip(recs, want, strict=True)])


def test_preactivation_second_moment_follows_recursion(measured) -> None:  # type: ignore[no-untyped-def]
    (name, sw2, sb, _, _, _), out = measured
    q, _ = theory(name, sw2, sb, DEPTH)
    z = _z_scores(out, "preactivation", q)
    assert np.all(np.abs(z) < 4), (name, np.round(z, 2), q)


# gelu and selu gradients are left out: their finite-width bias at width 512 (2-6%, measured) is
# too close to 4 SE to make a sharp test; the acceptance asks for relu and tanh.
GRADIENT_CASES = [c for c in CASES if c[5]]


@pytest.mark.parametrize(
    "measured", GRADIENT_CASES, indirect=True, ids=[c[0] for c in GRADIENT_CASES]
)
def test_gradient_second_moment_follows_recursion(measured) -> None:  # type: ignore[no-untyped-def]
    (name, sw2, sb, _, _, _), out = measured
    _, g = theory(name, sw2, sb, DEPTH)
    z = _z_scores(out, "gradient", g)
    assert np.all(np.abs(z) < 4), (name, np.round(z, 2), g)


def test_input_layer_is_standard_normal(measured) -> None:  # type: ignore[no-untyped-def]
    _, out = measured
    x = next(r for r in out.records if r.layer == 0)
    assert x.quantity == "activation"
    assert abs(x.mean_sq.mean - 1.0) < 4 * x.mean_sq.sem
    assert abs(x.mean.mean) < 4 * x.mean.sem


def test_quadrature_is_accurate() -> None:
    """The oracle itself: closed forms for relu, and adaptive quadrature for the others.

    selu's kink at 0 costs Gauss-Hermite ~2e-5 relative accuracy: 100x below the Monte Carlo
    SE (>= 3e-3 relative here), so it cannot move a comparison by more than 0.01 SE."""
    from scipy import integrate

    assert gauss(lambda z: np.maximum(z, 0) ** 2, 2.5) == pytest.approx(1.25, rel=1e-12)
    assert gauss(lambda z: (z > 0).astype(float), 2.5) == pytest.approx(0.5, rel=1e-12)
    for name in ("tanh", "gelu", "selu"):
        phi = PHI[name][0]
        exact = integrate.quad(
            lambda u, phi=phi: phi(np.sqrt(0.8) * u) ** 2 * np.exp(-u * u / 2) / np.sqrt(2 * np.pi),
            -40,
            40,
            points=[0],
        )[0]
        assert gauss(lambda z, phi=phi: phi(z) ** 2, 0.8) == pytest.approx(exact, rel=1e-4)

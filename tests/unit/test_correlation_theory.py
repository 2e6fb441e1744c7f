"""The correlation map, c*, xi_c and the depth-scale fits against numpy Monte Carlo, closed
forms and synthetic data with known answers (tolerances in standard errors)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from scipy import special

from scheduler.analysis.theory import bivariate_expectation, critical_sigma_w, predict_map
from scheduler.analysis.theory.correlation import (
    correlation_map,
    predict_correlations,
    signed_depth_scale,
)
from scheduler.analysis.theory.depth_fit import fit_depth_scale, fit_gradient_scale, fit_like
from scheduler.analysis.theory.meanfield import c_star
from worker.contract import ACTIVATIONS, INIT_SCHEMES, Scheme, SimConfig

pytestmark = pytest.mark.unit

Array = npt.NDArray[np.float64]
Fn = Callable[[Array], Array]


def scheme(name: str, **params: float | str) -> Scheme:
    merged = {**INIT_SCHEMES.get(name, ACTIVATIONS.get(name, {})), **params}
    return Scheme(name, tuple(sorted(merged.items())))


# The Monte Carlo's own phi and phi' (numpy and scipy, not the theory's `activation_fns`).
def _sigmoid(u: Array) -> Array:
    return np.asarray(special.expit(u))


NUMPY_FNS: dict[str, tuple[Fn, Fn]] = {
    "tanh": (np.tanh, lambda u: 1.0 - np.tanh(u) ** 2),
    "relu": (lambda u: np.maximum(u, 0.0), lambda u: (u > 0).astype(np.float64)),
    "sigmoid": (_sigmoid, lambda u: _sigmoid(u) * (1.0 - _sigmoid(u))),
    "gelu": (
        lambda u: u * special.ndtr(u),
        lambda u: special.ndtr(u) + u * np.exp(-u * u / 2) / math.sqrt(2 * math.pi),
    ),
    "elu": (
        lambda u: np.where(u > 0, u, np.expm1(np.minimum(u, 0.0))),
        lambda u: np.where(u > 0, 1.0, np.exp(np.minimum(u, 0.0))),
    ),
}


@dataclass(frozen=True)
class Chain:
    """Per-layer means over independent Monte Carlo chains and their standard errors."""

    corr: Array
    corr_se: Array
    act_corr: Array
    act_corr_se: Array
    grad_corr: Array  # shared readouts (rho_r = 1)
    grad_corr_se: Array


def mc_chain(
    name: str, sw2: float, sb2: float, q0: float, c0: float, depth: int, *, sw2_in: float
) -> Chain:
    """The mean-field recursion with every Gaussian expectation replaced by a sample mean.

    Each of 12 independent chains draws 100,000 pairs (u_a, u_b) ~ N(0, Sigma^l) per layer,
    Sigma^{l+1} from the sample means of phi(u_a) phi(u_b) and phi^2; the SE of each layer's
    value is the spread over chains / sqrt(12).
    """
    f, d = NUMPY_FNS[name]
    rng = np.random.default_rng(20170101)
    chains, n = 12, 100_000
    out = np.empty((3, chains, depth))
    for k in range(chains):
        q, cross = sw2_in * q0 + sb2, sw2_in * q0 * c0 + sb2
        kappa = np.empty(depth)
        for layer in range(depth):
            c = cross / q
            z1, z2 = rng.standard_normal((2, n))
            ua = math.sqrt(q) * z1
            ub = math.sqrt(q) * (c * z1 + math.sqrt(max(0.0, 1.0 - c * c)) * z2)
            fa, fb, da, db = f(ua), f(ub), d(ua), d(ub)
            m_ab, m_sq = np.mean(fa * fb), np.mean((fa * fa + fb * fb) / 2)
            kappa[layer] = np.mean(da * db) / np.mean((da * da + db * db) / 2)
            out[0, k, layer], out[1, k, layer] = c, m_ab / m_sq
            q, cross = sw2 * m_sq + sb2, sw2 * m_ab + sb2
        out[2, k] = np.cumprod(kappa[::-1])[::-1]
    mean, se = out.mean(axis=1), out.std(axis=1, ddof=1) / math.sqrt(chains)
    return Chain(mean[0], se[0], mean[1], se[1], mean[2], se[2])


TANH_CRIT = critical_sigma_w(math.sqrt(0.05), Scheme("tanh"))
assert TANH_CRIT is not None
# (activation, sw2, sb2, q0, c0, sw2_in): ordered, critical and chaotic tanh, relu, erf-like
Case = tuple[str, float, float, float, float, float]
CASES: list[Case] = [
    ("tanh", 0.8, 0.05, 1.0, 0.3, 0.8),
    ("tanh", TANH_CRIT**2, 0.05, 1.0, 0.6, TANH_CRIT**2),
    ("tanh", 4.0, 0.01, 1.0, 0.9, 4.0),
    ("tanh", 4.0, 0.01, 2.0, -0.5, 3.0),
    ("relu", 2.0, 0.1, 1.0, 0.2, 2.0),
    ("relu", 1.6, 0.0, 3.0, -0.8, 2.0),
    ("sigmoid", 3.0, 0.1, 1.0, 0.5, 3.0),
    ("gelu", 2.0, 0.05, 1.0, -0.3, 2.0),
    ("elu", 1.5, 0.1, 2.0, 0.0, 1.5),
]
DEPTH = 6


def _z(theory: Array, mean: Array, se: Array) -> Array:
    return np.asarray((theory - mean) / se)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-sw2={c[1]:.3g}-c0={c[4]}")
def test_cmap_matches_an_independent_monte_carlo(case: Case) -> None:
    name, sw2, sb2, q0, c0, sw2_in = case
    args = (sw2, sb2, q0, c0, DEPTH)
    cmap = correlation_map(Scheme(name), *args, sw2_in=sw2_in, readout_corr=1.0)
    mc = mc_chain(name, *args, sw2_in=sw2_in)
    # layer 1's correlation is the same number in every chain; from layer 2 on it is sampled
    assert np.all(mc.corr_se[1:] > 0) and np.all(mc.act_corr_se > 0)
    assert np.abs(_z(cmap.corr[1:], mc.corr[1:], mc.corr_se[1:])).max() < 4
    assert np.abs(_z(cmap.act_corr, mc.act_corr, mc.act_corr_se)).max() < 4
    assert np.abs(_z(cmap.grad_corr, mc.grad_corr, mc.grad_corr_se)).max() < 4
    # layer 1 is exact: the covariance of x W + b for fixed inputs
    want = (sw2_in * q0 * c0 + sb2) / (sw2_in * q0 + sb2)
    assert cmap.corr[0] == pytest.approx(want, rel=1e-14, abs=1e-15)
    assert cmap.q[0] == pytest.approx(sw2_in * q0 + sb2, rel=1e-15)
    assert np.allclose(cmap.cross, cmap.corr * cmap.q, rtol=1e-14)


def test_a_wrong_sigma_w_is_many_standard_errors_off() -> None:
    mc = mc_chain("tanh", 4.0, 0.01, 1.0, 0.9, DEPTH, sw2_in=4.0)
    wrong = correlation_map(Scheme("tanh"), 4.4, 0.01, 1.0, 0.9, DEPTH)
    assert np.abs(_z(wrong.corr[1:], mc.corr[1:], mc.corr_se[1:])).max() > 10


@pytest.mark.parametrize("name", ["tanh", "gelu", "elu", "sigmoid"])
@pytest.mark.parametrize("c", [-0.95, -0.4, 0.7])
def test_bivariate_expectation_at_any_correlation_matches_monte_carlo(name: str, c: float) -> None:
    f, d = NUMPY_FNS[name]
    q, n = 1.7, 2_000_000
    rng = np.random.default_rng(7)
    z1, z2 = rng.standard_normal((2, n))
    ua, ub = math.sqrt(q) * z1, math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    for fn, derivative in ((f, False), (d, True)):
        sample = fn(ua) * fn(ub)
        se = sample.std() / math.sqrt(n)
        got = bivariate_expectation(Scheme(name), q, c, derivative=derivative)
        assert abs(got - sample.mean()) < 4 * se


def test_relu_map_is_the_arccos_kernel() -> None:
    cmap = correlation_map(Scheme("relu"), 2.0, 0.0, 0.37, -0.6, 12)
    c = -0.6
    for layer in range(12):
        assert cmap.corr[layer] == pytest.approx(c, rel=1e-13, abs=1e-15)
        c = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        assert cmap.act_corr[layer] == pytest.approx(c, rel=1e-13)
    # scale-free: q^l = q^0 at sigma_w^2 = 2, and the same correlations at any q^0
    assert np.allclose(cmap.q, 2.0 * 0.37 / 1.0, rtol=1e-13)
    other = correlation_map(Scheme("relu"), 2.0, 0.0, 1e200, -0.6, 12)
    assert np.array_equal(other.corr, cmap.corr)


def test_linear_map_keeps_the_correlation_and_grad_correlation_is_zero() -> None:
    cmap = correlation_map(Scheme("linear"), 1.3, 0.0, 1.0, 0.25, 5)
    assert np.allclose(cmap.corr, 0.25, rtol=1e-14)
    assert np.array_equal(cmap.grad_corr, np.zeros(5))
    assert np.array_equal(cmap.grad_cross, np.zeros(5))
    shared = correlation_map(Scheme("linear"), 1.3, 0.0, 1.0, 0.25, 5, readout_corr=1.0)
    assert np.allclose(shared.grad_corr, 1.0)  # phi' = 1: G_ab = G
    assert shared.grad_sq == pytest.approx(1.3 ** np.arange(4, -1, -1), rel=1e-13)


def _start_at(sw2: float, sb2: float, q_star: float, c1: float) -> tuple[float, float]:
    """(q0, c0) whose layer 1 is (q*, c1)."""
    q0 = (q_star - sb2) / sw2
    return q0, (c1 * q_star - sb2) / (sw2 * q0)


def test_chaotic_fixed_point_is_a_fixed_point_and_xi_c_is_the_decay_rate() -> None:
    tanh, sw2, sb2 = Scheme("tanh"), 4.0, 0.01
    q_star, chi_1, _, xi_c, phase = predict_map(2.0, 0.1, tanh)
    assert phase == "chaotic" and q_star is not None and xi_c is not None
    cs = c_star(sw2, sb2, tanh, q_star)
    assert 0 < cs < 1
    assert (sw2 * bivariate_expectation(tanh, q_star, cs) + sb2) / q_star == pytest.approx(cs)
    q0, c0 = _start_at(sw2, sb2, q_star, cs)
    still = correlation_map(tanh, sw2, sb2, q0, c0, 20)
    assert np.abs(still.corr - cs).max() < 1e-9
    assert np.abs(still.q - q_star).max() < 1e-9 * q_star
    q0, c0 = _start_at(sw2, sb2, q_star, cs + 1e-3)
    moving = correlation_map(tanh, sw2, sb2, q0, c0, 40)
    d = moving.corr - cs
    ratio = d[30] / d[29]
    chi_c = sw2 * bivariate_expectation(tanh, q_star, cs, derivative=True)
    assert ratio == pytest.approx(chi_c, rel=1e-4)
    assert -1 / math.log(ratio) == pytest.approx(xi_c, rel=1e-3)
    # the per-configuration summary states the same c* and xi_c
    cfg = _config("tanh", math.sqrt(sw2 / 64), 0.1, depth=10)
    theory = predict_correlations(cfg, input_q=1.0, input_corr=0.5)
    assert theory.c_star == pytest.approx(cs, rel=1e-12)
    assert theory.xi_c == pytest.approx(xi_c, rel=1e-9)
    assert theory.chi_1 == pytest.approx(chi_1) and theory.phase == "chaotic"
    assert theory.xi_grad is not None and theory.xi_grad < 0  # gradients explode


def test_ordered_map_converges_to_one_at_rate_chi_1() -> None:
    tanh, sw2, sb2 = Scheme("tanh"), 0.8, 0.05
    q_star, chi_1, _, xi_c, _ = predict_map(math.sqrt(sw2), math.sqrt(sb2), tanh)
    assert q_star is not None and chi_1 is not None and xi_c is not None and chi_1 < 1
    q0, c0 = _start_at(sw2, sb2, q_star, 0.2)
    cmap = correlation_map(tanh, sw2, sb2, q0, c0, 60)
    gap = 1.0 - cmap.corr
    assert gap[50] / gap[49] == pytest.approx(chi_1, rel=1e-4)
    assert np.all(np.diff(cmap.corr) > 0)


def _config(act: str, std: float, bias: float, *, depth: int, batch: int = 2) -> SimConfig:
    return SimConfig(
        init=scheme("normal", mean=0.0, std=std),
        activation=Scheme(act),
        depth=depth,
        width=64,
        input_dim=64,
        batch=batch,
        bias=scheme("normal", std=bias) if bias else Scheme("zeros"),
    )


def test_fit_on_the_theory_curve_recovers_xi_c_near_the_fixed_point() -> None:
    tanh, sw2, sb2 = Scheme("tanh"), 4.0, 0.01
    q_star, _, _, xi_c, _ = predict_map(2.0, 0.1, tanh)
    assert q_star is not None and xi_c is not None
    cs = c_star(sw2, sb2, tanh, q_star)
    layers = np.arange(1, 61)
    fits = []
    for gap in (0.02, 0.6):
        q0, c0 = _start_at(sw2, sb2, q_star, cs + gap)
        cmap = correlation_map(tanh, sw2, sb2, q0, c0, 60)
        fits.append(fit_depth_scale(layers, cmap.corr, np.full(60, 1e-9), cs))
    near, far = fits
    assert near.xi is not None and near.reason is None and len(near.layers) == 60
    assert near.xi == pytest.approx(xi_c, rel=0.02)
    # far from c* the map is not linear: the early layers, which weigh most, decay otherwise
    assert far.xi is not None and abs(far.xi - xi_c) > 0.1 * xi_c


def test_fit_like_compares_data_with_the_theory_curve_on_the_same_layers() -> None:
    tanh, sw2, sb2 = Scheme("tanh"), 4.0, 0.01
    q_star = predict_map(2.0, 0.1, tanh)[0]
    assert q_star is not None
    cs = c_star(sw2, sb2, tanh, q_star)
    layers = np.arange(1, 41)
    theory = correlation_map(tanh, sw2, sb2, 1.0, 0.9, 40).corr  # q and c far from (q*, c*)
    rng = np.random.default_rng(2)
    se = np.full(40, 1e-3)
    z, z_wrong = [], []
    wrong = correlation_map(tanh, 3.6, sb2, 1.0, 0.9, 40).corr
    for _ in range(100):
        data = theory + se * rng.standard_normal(40)
        fit = fit_depth_scale(layers, data, se, cs)
        assert fit.xi is not None and fit.se is not None
        same = fit_like(fit, layers, theory, se, c_star=cs)
        assert same.layers == fit.layers and same.xi is not None
        z.append((fit.xi - same.xi) / fit.se)
        other = fit_like(fit, layers, wrong, se, c_star=cs)
        assert other.xi is not None
        z_wrong.append((fit.xi - other.xi) / fit.se)
    assert np.abs(z).max() < 4 and abs(np.mean(z)) < 0.5
    assert np.abs(np.mean(z_wrong)) > 4
    grad = 0.5 * 0.8 ** (30 - np.arange(1, 31))
    gfit = fit_gradient_scale(np.arange(1, 31), grad, 0.02 * grad)
    assert fit_like(gfit, np.arange(1, 31), grad, 0.02 * grad).xi == pytest.approx(gfit.xi)


@pytest.mark.parametrize("xi", [2.0, 6.0, 15.0])
def test_fit_recovers_xi_from_synthetic_decays_within_its_se(xi: float) -> None:
    rng = np.random.default_rng(int(xi * 10))
    layers = np.arange(1, 61)
    z = []
    for _ in range(300):
        se = np.full(60, 2e-3)
        c = 0.3 + 0.6 * np.exp(-layers / xi) + se * rng.standard_normal(60)
        fit = fit_depth_scale(layers, c, se, 0.3)
        assert fit.xi is not None and fit.se is not None, fit.reason
        assert len(fit.layers) >= 3 and fit.layers[0] == 1
        z.append((fit.xi - xi) / fit.se)
    z_arr = np.asarray(z)
    assert np.abs(z_arr).max() < 5
    assert 0.85 < np.mean(np.abs(z_arr) < 2) <= 1.0  # ~95% nominal, >= with Birge inflation
    # biased by ~+0.3 SE (1/slope's curvature; the run ends where noise dips below 4 SE)
    assert abs(np.mean(z_arr)) < 0.5


def test_fit_says_none_when_the_decay_is_not_measurable() -> None:
    layers = np.arange(1, 21)
    rng = np.random.default_rng(3)
    se = np.full(20, 1e-3)
    flat = 0.5 + 0.2 * np.exp(-layers / 1e4) + se * rng.standard_normal(20)
    fit = fit_depth_scale(layers, flat, se, 0.5)
    assert fit.xi is None and fit.reason is not None and "not measurable" in fit.reason
    assert fit.slope is not None  # the line is still reported
    noise = 0.5 + se * rng.standard_normal(20)
    fit = fit_depth_scale(layers, noise, se, 0.5)
    assert fit.xi is None and fit.reason is not None and "layer(s) kept" in fit.reason
    fast = 0.5 + np.exp(-layers / 0.3)  # gone below 4 SE after 2 layers
    fit = fit_depth_scale(layers, fast, se, 0.5)
    assert fit.xi is None and fit.layers == (1,)
    growing = 0.5 + 1e-2 * np.exp(layers / 5.0)
    fit = fit_depth_scale(layers, growing, se, 0.5)
    assert fit.xi is None and fit.reason is not None and "grows" in fit.reason


def test_fit_stops_at_the_first_layer_lost_in_noise() -> None:
    layers = np.arange(1, 11)
    c = np.array([0.9, 0.5, 0.3, 0.2, 0.1, 0.101, 0.25, 0.3, 0.3, 0.3])
    fit = fit_depth_scale(layers, c, np.full(10, 1e-3), 0.1)
    assert fit.layers == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="one value and one SE per layer"):
        fit_depth_scale(layers, c[:5], np.full(10, 1e-3), 0.1)


@pytest.mark.parametrize("chi", [0.8, 1.25])
def test_gradient_fit_recovers_xi_grad(chi: float) -> None:
    rng = np.random.default_rng(11)
    depth, layers = 30, np.arange(1, 31)
    xi = signed_depth_scale(chi)
    z = []
    for _ in range(200):
        mean_sq = 0.5 * chi ** (depth - layers) * (1 + 0.03 * rng.standard_normal(30))
        fit = fit_gradient_scale(layers, mean_sq, 0.03 * mean_sq)
        assert fit.xi is not None and fit.se is not None, fit.reason
        z.append((fit.xi - xi) / fit.se)
    assert np.abs(z).max() < 5 and abs(np.mean(z)) < 0.3
    flat = 0.5 * (1 + 0.03 * rng.standard_normal(30))
    fit = fit_gradient_scale(layers, flat, np.full(30, 0.015))
    assert fit.xi is None and fit.reason is not None and "not measurable" in fit.reason
    noisy = fit_gradient_scale(layers, flat, 0.5 * flat)  # relative SE above 1/4
    assert noisy.xi is None and noisy.layers == ()


def _network_grad_cos(shared: bool, trials: int = 3000) -> tuple[float, float]:
    """Mean over trials of cos(g^1_a, g^1_b) in a numpy tanh net (width 32, depth 3)."""
    rng = np.random.default_rng(5 if shared else 6)
    n, depth = 32, 3
    w = rng.standard_normal((depth, trials, n, n)) * math.sqrt(1.5 / n)
    x = rng.standard_normal((trials, 2, n))
    x[:, 1] = 0.6 * x[:, 0] + 0.8 * x[:, 1]
    zs, h = [], x
    for k in range(depth):
        z = h @ w[k]
        zs.append(z)
        h = np.tanh(z)
    r = rng.standard_normal((trials, 1 if shared else 2, n)) * np.ones((1, 2, 1))
    g = r * (1 - np.tanh(zs[-1]) ** 2)
    for k in range(depth - 1, 0, -1):
        g = (1 - np.tanh(zs[k - 1]) ** 2) * (g @ np.swapaxes(w[k], 1, 2))
    cos = np.sum(g[:, 0] * g[:, 1], axis=1) / np.linalg.norm(g, axis=2).prod(axis=1)
    return float(cos.mean()), float(cos.std(ddof=1) / math.sqrt(trials))


def test_gradient_correlation_with_independent_readouts_is_zero() -> None:
    mean, se = _network_grad_cos(shared=False)
    assert abs(mean) < 4 * se
    theory = predict_correlations(_config("tanh", math.sqrt(1.5 / 64), 0.0, depth=3))
    assert all(theory.get(layer, "gradient").corr == 0.0 for layer in (1, 2, 3))
    mean, se = _network_grad_cos(shared=True)  # the same check fails for shared readouts
    assert mean > 10 * se


def test_predict_correlations_layers_and_limits() -> None:
    cfg = _config("tanh", math.sqrt(2.5 / 64), 0.2, depth=4, batch=3)
    theory = predict_correlations(cfg, input_q=2.0, input_corr=-0.25)
    assert [(t.layer, t.quantity) for t in theory.layers[:4]] == [
        (0, "activation"),
        (1, "preactivation"),
        (1, "activation"),
        (1, "gradient"),
    ]
    assert len(theory.layers) == 1 + 3 * 4
    assert theory.get(0, "activation").corr == -0.25
    assert theory.get(0, "activation").cross == -0.5
    pre = theory.get(1, "preactivation")
    assert pre.cross == pytest.approx(2.5 * 2.0 * -0.25 + 0.04)
    assert pre.corr == pytest.approx((2.5 * 2.0 * -0.25 + 0.04) / (2.5 * 2.0 + 0.04))
    assert theory.phase == "chaotic" and theory.note == ""
    with pytest.raises(KeyError):
        theory.get(5, "activation")
    single = predict_correlations(_config("tanh", 0.1, 0.0, depth=4, batch=1))
    assert single.layers == () and "batch 1" in single.note
    shifted = SimConfig(
        init=scheme("normal", mean=0.01, std=0.1),
        activation=Scheme("tanh"),
        depth=3,
        width=8,
        input_dim=8,
        batch=2,
    )
    none = predict_correlations(shifted)
    assert all(t.corr is None for t in none.layers) and "not centred" in none.note


def test_degenerate_fixed_points_have_no_exponential_scale() -> None:
    # relu without bias: the map c -> K(c)/K(1) at any q, slope 1 at c = 1
    relu = predict_correlations(_config("relu", math.sqrt(1.0 / 64), 0.0, depth=30))
    assert relu.c_star == 1.0 and relu.xi_c == math.inf
    # tanh without bias, ordered: q* = 0 and the map tends to the identity
    tanh = predict_correlations(_config("tanh", math.sqrt(0.5 / 64), 0.0, depth=30))
    assert tanh.q_star == 0.0 and tanh.c_star is None and tanh.xi_c is None
    assert "sub-exponentially" in tanh.note
    # chaotic relu: q overflows float64, the correlations stay finite (scale-free kernel)
    big = predict_correlations(_config("relu", math.sqrt(8.0 / 64), 0.0, depth=700))
    assert big.q_star is None and big.c_star == 1.0
    corr = [big.get(layer, "preactivation").corr for layer in range(1, 701)]
    assert all(c is not None and 0.0 <= c <= 1.0 for c in corr)
    # the critical line: xi_c diverges
    crit = predict_correlations(_config("relu", math.sqrt(2.0 / 64), 0.0, depth=5))
    assert crit.xi_c == math.inf and crit.xi_grad == math.inf


def test_signed_depth_scale() -> None:
    assert signed_depth_scale(math.exp(-0.5)) == pytest.approx(2.0)
    assert signed_depth_scale(math.exp(0.25)) == pytest.approx(-4.0)
    assert signed_depth_scale(1.0 + 1e-13) == math.inf
    assert signed_depth_scale(0.0) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        signed_depth_scale(-1.0)

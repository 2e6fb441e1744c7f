"""Mean-field theory against closed forms, scipy quadrature, the literature and numpy oracles."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from scheduler.analysis.theory import (
    activation_moments,
    bivariate_expectation,
    critical_sigma_w,
    finite_width_note,
    gaussian,
    mean_sq_dispersion,
    meanfield,
    overflow_layer,
    predict,
    predict_map,
    underflow_layer,
    weight_moments,
    weights,
)
from worker.contract import ACTIVATIONS, INIT_SCHEMES, QUANTITIES, Scheme, SimConfig

pytestmark = pytest.mark.unit

Array = npt.NDArray[np.float64]
TANH = Scheme("tanh")
RELU = Scheme("relu")
LINEAR = Scheme("linear")


def scheme(name: str, **params: float | str) -> Scheme:
    merged = {**INIT_SCHEMES.get(name, ACTIVATIONS.get(name, {})), **params}
    return Scheme(name, tuple(sorted(merged.items())))


def config(init: Scheme, activation: Scheme, depth: int, width: int, **kw: object) -> SimConfig:
    input_dim = int(kw.pop("input_dim", width))  # type: ignore[call-overload]
    return SimConfig(
        init=init,
        activation=activation,
        depth=depth,
        width=width,
        input_dim=input_dim,
        **kw,  # type: ignore[arg-type]
    )


def normal(std: float, mean: float = 0.0) -> Scheme:
    return scheme("normal", mean=mean, std=std)


def gauss_quad(fn: Callable[[float], float], q: float) -> float:
    """E[fn(sqrt(q) z)] by adaptive quadrature, split at the kink u = 0."""
    s = math.sqrt(q)

    def integrand(z: float) -> float:
        return fn(s * z) * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    opts = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 500}
    return float(
        integrate.quad(integrand, -np.inf, 0.0, **opts)[0]
        + integrate.quad(integrand, 0.0, np.inf, **opts)[0]
    )


# ------------------------------------------------------------------------------------------
# Weight moments


@pytest.mark.parametrize(
    ("init", "fans", "expected"),
    [
        (normal(2.0, 0.5), (10, 20), (0.5, 4.0)),
        (scheme("uniform", low=-0.05, high=0.05), (10, 20), (0.0, 0.1**2 / 12)),
        (scheme("uniform", low=0.0, high=1.0), (10, 20), (0.5, 1 / 12)),
        (scheme("truncated_normal", std=0.05), (10, 20), (0.0, 0.05**2 * 0.7737413035499232)),
        (scheme("scaled_uniform"), (512, 512), (math.sqrt(1 / 512) / 2, 1 / 512 / 12)),
        (scheme("scaled_uniform", scale=3.0, mode="fan_avg"), (512, 512), (None, 6 / 1024 / 12)),
        (scheme("variance_scaling"), (300, 100), (0.0, 1 / 300)),
        (scheme("variance_scaling", mode="fan_out", distribution="uniform"), (300, 100), (0, 0.01)),
        (
            scheme(
                "variance_scaling", scale=3.0, mode="fan_avg", distribution="untruncated_normal"
            ),
            (300, 100),
            (0.0, 3 / 200),
        ),
        (scheme("glorot_uniform"), (300, 100), (0.0, 2 / 400)),
        (scheme("glorot_normal"), (300, 100), (0.0, 2 / 400)),
        (scheme("he_uniform"), (300, 100), (0.0, 2 / 300)),
        (scheme("he_normal"), (300, 100), (0.0, 2 / 300)),
        (scheme("lecun_uniform"), (300, 100), (0.0, 1 / 300)),
        (scheme("lecun_normal"), (300, 100), (0.0, 1 / 300)),
        (scheme("kaiming_normal", a=math.sqrt(5.0)), (300, 100), (0.0, 2 / (6 * 300))),
        (scheme("xavier_normal", gain=2.0), (300, 100), (0.0, 4 * 2 / 400)),
        (scheme("orthogonal", gain=1.5), (300, 100), (0.0, 2.25 / 300)),
        (scheme("orthogonal"), (100, 300), (0.0, 1 / 300)),
    ],
)
def test_weight_moments_known_values(
    init: Scheme, fans: tuple[int, int], expected: tuple[float | None, float]
) -> None:
    mean, var = weight_moments(init, *fans)
    if expected[0] is not None:
        assert mean == pytest.approx(expected[0], rel=1e-14, abs=1e-300)
    assert var == pytest.approx(expected[1], rel=1e-14)


def test_he_normal_variance_is_exactly_two_over_fan_in() -> None:
    for fan_in in (3, 64, 100, 512, 4096):
        assert weight_moments(scheme("he_normal"), fan_in, 7)[1] == pytest.approx(
            2.0 / fan_in, rel=1e-15
        )


def test_truncated_variance_factor_matches_scipy_and_keras_constant() -> None:
    assert stats.truncnorm(-2.0, 2.0).var() == pytest.approx(
        weights.TRUNCATED_VARIANCE_FACTOR, rel=1e-14
    )
    assert math.sqrt(weights.TRUNCATED_VARIANCE_FACTOR) == pytest.approx(0.87962566103423978)


def test_every_contract_scheme_has_moments_and_unknown_is_an_error() -> None:
    for name in INIT_SCHEMES:
        mean, var = weight_moments(scheme(name), 64, 32)
        assert var > 0.0 and math.isfinite(mean)
    with pytest.raises(ValueError, match="Received: 'bogus'"):
        weight_moments(Scheme("bogus"), 3, 3)


# ------------------------------------------------------------------------------------------
# Activations and quadrature

ALL_ACTIVATIONS = [
    scheme("linear"),
    scheme("tanh"),
    scheme("sigmoid"),
    scheme("relu"),
    scheme("leaky_relu"),
    scheme("leaky_relu", alpha=0.01),
    scheme("elu"),
    scheme("elu", alpha=0.5),
    scheme("selu"),
    scheme("gelu"),
    scheme("swish"),
    scheme("softplus"),
]


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=lambda a: a.label)
def test_quadrature_matches_scipy_quad(act: Scheme) -> None:
    impl = gaussian.activation_fns(act)

    def scalar(fn: Callable[[Array], Array]) -> Callable[[float], float]:
        return lambda u: float(fn(np.array([u]))[0])

    f, d1, d2 = scalar(impl.f), scalar(impl.d1), scalar(impl.d2)
    for q in (1e-3, 0.5, 1.0, 3.0, 40.0, 1e4):
        m = activation_moments(act, q)
        cases = [
            (m.mean, gauss_quad(f, q)),
            (m.mean_sq, gauss_quad(lambda u: f(u) ** 2, q)),
            (m.deriv_sq, gauss_quad(lambda u: d1(u) ** 2, q)),
            (m.curvature, gauss_quad(lambda u: d2(u) * f(u), q)),
        ]
        scale = max(1.0, m.mean_sq)
        for got, ref in cases:
            assert abs(got - ref) <= 1e-10 * abs(ref) + 1e-14 * scale, (q, got, ref)


def test_relu_and_leaky_closed_forms() -> None:
    for q in (0.1, 1.0, 7.0):
        m = activation_moments(RELU, q)
        assert (m.mean_sq, m.deriv_sq, m.mean) == pytest.approx(
            (q / 2, 0.5, math.sqrt(q / (2 * math.pi)))
        )
        leaky = activation_moments(scheme("leaky_relu", alpha=0.3), q)
        assert leaky.mean_sq == pytest.approx((1 + 0.09) * q / 2)
        assert leaky.deriv_sq == pytest.approx((1 + 0.09) / 2)
        lin = activation_moments(LINEAR, q)
        assert (lin.mean, lin.mean_sq, lin.deriv_sq, lin.kurtosis) == (0.0, q, 1.0, 3.0)


def test_log_slope_and_kurtosis() -> None:
    h = 1e-4
    for act in (TANH, scheme("gelu"), scheme("sigmoid"), scheme("selu")):
        for q in (0.01, 1.0, 30.0):
            m = activation_moments(act, q)
            up = activation_moments(act, q * math.exp(h)).log_mean_sq
            down = activation_moments(act, q * math.exp(-h)).log_mean_sq
            assert m.log_slope == pytest.approx((up - down) / (2 * h), rel=1e-7, abs=1e-9)
            assert m.log_mean_sq == pytest.approx(math.log(m.mean_sq), rel=1e-14)
    assert activation_moments(RELU, 2.0).kurtosis == pytest.approx(6.0)  # kappa = 5
    assert activation_moments(TANH, 1e300).log_slope == pytest.approx(0.0, abs=1e-12)
    assert activation_moments(scheme("gelu"), 1e300).log_slope == 1.0


def test_keras_activation_definitions() -> None:
    u = np.array([-1.5, -0.5, 0.5, 1.0, 2.0])

    def f(name: str, **params: float) -> Array:
        return gaussian.activation_fns(scheme(name, **params)).f(u)

    np.testing.assert_allclose(f("selu")[3], 1.05070098, rtol=1e-8)
    np.testing.assert_allclose(f("selu")[0], 1.05070098 * 1.67326324 * math.expm1(-1.5), rtol=1e-8)
    np.testing.assert_allclose(f("elu", alpha=0.5)[0], 0.5 * math.expm1(-1.5))
    np.testing.assert_allclose(f("leaky_relu")[0], -0.3)  # Keras default negative slope 0.2
    np.testing.assert_allclose(f("gelu"), u * stats.norm.cdf(u), rtol=1e-15)  # exact erf form
    np.testing.assert_allclose(f("swish"), u / (1 + np.exp(-u)), rtol=1e-15)
    np.testing.assert_allclose(f("softplus"), np.log1p(np.exp(u)), rtol=1e-15)
    np.testing.assert_allclose(f("sigmoid"), 1 / (1 + np.exp(-u)), rtol=1e-15)


@pytest.mark.parametrize("act", ALL_ACTIVATIONS, ids=lambda a: a.label)
def test_derivatives_match_finite_differences(act: Scheme) -> None:
    impl = gaussian.activation_fns(act)
    u = np.array([-3.0, -1.2, -0.3, 0.4, 1.1, 2.7])  # away from the kink at 0
    h = 1e-5
    np.testing.assert_allclose(impl.d1(u), (impl.f(u + h) - impl.f(u - h)) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(impl.d2(u), (impl.d1(u + h) - impl.d1(u - h)) / (2 * h), atol=1e-8)


def test_bivariate_matches_arccos_kernel_dblquad_and_limits() -> None:
    relu, leaky = gaussian.activation_fns(RELU), gaussian.activation_fns(scheme("leaky_relu"))
    for q in (0.3, 1e4):
        for c in (1e-3, 0.5, 0.9999):
            for impl, slopes in ((relu, (1.0, 0.0)), (leaky, (1.0, 0.2))):
                ff, dd = gaussian._arccos_kernels(*slopes, q, c)
                assert gaussian._bivariate_quadrature(impl.f, impl.f, q, c) == pytest.approx(
                    ff, rel=1e-10
                )
                assert gaussian._bivariate_quadrature(impl.d1, impl.d1, q, c) == pytest.approx(
                    dd, rel=1e-10
                )
    q, c = 2.0, 0.6
    s, r = math.sqrt(q), math.sqrt(1 - c * c)
    ref = integrate.dblquad(
        lambda z2, z1: math.tanh(s * z1) * math.tanh(s * (c * z1 + r * z2))
        * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi),
        -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-12,
    )[0]  # fmt: skip
    assert bivariate_expectation(TANH, q, c) == pytest.approx(ref, rel=1e-10)
    sig = scheme("sigmoid")
    m = activation_moments(sig, 1.3)
    assert bivariate_expectation(sig, 1.3, 0.0) == pytest.approx(m.mean**2, rel=1e-13)
    assert bivariate_expectation(sig, 1.3, 1.0) == pytest.approx(m.mean_sq, rel=1e-13)
    assert bivariate_expectation(sig, 1.3, 1 - 1e-9) == pytest.approx(m.mean_sq, rel=1e-8)


# ------------------------------------------------------------------------------------------
# Maps, criticality, depth scales


def test_relu_is_critical_at_sigma_w_squared_two() -> None:
    assert critical_sigma_w(0.0, RELU) == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert critical_sigma_w(0.3, RELU) == pytest.approx(math.sqrt(2.0), rel=1e-15)
    q_star, chi_1, xi_q, xi_c, phase = predict_map(math.sqrt(2.0), 0.0, RELU)
    assert chi_1 == pytest.approx(1.0)
    assert (phase, xi_c) == ("critical", math.inf)
    assert predict_map(1.3, 0.0, RELU)[4] == "ordered"
    q_star, chi_1, xi_q, xi_c, phase = predict_map(1.6, 0.0, RELU)
    assert (q_star, phase, xi_q, xi_c) == (None, "chaotic", None, None)  # q diverges
    q_star, chi_1, xi_q, xi_c, phase = predict_map(1.2, 0.5, RELU)
    assert q_star == pytest.approx(0.25 / (1 - 0.72)) and chi_1 == pytest.approx(0.72)
    assert xi_q == pytest.approx(-1 / math.log(0.72)) and xi_c == pytest.approx(xi_q)
    assert critical_sigma_w(0.0, scheme("leaky_relu", alpha=0.5)) == pytest.approx(
        math.sqrt(2 / 1.25)
    )


def test_tanh_is_critical_at_sigma_w_one_without_bias() -> None:
    assert critical_sigma_w(0.0, TANH) == 1.0
    q_star, chi_1, xi_q, _, phase = predict_map(1.0, 0.0, TANH)
    assert (q_star, chi_1, phase, xi_q) == (0.0, 1.0, "critical", math.inf)
    for sigma_w in (0.5, 0.9):  # q* = 0, chi_1 = sigma_w^2 and xi_q = -1/log(sigma_w^2)
        q_star, chi_1, xi_q, _, phase = predict_map(sigma_w, 0.0, TANH)
        assert (q_star, phase) == (0.0, "ordered")
        assert chi_1 == pytest.approx(sigma_w**2)
        assert xi_q == pytest.approx(-1 / math.log(sigma_w**2))


def _quad_fixed_point(sigma_w: float, sigma_b: float) -> tuple[float, float]:
    """q* and chi_1 of tanh by plain iteration of the q-map with scipy.integrate.quad."""
    q = 1.0
    for _ in range(3000):
        q_new = sigma_w**2 * gauss_quad(lambda u: math.tanh(u) ** 2, q) + sigma_b**2
        if abs(q_new - q) < 1e-15:
            break
        q = q_new
    return q, sigma_w**2 * gauss_quad(lambda u: (1 - math.tanh(u) ** 2) ** 2, q)


def test_tanh_critical_line_matches_independent_quadrature_and_grows_with_bias() -> None:
    sigma_w = critical_sigma_w(0.05, TANH)
    assert sigma_w is not None
    assert 1.0 < sigma_w < 1.2  # Schoenholz et al. 2017, Fig. 1: the line leaves (1, 0) upwards
    q_ref, chi_ref = _quad_fixed_point(sigma_w, 0.05)
    assert chi_ref == pytest.approx(1.0, abs=1e-8)
    assert predict_map(sigma_w, 0.05, TANH)[0] == pytest.approx(q_ref, rel=1e-8)
    # sigma_b^2 = 0.05, the value of Schoenholz et al.'s figures: sigma_w^2 ~ 1.76.
    schoenholz = critical_sigma_w(math.sqrt(0.05), TANH)
    assert schoenholz is not None and schoenholz**2 == pytest.approx(1.76, abs=0.01)
    line = [critical_sigma_w(b, TANH) for b in (0.0, 0.01, 0.05, 0.1, 0.3, 0.6, 1.0)]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(line))


@pytest.mark.parametrize("name", ["gelu", "swish"])
def test_a_jump_of_the_fixed_point_is_not_a_critical_crossing(name: str) -> None:
    """gelu/swish at sigma_b = 0.05: the fixed point reached from q = 1 jumps (chi_1 from ~0.6 to
    ~1.17, q from ~0.006 to diverging) between sigma_w = 1.5 and 1.7; chi_1 never equals 1."""
    act = Scheme(name)
    chi = [predict_map(sw, 0.05, act)[1] for sw in np.linspace(1.0, 2.0, 41)]
    assert all(c is not None and abs(c - 1.0) > 0.1 for c in chi)
    assert chi[0] is not None and chi[-1] is not None and chi[0] < 1.0 < chi[-1]
    assert critical_sigma_w(0.05, act) is None
    crossing = critical_sigma_w(1.0, act)  # at sigma_b = 1 chi_1 does cross 1 continuously
    assert crossing is not None
    for sigma_w in (crossing * (1 - 1e-6), crossing * (1 + 1e-6)):
        chi_1 = predict_map(sigma_w, 1.0, act)[1]
        assert chi_1 is not None and chi_1 == pytest.approx(1.0, abs=1e-5)
    # every value returned anywhere is a true crossing
    for sigma_b in (0.0, 0.02, 0.1, 0.3, 0.6, 1.0, 2.0):
        sw = critical_sigma_w(sigma_b, act)
        if sw is not None:
            chi_1 = predict_map(sw, sigma_b, act)[1]
            assert chi_1 is not None and chi_1 == pytest.approx(1.0, abs=1e-6)


def test_depth_scales_finite_off_criticality_and_diverging_at_it() -> None:
    for sigma_w in (0.8, 1.0, 2.0, 3.0):
        _, _, xi_q, xi_c, phase = predict_map(sigma_w, 0.3, TANH)
        assert phase in ("ordered", "chaotic")
        assert xi_q is not None and 0 < xi_q < 50
        assert xi_c is not None and 0 < xi_c < 50
    crit = critical_sigma_w(0.3, TANH)
    assert crit is not None
    assert predict_map(crit * 0.99, 0.3, TANH)[4] == "ordered"
    assert predict_map(crit * 1.01, 0.3, TANH)[4] == "chaotic"
    assert predict_map(crit * (1 + 1e-5), 0.3, TANH)[4] == "critical"
    previous = 0.0
    for eps in (1e-1, 1e-2, 1e-4):
        nearest = math.inf
        for sigma_w in (crit * (1 - eps), crit * (1 + eps)):
            _, _, xi_q, xi_c, _ = predict_map(sigma_w, 0.3, TANH)
            assert xi_q is not None and xi_q < 5  # xi_q stays finite when sigma_b > 0
            assert xi_c is not None and xi_c > 2 * previous  # xi_c ~ 1/|sigma_w - crit|
            nearest = min(nearest, xi_c)
        previous = nearest
    assert previous > 1000
    # sigma_b = 0: xi_q = -1/log(sigma_w^2) diverges as sigma_w -> 1
    assert predict_map(0.9999, 0.0, TANH)[2] == pytest.approx(-1 / math.log(0.9999**2))


def test_chaotic_correlation_fixed_point() -> None:
    # tanh is odd: with sigma_b = 0 the stable c* is 0, so chi_c = sigma_w^2 E[phi'(u)]^2.
    sigma_w = 2.0
    q_star, _, _, xi_c, phase = predict_map(sigma_w, 0.0, TANH)
    assert phase == "chaotic" and q_star is not None and xi_c is not None
    d1 = gaussian.activation_fns(TANH).d1
    mean_d1 = gauss_quad(lambda u: float(d1(np.array([u]))[0]), q_star)
    assert xi_c == pytest.approx(-1 / math.log(sigma_w**2 * mean_d1**2), rel=1e-8)
    # with a bias c* in (0, 1) is a fixed point of the C-map and chi_c < 1 there
    sw2, sb2 = 4.0, 0.09
    q_star, *_ = predict_map(2.0, 0.3, TANH)
    assert q_star is not None
    c_star = meanfield._c_star(sw2, sb2, TANH, q_star)
    assert 0 < c_star < 1
    assert (sw2 * bivariate_expectation(TANH, q_star, c_star) + sb2) / q_star == pytest.approx(
        c_star, abs=1e-11
    )
    assert sw2 * bivariate_expectation(TANH, q_star, c_star, derivative=True) < 1


@settings(max_examples=15, deadline=None)
@given(st.floats(0.2, 4.0), st.floats(0.0, 1.5))
def test_fixed_point_property(sigma_w: float, sigma_b: float) -> None:
    q_star, chi_1, xi_q, xi_c, phase = predict_map(sigma_w, sigma_b, TANH)
    assert q_star is not None and chi_1 is not None
    q_map = sigma_w**2 * activation_moments(TANH, q_star).mean_sq + sigma_b**2
    assert q_map == pytest.approx(q_star, rel=1e-9, abs=1e-12)
    assert phase == meanfield._phase(chi_1, meanfield.PHASE_TOL)
    if phase != "critical":
        assert xi_q is not None and xi_q > 0 and xi_c is not None and xi_c > 0


# ------------------------------------------------------------------------------------------
# Per-configuration predictions


def test_linear_variance_grows_exactly_geometrically() -> None:
    cfg = config(normal(0.3), LINEAR, 12, 50)
    th = predict(cfg)
    sw2 = 50 * 0.09
    for layer in range(1, 13):
        assert th.get(layer, "preactivation").mean_sq == pytest.approx(sw2**layer, rel=1e-13)
        assert th.get(layer, "activation").mean_sq == pytest.approx(sw2**layer, rel=1e-13)
        assert th.get(layer, "gradient").mean_sq == pytest.approx(sw2 ** (12 - layer), rel=1e-13)
    cfg = config(normal(0.1), LINEAR, 5, 64, bias=scheme("normal", std=0.5))
    th, q = predict(cfg), 1.0
    for layer in range(1, 6):
        q = 64 * 0.01 * q + 0.25
        assert th.get(layer, "preactivation").mean_sq == pytest.approx(q, rel=1e-13)


def test_predict_layout_and_flags() -> None:
    cfg = config(scheme("glorot_normal"), TANH, 4, 32, input_dim=16, batch=3)
    th = predict(cfg)
    assert [(x.layer, x.quantity) for x in th.layers] == [(0, "activation")] + [
        (layer, quantity) for layer in range(1, 5) for quantity in QUANTITIES
    ]
    x = th.get(0, "activation")
    assert (x.mean, x.mean_sq, x.std) == (0.0, 1.0, math.sqrt(1 - 1 / 48))
    assert x.mean_bounds == (0.0, 0.0) and x.mean_sq_bounds == (1.0, 1.0)  # exact
    assert x.dispersion == pytest.approx(2 / 48)
    assert th.get(1, "preactivation").mean_sq == pytest.approx(16 * 2 / 48)
    assert th.exact and th.phase in ("ordered", "critical", "chaotic")
    ortho = predict(config(scheme("orthogonal"), TANH, 3, 32))
    assert not ortho.exact and "orthogonal" in ortho.note
    assert ortho.get(3, "preactivation").mean_sq is not None


def test_non_centred_first_layer_exact_and_deeper_layers_unpredicted() -> None:
    cfg = config(scheme("scaled_uniform", scale=2.0), RELU, 3, 64, batch=2)
    th = predict(cfg)
    assert not th.exact and th.phase == "unknown" and th.chi_1 is None
    c2 = 2.0 / 64
    assert th.get(1, "preactivation").mean_sq == pytest.approx(64 * (c2 / 12 + c2 / 4))
    assert th.get(1, "activation").mean_sq == pytest.approx(64 * (c2 / 12 + c2 / 4) / 2)
    for quantity in QUANTITIES:
        assert th.get(2, quantity).mean_sq is None
    assert th.get(1, "gradient").mean_sq is None
    assert overflow_layer(cfg) is None and underflow_layer(cfg) is None


# ------------------------------------------------------------------------------------------
# Numpy Monte Carlo oracle of the model (forward and backward), tolerances in standard errors


def simulate(
    rng: np.random.Generator,
    sampler: Callable[[tuple[int, ...]], Array],
    act: Scheme,
    depth: int,
    width: int,
    batch: int,
    sigma_b: float,
    trials: int,
) -> dict[tuple[int, str], Array]:
    """Per-trial observables {(layer, quantity): (trials, 3) [mean, std, mean_sq]}."""
    impl = gaussian.activation_fns(act)
    x = rng.standard_normal((trials, batch, width))
    out: dict[tuple[int, str], Array] = {}

    def record(layer: int, quantity: str, v: Array) -> None:
        out[layer, quantity] = np.stack(
            [v.mean(axis=(1, 2)), v.std(axis=(1, 2)), (v * v).mean(axis=(1, 2))], axis=1
        )

    record(0, "activation", x)
    h, zs, ws = x, [], []
    for layer in range(1, depth + 1):
        w = sampler((trials, width, width))
        z = h @ w + sigma_b * rng.standard_normal((trials, 1, width))
        h = impl.f(z)
        record(layer, "preactivation", z)
        record(layer, "activation", h)
        zs.append(z)
        ws.append(w)
    g = rng.standard_normal((trials, batch, width)) * impl.d1(zs[-1])
    record(depth, "gradient", g)
    for layer in range(depth - 1, 0, -1):
        g = impl.d1(zs[layer - 1]) * (g @ np.swapaxes(ws[layer], 1, 2))
        record(layer, "gradient", g)
    return out


def z_score(samples: Array, predicted: float) -> float:
    return float((samples.mean() - predicted) / (samples.std(ddof=1) / math.sqrt(samples.size)))


def agrees(samples: Array, predicted: float, bias: float) -> bool:
    """Sample mean within 4.5 standard errors plus a relative allowance for a known bias."""
    sem = samples.std(ddof=1) / math.sqrt(samples.size)
    return bool(abs(samples.mean() - predicted) <= 4.5 * sem + bias * abs(predicted))


def test_relu_and_linear_mean_sq_exact_against_monte_carlo() -> None:
    rng = np.random.default_rng(7)
    width, depth, batch = 32, 4, 2
    for act, std in ((RELU, math.sqrt(2 / width)), (LINEAR, 1.2 / math.sqrt(width))):
        th = predict(config(normal(std), act, depth, width, batch=batch))

        def sampler(shape: tuple[int, ...], std: float = std) -> Array:
            return std * rng.standard_normal(shape)

        sim = simulate(rng, sampler, act, depth, width, batch, 0.0, 4000)
        for (layer, quantity), obs in sim.items():
            pred = th.get(layer, quantity)
            assert pred.mean_sq is not None
            if quantity != "gradient":  # gradients: gradient-independence (mean-field) only
                assert abs(z_score(obs[:, 2], pred.mean_sq)) < 4.5, (act, layer, quantity)


def test_tanh_with_bias_against_monte_carlo() -> None:
    rng = np.random.default_rng(11)
    width, depth, batch, sigma_b = 96, 3, 2, 0.3
    std = 1.5 / math.sqrt(width)
    th = predict(config(normal(std), TANH, depth, width, batch=batch,
                        bias=scheme("normal", std=sigma_b)))  # fmt: skip
    sim = simulate(
        rng, lambda s: std * rng.standard_normal(s), TANH, depth, width, batch, sigma_b, 1000
    )
    for (layer, quantity), obs in sim.items():
        pred = th.get(layer, quantity)
        assert pred.mean_sq is not None and pred.std is not None and pred.mean is not None
        # mean-field: O(depth/width) corrections, allowed on top of the noise
        assert agrees(obs[:, 2], pred.mean_sq, 0.02), (layer, quantity)
        assert agrees(obs[:, 1] ** 2, pred.std**2, 0.02), (layer, quantity)
        assert agrees(obs[:, 0], pred.mean, 0.0), (layer, quantity)


def test_non_centred_first_layer_against_monte_carlo() -> None:
    # The seed notebook's cells 161/163: U[0, 1) * sqrt(k / 512), one layer, batch 1.
    rng = np.random.default_rng(3)
    width, trials = 128, 1500
    for k, act in ((1.0, TANH), (2.0, RELU)):
        c = math.sqrt(k / width)
        th = predict(config(scheme("scaled_uniform", scale=k), act, 1, width))

        def sampler(shape: tuple[int, ...], c: float = c) -> Array:
            return c * rng.random(shape)

        sim = simulate(rng, sampler, act, 1, width, 1, 0.0, trials)
        for quantity in ("preactivation", "activation"):
            pred, obs = th.get(1, quantity), sim[1, quantity]
            assert pred.mean_sq is not None and pred.std is not None
            assert abs(z_score(obs[:, 2], pred.mean_sq)) < 4.5
            # E[std^2]: exact for z^1, common-mode formula up to O(1/width) for h^1
            assert agrees(obs[:, 1] ** 2, pred.std**2, 0.01)
    # pooled std (ignoring the common mode) would be far off: here sqrt(E[std^2]) ~ 0.234
    assert predict(config(scheme("scaled_uniform"), TANH, 1, 512)).get(
        1, "activation"
    ).std == pytest.approx(0.234, abs=0.005)


def test_mean_sq_dispersion_linear_against_monte_carlo() -> None:
    rng = np.random.default_rng(5)
    width, depth = 32, 4
    cfg = config(normal(1 / math.sqrt(width)), LINEAR, depth, width)
    expected = (1 + 2 / width) ** (depth + 1) - 1
    assert mean_sq_dispersion(cfg, depth) == pytest.approx(expected, rel=1e-12)
    sim = simulate(
        rng, lambda s: rng.standard_normal(s) / math.sqrt(width), LINEAR, depth, width, 1, 0, 8000
    )
    ms = sim[depth, "preactivation"][:, 2]
    assert ms.var() / ms.mean() ** 2 == pytest.approx(expected, rel=0.12)


def test_orthogonal_mean_sq_and_dispersion_against_monte_carlo() -> None:
    rng = np.random.default_rng(9)
    width, depth, gain = 32, 4, math.sqrt(2.0)

    def haar(shape: tuple[int, ...]) -> Array:  # Keras Orthogonal: Q of a Gaussian's QR
        q, r = np.linalg.qr(rng.standard_normal(shape))
        signs = np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
        return np.asarray(gain * q * signs, dtype=np.float64)

    cfg = config(scheme("orthogonal", gain=gain), RELU, depth, width)
    th = predict(cfg)
    assert not th.exact
    sim = simulate(rng, haar, RELU, depth, width, 1, 0.0, 4000)
    for layer in range(1, depth + 1):
        for quantity in ("preactivation", "activation"):
            pred = th.get(layer, quantity).mean_sq
            assert pred is not None
            assert abs(z_score(sim[layer, quantity][:, 2], pred)) < 4.5
    ms = sim[depth, "preactivation"][:, 2]
    dispersion = mean_sq_dispersion(cfg, depth)
    assert dispersion is not None
    assert ms.var() / ms.mean() ** 2 == pytest.approx(dispersion, rel=0.12)
    linear = config(scheme("orthogonal"), LINEAR, depth, width)
    assert mean_sq_dispersion(linear, depth) == pytest.approx(2 / width, rel=1e-12)


# ------------------------------------------------------------------------------------------
# Overflow, underflow, finite width


def first_event_layers(
    rng: np.random.Generator,
    std: float,
    width: int,
    depth: int,
    trials: int,
    *,
    collapse: bool,
    flush: bool = False,
    relu: bool = False,
    batch: int = 1,
) -> Array:
    """1-based first layer with a non-finite (or all-zero) z of a float32 linear/relu net."""
    tiny = np.finfo(np.float32).tiny
    h = rng.standard_normal((trials, batch, width)).astype(np.float32)
    first = np.full(trials, -1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in range(1, depth + 1):
            w = std * rng.standard_normal((trials, width, width), dtype=np.float32)
            if flush:  # flush-to-zero products and sums, as TensorFlow's CPU kernels do
                p = np.swapaxes(h, 1, 2) * w
                p[np.abs(p) < tiny] = 0
                h = p.sum(axis=1, dtype=np.float32)[:, None, :]
                h[np.abs(h) < tiny] = 0
            else:
                h = h @ w
            hit_z = ~np.isfinite(h).all(axis=(1, 2))
            if relu:
                h = np.maximum(h, np.float32(0))
            hit = (h == 0).all(axis=(1, 2)) if collapse else hit_z
            first[hit & (first < 0)] = layer
            if (first > 0).all():
                break
    return first


def test_overflow_layer_of_the_notebook() -> None:
    cfg = config(normal(1.0), LINEAR, 100, 100)
    predicted = overflow_layer(cfg)
    assert predicted is not None
    assert abs(predicted - 38) <= 1  # the seed notebook: NaN at 0-based loop index 37
    measured = first_event_layers(np.random.default_rng(0), 1.0, 100, 45, 100, collapse=False)
    assert (measured > 0).all()
    assert predicted == pytest.approx(measured.mean(), abs=0.3)
    assert predict(cfg).overflow_layer == predicted
    relu = overflow_layer(config(normal(1.0), RELU, 100, 64, batch=2))
    measured = first_event_layers(
        np.random.default_rng(4), 1.0, 64, 60, 60, collapse=False, relu=True, batch=2
    )
    assert relu is not None and (measured > 0).all()
    assert relu == pytest.approx(measured.mean(), abs=0.4)
    assert overflow_layer(config(normal(1.0), LINEAR, 30, 100)) is None  # beyond depth
    assert overflow_layer(config(normal(1.0), TANH, 100, 100)) is None  # bounded
    f16 = overflow_layer(config(normal(1.0), LINEAR, 100, 100, dtype="float16"))
    assert f16 is not None and 3 < f16 < 5  # 10^l * 2.7 > 65504 at l ~ 4


def test_underflow_layer_against_float32_runs() -> None:
    rng = np.random.default_rng(1)
    width, std = 50, 0.03
    cfg = config(normal(std), LINEAR, 200, width)
    for flush in (False, True):
        predicted = underflow_layer(cfg, flush_denormals=flush)
        measured = first_event_layers(rng, std, width, 120, 120, collapse=True, flush=flush)
        assert (measured > 0).all() and predicted is not None
        assert predicted == pytest.approx(measured.mean(), abs=0.8), flush
    # the notebook's cell 157 (std 0.05, width 100) in IEEE arithmetic: ~149
    gradual = underflow_layer(config(normal(0.05), LINEAR, 200, 100), flush_denormals=False)
    assert gradual == pytest.approx(149, abs=1.5)
    assert underflow_layer(config(normal(0.05), LINEAR, 100, 100)) is None  # beyond depth
    biased = config(normal(std), LINEAR, 200, width, bias=scheme("normal", std=0.1))
    assert underflow_layer(biased) is None
    assert underflow_layer(config(normal(std), scheme("sigmoid"), 200, width)) is None


def test_finite_width_note() -> None:
    assert finite_width_note(config(normal(0.1), RELU, 5, 100)) is None
    deep_relu = finite_width_note(config(scheme("he_normal"), RELU, 50, 100))
    assert deep_relu is not None and "not finite-width effects" in deep_relu
    deep_tanh = finite_width_note(config(scheme("glorot_normal"), TANH, 50, 100))
    assert deep_tanh is not None and "finite-width corrections" in deep_tanh

"""Mean-field theory of signal and gradient propagation at initialization (numpy/scipy only).

What is predicted
-----------------
The Monte Carlo core (see `worker.contract`) pushes x ~ N(0, I) (rows of a batch, `input_dim`
units) through `depth` dense layers

    z^l = h^{l-1} W^l + b^l,   h^l = phi(z^l),   h^0 = x,
    W^l_ij i.i.d. with mean mu_l and variance v_l (`weight_moments`),   b^l_j ~ N(0, sigma_b^2),

and back-propagates L = <r, h^D>, r ~ N(0, I): g^D = r * phi'(z^D), g^l = phi'(z^l) *
(g^{l+1} (W^{l+1})^T). Per trial it records, over the batch x units values of each (layer,
quantity), the unit averages `mean`, `std` (ddof=0) and `mean_sq`. This module predicts their
expectations over trials.

Mean-field recursion (Poole et al. 2016, "Exponential expressivity in deep neural networks
through transient chaos"; Schoenholz et al. 2017, "Deep Information Propagation"). With
sigma_w^2 = fan_in * v (effective, per layer) and E_z over z ~ N(0, 1):

    q^1     = fan_in_1 v_1 E[x^2] + sigma_b^2 = sigma_w1^2 + sigma_b^2                  (exact)
    q^l     = sigma_w^2 E_z[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2                          (l >= 2)
    E[mean_sq(z^l)] = q^l,   E[mean(z^l)] = 0
    E[mean_sq(h^l)] = E_z[phi(sqrt(q^l) z)^2],   E[mean(h^l)] = E_z[phi(sqrt(q^l) z)]
    E[mean_sq(g^D)] = E_z[phi'(sqrt(q^D) z)^2]
    E[mean_sq(g^l)] = (fan_out_{l+1} v_{l+1}) E_z[phi'(sqrt(q^l) z)^2] E[mean_sq(g^{l+1})]
    E[mean(g^l)]    = 0                                   (gradient independence assumption)

For linear and positively homogeneous activations (relu, leaky_relu) and centred i.i.d. weights
the mean_sq recursion is exact in expectation at any width: E over W^l of |h^{l-1} W^l|^2 is
fan_out v |h^{l-1}|^2 whatever h^{l-1} is, and E[relu(z)^2] = E[z^2] / 2 for any symmetric z.
(Only mean_sq: E[mean(relu(z))] = E[sqrt(q)] / sqrt(2 pi) is below sqrt(E[q] / 2 pi) once q
fluctuates.) For other activations it is the infinite-width limit (corrections O(depth / width),
Hanin & Rolnick 2018; see `finite_width_note`). Gradients always rest on the gradient
independence assumption (W^{l+1} of the backward pass treated as independent of the forward).

`std`: the field is sqrt(E[std^2]), the root of the expected within-trial variance. It is exact
for the input (E[std^2] = 1 - 1/N over N = batch x input_dim i.i.d. values) and for the first
preactivation (below); elsewhere it is the pooled approximation E[mean_sq] - E[mean]^2, which
neglects Var(mean) = O(1 / (batch x width)). E[std] <= sqrt(E[std^2]) (Jensen) and the gap grows
with depth / width as the per-trial mean_sq spreads, so compare the Monte Carlo on `mean_sq`.

First layer, any i.i.d. weights (including non-centred ones, mu != 0): with N = B n values,
B = batch, n0 = fan_in, n = fan_out, and x rows independent N(0, I),

    E[mean_sq(z^1)] = n0 (v + mu^2) + sigma_b^2
    E[std(z^1)^2]   = n0 v (1 - 1/(B n)) + n0 mu^2 (1 - 1/B) + sigma_b^2 (1 - 1/n)

(the common mode m_b = mu sum_i x_bi is shared by every unit of row b, so it adds nothing to
the spread within a row). The marginal of one z^1_j is Gaussian given its column of W, with variance
sum_i W_ij^2 + sigma_b^2 ~ q^1, so the activation moments of layer 1 follow from q^1 as usual; its
within-trial variance accounts for the common mode: z_bj = m_b + e_bj with Var m = A = n0 mu^2,
Var e = V = n0 v + sigma_b^2, hence

    E[std(h^1)^2] ~ E[phi^2] - E[phi(u1) phi(u2)] / B - (1 - 1/B) E[phi]^2,
    (u1, u2) ~ N(0, q^1 [[1, c], [c, 1]]),  c = A / q^1,

which for mu = 0 is the pooled E[phi^2] - E[phi]^2. Deeper layers of non-centred networks carry a
width-dependent common mode (mu sum_i h_i with E[phi] != 0) that this module does not model:
their predictions are None, with the reason in `ConfigTheory.note`.

Fixed point, susceptibilities, depth scales (Schoenholz et al. 2017, eqs. 3-9)
------------------------------------------------------------------------------
q* is the fixed point of the q-map reached from q^1 (or `q0`); the c-map of two inputs is

    c^{l+1} = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q*,
    u1 = sqrt(q*) z1,  u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2).

chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2] is its slope at c = 1. Ordered phase (chi_1 < 1): c* = 1
is stable; chaotic (chi_1 > 1): the stable fixed point is c* < 1 (unique: the c-map has a Hermite
expansion with non-negative coefficients, so it is convex on [0, 1]). Depth scales:

    xi_q^{-1} = -log(chi_1 + sigma_w^2 E[phi''(sqrt(q*) z) phi(sqrt(q*) z)])   (q-map slope at q*)
    xi_c^{-1} = -log(chi_c),  chi_c = sigma_w^2 E[phi'(u1) phi'(u2)] at c = c*

so chi_c = chi_1 in the ordered phase and xi_c diverges on the critical line chi_1 = 1, while
xi_q stays finite there unless sigma_b = 0 (tanh: q* = 0 and xi_q = -1/log(sigma_w^2)). Kinks add
delta functions to phi'' at u = 0; they are multiplied by phi(0) = 0 for every kinked activation
here (relu, leaky_relu, elu with alpha != 1, selu), so only the regular part contributes. Where
q* = 0 (sigma_b = 0, phi(0) = 0) the linearisation is degenerate: the normalised c-map tends to
the identity as the signal vanishes, so correlations converge sub-exponentially although the
formula gives a finite xi_c; `note` says so. Where q diverges (unbounded phi,
sigma_w^2 (a_+^2 + a_-^2)/2 >= 1 for asymptotic slopes a_+-) chi_1 is the asymptotic value and q*,
xi_q, xi_c are None.

Numerics
--------
Gaussian expectations of relu, leaky_relu and linear are closed forms (arc-cosine kernel, Cho &
Saul 2009, for two-point ones). The others use composite Gauss-Legendre quadrature times the
normal density on z in [-12, 12], with panel edges at z = 0 (every kink of these activations is
at u = 0), every unit of u = sqrt(q) z out to |u| = 40, and every 0.5 of z. A fixed-order
Gauss-Hermite rule (`hermegauss`) loses accuracy at kinks and once sqrt(q) >> 1 (its nodes near 0
are ~0.2 apart, while phi(sqrt(q) z) varies on 1/sqrt(q)); this rule agrees with
`scipy.integrate.quad` to ~1e-13 relative at any q (tests). Two-point expectations write
u1 = alpha a + tau e1, u2 = alpha a + tau e2 (alpha^2 = c q, tau^2 = (1 - c) q) and nest the same
rule, with the inner panels aligned on the kink of each row.

Overflow and underflow are predicted from the log-normal approximation of the per-row norm:
lambda_l = log q_l with q_l = v |h^{l-1}|^2 + sigma_b^2 (the variance of z^l given h^{l-1})
advances by log(n v E[phi^2](q_l)) - kappa / (2n) with variance kappa / n per layer,
kappa = E[phi^4] / E[phi^2]^2 - 1 (2 for linear, 5 for relu; for linear exactly
E log(chi^2_n / n) = digamma(n/2) + log(2/n) and Var = trigamma(n/2)); the extreme of n Gaussians
is handled with the exact law of max_j |Z_j|. See `overflow_layer` and `underflow_layer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from worker.contract import (
    ACTIVATIONS,
    DTYPES,
    INIT_SCHEMES,
    TRUNCATED_NORMAL_STD,
    ParamValue,
    Scheme,
    SimConfig,
)

__all__ = [
    "DTYPE_LIMITS",
    "PHASE_TOL",
    "TRUNCATED_VARIANCE_FACTOR",
    "ActivationMoments",
    "ConfigTheory",
    "LayerTheory",
    "activation_moments",
    "bivariate_expectation",
    "critical_sigma_w",
    "finite_width_note",
    "mean_sq_dispersion",
    "overflow_layer",
    "predict",
    "predict_map",
    "underflow_layer",
    "weight_moments",
]

FloatArray = npt.NDArray[np.float64]

# Variance of N(0, 1) truncated to [-2, 2]: 1 - 2 * 2 phi(2) / (Phi(2) - Phi(-2)) = 0.77374...
TRUNCATED_VARIANCE_FACTOR = 1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(
    2.0 / math.sqrt(2.0)
)

# |chi_1 - 1| below this is "critical".
PHASE_TOL = 1e-3

# (largest finite, smallest normal, smallest subnormal) per dtype.
DTYPE_LIMITS: dict[str, tuple[float, float, float]] = {
    "float32": (3.4028234663852886e38, 1.1754943508222875e-38, 1.401298464324817e-45),
    "float64": (1.7976931348623157e308, 2.2250738585072014e-308, 5e-324),
    "float16": (65504.0, 6.103515625e-05, 5.960464477539063e-08),
    "bfloat16": (3.3895313892515355e38, 1.1754943508222875e-38, 9.183549615799121e-41),
}

# tf.nn.selu's constants (Keras documents them rounded: alpha=1.67326324, scale=1.05070098)
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_LOG_Q_HI = math.log(1e150)  # beyond: unbounded activations by their asymptotic slopes
_LOG_Q_LO = math.log(1e-150)  # below: phi(0) = 0 activations by their slopes at 0


# --------------------------------------------------------------------------------------------
# Weights


def _param(scheme: Scheme, registry: dict[str, dict[str, ParamValue]], key: str) -> ParamValue:
    """Parameter `key` of `scheme`, or the contract's default when the scheme omits it."""
    try:
        return scheme.get(key)
    except KeyError:
        defaults = registry.get(scheme.name, {})
        if key not in defaults:
            raise
        return defaults[key]


def _num(scheme: Scheme, registry: dict[str, dict[str, ParamValue]], key: str) -> float:
    value = _param(scheme, registry, key)
    if isinstance(value, str):
        raise TypeError(f"{scheme.name}.{key}: expected a number. Received: {value!r}")
    return float(value)


def _fan(mode: str, fan_in: int, fan_out: int) -> float:
    if mode == "fan_in":
        return float(fan_in)
    if mode == "fan_out":
        return float(fan_out)
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2.0
    raise ValueError(f"mode: expected one of fan_in, fan_out, fan_avg. Received: {mode!r}")


def _variance_scaling(scale: float, mode: str, fan_in: int, fan_out: int) -> float:
    # Keras: scale /= max(1, fan); every distribution then has variance scale (the truncated
    # normal draws std sqrt(scale)/0.8796 so that its truncated variance is scale).
    return scale / max(1.0, _fan(mode, fan_in, fan_out))


# Derived here independently of `worker.schemes.law` (the law the simulator samples) on purpose:
# theory is the check against the simulator. tests/unit/test_schemes.py pins the two together.
def weight_moments(init: Scheme, fan_in: int, fan_out: int) -> tuple[float, float]:
    """(mean, variance) of one kernel entry of `init` for a (fan_in, fan_out) kernel.

    normal(mean, std): (mean, std^2); uniform(low, high): ((low+high)/2, (high-low)^2/12);
    truncated_normal(mean, std), cut at mean +- 2 std, not rescaled: (mean, std^2 * 0.77374...);
    scaled_uniform(low, high, scale, mode): c = sqrt(scale/fan), (c (low+high)/2,
    c^2 (high-low)^2/12); variance_scaling(scale, mode, distribution): (0, scale/fan) for every
    distribution (Keras' truncated normal divides its std by 0.87962566 = sqrt of the truncation
    factor); glorot_*: 2/(fan_in+fan_out); he_*: 2/fan_in; lecun_*: 1/fan_in; kaiming_normal(a):
    2/((1+a^2) fan_in); xavier_normal(gain): 2 gain^2/(fan_in+fan_out); orthogonal(gain):
    gain^2/max(fan_in, fan_out) (rows or columns orthonormal; not i.i.d.).
    """
    name = init.name

    def num(key: str) -> float:
        return _num(init, INIT_SCHEMES, key)

    def text(key: str) -> str:
        return str(_param(init, INIT_SCHEMES, key))

    if name == "normal":
        return num("mean"), num("std") ** 2
    if name == "uniform":
        low, high = num("low"), num("high")
        return (low + high) / 2.0, (high - low) ** 2 / 12.0
    if name == "truncated_normal":
        return num("mean"), num("std") ** 2 * TRUNCATED_VARIANCE_FACTOR
    if name == "scaled_uniform":
        low, high = num("low"), num("high")
        c2 = num("scale") / _fan(text("mode"), fan_in, fan_out)
        return math.sqrt(c2) * (low + high) / 2.0, c2 * (high - low) ** 2 / 12.0
    if name == "variance_scaling":
        scale = _variance_scaling(num("scale"), text("mode"), fan_in, fan_out)
        distribution = text("distribution")
        if distribution == "truncated_normal":
            std = math.sqrt(scale) / TRUNCATED_NORMAL_STD
            return 0.0, std**2 * TRUNCATED_VARIANCE_FACTOR
        if distribution in ("untruncated_normal", "uniform"):
            return 0.0, scale
        raise ValueError(
            "variance_scaling.distribution: expected one of truncated_normal, "
            f"untruncated_normal, uniform. Received: {distribution!r}"
        )
    keras = {
        "glorot_uniform": (1.0, "fan_avg", "uniform"),
        "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
        "he_uniform": (2.0, "fan_in", "uniform"),
        "he_normal": (2.0, "fan_in", "truncated_normal"),
        "lecun_uniform": (1.0, "fan_in", "uniform"),
        "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    }
    if name in keras:
        scale, mode, distribution = keras[name]
        vs = Scheme(
            "variance_scaling",
            (("distribution", distribution), ("mode", mode), ("scale", scale)),
        )
        return weight_moments(vs, fan_in, fan_out)
    if name == "kaiming_normal":
        return 0.0, 2.0 / ((1.0 + num("a") ** 2) * fan_in)
    if name == "xavier_normal":
        return 0.0, num("gain") ** 2 * 2.0 / (fan_in + fan_out)
    if name == "orthogonal":
        return 0.0, num("gain") ** 2 / max(fan_in, fan_out)
    raise ValueError(f"init: unknown weight scheme. Received: {name!r}")


def _weight_log_row_max(init: Scheme, fan_in: int, fan_out: int) -> float:
    """Typical log max_j |W_ij| over one row (fan_out entries) of a centred kernel."""
    _, var = weight_moments(init, fan_in, fan_out)
    sd = math.sqrt(var)
    name = init.name
    distribution = (
        str(_param(init, INIT_SCHEMES, "distribution")) if name == "variance_scaling" else ""
    )
    if name in ("uniform", "glorot_uniform", "he_uniform", "lecun_uniform") or (
        distribution == "uniform"
    ):
        return math.log(math.sqrt(3.0) * sd)
    m_log, _ = _log_max_abs_normal(fan_out)
    if name in ("truncated_normal", "glorot_normal", "he_normal", "lecun_normal") or (
        distribution == "truncated_normal"
    ):
        return math.log(sd / math.sqrt(TRUNCATED_VARIANCE_FACTOR)) + min(m_log, math.log(2.0))
    return math.log(sd) + m_log


# --------------------------------------------------------------------------------------------
# Activations: phi, phi', phi'' (Keras definitions)


@dataclass(frozen=True)
class _Act:
    f: Callable[[FloatArray], FloatArray]
    d1: Callable[[FloatArray], FloatArray]
    d2: Callable[[FloatArray], FloatArray]
    # phi(u) = a+ u for u > 0 and a- u for u < 0 exactly: closed forms at every q
    homogeneous: tuple[float, float] | None
    # asymptotic slopes at u -> +-inf (None: bounded)
    slopes_inf: tuple[float, float] | None
    # one-sided slopes at 0 when phi(0) = 0 (None: phi(0) != 0)
    slopes_zero: tuple[float, float] | None


def _expit(u: FloatArray) -> FloatArray:
    return np.asarray(special.expit(u), dtype=np.float64)


def _pdf(u: FloatArray) -> FloatArray:
    return np.exp(-0.5 * u * u) / _SQRT_2PI


def _piecewise_linear(a_pos: float, a_neg: float) -> _Act:
    return _Act(
        f=lambda u: np.where(u > 0, a_pos * u, a_neg * u),
        d1=lambda u: np.where(u > 0, a_pos, a_neg) + 0.0 * u,
        d2=lambda u: 0.0 * u,
        homogeneous=(a_pos, a_neg),
        slopes_inf=(a_pos, a_neg),
        slopes_zero=(a_pos, a_neg),
    )


def _elu(alpha: float, scale: float) -> _Act:
    def neg_exp(u: FloatArray) -> FloatArray:
        return np.exp(np.minimum(u, 0.0))

    return _Act(
        f=lambda u: scale * np.where(u > 0, u, alpha * np.expm1(np.minimum(u, 0.0))),
        d1=lambda u: scale * np.where(u > 0, 1.0, alpha * neg_exp(u)),
        d2=lambda u: scale * np.where(u > 0, 0.0, alpha * neg_exp(u)),
        homogeneous=None,
        slopes_inf=(scale, 0.0),
        slopes_zero=(scale, scale * alpha),
    )


def _tanh() -> _Act:
    def d1(u: FloatArray) -> FloatArray:
        t = np.tanh(u)
        return 1.0 - t * t

    def d2(u: FloatArray) -> FloatArray:
        t = np.tanh(u)
        return -2.0 * t * (1.0 - t * t)

    return _Act(np.tanh, d1, d2, None, None, (1.0, 1.0))


def _sigmoid() -> _Act:
    def d1(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s * (1.0 - s)

    def d2(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s * (1.0 - s) * (1.0 - 2.0 * s)

    return _Act(_expit, d1, d2, None, None, None)


def _gelu() -> _Act:
    def f(u: FloatArray) -> FloatArray:
        return u * np.asarray(special.ndtr(u), dtype=np.float64)

    def d1(u: FloatArray) -> FloatArray:
        return np.asarray(special.ndtr(u), dtype=np.float64) + u * _pdf(u)

    return _Act(f, d1, lambda u: _pdf(u) * (2.0 - u * u), None, (1.0, 0.0), (0.5, 0.5))


def _swish() -> _Act:
    def d1(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s + u * s * (1.0 - s)

    def d2(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s * (1.0 - s) * (2.0 + u * (1.0 - 2.0 * s))

    return _Act(lambda u: u * _expit(u), d1, d2, None, (1.0, 0.0), (0.5, 0.5))


def _softplus() -> _Act:
    def d2(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s * (1.0 - s)

    return _Act(lambda u: np.logaddexp(0.0, u), _expit, d2, None, (1.0, 0.0), None)


@lru_cache(maxsize=256)
def _act(activation: Scheme) -> _Act:
    name = activation.name
    if name == "linear":
        return _piecewise_linear(1.0, 1.0)
    if name == "relu":
        return _piecewise_linear(1.0, 0.0)
    if name == "leaky_relu":
        return _piecewise_linear(1.0, _num(activation, ACTIVATIONS, "alpha"))
    if name == "elu":
        return _elu(_num(activation, ACTIVATIONS, "alpha"), 1.0)
    if name == "selu":
        return _elu(_SELU_ALPHA, _SELU_SCALE)
    factories = {
        "tanh": _tanh,
        "sigmoid": _sigmoid,
        "gelu": _gelu,
        "swish": _swish,
        "softplus": _softplus,
    }
    if name in factories:
        return factories[name]()
    raise ValueError(f"activation: unknown activation. Received: {name!r}")


# --------------------------------------------------------------------------------------------
# Quadrature

_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)
_Z_MAX = 12.0
_U_FEATURES = 40.0


def _panel_rule(edges: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes and weights on each panel [edges[k], edges[k+1]]."""
    half = (edges[1:] - edges[:-1])[:, None] / 2.0
    mid = (edges[1:] + edges[:-1])[:, None] / 2.0
    nodes = mid + half * _GL_X[None, :]
    weights = half * _GL_W[None, :] + 0.0 * nodes
    return nodes.ravel(), weights.ravel()


@lru_cache(maxsize=8192)
def _gauss_rule(s: float, fine: float = 1.0) -> tuple[FloatArray, FloatArray]:
    """Nodes z and weights w (density included) with sum w f(s z) ~ E[f(s Z)], Z ~ N(0, 1).

    Panel edges in z: 0, every 0.5 up to 12, every u = 1 .. 40 (u = s z) and, when fine < 1,
    u = fine * 2^k below 1 (graded towards a feature of width `fine` at u = 0).
    """
    pieces = [np.arange(0.0, _Z_MAX + 0.25, 0.5), np.arange(1.0, _U_FEATURES + 0.5) / s]
    if fine < 1.0:
        pieces.append(fine * 2.0 ** np.arange(math.ceil(-math.log2(fine))) / s)
    edges = np.concatenate(pieces)
    edges = np.unique(edges[(edges >= 0.0) & (edges <= _Z_MAX)])
    edges = edges[np.concatenate(([True], np.diff(edges) > 1e-13 * _Z_MAX))]
    x, w = _panel_rule(edges)
    z = np.concatenate((-x[::-1], x))
    w = np.concatenate((w[::-1], w)) * _pdf(z)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


def _expect(fn: Callable[[FloatArray], FloatArray], s: float) -> float:
    z, w = _gauss_rule(s)
    return float(np.dot(w, fn(s * z)))


_UNIFORM_EDGES = np.arange(-_Z_MAX, _Z_MAX + 0.25, 0.5)


def _bivariate_quadrature(
    fa: Callable[[FloatArray], FloatArray],
    fb: Callable[[FloatArray], FloatArray],
    q: float,
    c: float,
) -> float:
    """E[fa(u1) fb(u2)], (u1, u2) ~ N(0, q [[1, c], [c, 1]]), 0 <= c <= 1, by nested rules.

    u_i = alpha a + tau e_i with alpha = sqrt(c q), tau = sqrt((1 - c) q), a, e_i ~ N(0, 1):
    E = E_a[G_a(a) G_b(a)], G(a) = E_e[f(alpha a + tau e)]. For each outer node a the inner
    panel edges are every 0.5 of e plus every unit of u around the kink e* = -alpha a / tau
    (sorted per row, so the rule has the same size on every row). G is f smoothed over tau: the
    outer rule puts edges every max(1, tau) of u and grades down to u = tau when tau < 1.
    """
    if c >= 1.0:
        return _expect(lambda u: fa(u) * fb(u), math.sqrt(q))
    if c <= 0.0:
        return _expect(fa, math.sqrt(q)) * _expect(fb, math.sqrt(q))
    alpha, tau = math.sqrt(c * q), math.sqrt((1.0 - c) * q)
    # G varies on u ~ max(1, tau) away from 0 and on u ~ tau near 0 (when tau < 1)
    za, wa = _gauss_rule(alpha / max(1.0, tau), min(1.0, max(tau, 1e-9)))
    kink = -alpha * za / tau
    reach = min(_U_FEATURES, math.ceil(2.0 * _Z_MAX * tau))
    offsets = np.arange(-reach, reach + 0.5)
    edges = np.sort(
        np.concatenate(
            (
                np.broadcast_to(_UNIFORM_EDGES, (za.size, _UNIFORM_EDGES.size)),
                np.clip(kink[:, None] + offsets[None, :] / tau, -_Z_MAX, _Z_MAX),
            ),
            axis=1,
        ),
        axis=1,
    )
    half = (edges[:, 1:] - edges[:, :-1])[:, :, None] / 2.0
    e = ((edges[:, 1:] + edges[:, :-1])[:, :, None] / 2.0 + half * _GL_X).reshape(za.size, -1)
    we = (half * _GL_W).reshape(za.size, -1) * _pdf(e)
    u = alpha * za[:, None] + tau * e
    ga = np.sum(we * fa(u), axis=1)
    gb = ga if fb is fa else np.sum(we * fb(u), axis=1)
    return float(np.dot(wa, ga * gb))


# --------------------------------------------------------------------------------------------
# Gaussian moments of an activation


@dataclass(frozen=True)
class ActivationMoments:
    """Moments of phi(u), u = sqrt(q) z, z ~ N(0, 1).

    mean E[phi], mean_sq E[phi^2], deriv_sq E[phi'^2], curvature E[phi'' phi],
    kurtosis E[phi^4] / E[phi^2]^2, log_mean_sq log E[phi^2] (finite where mean_sq is not) and
    log_slope = d log E[phi^2] / d log q = q (E[phi'^2] + E[phi'' phi]) / E[phi^2] (Stein).
    """

    mean: float
    mean_sq: float
    deriv_sq: float
    curvature: float
    kurtosis: float
    log_mean_sq: float
    log_slope: float


def _homogeneous_moments(
    a_pos: float, a_neg: float, log_q: float, q: float | None = None
) -> ActivationMoments:
    # phi = a+ relu(u) - a- relu(-u): E phi = (a+ - a-) sqrt(q / 2 pi), E phi^2 = (a+^2 + a-^2) q/2,
    # E phi'^2 = (a+^2 + a-^2)/2, E phi^4 = 3 (a+^4 + a-^4) q^2 / 2.
    m2n = (a_pos**2 + a_neg**2) / 2.0
    m4n = 3.0 * (a_pos**4 + a_neg**4) / 2.0
    if q is None:
        q = math.exp(log_q) if log_q < 709.0 else math.inf
    return ActivationMoments(
        mean=(a_pos - a_neg) * math.sqrt(q) / _SQRT_2PI,
        mean_sq=m2n * q,
        deriv_sq=m2n,
        curvature=0.0,
        kurtosis=m4n / m2n**2 if m2n > 0 else math.inf,
        log_mean_sq=math.log(m2n) + log_q if m2n > 0 else -math.inf,
        log_slope=1.0,
    )


@lru_cache(maxsize=65536)
def _moments_log(activation: Scheme, log_q: float) -> ActivationMoments:
    """ActivationMoments at q = exp(log_q); asymptotic forms where q is extreme."""
    act = _act(activation)
    if act.homogeneous is not None:
        return _homogeneous_moments(*act.homogeneous, log_q)
    if log_q > _LOG_Q_HI:
        if act.slopes_inf is not None:
            return _homogeneous_moments(*act.slopes_inf, log_q)
        log_q = _LOG_Q_HI  # bounded: moments have converged to their q -> inf limits
    if log_q < _LOG_Q_LO:
        if act.slopes_zero is not None:
            return _homogeneous_moments(*act.slopes_zero, log_q)
        log_q = _LOG_Q_LO  # phi(0) != 0: moments have converged to phi(0)^k
    s = math.exp(0.5 * log_q)
    # Normalise by s where phi grows like u (so phi^4 neither overflows nor underflows).
    norm = (
        s
        if (act.slopes_inf is not None and s > 1.0) or (act.slopes_zero is not None and s < 1.0)
        else 1.0
    )
    z, w = _gauss_rule(s)
    u = s * z
    fn = act.f(u) / norm
    d1 = act.d1(u)
    m1n = float(np.dot(w, fn))
    m2n = float(np.dot(w, fn * fn))
    m4n = float(np.dot(w, fn**4))
    d2 = float(np.dot(w, d1 * d1))
    curv_n = float(np.dot(w, act.d2(u) * fn))
    # d log E[phi^2] / d log q = E[u phi(u) phi'(u)] / E[phi^2] (Stein, d/dq E f(sqrt(q) z) =
    # E[z f'(sqrt(q) z)] / (2 sqrt q)): one expectation, no cancellation of E[phi'^2] against
    # E[phi'' phi] at large q.
    slope_n = float(np.dot(w, (u / norm) * fn * d1))
    return ActivationMoments(
        mean=m1n * norm,
        mean_sq=m2n * norm * norm,
        deriv_sq=d2,
        curvature=curv_n * norm,
        kurtosis=m4n / m2n**2,
        log_mean_sq=math.log(m2n) + 2.0 * math.log(norm),
        log_slope=slope_n / m2n,
    )


def activation_moments(activation: Scheme, q: float) -> ActivationMoments:
    """Gaussian moments of `activation` at preactivation variance q >= 0 (q = 0: the limit)."""
    if not q >= 0.0:
        raise ValueError(f"q: expected a non-negative variance. Received: {q!r}")
    act = _act(activation)
    if q > 0.0 and act.homogeneous is not None:
        return _homogeneous_moments(*act.homogeneous, math.log(q), q)
    if q > 0.0:
        return _moments_log(activation, math.log(q))
    eps = np.array([1e-300, -1e-300])
    f0 = float(act.f(np.zeros(1))[0])
    d1 = act.d1(eps)
    curv = float(np.mean(act.d2(eps) * act.f(eps)))
    if act.slopes_zero is not None:
        a_pos, a_neg = act.slopes_zero
        m2n = (a_pos**2 + a_neg**2) / 2.0
        kurt, log_m2, slope = 3.0 * (a_pos**4 + a_neg**4) / 2.0 / m2n**2, -math.inf, 1.0
    else:
        kurt, log_m2, slope = 1.0, 2.0 * math.log(abs(f0)), 0.0
    return ActivationMoments(
        mean=f0,
        mean_sq=f0 * f0,
        deriv_sq=float(np.mean(d1 * d1)),
        curvature=curv,
        kurtosis=kurt,
        log_mean_sq=log_m2,
        log_slope=slope,
    )


def _arccos_kernels(a_pos: float, a_neg: float, q: float, c: float) -> tuple[float, float]:
    # phi = a- u + (a+ - a-) relu(u); E[relu(u1) relu(u2)] = q (sqrt(1-c^2) + (pi - acos c) c)/2pi
    # (Cho & Saul 2009), E[u1 relu(u2)] = q c / 2, E[1{u1>0} 1{u2>0}] = (pi - acos c) / 2pi.
    theta = math.acos(min(1.0, max(-1.0, c)))
    k1 = q * (math.sqrt(max(0.0, 1.0 - c * c)) + (math.pi - theta) * c) / (2.0 * math.pi)
    k0 = (math.pi - theta) / (2.0 * math.pi)
    d = a_pos - a_neg
    return a_pos * a_neg * q * c + d * d * k1, a_pos * a_neg + d * d * k0


def bivariate_expectation(
    activation: Scheme, q: float, c: float, *, derivative: bool = False
) -> float:
    """E[psi(u1) psi(u2)] with psi = phi (or phi' if `derivative`), u ~ N(0, q [[1,c],[c,1]]).

    0 <= c <= 1. This is the integrand of the C-map (Poole et al. 2016, eq. 5) and of chi_c.
    """
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"c: expected a correlation in [0, 1]. Received: {c!r}")
    act = _act(activation)
    if act.homogeneous is not None:
        phi_phi, dphi_dphi = _arccos_kernels(*act.homogeneous, q, c)
        return dphi_dphi if derivative else phi_phi
    fn = act.d1 if derivative else act.f
    return _bivariate_quadrature(fn, fn, q, c)


# --------------------------------------------------------------------------------------------
# Fixed points, susceptibilities, phase


def _q_fixed_point(sw2: float, sb2: float, activation: Scheme, q0: float) -> float | None:
    """The fixed point of q -> sw2 E[phi(sqrt(q) z)^2] + sb2 reached from q0; None: diverges.

    The map is increasing, so iterates move monotonically from q0 to the nearest root of
    g(q) = map(q) - q in the direction of sign(g(q0)); bracket it geometrically, then brentq.
    """
    act = _act(activation)
    if act.homogeneous is not None:
        slope = sw2 * (act.homogeneous[0] ** 2 + act.homogeneous[1] ** 2) / 2.0
        if abs(slope - 1.0) <= 1e-12:  # critical up to the rounding of sigma_w^2 = n * (2/n)
            return q0 if sb2 == 0.0 else None
        if slope < 1.0:
            return sb2 / (1.0 - slope)
        return 0.0 if (q0 == 0.0 and sb2 == 0.0) else None

    def g(q: float) -> float:
        return sw2 * activation_moments(activation, q).mean_sq + sb2 - q

    g0 = g(q0)
    if g0 == 0.0:
        return q0
    if g0 > 0.0:
        lo, hi = q0, max(4.0 * q0, 1.0)
        while g(hi) > 0.0:
            lo, hi = hi, 4.0 * hi
            if hi > 1e250:
                return None
    else:
        lo, hi = q0 / 4.0, q0
        # below ~1e-16 q0 a map with g(0) = 0 cannot be told from identity in float64
        while g(lo) < 1e-13 * lo:
            lo, hi = lo / 4.0, lo
            if lo < 1e-250:
                return 0.0
    return float(optimize.brentq(g, lo, hi, xtol=1e-300, rtol=1e-15, maxiter=500))


def _c_star(sw2: float, sb2: float, activation: Scheme, q_star: float) -> float:
    """Stable fixed point c* in [0, 1) of the C-map in the chaotic phase (1.0 if unresolved)."""

    def f(c: float) -> float:
        return (sw2 * bivariate_expectation(activation, q_star, c) + sb2) / q_star - c

    if f(0.0) <= 0.0:
        return 0.0
    lo = 0.0  # f > 0 on [0, c*), f < 0 on (c*, 1) (convexity); bracket c* from below 1
    for delta in (0.5, 0.2, 0.1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        if f(1.0 - delta) < 0.0:
            return float(optimize.brentq(f, lo, 1.0 - delta, xtol=1e-14))
        lo = 1.0 - delta
    return 1.0


def _depth_scale(slope: float) -> float | None:
    """-1/log(slope) for a contraction 0 <= slope <= 1; None when slope > 1.

    inf within 1e-12 of 1: sigma_w^2 = fan_in * (2 / fan_in) is 1 only up to rounding.
    """
    if slope > 1.0 + 1e-12 or not math.isfinite(slope):
        return None
    if slope >= 1.0 - 1e-12:
        return math.inf
    if slope <= 0.0:
        return 0.0
    return -1.0 / math.log(slope)


def _phase(chi_1: float | None, tol: float) -> str:
    if chi_1 is None or not math.isfinite(chi_1):
        return "unknown"
    if abs(chi_1 - 1.0) < tol:
        return "critical"
    return "ordered" if chi_1 < 1.0 else "chaotic"


def _chi_1(
    sw2: float, sb2: float, activation: Scheme, q0: float
) -> tuple[float | None, float, ActivationMoments | None]:
    """(q*, chi_1, moments at q*); chi_1 is the asymptotic value when q diverges (q* None)."""
    q_star = _q_fixed_point(sw2, sb2, activation, q0)
    if q_star is None:
        slopes = _act(activation).slopes_inf
        a_pos, a_neg = slopes if slopes is not None else (0.0, 0.0)
        return None, sw2 * (a_pos**2 + a_neg**2) / 2.0, None
    m = activation_moments(activation, q_star)
    return q_star, sw2 * m.deriv_sq, m


def predict_map(
    sigma_w: float,
    sigma_b: float,
    activation: Scheme,
    *,
    q0: float = 1.0,
    tol: float = PHASE_TOL,
) -> tuple[float | None, float | None, float | None, float | None, str]:
    """(q*, chi_1, xi_q, xi_c, phase) of the mean-field maps at (sigma_w, sigma_b).

    q* is the fixed point reached from q0 (None when q diverges; chi_1 is then the asymptotic
    sigma_w^2 (a_+^2 + a_-^2) / 2 and the depth scales are None). xi_q = -1/log(chi_1 +
    sigma_w^2 E[phi'' phi]) (the q-map slope at q*); xi_c = -1/log(chi_c), chi_c =
    sigma_w^2 E[phi'(u1) phi'(u2)] at the stable c* (c* = 1 and chi_c = chi_1 unless chaotic).
    A slope of exactly 1 gives an infinite depth scale. Schoenholz et al. 2017, eqs. 6-9.
    Phase: ordered (chi_1 < 1 - tol), chaotic (chi_1 > 1 + tol), else critical.
    """
    sw2, sb2 = sigma_w * sigma_w, sigma_b * sigma_b
    q_star, chi_1, m = _chi_1(sw2, sb2, activation, q0)
    if q_star is None or m is None:
        return None, chi_1, None, None, _phase(chi_1, tol)
    xi_q = _depth_scale(chi_1 + sw2 * m.curvature)
    if chi_1 <= 1.0 or q_star == 0.0:
        xi_c = _depth_scale(chi_1)
    else:
        c_star = _c_star(sw2, sb2, activation, q_star)
        if c_star >= 1.0:
            xi_c = math.inf
        else:
            chi_c = sw2 * bivariate_expectation(activation, q_star, c_star, derivative=True)
            xi_c = _depth_scale(chi_c)
    return q_star, chi_1, xi_q, xi_c, _phase(chi_1, tol)


def critical_sigma_w(sigma_b: float, activation: Scheme) -> float:
    """sigma_w on the critical line chi_1 = 1 at this sigma_b (brentq on chi_1 - 1).

    Closed form sqrt(2 / (a_+^2 + a_-^2)) for linear (1), relu (sqrt 2) and leaky_relu. Elsewhere
    q* is the fixed point reached from q = 1 and chi_1 is assumed to cross 1 once as sigma_w
    grows (it increases monotonically for tanh; for gelu/swish at sigma_b = 0 the crossing is
    a jump of the reached fixed point from 0 to a finite or diverging q).
    """
    act = _act(activation)
    if act.homogeneous is not None:
        a_pos, a_neg = act.homogeneous
        return math.sqrt(2.0 / (a_pos**2 + a_neg**2))
    sb2 = sigma_b * sigma_b

    def h(sigma_w: float) -> float:
        return _chi_1(sigma_w * sigma_w, sb2, activation, 1.0)[1] - 1.0

    lo = hi = 1.0
    while h(lo) > 0.0:
        lo, hi = lo / 2.0, lo
        if lo < 1e-6:
            raise ValueError(
                f"critical_sigma_w: expected chi_1 < 1 at some sigma_w >= 1e-6. "
                f"Received: chi_1 > 1 throughout for {activation.label}, sigma_b={sigma_b}"
            )
    while h(hi) < 0.0:
        lo, hi = hi, hi * 1.5
        if hi > 1e4:
            raise ValueError(
                f"critical_sigma_w: expected chi_1 > 1 at some sigma_w <= 1e4. "
                f"Received: chi_1 < 1 throughout for {activation.label}, sigma_b={sigma_b}"
            )
    if h(lo) == 0.0:
        return lo
    return float(optimize.brentq(h, lo, hi, xtol=1e-13, rtol=1e-15))


# --------------------------------------------------------------------------------------------
# Per-configuration predictions


@dataclass(frozen=True)
class LayerTheory:
    """Predicted E[mean], E[mean_sq] and sqrt(E[std^2]) of one (layer, quantity); None: none."""

    layer: int
    quantity: str
    mean: float | None
    mean_sq: float | None
    std: float | None


@dataclass(frozen=True)
class ConfigTheory:
    """Mean-field predictions for one configuration (see the module docstring)."""

    config: SimConfig
    layers: tuple[LayerTheory, ...]
    q_star: float | None
    chi_1: float | None
    xi_q: float | None
    xi_c: float | None
    phase: str
    overflow_layer: float | None
    underflow_layer: float | None
    exact: bool
    note: str

    def get(self, layer: int, quantity: str) -> LayerTheory:
        """The prediction of (layer, quantity)."""
        for item in self.layers:
            if item.layer == layer and item.quantity == quantity:
                return item
        raise KeyError(f"no prediction for layer {layer}, quantity {quantity!r}")


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _sqrt0(x: float | None) -> float | None:
    return None if x is None else math.sqrt(max(0.0, x))


def _centred(config: SimConfig) -> bool:
    n0, n = config.input_dim, config.width
    return weight_moments(config.init, n0, n)[0] == 0.0 and (
        config.depth < 2 or weight_moments(config.init, n, n)[0] == 0.0
    )


def predict(config: SimConfig) -> ConfigTheory:
    """Mean-field predictions of every (layer, quantity) of `config`, its phase and limits.

    Layer 0 is the input (mean 0, mean_sq 1, std sqrt(1 - 1/(batch input_dim))). Layers
    1..depth carry preactivation, activation and gradient in that order. Values that overflow
    float64 and quantities the theory does not cover (deeper layers of non-centred weights)
    are None. `exact` is False for orthogonal (not i.i.d.) and non-centred kernels.
    """
    n0, n, depth, batch = config.input_dim, config.width, config.depth, config.batch
    act = config.activation
    sb2 = config.bias_std**2
    mu1, v1 = weight_moments(config.init, n0, n)
    v = weight_moments(config.init, n, n)[1]
    centred = _centred(config)
    notes: list[str] = []

    # Preactivation variances q^l (None where not predicted).
    q: list[float | None] = [None] * (depth + 1)
    q[1] = n0 * (v1 + mu1 * mu1) + sb2
    moments: list[ActivationMoments | None] = [None] * (depth + 1)
    for layer in range(1, depth + 1):
        ql = q[layer]
        if ql is None:
            break
        mom = activation_moments(act, ql)
        moments[layer] = mom
        if layer < depth and centred:
            q[layer + 1] = _finite(n * v * mom.mean_sq + sb2)
    grad: list[float | None] = [None] * (depth + 2)
    grad[depth + 1] = 1.0  # E[r^2]; the factor n v is not applied above the top layer
    for layer in range(depth, 0, -1):
        m, above = moments[layer], grad[layer + 1]
        if m is None or above is None or (layer < depth and not centred):
            break
        factor = 1.0 if layer == depth else n * v
        grad[layer] = _finite(factor * m.deriv_sq * above)

    layers = [LayerTheory(0, "activation", 0.0, 1.0, math.sqrt(1.0 - 1.0 / (batch * n0)))]
    for layer in range(1, depth + 1):
        ql, m = q[layer], moments[layer]
        if layer == 1:
            pre_std2: float | None = (
                n0 * v1 * (1.0 - 1.0 / (batch * n))
                + n0 * mu1 * mu1 * (1.0 - 1.0 / batch)
                + sb2 * (1.0 - 1.0 / n)
            )
        else:
            pre_std2 = ql
        layers.append(
            LayerTheory(
                layer, "preactivation", 0.0 if ql is not None else None, ql, _sqrt0(pre_std2)
            )
        )
        if m is None or ql is None:
            layers.append(LayerTheory(layer, "activation", None, None, None))
        else:
            mean_sq = _finite(m.mean_sq)
            if layer == 1 and mu1 != 0.0 and ql > 0.0:
                c = min(1.0, n0 * mu1 * mu1 / ql)
                cross = bivariate_expectation(act, ql, c)
                act_std2 = m.mean_sq - cross / batch - (1.0 - 1.0 / batch) * m.mean**2
            else:
                act_std2 = m.mean_sq - m.mean**2
            layers.append(
                LayerTheory(
                    layer, "activation", _finite(m.mean), mean_sq, _sqrt0(_finite(act_std2))
                )
            )
        g = grad[layer]
        layers.append(LayerTheory(layer, "gradient", 0.0 if g is not None else None, g, _sqrt0(g)))

    q_star = chi_1 = xi_q = xi_c = None
    phase = "unknown"
    if centred and q[1] is not None:
        q_star, chi_1, xi_q, xi_c, phase = predict_map(
            math.sqrt(n * v), config.bias_std, act, q0=q[1]
        )
        if q_star is None:
            notes.append(
                "q diverges (no finite fixed point): chi_1 is its asymptotic value "
                "sigma_w^2 (a_+^2 + a_-^2)/2; q*, xi_q and xi_c are undefined."
            )
        elif q_star == 0.0:
            notes.append(
                "q* = 0 (sigma_b = 0, phi(0) = 0): the signal vanishes; xi_c is Schoenholz's "
                "formula -1/log(chi_1), but the normalised correlation map tends to the "
                "identity as q -> 0, so correlations converge sub-exponentially."
            )
    if config.init.name == "orthogonal":
        notes.append(
            "orthogonal kernels are not i.i.d.: the recursion uses their entry variance "
            "gain^2/max(fan_in, fan_out) (E[mean_sq] stays exact for linear, relu and "
            "leaky_relu; the rest is approximate)."
        )
    if not centred:
        notes.append(
            f"weights are not centred (entry mean {mu1:.3g}): layer 1 is predicted (mean_sq "
            "and preactivation std exact; activation std includes the common mode "
            "mu sum_i x_i shared by every unit); deeper layers carry a width-dependent "
            "common mode this theory does not model: no prediction."
        )
    if any(q[layer] is None for layer in range(1, depth + 1)) and centred:
        notes.append("mean-field values exceed float64 at depth: those layers are None.")
    over = overflow_layer(config)
    under = underflow_layer(config)
    if over is not None:
        notes.append(f"{config.dtype} overflow expected at layer ~{over:.1f} (forward pass).")
    if under is not None:
        notes.append(f"{config.dtype} activations collapse to 0 at layer ~{under:.1f}.")
    width_note = finite_width_note(config)
    if width_note is not None:
        notes.append(width_note)
    return ConfigTheory(
        config=config,
        layers=tuple(layers),
        q_star=q_star,
        chi_1=chi_1,
        xi_q=xi_q,
        xi_c=xi_c,
        phase=phase,
        overflow_layer=over,
        underflow_layer=under,
        exact=centred and config.init.name != "orthogonal",
        note=" ".join(notes),
    )


# --------------------------------------------------------------------------------------------
# Finite width: the log-normal walk of the row norm, overflow, underflow


@lru_cache(maxsize=1024)
def _log_max_abs_normal(n: int) -> tuple[float, float]:
    """Mean and variance of log max_{j <= n} |Z_j|, Z_j ~ N(0, 1) i.i.d. (exact law, quadrature).

    P(max <= t) = erf(t / sqrt 2)^n, so the density is n erf(t/sqrt 2)^{n-1} 2 phi(t).
    """
    t, w = _panel_rule(np.linspace(0.0, 14.0, 561))
    erf = np.asarray(special.erf(t / math.sqrt(2.0)), dtype=np.float64)
    density = 2.0 * _pdf(t) if n == 1 else n * np.exp((n - 1) * np.log(erf)) * 2.0 * _pdf(t)
    wd = w * density
    log_t = np.log(t)
    mean = float(np.dot(wd, log_t))
    return mean, float(np.dot(wd, (log_t - mean) ** 2))


@lru_cache(maxsize=256)
def _norm_walk(config: SimConfig, horizon: int) -> tuple[FloatArray, FloatArray]:
    """Mean and variance of lambda_l = log q_l for l = 0..horizon (q_0 = 1 for the input).

    q_l = v |h^{l-1}|^2 + sigma_b^2 is the variance of each z^l_j given h^{l-1}. One layer:
    |h^l|^2 = n Y with Y = mean_j phi(z_j)^2, E[log Y] ~ log E[phi^2] - kappa/(2n),
    Var[log Y] ~ kappa/n (delta method; kappa = E[phi^4]/E[phi^2]^2 - 1; exact digamma and
    trigamma of chi^2_n / n for linear), and the fluctuation of lambda_l propagates with the
    log-slope d log E[phi^2] / d log q. Orthogonal square kernels fix |z^l| = gain |h^{l-1}|:
    only the angular part of Y fluctuates, kappa - 2 in place of kappa (0 for linear).
    """
    n0, n = config.input_dim, config.width
    v1 = weight_moments(config.init, n0, n)[1]
    v = weight_moments(config.init, n, n)[1]
    sb2 = config.bias_std**2
    log_sb2 = math.log(sb2) if sb2 > 0.0 else -math.inf
    linear = _act(config.activation).homogeneous == (1.0, 1.0)
    radial = 0.0 if config.init.name == "orthogonal" else 2.0  # kappa of the norm of z
    mu = np.zeros(horizon + 1)
    var = np.zeros(horizon + 1)
    x = math.log(n0 * v1) + float(special.digamma(n0 / 2.0)) + math.log(2.0 / n0)
    lam = float(np.logaddexp(x, log_sb2))
    r = math.exp(x - lam)
    mu[1], var[1] = lam, r * r * float(special.polygamma(1, n0 / 2.0))
    for layer in range(2, horizon + 1):
        m = _moments_log(config.activation, lam)
        if linear and radial:
            drift = float(special.digamma(n / 2.0)) + math.log(2.0 / n)
            noise = float(special.polygamma(1, n / 2.0))
        else:
            kappa = max(0.0, m.kurtosis - 3.0 + radial)
            drift, noise = -kappa / (2.0 * n), kappa / n
        x = math.log(n * v) + m.log_mean_sq + drift
        lam = float(np.logaddexp(x, log_sb2))
        r = math.exp(x - lam)
        mu[layer] = lam
        var[layer] = (r * m.log_slope) ** 2 * var[layer - 1] + r * r * noise
    mu.setflags(write=False)
    var.setflags(write=False)
    return mu, var


def _expected_first_layer(p_by: FloatArray, depth: int) -> float | None:
    """E[L] from P(L <= l), l = 0..H (made monotone); None if P(L <= depth) < 1/2."""
    p = np.maximum.accumulate(np.clip(p_by, 0.0, 1.0))
    if p[min(depth, p.size - 1)] < 0.5:
        return None
    return float(np.sum(1.0 - p))


def _horizon(config: SimConfig) -> int:
    return max(2 * config.depth, config.depth + 100)


def overflow_layer(config: SimConfig) -> float | None:
    """Expected first layer (1-based) whose forward values are non-finite; None if unlikely.

    Row b of z^l is N(0, q_l) given h^{l-1}, so log max_j |z^l_bj| = lambda_l / 2 + log M_n,
    M_n = max of n |N(0, 1)| (exact law). lambda_l is taken Gaussian with the mean and variance
    of `_norm_walk`; row overflow when the max (times the activation's largest asymptotic
    slope, for selu's 1.0507) exceeds the dtype's largest finite value; rows independent:
    P(trial overflowed by l) = 1 - (1 - p_row)^batch. Returns E[L] = sum_l P(L > l) when the
    median trial overflows within the configuration's depth, else None. Forward pass only; the
    gradient can overflow on its own (bounded activations in the chaotic phase). Non-centred
    kernels: None. For 100 linear N(0, 1) layers of width 100 in float32: ~38.8 (a numpy float32
    run gives 38 in ~1/4 of the trials and 39 otherwise; the seed notebook's one pass gave 38).
    """
    if not _centred(config):
        return None
    big = DTYPE_LIMITS[_dtype(config)][0]
    slopes = _act(config.activation).slopes_inf or (1.0, 1.0)
    log_gain = math.log(max(1.0, abs(slopes[0]), abs(slopes[1])))
    m_max, v_max = _log_max_abs_normal(config.width)
    mu, var = _norm_walk(config, _horizon(config))
    arg = (mu / 2.0 + m_max + log_gain - math.log(big)) / np.sqrt(var / 4.0 + v_max)
    p_row = np.asarray(special.ndtr(arg), dtype=np.float64)
    p_row[0] = 0.0
    p_by = -np.expm1(config.batch * np.log1p(-np.minimum(p_row, 1.0 - 1e-16)))
    p_by[p_row >= 1.0 - 1e-16] = 1.0
    return _expected_first_layer(p_by, config.depth)


def underflow_layer(config: SimConfig, *, flush_denormals: bool = True) -> float | None:
    """Expected first layer whose preactivations (and so activations) are all exactly 0.

    z^l_j = sum_i h_i W_ij rounds to 0 when every product is below the dtype's smallest
    normal (flush-to-zero, `flush_denormals=True`: TensorFlow runs kernels under
    `port::ScopedFlushDenormal`, so on CPU denormals are flushed) or half the smallest
    subnormal (IEEE gradual underflow, numpy/BLAS). log max_ij |h_i W_ij| ~ log max_i |h_i| +
    log max_j |W_ij| with log max |h^{l-1}| = lambda_{l-1}/2 + log M_n + log b (b the larger
    slope of phi at 0). A trial collapses when every row does: p_row^batch. Collapse is
    absorbing. None when the median trial survives `depth`, when sigma_b > 0 (the bias keeps
    values ~sigma_b), when phi(0) != 0 (sigmoid, softplus) or for non-centred kernels.
    The seed notebook's cell 157 (linear, N(0, 0.05^2), width 100, float32): 125.2 flushed
    (a numpy emulation of flush-to-zero products gives 124.4) and 149.0 gradual (numpy float32
    matmul: 149.0); so its 100 layers never collapse.
    """
    act = _act(config.activation)
    if not _centred(config) or config.bias_std > 0.0 or act.slopes_zero is None:
        return None
    _, tiny, subnormal = DTYPE_LIMITS[_dtype(config)]
    log_thr = math.log(tiny if flush_denormals else subnormal / 2.0)
    n0, n = config.input_dim, config.width
    log_b = math.log(max(abs(act.slopes_zero[0]), abs(act.slopes_zero[1])))
    m0, v0 = _log_max_abs_normal(n0)
    m_max, v_max = _log_max_abs_normal(n)
    w1 = _weight_log_row_max(config.init, n0, n)
    w = _weight_log_row_max(config.init, n, n)
    mu, var = _norm_walk(config, _horizon(config))
    # log max |h^{l-1}| for l = 1..H (h^0 = x, unit variance)
    h_mean = np.concatenate(([m0], mu[1:-1] / 2.0 + m_max + log_b))
    h_var = np.concatenate(([v0], var[1:-1] / 4.0 + v_max))
    w_row = np.full(h_mean.size, w)
    w_row[0] = w1
    p_row = np.asarray(special.ndtr((log_thr - h_mean - w_row) / np.sqrt(h_var)), np.float64)
    p_by = np.concatenate(([0.0], p_row**config.batch))
    return _expected_first_layer(p_by, config.depth)


def _dtype(config: SimConfig) -> str:
    if config.dtype not in DTYPE_LIMITS:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}. Received: {config.dtype!r}")
    return config.dtype


def mean_sq_dispersion(config: SimConfig, layer: int) -> float | None:
    """Relative variance over trials of one row's mean_sq(z^layer): E[ms^2] / E[ms]^2 - 1.

    Linear, relu, leaky_relu with zero bias: (1 + 2/n0) (1 + 2/n) (1 + kappa/n)^(layer-1),
    kappa = E[phi^4]/E[phi^2]^2 - 1 (2 linear, 5 relu), exact for Gaussian weights and batch 1
    (the norm is a product of independent chi-square-like factors; other i.i.d. weights differ
    at O(1/n^2) per layer). Orthogonal kernels (fan_in <= fan_out) keep |z| = gain |h|, so only
    the direction of z fluctuates: (1 + 2/n0) (1 + d ((1 - 1/n)/(n/2 + 1) + 1/n))^(layer-1),
    d = ((a_+^2 - a_-^2)/(a_+^2 + a_-^2))^2 (exact; 2/n0 for linear). Otherwise the
    log-normal value exp(Var[log ms]) - 1 from the norm walk, which damps fluctuations by the
    q-map's log-slope. None for non-centred kernels or a layer outside 1..depth.
    """
    if not _centred(config) or not 1 <= layer <= config.depth:
        return None
    n0, n = config.input_dim, config.width
    act = _act(config.activation)
    ortho = config.init.name == "orthogonal"
    if act.homogeneous is not None and config.bias_std == 0.0 and (not ortho or n0 <= n):
        a_pos, a_neg = act.homogeneous
        if ortho:
            # z^l / |z^l| is uniform on the sphere: with K ~ Bin(n, 1/2) positive coordinates,
            # their share of |z|^2 is Beta(K/2, (n-K)/2), of variance
            # ((1 - 1/n) / (n/2 + 1) + 1/n) / 4 around 1/2.
            d = ((a_pos**2 - a_neg**2) / (a_pos**2 + a_neg**2)) ** 2
            per_layer = d * ((1.0 - 1.0 / n) / (n / 2.0 + 1.0) + 1.0 / n)
            log_ratio = math.log1p(2.0 / n0) + (layer - 1) * math.log1p(per_layer)
        else:
            kappa = 6.0 * (a_pos**4 + a_neg**4) / (a_pos**2 + a_neg**2) ** 2 - 1.0
            log_ratio = (
                math.log1p(2.0 / n0) + math.log1p(2.0 / n) + (layer - 1) * math.log1p(kappa / n)
            )
        return math.expm1(log_ratio)
    _, var = _norm_walk(config, layer)
    radial_var = 0.0 if ortho else float(special.polygamma(1, n / 2.0))
    return math.expm1(var[layer] + radial_var)


def finite_width_note(config: SimConfig) -> str | None:
    """A sentence on finite-width effects when depth/width > 0.1, else None.

    Hanin & Rolnick 2018 ("How to start training: the effect of initialization and
    architecture"): the per-trial log norm has variance ~ kappa sum_l 1/n_l ~ kappa depth/width.
    For linear/relu/leaky_relu with centred i.i.d. weights E[mean_sq] stays exact (the
    expectation over weights is multiplicative), so deviations there are not finite-width
    effects; the spread makes the per-trial mean_sq heavy-tailed instead (rare large trials
    carry the mean; standard-error z-scores overstate the evidence). Other activations also
    get O(depth/width) corrections to the mean-field q-map itself.
    """
    depth, n = config.depth, config.width
    ratio = depth / n
    if ratio <= 0.1 or not _centred(config):
        return None
    dispersion = mean_sq_dispersion(config, depth)
    if dispersion is None:
        return None
    log_var = math.log1p(dispersion)  # Var[log ms] of a log-normal with that dispersion
    spread = (
        f"the per-trial mean_sq at layer {depth} is ~log-normal with Var[log mean_sq] ~ "
        f"{log_var:.3g} (relative variance {dispersion:.3g}; typical trial a factor "
        f"{math.exp(-log_var / 2.0):.3g} below the mean)"
    )
    act = _act(config.activation)
    if act.homogeneous is not None:
        return (
            f"depth/width = {ratio:.3g} > 0.1 (Hanin & Rolnick 2018): E[mean_sq] is still "
            f"exact for {config.activation.label} (the expectation over weights is "
            f"multiplicative), so mean_sq deviations are not finite-width effects, but {spread}:"
            " sample means converge slowly and standard-error z-scores are optimistic."
        )
    return (
        f"depth/width = {ratio:.3g} > 0.1 (Hanin & Rolnick 2018): mean-field predictions for "
        f"{config.activation.label} carry O(depth/width) finite-width corrections; {spread}."
    )

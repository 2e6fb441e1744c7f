"""Gaussian expectations of activations: phi, phi', phi'' (Keras definitions) and quadrature.

Everything here is an expectation over u = sqrt(q) z, z ~ N(0, 1), of an activation or its
derivatives (`activation_moments`), or over a pair (u1, u2) ~ N(0, q [[1, c], [c, 1]])
(`bivariate_expectation`, the integrand of the C-map and of chi_c).

Gaussian expectations of relu, leaky_relu and linear are closed forms (arc-cosine kernel, Cho &
Saul 2009, for two-point ones). The others use composite Gauss-Legendre quadrature times the
normal density on z in [-12, 12], with panel edges at z = 0 (every kink of these activations is
at u = 0), every unit of u = sqrt(q) z out to |u| = 40, and every 0.5 of z. A fixed-order
Gauss-Hermite rule (`hermegauss`) loses accuracy at kinks and once sqrt(q) >> 1 (its nodes near 0
are ~0.2 apart, while phi(sqrt(q) z) varies on 1/sqrt(q)); this rule agrees with
`scipy.integrate.quad` to ~1e-13 relative at any q (tests). Two-point expectations write
u1 = alpha a + tau e1, u2 = alpha a + tau e2 (alpha^2 = c q, tau^2 = (1 - c) q) and nest the same
rule, with the inner panels aligned on the kink of each row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import special

from scheduler.analysis.theory.weights import scheme_number
from worker.contract import ACTIVATIONS, Scheme

__all__ = [
    "ActivationFns",
    "ActivationMoments",
    "FloatArray",
    "activation_fns",
    "activation_moments",
    "activation_moments_many",
    "arccos_kernels",
    "bivariate_expectation",
    "cached_moments_at_log_qs",
    "forget_moments",
    "moments_at_log_q",
    "moments_at_log_qs",
    "normal_pdf",
    "panel_rule",
]

FloatArray = npt.NDArray[np.float64]

# tf.nn.selu's constants (Keras documents them rounded: alpha=1.67326324, scale=1.05070098)
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_LOG_Q_HI = math.log(1e150)  # beyond: unbounded activations by their asymptotic slopes
_LOG_Q_LO = math.log(1e-150)  # below: phi(0) = 0 activations by their slopes at 0


# --------------------------------------------------------------------------------------------
# Activations: phi, phi', phi'' (Keras definitions)


@dataclass(frozen=True)
class ActivationFns:
    """phi, phi' and phi'' of one activation as numpy ufuncs, and its piecewise-linear limits."""

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


def normal_pdf(u: FloatArray) -> FloatArray:
    """The standard normal density."""
    return np.exp(-0.5 * u * u) / _SQRT_2PI


def _piecewise_linear(a_pos: float, a_neg: float) -> ActivationFns:
    return ActivationFns(
        f=lambda u: np.where(u > 0, a_pos * u, a_neg * u),
        d1=lambda u: np.where(u > 0, a_pos, a_neg) + 0.0 * u,
        d2=lambda u: 0.0 * u,
        homogeneous=(a_pos, a_neg),
        slopes_inf=(a_pos, a_neg),
        slopes_zero=(a_pos, a_neg),
    )


def _elu(alpha: float, scale: float) -> ActivationFns:
    def neg_exp(u: FloatArray) -> FloatArray:
        return np.exp(np.minimum(u, 0.0))

    return ActivationFns(
        f=lambda u: scale * np.where(u > 0, u, alpha * np.expm1(np.minimum(u, 0.0))),
        d1=lambda u: scale * np.where(u > 0, 1.0, alpha * neg_exp(u)),
        d2=lambda u: scale * np.where(u > 0, 0.0, alpha * neg_exp(u)),
        homogeneous=None,
        slopes_inf=(scale, 0.0),
        slopes_zero=(scale, scale * alpha),
    )


def _tanh() -> ActivationFns:
    def d1(u: FloatArray) -> FloatArray:
        t = np.tanh(u)
        return 1.0 - t * t

    def d2(u: FloatArray) -> FloatArray:
        t = np.tanh(u)
        return -2.0 * t * (1.0 - t * t)

    return ActivationFns(np.tanh, d1, d2, None, None, (1.0, 1.0))


def _sigmoid() -> ActivationFns:
    def d1(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s * (1.0 - s)

    def d2(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s * (1.0 - s) * (1.0 - 2.0 * s)

    return ActivationFns(_expit, d1, d2, None, None, None)


def _gelu() -> ActivationFns:
    def f(u: FloatArray) -> FloatArray:
        return u * np.asarray(special.ndtr(u), dtype=np.float64)

    def d1(u: FloatArray) -> FloatArray:
        return np.asarray(special.ndtr(u), dtype=np.float64) + u * normal_pdf(u)

    return ActivationFns(
        f, d1, lambda u: normal_pdf(u) * (2.0 - u * u), None, (1.0, 0.0), (0.5, 0.5)
    )


def _swish() -> ActivationFns:
    def d1(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s + u * s * (1.0 - s)

    def d2(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s * (1.0 - s) * (2.0 + u * (1.0 - 2.0 * s))

    return ActivationFns(lambda u: u * _expit(u), d1, d2, None, (1.0, 0.0), (0.5, 0.5))


def _softplus() -> ActivationFns:
    def d2(u: FloatArray) -> FloatArray:
        s = _expit(u)
        return s * (1.0 - s)

    return ActivationFns(lambda u: np.logaddexp(0.0, u), _expit, d2, None, (1.0, 0.0), None)


@lru_cache(maxsize=256)
def activation_fns(activation: Scheme) -> ActivationFns:
    """phi, phi', phi'' of `activation` (Keras definitions; parameters default as in the spec)."""
    name = activation.name
    if name == "linear":
        return _piecewise_linear(1.0, 1.0)
    if name == "relu":
        return _piecewise_linear(1.0, 0.0)
    if name == "leaky_relu":
        return _piecewise_linear(1.0, scheme_number(activation, ACTIVATIONS, "alpha"))
    if name == "elu":
        return _elu(scheme_number(activation, ACTIVATIONS, "alpha"), 1.0)
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


def panel_rule(edges: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes and weights on each panel [edges[k], edges[k+1]]."""
    return panel_rule_between(edges[:-1], edges[1:])


def panel_rule_between(left: FloatArray, right: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes and weights on each panel [left[k], right[k]], panel after panel."""
    half = (right - left)[:, None] / 2.0
    mid = (right + left)[:, None] / 2.0
    nodes = mid + half * _GL_X[None, :]
    weights = half * _GL_W[None, :] + 0.0 * nodes
    return nodes.ravel(), weights.ravel()


@lru_cache(maxsize=8192)
def _gauss_rule(s: float, fine: float = 1.0) -> tuple[FloatArray, FloatArray]:
    """Nodes z and weights w (density included) with sum w f(s z) ~ E[f(s Z)], Z ~ N(0, 1).

    Panel edges in z: 0, every 0.5 up to 12, every u = 1 .. 40 (u = s z) and, when fine < 1,
    u = fine * 2^k below 1 (graded towards a feature of width `fine` at u = 0).
    """
    z, w, _ = _gauss_rules([s], fine)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


_EDGE_PAD = 1e300  # sorts after every edge in [0, _Z_MAX]; differences between pads are 0


def _gauss_rules(
    scales: Sequence[float], fine: float = 1.0
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """`_gauss_rule(s, fine)` for each s of `scales`, one after the other in flat (z, w) arrays:
    row r is [bounds[r], bounds[r + 1]). Every element is computed by the same operations as
    for one s alone (edges sorted per row, out-of-range ones padded past the end; each row's
    rule -x[::-1], x gathered by index), so each row is that rule bit for bit."""
    s = np.asarray(scales, dtype=np.float64)[:, None]
    pieces = [
        np.broadcast_to(np.arange(0.0, _Z_MAX + 0.25, 0.5), (s.shape[0], 25)),
        np.arange(1.0, _U_FEATURES + 0.5)[None, :] / s,
    ]
    if fine < 1.0:
        pieces.append((fine * 2.0 ** np.arange(math.ceil(-math.log2(fine))))[None, :] / s)
    edges = np.concatenate(pieces, axis=1)
    edges = np.sort(np.where((edges >= 0.0) & (edges <= _Z_MAX), edges, _EDGE_PAD), axis=1)
    keep = np.ones(edges.shape, dtype=bool)
    keep[:, 1:] = (np.diff(edges, axis=1) > 1e-13 * _Z_MAX) & (edges[:, 1:] <= _Z_MAX)
    kept = edges[keep]  # row after row, ascending
    n_edges = keep.sum(axis=1)
    last = np.cumsum(n_edges) - 1
    left = np.ones(kept.size, dtype=bool)
    left[last] = False  # a row's last edge starts no panel
    starts = np.flatnonzero(left)
    x, wx = panel_rule_between(kept[starts], kept[starts + 1])
    half = (n_edges - 1) * _GL_X.size  # nodes of each row's positive half
    first = np.concatenate(([0], np.cumsum(half)[:-1]))  # where each row's x starts in x
    bounds = np.concatenate(([0], np.cumsum(2 * half)))
    local = np.arange(bounds[-1]) - np.repeat(bounds[:-1], 2 * half)
    n = np.repeat(half, 2 * half)
    neg = local < n
    src = np.repeat(first, 2 * half) + np.where(neg, n - 1 - local, local - n)
    z = np.where(neg, -x[src], x[src])
    w = wx[src] * normal_pdf(z)
    return z, w, bounds


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
    we = (half * _GL_W).reshape(za.size, -1) * normal_pdf(e)
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


def _piecewise_kurtosis(a_pos: float, a_neg: float) -> float:
    """E[phi^4] / E[phi^2]^2 = 6 (a+^4 + a-^4) / (a+^2 + a-^2)^2 for phi = a+ u (u > 0), a- u
    (u < 0), from the slopes scaled to 1 (a^4 overflows float64 beyond 1e77); inf if both 0."""
    top = max(abs(a_pos), abs(a_neg))
    if top == 0.0:
        return math.inf
    b_pos, b_neg = a_pos / top, a_neg / top
    return 6.0 * (b_pos**4 + b_neg**4) / (b_pos**2 + b_neg**2) ** 2


def _homogeneous_moments(
    a_pos: float, a_neg: float, log_q: float, q: float | None = None
) -> ActivationMoments:
    # phi = a+ relu(u) - a- relu(-u): E phi = (a+ - a-) sqrt(q / 2 pi), E phi^2 = (a+^2 + a-^2) q/2,
    # E phi'^2 = (a+^2 + a-^2)/2, E phi^4 = 3 (a+^4 + a-^4) q^2 / 2.
    m2n = (a_pos**2 + a_neg**2) / 2.0
    if q is None:
        q = math.exp(log_q) if log_q < 709.0 else math.inf
    return ActivationMoments(
        mean=(a_pos - a_neg) * math.sqrt(q) / _SQRT_2PI,
        mean_sq=m2n * q,
        deriv_sq=m2n,
        curvature=0.0,
        kurtosis=_piecewise_kurtosis(a_pos, a_neg),
        log_mean_sq=math.log(m2n) + log_q if m2n > 0 else -math.inf,
        log_slope=1.0,
    )


@lru_cache(maxsize=65536)
def moments_at_log_q(activation: Scheme, log_q: float) -> ActivationMoments:
    """ActivationMoments at q = exp(log_q); asymptotic forms where q is extreme."""
    return cached_moments_at_log_qs(activation, [log_q])[0]


_MEMO_SIZE = 1 << 17  # moments kept by `cached_moments_at_log_qs` (some 40 MB at most)
_memo: dict[Scheme, dict[float, ActivationMoments]] = {}  # activation -> log q -> moments


def cached_moments_at_log_qs(
    activation: Scheme, log_qs: Sequence[float]
) -> list[ActivationMoments]:
    """`moments_at_log_qs(activation, log_qs)`, each distinct log q computed once per process:
    those not seen before by one `moments_at_log_qs` call (in order of first appearance), the
    rest from a memo of its earlier answers (the same values; cleared once it holds more
    than `_MEMO_SIZE`; closed forms and nan are `moments_at_log_qs` directly). Walks that settle on
    a fixed point, and configurations sharing a prefix of their walk, ask for the same log q
    again."""
    if activation_fns(activation).homogeneous is not None:  # closed forms: no memo
        return moments_at_log_qs(activation, log_qs)
    keys = [float(log_q) for log_q in log_qs]
    if any(math.isnan(log_q) for log_q in keys):  # nan != nan: no memo
        return moments_at_log_qs(activation, log_qs)
    memo = _memo.setdefault(activation, {})
    missing = list(dict.fromkeys(k for k in keys if k not in memo))
    if missing:
        memo.update(zip(missing, moments_at_log_qs(activation, missing), strict=True))
    out = [memo[k] for k in keys]
    if missing and sum(map(len, _memo.values())) > _MEMO_SIZE:
        _memo.clear()
    return out


def forget_moments() -> None:
    """Empty the memo of `cached_moments_at_log_qs` and `moments_at_log_q`'s cache."""
    _memo.clear()
    moments_at_log_q.cache_clear()


_ROWS_PER_PASS = 16  # rules evaluated together (their nodes stay in cache)


def moments_at_log_qs(activation: Scheme, log_qs: Sequence[float]) -> list[ActivationMoments]:
    """`moments_at_log_q(activation, l)` for each l of `log_qs`: closed forms where they apply,
    the quadratures of the others together (`_gauss_rules`; each value bit for bit the one
    log_q alone gives: the same elementwise operations, one np.dot per row)."""
    act = activation_fns(activation)
    out: list[ActivationMoments | None] = []
    pending: list[tuple[int, float]] = []  # (index in out, log q of the quadrature)
    for log_q in log_qs:
        if act.homogeneous is not None:
            out.append(_homogeneous_moments(*act.homogeneous, log_q))
            continue
        if log_q > _LOG_Q_HI:
            if act.slopes_inf is not None:
                out.append(_homogeneous_moments(*act.slopes_inf, log_q))
                continue
            log_q = _LOG_Q_HI  # bounded: moments have converged to their q -> inf limits
        if log_q < _LOG_Q_LO:
            if act.slopes_zero is not None:
                out.append(_homogeneous_moments(*act.slopes_zero, log_q))
                continue
            log_q = _LOG_Q_LO  # phi(0) != 0: moments have converged to phi(0)^k
        pending.append((len(out), log_q))
        out.append(None)
    for at in range(0, len(pending), _ROWS_PER_PASS):
        part = pending[at : at + _ROWS_PER_PASS]
        for (i, _), m in zip(part, _quadrature_moments(act, [q for _, q in part]), strict=True):
            out[i] = m
    return [m for m in out if m is not None]


def _quadrature_moments(act: ActivationFns, log_qs: list[float]) -> list[ActivationMoments]:
    """Moments of `act` at each log q by quadrature (rows of `_gauss_rules`)."""
    scales = [math.exp(0.5 * log_q) for log_q in log_qs]
    # Normalise by s where phi grows like u (so phi^4 neither overflows nor underflows).
    norms = [
        s
        if (act.slopes_inf is not None and s > 1.0) or (act.slopes_zero is not None and s < 1.0)
        else 1.0
        for s in scales
    ]
    z, w, bounds = _gauss_rules(scales)
    sizes = np.diff(bounds)
    u = np.repeat(scales, sizes) * z
    fn = act.f(u) / np.repeat(norms, sizes)
    peaks = np.maximum.reduceat(np.abs(fn), bounds[:-1])
    rows = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds.tolist())]
    for r, peak in enumerate(peaks.tolist()):
        if peak > 1.0:  # a large parameter (elu alpha up to 1e150): fn^4 must not overflow
            fn[rows[r]] = fn[rows[r]] / peak
            norms[r] *= peak
    d1 = act.d1(u)
    fn2 = fn * fn
    # fn^4 as fn2 * fn2: numpy's fn**4 is a general pow, half of the quadrature's time
    fn4, d1_sq, curv = fn2 * fn2, d1 * d1, act.d2(u) * fn
    # d log E[phi^2] / d log q = E[u phi(u) phi'(u)] / E[phi^2] (Stein, d/dq E f(sqrt(q) z) =
    # E[z f'(sqrt(q) z)] / (2 sqrt q)): one expectation, no cancellation of E[phi'^2] against
    # E[phi'' phi] at large q.
    slope = (u / np.repeat(norms, sizes)) * fn * d1
    out = []
    for r, norm in enumerate(norms):
        row, wr = rows[r], w[rows[r]]
        m2n = float(np.dot(wr, fn2[row]))
        out.append(
            ActivationMoments(
                mean=float(np.dot(wr, fn[row])) * norm,
                mean_sq=m2n * norm * norm,
                deriv_sq=float(np.dot(wr, d1_sq[row])),
                curvature=float(np.dot(wr, curv[row])) * norm,
                kurtosis=float(np.dot(wr, fn4[row])) / m2n**2,
                log_mean_sq=math.log(m2n) + 2.0 * math.log(norm),
                log_slope=float(np.dot(wr, slope[row])) / m2n,
            )
        )
    return out


def activation_moments(activation: Scheme, q: float) -> ActivationMoments:
    """Gaussian moments of `activation` at preactivation variance q >= 0 (q = 0: the limit)."""
    return activation_moments_many(activation, [q])[0]


def activation_moments_many(activation: Scheme, qs: Sequence[float]) -> list[ActivationMoments]:
    """`activation_moments(activation, q)` for each q of `qs` (ValueError if one is negative or
    nan): closed forms for positively homogeneous activations, the limit at q = 0, and the
    quadratures of the others together (`cached_moments_at_log_qs` at log q)."""
    for q in qs:
        if not q >= 0.0:
            raise ValueError(f"q: expected a non-negative variance. Received: {q!r}")
    act = activation_fns(activation)
    if act.homogeneous is not None:
        return [
            _homogeneous_moments(*act.homogeneous, math.log(q), q) if q > 0.0 else _at_zero(act)
            for q in qs
        ]
    positive = [math.log(q) for q in qs if q > 0.0]
    found = iter(cached_moments_at_log_qs(activation, positive) if positive else [])
    return [next(found) if q > 0.0 else _at_zero(act) for q in qs]


def _at_zero(act: ActivationFns) -> ActivationMoments:
    """The moments' limit as q -> 0: phi(0)^k, and the one-sided slopes at 0."""
    eps = np.array([1e-300, -1e-300])
    f0 = float(act.f(np.zeros(1))[0])
    d1 = act.d1(eps)
    curv = float(np.mean(act.d2(eps) * act.f(eps)))
    if act.slopes_zero is not None:
        a_pos, a_neg = act.slopes_zero
        kurt, log_m2, slope = _piecewise_kurtosis(a_pos, a_neg), -math.inf, 1.0
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


def arccos_kernels(a_pos: float, a_neg: float, q: float, c: float) -> tuple[float, float]:
    """(E[phi(u1) phi(u2)], E[phi'(u1) phi'(u2)]) for phi(u) = a+ u (u > 0), a- u (u < 0).

    u ~ N(0, q [[1, c], [c, 1]]), -1 <= c <= 1; with theta = arccos c (Cho & Saul 2009):
    E[phi phi] = a+ a- q c + (a+ - a-)^2 q (sqrt(1 - c^2) + (pi - theta) c) / (2 pi),
    E[phi' phi'] = a+ a- + (a+ - a-)^2 (pi - theta) / (2 pi).
    """
    return _arccos_kernels(a_pos, a_neg, q, c)


def bivariate_expectation(
    activation: Scheme, q: float, c: float, *, derivative: bool = False
) -> float:
    """E[psi(u1) psi(u2)] with psi = phi (or phi' if `derivative`), u ~ N(0, q [[1,c],[c,1]]).

    -1 <= c <= 1 (c < 0 by the quadrature of psi(u1) psi(-u2') at correlation -c). This is the
    integrand of the C-map (Poole et al. 2016, eq. 5) and of chi_c.
    """
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c: expected a correlation in [-1, 1]. Received: {c!r}")
    act = activation_fns(activation)
    if act.homogeneous is not None:
        phi_phi, dphi_dphi = _arccos_kernels(*act.homogeneous, q, c)
        return dphi_dphi if derivative else phi_phi
    fn = act.d1 if derivative else act.f
    if c < 0.0:
        return _bivariate_quadrature(fn, lambda u: fn(-u), q, -c)
    return _bivariate_quadrature(fn, fn, q, c)

"""Mean-field correlation map of two inputs through one network (numpy/scipy only).

Two inputs a != b with the same squared norm per unit, |x_a|^2 / n0 = |x_b|^2 / n0 = q^0, and
cosine correlation c^0 = <x_a, x_b> / (|x_a| |x_b|) pass through the same weights (the
simulator's `input_q`, `input_corr`; i.i.d. N(0, I) inputs have q^0 = 1 and E[c^0] = 0). With
sigma_w^2 = fan_in v per layer (`weights.weight_moments`, centred weights only), sigma_b^2 the bias
variance and E over (u_a, u_b) ~ N(0, q^l [[1, c^l], [c^l, 1]]):

    q^1      = sigma_w1^2 q^0 + sigma_b^2,     q_ab^1 = sigma_w1^2 q^0 c^0 + sigma_b^2   (exact)
    q^{l+1}  = sigma_w^2 E[phi(u_a)^2] + sigma_b^2
    q_ab^{l+1} = sigma_w^2 E[phi(u_a) phi(u_b)] + sigma_b^2,     c^l = q_ab^l / q^l

(Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos",
eqs. 3-5; Schoenholz et al. 2017, "Deep Information Propagation", eqs. 3-5). Layer 1 is exact
in law for fixed inputs: z^1_a = x_a W + b is Gaussian with that covariance. The layer-by-layer
map is iterated from the inputs' geometry, so q^l need not have reached q* (the c-map of
`meanfield` is its limit at q^l = q*). Activations, for the same pair:

    E[h_a h_b] = E[phi(u_a) phi(u_b)],   activation correlation E[phi(u_a) phi(u_b)] / E[phi^2]

(the simulator's corr is the uncentred cosine, so the theory is uncentred too). Expectations are
closed forms for relu, leaky_relu and linear (arc-cosine kernels, Cho & Saul 2009) and nested
Gauss-Legendre quadrature otherwise (`gaussian.bivariate_expectation`); -1 <= c <= 1.

Gradients. The readout L = <r, h^D> draws r (batch, width) i.i.d. N(0, 1): the readouts of two
inputs are independent (`worker.sim.observables.SubBatch.inputs`). With g^D = r * phi'(z^D) and
g^l = phi'(z^l) * (g^{l+1} (W^{l+1})^T), the gradient g^l_a is linear in r_a and g^l_b in r_b
given the weights and inputs, so flipping r_a -> -r_a (which leaves the joint law unchanged)
flips <g_a, g_b> and the cosine of (g_a, g_b):

    E[<g^l_a, g^l_b>] = 0   and   E[cos(g^l_a, g^l_b)] = 0   at every layer

exactly, at any width, for any activation and without the gradient independence assumption;
the per-trial value fluctuates at O(1/sqrt(width)). For readouts with correlation rho_r
(E[r_a r_b] = rho_r; shared readouts rho_r = 1), the backward map under the gradient
independence assumption (Schoenholz et al. 2017, sec. 4) is

    G^D_ab = rho_r E[phi'(u_a) phi'(u_b)]^(D),   G^l_ab = sigma_w^2 E[phi'(u_a) phi'(u_b)]^(l) G^{l+1}_ab
    G^D    = E[phi'(u)^2]^(D),                   G^l    = sigma_w^2 E[phi'(u)^2]^(l) G^{l+1}
    gradient correlation G^l_ab / G^l = rho_r prod_{k=l..D} E[phi'(u_a) phi'(u_b)]^(k) / E[phi'^2]^(k)

(the top layer carries no sigma_w^2: E[r^2] = 1, as `meanfield`'s gradient mean_sq). The
simulator has rho_r = 0: `readout_corr` defaults to it.

Fixed point and depth scales. q* is the q-map's fixed point reached from q^1; c* the C-map's
stable fixed point at q* (`meanfield.c_star`: c* = 1 unless chaotic); chi_c = sigma_w^2
E[phi'(u_a) phi'(u_b)] at (q*, c*) is the C-map's slope there, so c^l - c* ~ A chi_c^l and

    xi_c = -1 / log(chi_c),    xi_grad = -1 / log(chi_1),   chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]

(Schoenholz et al. 2017, eqs. 8-9 and 15: E[|g^l|^2] ~ chi_1^(D - l), so the gradient's
mean_sq grows like exp(l / xi_grad) towards the readout; xi_grad < 0 in the chaotic phase, where
gradients explode towards the input). Where the linearisation degenerates the map is not
exponential and xi_c is inf (c* = 1 with a slope of 1) or None (no fixed point): q* = 0
(sigma_b = 0, phi(0) = 0) and diverging q (unbounded phi) leave only the slopes of phi at 0, or
at infinity, and the normalised map c -> K(c) / K(1) of that piecewise-linear phi, whose slope
at c = 1 is 1 (relu-like) or which is the identity (a+ = a-, e.g. tanh at q* = 0: c^l settles
on a limit set by c^0). If q^l has not converged the decay of |c^l - c*| also carries the q-map's
transient, at rate exp(-l / xi_q) (`meanfield.predict_map`).

Finite width: these are infinite-width values. The measured corr is a ratio per trial (a
cosine over `width` units); even at layer 1, where (z_a, z_b) is exactly Gaussian per unit, its
expectation is c^1 (1 - (1 - c^1^2) / (2 width)) + O(width^-2) (the sample correlation's bias,
Olkin & Pratt 1958), and deeper layers add the O(depth / width) fluctuation of q^l.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from scheduler.analysis.theory.gaussian import (
    ActivationFns,
    FloatArray,
    activation_fns,
    activation_moments,
    arccos_kernels,
    bivariate_expectation,
)
from scheduler.analysis.theory.meanfield import c_star, predict_map
from scheduler.analysis.theory.weights import is_centred, weight_moments
from worker.contract import Scheme, SimConfig

__all__ = [
    "CorrelationMap",
    "CorrelationTheory",
    "LayerCorrelation",
    "correlation_map",
    "depth_scales",
    "predict_correlations",
    "signed_depth_scale",
]

# Beyond these q the expectations of an activation with known slopes at infinity (or at 0) are
# those of its piecewise-linear limit (as `gaussian.moments_at_log_q`).
_Q_HI = 1e150
_Q_LO = 1e-150
# A step smaller than this (relative in q, absolute in c) has converged: later layers repeat it.
_CONVERGED = 1e-15
_QUANTITIES = ("preactivation", "activation", "gradient")


@dataclass(frozen=True, eq=False)
class CorrelationMap:
    """Per-layer mean-field geometry of an input pair; every array has shape (depth,), index
    l - 1 for layer l. NaN where not predicted (beyond float64, or the map is undefined).

    q, cross, corr: the preactivations' q^l, q_ab^l, c^l. act_sq, act_cross, act_corr:
    E[phi(u)^2], E[phi(u_a) phi(u_b)] and their ratio. grad_sq, grad_cross, grad_corr: G^l,
    G^l_ab and their ratio for readout correlation `readout_corr` (0: grad_cross = grad_corr =
    0 exactly). See the module docstring for the formulas.
    """

    q: FloatArray
    cross: FloatArray
    corr: FloatArray
    act_sq: FloatArray
    act_cross: FloatArray
    act_corr: FloatArray
    grad_sq: FloatArray
    grad_cross: FloatArray
    grad_corr: FloatArray
    readout_corr: float


def _slopes(fns: ActivationFns, q: float) -> tuple[float, float] | None:
    """The piecewise-linear phi whose kernels are exact (homogeneous) or the limit at this q."""
    if fns.homogeneous is not None:
        return fns.homogeneous
    if q > _Q_HI:
        return fns.slopes_inf
    if q < _Q_LO:
        return fns.slopes_zero
    return None


def _pair(activation: Scheme, fns: ActivationFns, q: float, c: float) -> tuple[float, float]:
    """(E[phi(u)^2] / q, E[phi(u_a) phi(u_b)] / q) at (q, c): scale-free where phi is linear
    on each side of 0 (so valid at q = inf and q -> 0 there), NaN where undefined."""
    slopes = _slopes(fns, q)
    if slopes is not None:
        a_pos, a_neg = slopes
        return (a_pos * a_pos + a_neg * a_neg) / 2.0, arccos_kernels(a_pos, a_neg, 1.0, c)[0]
    if not (math.isfinite(q) and q > 0.0):
        return math.nan, math.nan
    sq = activation_moments(activation, q).mean_sq / q
    return sq, bivariate_expectation(activation, q, c) / q


def _deriv_pair(
    activation: Scheme, fns: ActivationFns, q: float, c: float, cross: bool
) -> tuple[float, float]:
    """(E[phi'(u)^2], E[phi'(u_a) phi'(u_b)]) at (q, c); the second only if `cross` (else 0)."""
    slopes = _slopes(fns, q)
    if slopes is not None:
        a_pos, a_neg = slopes
        dd = arccos_kernels(a_pos, a_neg, 1.0, c)[1] if cross else 0.0
        return (a_pos * a_pos + a_neg * a_neg) / 2.0, dd
    if not (math.isfinite(q) and q >= 0.0):
        return math.nan, math.nan
    sq = activation_moments(activation, q).deriv_sq
    return sq, bivariate_expectation(activation, q, c, derivative=True) if cross else 0.0


def _next_corr(sw2: float, sb2: float, q: float, n_sq: float, n_cross: float) -> float:
    """c^{l+1} = (sw2 q K_ab + sb2) / (sw2 q K_aa + sb2) with K = E[.] / q (q may be 0 or inf)."""
    if q == 0.0:
        top, bottom = (n_cross, n_sq) if sb2 == 0.0 else (1.0, 1.0)
    else:
        top, bottom = sw2 * n_cross + sb2 / q, sw2 * n_sq + sb2 / q
    if not bottom > 0.0:
        return math.nan
    return min(1.0, max(-1.0, top / bottom))


def _reverse_cumprod(x: FloatArray) -> FloatArray:
    """out[l] = prod_{k >= l} x[k] (NaN propagates)."""
    return np.asarray(np.cumprod(x[::-1])[::-1], dtype=np.float64)


def correlation_map(
    activation: Scheme,
    sw2: float,
    sb2: float,
    q0: float,
    c0: float,
    depth: int,
    *,
    sw2_in: float | None = None,
    readout_corr: float = 0.0,
) -> CorrelationMap:
    """The mean-field map of the module docstring iterated from (q^0, c^0) over `depth` layers.

    sw2 = sigma_w^2 of layers 2..depth, `sw2_in` that of layer 1 (default sw2), sb2 = sigma_b^2,
    q0 > 0, -1 <= c0 <= 1. Forward layers are iterated one by one (each needs the last c); once
    a step moves q by less than 1e-15 q and c by less than 1e-15 the remaining layers repeat it.
    The backward products are vectorised over layers. Returns arrays of shape (depth,).
    """
    if not (q0 > 0.0 and math.isfinite(q0)):
        raise ValueError(f"q0: expected a positive number. Received: {q0!r}")
    if not -1.0 <= c0 <= 1.0:
        raise ValueError(f"c0: expected a correlation in [-1, 1]. Received: {c0!r}")
    if depth < 1:
        raise ValueError(f"depth: expected a positive integer. Received: {depth!r}")
    fns = activation_fns(activation)
    first = sw2 if sw2_in is None else sw2_in
    want_cross = readout_corr != 0.0
    cols = np.full((7, depth), np.nan)  # q, c, n_sq, n_cross, d_sq, d_cross, step factor
    q = first * q0 + sb2
    c = _next_corr(first, sb2, q0, 1.0, c0)  # (sw1^2 q0 c0 + sb2) / (sw1^2 q0 + sb2)
    layer = 0
    while layer < depth and math.isfinite(c):
        n_sq, n_cross = _pair(activation, fns, q, c)
        d_sq, d_cross = _deriv_pair(activation, fns, q, c, want_cross)
        cols[:6, layer] = q, c, n_sq, n_cross, d_sq, d_cross
        q_next = sw2 * n_sq * q + sb2 if q > 0.0 else sb2
        c_next = _next_corr(sw2, sb2, q, n_sq, n_cross)
        layer += 1
        if abs(q_next - q) <= _CONVERGED * q and abs(c_next - c) <= _CONVERGED:
            cols[:6, layer:] = cols[:6, layer - 1 : layer]
            break
        q, c = q_next, c_next
    q_l, c_l, n_sq_l, n_cross_l, d_sq_l, d_cross_l = cols[:6]
    with np.errstate(all="ignore"):
        act_sq, act_cross = n_sq_l * q_l, n_cross_l * q_l
        # backward factors: sigma_w^2 E[phi'^2] below the top layer, E[phi'^2] (E r^2 = 1) at it
        factor = np.where(np.arange(depth) < depth - 1, sw2, 1.0)
        grad_sq = _reverse_cumprod(factor * d_sq_l)
        if want_cross:
            grad_corr = readout_corr * _reverse_cumprod(d_cross_l / d_sq_l)
        else:  # exact (module docstring), whatever the forward pass does
            grad_corr = np.zeros(depth)
        return CorrelationMap(
            q=q_l,
            cross=c_l * q_l,
            corr=c_l,
            act_sq=act_sq,
            act_cross=act_cross,
            act_corr=n_cross_l / n_sq_l,
            grad_sq=grad_sq,
            grad_cross=grad_corr * grad_sq,
            grad_corr=grad_corr,
            readout_corr=readout_corr,
        )


@lru_cache(maxsize=1024)
def _shared_map(
    activation: Scheme,
    sw2: float,
    sb2: float,
    q0: float,
    c0: float,
    depth: int,
    sw2_in: float,
    readout_corr: float,
) -> CorrelationMap:
    """`correlation_map`, read-only and memoised: configurations that differ only in width,
    dtype or sampler share one map."""
    cmap = correlation_map(
        activation, sw2, sb2, q0, c0, depth, sw2_in=sw2_in, readout_corr=readout_corr
    )
    for values in vars(cmap).values():
        if isinstance(values, np.ndarray):
            values.setflags(write=False)
    return cmap


def signed_depth_scale(slope: float) -> float:
    """-1/log(slope) for slope >= 0: > 0 for a contraction, < 0 for growth, inf within 1e-12
    of 1 (sigma_w^2 = fan_in * (2 / fan_in) is 1 only up to rounding), 0 at slope 0."""
    if not slope >= 0.0:
        raise ValueError(f"slope: expected a non-negative number. Received: {slope!r}")
    if abs(slope - 1.0) <= 1e-12:
        return math.inf
    if slope == 0.0:
        return 0.0
    return -1.0 / math.log(slope)


# --------------------------------------------------------------------------------------------
# Per-configuration predictions


@dataclass(frozen=True)
class LayerCorrelation:
    """Predicted E[corr] and E[cross] of one (layer, quantity); None: no prediction."""

    layer: int
    quantity: str
    corr: float | None
    cross: float | None


@dataclass(frozen=True)
class CorrelationTheory:
    """Correlation predictions for one configuration: per-layer values, fixed points, scales.

    `layers`: layer 0 (quantity "activation": the inputs) then preactivation, activation and
    gradient of layers 1..depth (empty when batch < 2: no pair). q*, c*, chi_1, chi_c, xi_c,
    xi_q, xi_grad and phase as in the module docstring (None: undefined; xi inf: no exponential
    decay). `note` says why values are missing or approximate.
    """

    config: SimConfig
    layers: tuple[LayerCorrelation, ...]
    q_star: float | None
    c_star: float | None
    chi_1: float | None
    chi_c: float | None
    xi_c: float | None
    xi_q: float | None
    xi_grad: float | None
    phase: str
    note: str

    def get(self, layer: int, quantity: str) -> LayerCorrelation:
        """The prediction of (layer, quantity)."""
        for item in self.layers:
            if item.layer == layer and item.quantity == quantity:
                return item
        raise KeyError(f"no correlation prediction for layer {layer}, quantity {quantity!r}")


def _value(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _fixed_point(
    activation: Scheme, sw2: float, sb2: float, q_star: float | None, chi_1: float | None
) -> tuple[float | None, float | None]:
    """(c*, chi_c) at the q-map's limit (module docstring; None: no fixed point)."""
    fns = activation_fns(activation)
    if q_star is not None and q_star > 0.0 and fns.homogeneous is None:
        c = c_star(sw2, sb2, activation, q_star) if chi_1 is not None and chi_1 > 1.0 else 1.0
        return c, sw2 * bivariate_expectation(activation, q_star, c, derivative=True)
    if q_star is not None and q_star > 0.0:  # homogeneous with a finite q*: chi_c = chi_1 at c = 1
        return 1.0, chi_1
    # q* = 0 or q diverges: the normalised map of the slopes at 0 (or at infinity)
    slopes = fns.homogeneous or (fns.slopes_zero if q_star == 0.0 else fns.slopes_inf)
    if slopes is None or slopes[0] == slopes[1]:
        return None, None  # bounded phi, or the identity map: no fixed point of its own
    return 1.0, 1.0


@lru_cache(maxsize=4096)
def depth_scales(config: SimConfig) -> tuple[float | None, float | None]:
    """(c*, xi_c) of `config` without the per-layer map (what a phase diagram needs per cell):
    the values `predict_correlations(config)` reports; (None, None) where it has none."""
    if config.batch < 2 or not is_centred(config):
        return None, None
    q0 = 1.0 if config.input_q is None else config.input_q
    n0, n = config.input_dim, config.width
    sw2_in = n0 * weight_moments(config.init, n0, n)[1]
    sw2 = n * weight_moments(config.init, n, n)[1]
    sb2 = config.bias_std**2
    try:
        q_star, chi_1, _, _, _ = predict_map(
            math.sqrt(sw2), config.bias_std, config.activation, q0=sw2_in * q0 + sb2
        )
        c, chi_c = _fixed_point(config.activation, sw2, sb2, q_star, chi_1)
    except (ArithmeticError, ValueError):
        return None, None
    return c, None if chi_c is None else signed_depth_scale(chi_c)


def _none_theory(config: SimConfig, note: str) -> CorrelationTheory:
    layers = [LayerCorrelation(0, "activation", None, None)]
    if config.batch < 2:
        layers = []
    else:
        for layer in range(1, config.depth + 1):
            layers += [LayerCorrelation(layer, q, None, None) for q in _QUANTITIES]
    return CorrelationTheory(
        config, tuple(layers), None, None, None, None, None, None, None, "unknown", note
    )


def predict_correlations(
    config: SimConfig, *, input_q: float | None = None, input_corr: float | None = None
) -> CorrelationTheory:
    """Mean-field E[corr] and E[cross] of every (layer, quantity) of `config`, with c*, xi_c.

    `input_q`, `input_corr`: q^0 and c^0 (None: the configuration's own, and for i.i.d.
    N(0, I) inputs q^0 = 1 and c^0 = 0). Centred weights only (else every value is None, as `meanfield.predict`
    does for deeper layers of non-centred kernels); orthogonal kernels use their entry variance
    (approximate). Total on every configuration: where the theory cannot be computed every
    value is None and `note` says why.
    """
    input_q = config.input_q if input_q is None else input_q
    input_corr = config.input_corr if input_corr is None else input_corr
    if config.batch < 2:
        return _none_theory(config, "batch 1: one input per trial, no pair to correlate.")
    if not is_centred(config):
        return _none_theory(
            config,
            "weights are not centred: the common mode of non-centred kernels is not in the "
            "correlation map; no prediction.",
        )
    try:
        return _predict(config, input_q, input_corr)
    except (ArithmeticError, ValueError) as exc:
        return _none_theory(
            config,
            f"no prediction: the theory could not be computed ({type(exc).__name__}: {exc}).",
        )


def _predict(
    config: SimConfig, input_q: float | None, input_corr: float | None
) -> CorrelationTheory:
    """`predict_correlations` without the guards."""
    q0 = 1.0 if input_q is None else input_q
    c0 = 0.0 if input_corr is None else input_corr
    n0, n, act = config.input_dim, config.width, config.activation
    sw2_in = n0 * weight_moments(config.init, n0, n)[1]
    sw2 = n * weight_moments(config.init, n, n)[1]
    sb2 = config.bias_std**2
    # A configuration with an input geometry gives its inputs one readout (readout_corr 1);
    # independent readouts (the i.i.d. default) make every gradient pair uncorrelated.
    readout = 1.0 if config.shared_readout else 0.0
    cmap = _shared_map(act, sw2, sb2, q0, c0, config.depth, sw2_in, readout)
    layers = [LayerCorrelation(0, "activation", c0, q0 * c0)]
    for i in range(config.depth):
        layers += [
            LayerCorrelation(i + 1, "preactivation", _value(cmap.corr[i]), _value(cmap.cross[i])),
            LayerCorrelation(
                i + 1, "activation", _value(cmap.act_corr[i]), _value(cmap.act_cross[i])
            ),
            LayerCorrelation(
                i + 1, "gradient", _value(cmap.grad_corr[i]), _value(cmap.grad_cross[i])
            ),
        ]
    q_star, chi_1, xi_q, _, phase = predict_map(
        math.sqrt(sw2), config.bias_std, act, q0=sw2_in * q0 + sb2
    )
    c, chi_c = _fixed_point(act, sw2, sb2, q_star, chi_1)
    notes = []
    if config.init.name == "orthogonal":
        notes.append(
            "orthogonal kernels are not i.i.d.: the map uses their entry variance (approximate)."
        )
    if q_star is None or q_star == 0.0:
        notes.append(
            "q* is 0 or q diverges: the map tends to that of phi's slopes at 0 (or infinity), "
            "whose correlations converge sub-exponentially (xi_c inf) or not to a fixed point "
            "(None)."
        )
    if np.isnan(cmap.corr).any():
        notes.append("the map is undefined beyond float64 at depth: those layers are None.")
    return CorrelationTheory(
        config=config,
        layers=tuple(layers),
        q_star=q_star,
        c_star=c,
        chi_1=chi_1,
        chi_c=chi_c,
        xi_c=None if chi_c is None else signed_depth_scale(chi_c),
        xi_q=xi_q,
        xi_grad=None if chi_1 is None else signed_depth_scale(chi_1),
        phase=phase,
        note=" ".join(notes),
    )

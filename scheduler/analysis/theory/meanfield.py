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

Finite-width corrections, dtype limits and the Gaussian integrals live in the sibling modules
`finite_width`, `precision` and `gaussian`; weight moments in `weights`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

from scipy import optimize

from scheduler.analysis.theory.corrections import (
    Bounds,
    ForwardBounds,
    forward_bounds,
    gradient_bounds,
    log_derivative_points,
)
from scheduler.analysis.theory.finite_width import finite_width_note, norm_walks
from scheduler.analysis.theory.gaussian import (
    ActivationMoments,
    FloatArray,
    activation_fns,
    activation_moments,
    activation_moments_many,
    bivariate_expectation,
)
from scheduler.analysis.theory.precision import (
    expected_first_layer,
    horizon,
    overflow_cdf,
    underflow_cdf,
)
from scheduler.analysis.theory.weights import is_centred, weight_moments
from worker.contract import Scheme, SimConfig

__all__ = [
    "PHASE_TOL",
    "ConfigTheory",
    "FixedPoint",
    "LayerTheory",
    "c_star",
    "critical_sigma_w",
    "fixed_point",
    "predict",
    "predict_many",
    "predict_map",
]

# |chi_1 - 1| below this is "critical".
PHASE_TOL = 1e-3


# --------------------------------------------------------------------------------------------
# Fixed points, susceptibilities, phase


def _q_fixed_point(sw2: float, sb2: float, activation: Scheme, q0: float) -> float | None:
    """The fixed point of q -> sw2 E[phi(sqrt(q) z)^2] + sb2 reached from q0; None: diverges.

    The map is increasing, so iterates move monotonically from q0 to the nearest root of
    g(q) = map(q) - q in the direction of sign(g(q0)); bracket it geometrically, then brentq.
    """
    act = activation_fns(activation)
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


def c_star(sw2: float, sb2: float, activation: Scheme, q_star: float) -> float:
    """The stable fixed point c* of the C-map at q* (Schoenholz et al. 2017, eq. 5).

    c* solves c = (sw2 E[phi(u1) phi(u2)] + sb2) / q*, u ~ N(0, q* [[1, c], [c, 1]]). It is
    < 1 in the chaotic phase (chi_1 > 1) and 1 otherwise, where the search finds no root below 1.
    """
    return _c_star(sw2, sb2, activation, q_star)


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
    if chi_1 is None or math.isnan(chi_1):
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
        slopes = activation_fns(activation).slopes_inf
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


def critical_sigma_w(sigma_b: float, activation: Scheme) -> float | None:
    """sigma_w on the critical line chi_1 = 1 at this sigma_b, or None where there is none.

    Closed form sqrt(2 / (a_+^2 + a_-^2)) for linear (1), relu (sqrt 2) and leaky_relu. Elsewhere
    q* is the fixed point reached from q = 1: the first sign change of chi_1 - 1 as sigma_w grows
    from 1 (bracketed by halving and growing sigma_w), located by brentq. chi_1 increases
    continuously with sigma_w for tanh, but for gelu and swish the reached fixed point can jump
    (two stable fixed points; at sigma_b > 0 chi_1 jumps from ~0.62 to ~1.16): a sign change
    where |chi_1 - 1| stays above 1e-6 at the located sigma_w is such a jump, not a crossing,
    and gives None (chi_1 - 1 keeps one sign on each side of the jump within the bracket, so
    the bracket holds no crossing). None also when no bracket exists in [1e-6, 1e4].
    """
    act = activation_fns(activation)
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
            return None
    while h(hi) < 0.0:
        lo, hi = hi, hi * 1.5
        if hi > 1e4:
            return None
    if h(lo) == 0.0:
        return lo
    root = float(optimize.brentq(h, lo, hi, xtol=1e-13, rtol=1e-15))
    return root if abs(h(root)) <= _CROSSING_TOL else None


# |chi_1 - 1| at a located sign change above this is a jump of the fixed point, not a crossing.
_CROSSING_TOL = 1e-6


# --------------------------------------------------------------------------------------------
# Per-configuration predictions


@dataclass(frozen=True)
class LayerTheory:
    """Predicted E[mean], E[mean_sq] and sqrt(E[std^2]) of one (layer, quantity); None: none.

    `*_bounds`: the interval each expectation may lie in at this width (`corrections`: the
    mean-field value +- a stated multiple of its O(depth/width) correction; for std, E[std]
    between its Hoelder bound and sqrt(E[std^2])); `dispersion`: the relative variance over
    trials of the per-trial mean_sq. None: not known (no finite-width allowance, no bound).
    """

    layer: int
    quantity: str
    mean: float | None
    mean_sq: float | None
    std: float | None
    mean_bounds: tuple[float, float] | None = None
    mean_sq_bounds: tuple[float, float] | None = None
    std_bounds: tuple[float, float] | None = None
    dispersion: float | None = None


@dataclass(frozen=True)
class FixedPoint:
    """The mean-field maps of one configuration (`predict_map`): q*, chi_1, the depth scales
    (inf on a critical line), the phase, and the sentences that qualify them."""

    q_star: float | None
    chi_1: float | None
    xi_q: float | None
    xi_c: float | None
    phase: str
    notes: tuple[str, ...]


_NO_MAP = FixedPoint(None, None, None, None, "unknown", ())


@lru_cache(maxsize=4096)
def fixed_point(sigma_w: float, sigma_b: float, activation: Scheme, q0: float) -> FixedPoint:
    """`predict_map(sigma_w, sigma_b, activation, q0=q0)` with non-finite q*, chi_1 as None and
    its notes; where it cannot be computed (an arithmetic failure) every value is None and the
    note says why. Depth does not enter: configurations that differ only in depth share it."""
    try:
        q_star, chi_1, xi_q, xi_c, phase = predict_map(sigma_w, sigma_b, activation, q0=q0)
    except (ArithmeticError, ValueError) as exc:
        return FixedPoint(
            None,
            None,
            None,
            None,
            "unknown",
            (f"the fixed point could not be computed ({type(exc).__name__}: {exc}).",),
        )
    notes: list[str] = []
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
    return FixedPoint(_finite(q_star), _finite(chi_1), xi_q, xi_c, phase, tuple(notes))


@dataclass(frozen=True)
class ConfigTheory:
    """Mean-field predictions for one configuration (see the module docstring).

    The maps' values (q*, chi_1, xi_q, xi_c, phase: `fixed_point` of `maps_from`, None where
    there are none) are computed when first read, not by `predict`: the per-layer predictions
    do not use them, and the C-map's fixed point costs seconds for smooth activations.
    """

    config: SimConfig
    layers: tuple[LayerTheory, ...]
    overflow_layer: float | None
    underflow_layer: float | None
    exact: bool
    notes: tuple[str, ...] = ()  # the sentences of `note` after the maps' own
    # P(first non-finite forward layer <= l), P(collapsed to 0 by l), l = 0..precision.horizon
    overflow_cdf: tuple[float, ...] | None = None
    underflow_cdf: tuple[float, ...] | None = None
    # (sigma_w, sigma_b, activation, q^1) of `fixed_point`; None: no map (not centred, none)
    maps_from: tuple[float, float, Scheme, float] | None = None
    # `finite_width_note(config)`, also among `notes`; None: none, or it cannot be computed
    width_note: str | None = None

    @property
    def maps(self) -> FixedPoint:
        """`fixed_point(*maps_from)` (cached per process), or all None without `maps_from`."""
        return _NO_MAP if self.maps_from is None else fixed_point(*self.maps_from)

    @property
    def q_star(self) -> float | None:
        return self.maps.q_star

    @property
    def chi_1(self) -> float | None:
        return self.maps.chi_1

    @property
    def xi_q(self) -> float | None:
        return self.maps.xi_q

    @property
    def xi_c(self) -> float | None:
        return self.maps.xi_c

    @property
    def phase(self) -> str:
        return self.maps.phase

    @property
    def note(self) -> str:
        """Every sentence on the configuration: the maps', then the rest (`notes`)."""
        return " ".join((*self.maps.notes, *self.notes))

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


def predict(config: SimConfig, *, device: str | None = None) -> ConfigTheory:
    """Mean-field predictions of every (layer, quantity) of `config`, its phase and limits.

    Layer 0 is the input (mean 0, mean_sq 1, std sqrt(1 - 1/(batch input_dim))). Layers
    1..depth carry preactivation, activation and gradient in that order. Values that overflow
    float64 and quantities the theory does not cover (deeper layers of non-centred weights)
    are None; so is every number that is not finite (q*, chi_1, the layer values), except the
    depth scales xi_q, xi_c, which are inf on a critical line. `exact` is False for orthogonal
    (not i.i.d.) and non-centred kernels. Total on every configuration a spec accepts: where a
    prediction cannot be computed (an arithmetic failure) every layer is None and `note` says
    why, so callers count the configuration as "no prediction" instead of failing. `device`
    (a chunk's provenance device; None: CPU) sets the dtype's subnormal behaviour
    (`precision.underflow_model`). `predict_many` with one configuration.
    """
    return predict_many([config], [device])[0]


def predict_many(
    configs: Sequence[SimConfig], devices: Sequence[str | None] | None = None
) -> list[ConfigTheory]:
    """`predict(config, device=device)` of each configuration (devices: None, CPU, for all),
    the same values, computed together: the norm walks of all of them advance in lockstep to
    their laws' horizon (`finite_width.norm_walks`, shared by configurations that differ only
    in depth), so does the q recursion (one `activation_moments_many` call per activation and
    layer), and the moments `corrections.layer_bounds` differentiates are evaluated in one call
    per activation before each configuration is assembled. Configurations that differ only in
    depth share their q recursion, their input, preactivation and activation layers (values
    and bounds) and their overflow and collapse laws: the deepest one's, computed once and read
    as prefixes (each layer depends only on the layers below it); each computes its own
    gradients and notes. Every Gaussian moment is computed once per
    distinct q (`gaussian.cached_moments_at_log_qs`)."""
    if devices is None:
        devices = [None] * len(configs)
    _walk_ahead(configs)
    forwards = _forward(configs)
    _moments_ahead(configs, forwards)
    groups = _DepthGroups(configs, forwards)
    out = []
    for config, device, forward in zip(configs, devices, forwards, strict=True):
        try:
            if isinstance(forward, Exception):
                raise forward
            part = groups.part(config, forward)
            out.append(_predict(config, device, forward, part, groups.laws(config, device)))
        except (ArithmeticError, ValueError) as exc:
            note = f"no prediction: the theory could not be computed ({type(exc).__name__}: {exc})."
            out.append(_no_prediction(config, note))
    return out


Laws = tuple[FloatArray | None, FloatArray | None]  # (overflow_cdf, underflow_cdf)


class _DepthGroups:
    """The configurations of one `predict_many` call grouped by every field but depth: each
    group's `_ForwardPart` and laws are those of its deepest configuration, computed once when
    first asked for, and read by the others as prefixes; where the deepest's fail (they may
    fail deeper down), a configuration computes its own."""

    def __init__(
        self, configs: Sequence[SimConfig], forwards: Sequence[_Forward | Exception]
    ) -> None:
        self._configs, self._forwards = configs, forwards
        ok = [not isinstance(forward, Exception) for forward in forwards]
        self._deepest = _deepest(configs, ok)
        self._parts: dict[tuple[object, ...], _ForwardPart | None] = {}
        self._laws: dict[tuple[tuple[object, ...], str | None], Laws | None] = {}

    def part(self, config: SimConfig, forward: _Forward) -> _ForwardPart:
        """`config`'s `_ForwardPart` (its forward recursion: `forward`)."""
        key = _depth_free(config)
        if key not in self._parts:
            j = self._deepest[key]
            deep = self._forwards[j]
            assert isinstance(deep, _Forward)
            try:
                self._parts[key] = _forward_part(self._configs[j], deep)
            except (ArithmeticError, ValueError):
                self._parts[key] = None
        part = self._parts[key]
        return _forward_part(config, forward) if part is None else part

    def laws(self, config: SimConfig, device: str | None) -> Laws:
        """`overflow_cdf(config)` and `underflow_cdf(config, device=device)`: the deepest's to
        `config`'s `horizon` (both laws are built layer by layer from the walk's prefix)."""
        key = (_depth_free(config), device)
        if key not in self._laws:
            try:
                self._laws[key] = _laws(self._configs[self._deepest[key[0]]], device)
            except (ArithmeticError, ValueError):
                self._laws[key] = None
        shared = self._laws[key]
        if shared is None:
            return _laws(config, device)
        end = horizon(config) + 1
        over, under = shared
        return (None if over is None else over[:end], None if under is None else under[:end])


def _laws(config: SimConfig, device: str | None) -> Laws:
    """(`overflow_cdf(config)`, `underflow_cdf(config, device=device)`)."""
    return overflow_cdf(config), underflow_cdf(config, device=device)


def _walk_ahead(configs: Sequence[SimConfig]) -> None:
    """The norm walks of the centred `configs` to `precision.horizon`, together (the laws, the
    bounds and the dispersions then read prefixes of them); a failure leaves each
    configuration to fail alone."""
    requests = []
    for config in configs:
        try:
            if is_centred(config):
                requests.append((config, horizon(config)))
        except (ArithmeticError, ValueError):
            continue
    with contextlib.suppress(ArithmeticError, ValueError):
        norm_walks(requests)


def _moments_ahead(configs: Sequence[SimConfig], forwards: Sequence[_Forward | Exception]) -> None:
    """The activation moments `layer_bounds` will ask for (at `log_derivative_points` of each
    q^l), one call per activation; a failure leaves them to be computed one at a time."""
    points: dict[Scheme, list[float]] = {}
    for config, forward in zip(configs, forwards, strict=True):
        if isinstance(forward, Exception):
            continue
        if activation_fns(config.activation).homogeneous is not None:
            continue  # closed forms
        wanted = points.setdefault(config.activation, [])
        for ql in forward.q[1:]:
            if ql is not None and ql > 0.0 and math.isfinite(ql):
                wanted.extend(log_derivative_points(ql))
    for activation, qs in points.items():
        try:
            activation_moments_many(activation, qs)
        except (ArithmeticError, ValueError):
            continue


@dataclass
class _Forward:
    """One configuration's q recursion: q^l and the moments at it (None beyond what is
    predicted), and the kernels' entry moments it used."""

    mu1: float
    v1: float
    v: float
    centred: bool
    q: list[float | None]
    moments: list[ActivationMoments | None]


def _forward(configs: Sequence[SimConfig]) -> list[_Forward | Exception]:
    """`_forward_lockstep` of each configuration, computed for the deepest of those equal in
    every field but depth and read by the others as a prefix (q^{l+1} depends only on q^l);
    where the deepest's fails, the others compute their own (it may fail deeper down)."""
    deepest = _deepest(configs, [True] * len(configs))
    heads = sorted(deepest.values())
    found = dict(zip(heads, _forward_lockstep([configs[j] for j in heads]), strict=True))
    out: list[_Forward | Exception] = []
    again = []
    for i, config in enumerate(configs):
        j = deepest[_depth_free(config)]
        head = found[j]
        if isinstance(head, _Forward) and config.depth < configs[j].depth:
            end = config.depth + 1
            head = _Forward(
                head.mu1, head.v1, head.v, head.centred, head.q[:end], head.moments[:end]
            )
        elif i != j and isinstance(head, Exception):
            again.append(i)  # replaced below
        out.append(head)
    for i, each in zip(again, _forward_lockstep([configs[i] for i in again]), strict=True):
        out[i] = each
    return out


def _forward_lockstep(configs: Sequence[SimConfig]) -> list[_Forward | Exception]:
    """The q recursion of each configuration (an exception where it fails), in lockstep:

        q^1 = n0 (v1 + mu1^2) q0 + sigma_b^2,   q^{l+1} = n v E[phi^2](q^l) + sigma_b^2

    (q^{l+1} only for centred kernels; None once not finite), each layer's moments of all of
    them one `activation_moments_many` call per activation."""
    out: list[_Forward | Exception] = []
    for config in configs:
        try:
            n0, n, depth = config.input_dim, config.width, config.depth
            mu1, v1 = weight_moments(config.init, n0, n)
            v = weight_moments(config.init, n, n)[1]
            centred = is_centred(config)
            # q0 = |x|^2 / input_dim: exactly input_q for a prescribed input geometry, 1 in
            # expectation for i.i.d. N(0, 1) inputs.
            q0 = 1.0 if config.input_q is None else config.input_q
            q: list[float | None] = [None] * (depth + 1)
            q[1] = n0 * (v1 + mu1 * mu1) * q0 + config.bias_std**2
            out.append(_Forward(mu1, v1, v, centred, q, [None] * (depth + 1)))
        except (ArithmeticError, ValueError) as exc:
            out.append(exc)
    top = max((c.depth for c in configs), default=0)
    for layer in range(1, top + 1):
        by_activation: dict[Scheme, list[int]] = {}
        for i, (config, forward) in enumerate(zip(configs, out, strict=True)):
            if isinstance(forward, _Forward) and layer <= config.depth:
                ql = forward.q[layer]
                if ql is None:
                    continue
                if not ql >= 0.0:  # what activation_moments would raise, for this one alone
                    out[i] = ValueError(f"q: expected a non-negative variance. Received: {ql!r}")
                    continue
                by_activation.setdefault(config.activation, []).append(i)
        for activation, members in by_activation.items():
            found = _moments_each(activation, [_q_at(out[i], layer) for i in members])
            for i, mom in zip(members, found, strict=True):
                forward = out[i]
                assert isinstance(forward, _Forward)
                if isinstance(mom, Exception):
                    out[i] = mom
                    continue
                forward.moments[layer] = mom
                config = configs[i]
                if layer < config.depth and forward.centred:
                    sb2 = config.bias_std**2
                    forward.q[layer + 1] = _finite(config.width * forward.v * mom.mean_sq + sb2)
    return out


def _q_at(forward: _Forward | Exception, layer: int) -> float:
    assert isinstance(forward, _Forward)
    ql = forward.q[layer]
    assert ql is not None
    return ql


def _moments_each(
    activation: Scheme, qs: list[float]
) -> list[ActivationMoments | ArithmeticError | ValueError]:
    """`activation_moments_many(activation, qs)`, or where that fails each q's own answer."""
    try:
        return list(activation_moments_many(activation, qs))
    except (ArithmeticError, ValueError):
        out: list[ActivationMoments | ArithmeticError | ValueError] = []
        for q in qs:
            try:
                out.append(activation_moments(activation, q))
            except (ArithmeticError, ValueError) as exc:
                out.append(exc)
        return out


def _no_prediction(config: SimConfig, note: str) -> ConfigTheory:
    """`predict`'s answer where it has none: every layer None, `note` says why."""
    layers = [LayerTheory(0, "activation", None, None, None)]
    for layer in range(1, config.depth + 1):
        layers += [LayerTheory(layer, q, None, None, None) for q in _QUANTITIES]
    try:
        width_note = finite_width_note(config)
    except (ArithmeticError, ValueError):
        width_note = None
    return ConfigTheory(
        config=config,
        layers=tuple(layers),
        overflow_layer=None,
        underflow_layer=None,
        exact=False,
        notes=(note,),
        width_note=width_note,
    )


_QUANTITIES = ("preactivation", "activation", "gradient")


@dataclass(frozen=True)
class _ForwardPart:
    """What a prediction holds that does not depend on depth, to the configuration's depth:
    (0, activation), then each layer's preactivation and activation, finished (non-finite
    values None, bounds attached), and the forward half of the bounds (`forward_bounds`).
    A configuration that differs only in being shallower reads a prefix of both."""

    layers: tuple[LayerTheory, ...]
    bounds: ForwardBounds


def _depth_free(config: SimConfig) -> tuple[object, ...]:
    """Every field of `config` but its depth: configurations equal in it share their q
    recursion (`_forward`), `_ForwardPart` and laws (`_DepthGroups`)."""
    return tuple(getattr(config, name) for name in _NOT_DEPTH)


def _deepest(
    configs: Sequence[SimConfig], eligible: Sequence[bool]
) -> dict[tuple[object, ...], int]:
    """`_depth_free` key -> the index of the deepest (the first among equals) of the eligible
    configurations with that key."""
    out: dict[tuple[object, ...], int] = {}
    for i, (config, ok) in enumerate(zip(configs, eligible, strict=True)):
        if ok:
            j = out.setdefault(_depth_free(config), i)
            if config.depth > configs[j].depth:
                out[_depth_free(config)] = i
    return out


_NOT_DEPTH = tuple(f.name for f in fields(SimConfig) if f.name != "depth")


def _forward_part(config: SimConfig, forward: _Forward) -> _ForwardPart:
    """The `_ForwardPart` of `config` from its q recursion."""
    n0, n, depth, batch = config.input_dim, config.width, config.depth, config.batch
    act = config.activation
    sb2 = config.bias_std**2
    mu1, v1 = forward.mu1, forward.v1
    q, moments = forward.q, forward.moments
    q0 = 1.0 if config.input_q is None else config.input_q
    # E[mean(x)^2] = q0 (1 + (batch - 1) c0) / (batch n0) (c0 = 0 for i.i.d. inputs).
    c0 = config.input_corr or 0.0
    x_std2 = q0 * (1.0 - (1.0 + (batch - 1) * c0) / (batch * n0))
    raw: list[tuple[int, str, float | None, float | None, float | None]] = [
        (0, "activation", 0.0, q0, math.sqrt(max(0.0, x_std2)))
    ]
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
        raw.append((layer, "preactivation", 0.0 if ql is not None else None, ql, _sqrt0(pre_std2)))
        if m is None or ql is None:
            raw.append((layer, "activation", None, None, None))
        else:
            mean_sq = _finite(m.mean_sq)
            if layer == 1 and mu1 != 0.0 and ql > 0.0:
                c = min(1.0, n0 * mu1 * mu1 / ql)
                cross = bivariate_expectation(act, ql, c)
                act_std2 = m.mean_sq - cross / batch - (1.0 - 1.0 / batch) * m.mean * m.mean
            else:
                act_std2 = m.mean_sq - m.mean * m.mean
            raw.append((layer, "activation", _finite(m.mean), mean_sq, _sqrt0(_finite(act_std2))))
    clean = {
        (layer, quantity): (_finite(mean), _finite(mean_sq), _finite(std))
        for layer, quantity, mean, mean_sq, std in raw
    }
    bounds = forward_bounds(config, q, clean)
    return _ForwardPart(
        tuple(_bounded(key, values, bounds.bounds.get(key)) for key, values in clean.items()),
        bounds,
    )


def _bounded(
    key: tuple[int, str],
    values: tuple[float | None, float | None, float | None],
    b: Bounds | None,
) -> LayerTheory:
    """The LayerTheory of `key` with (mean, mean_sq, std) `values` and bounds `b` (None: none)."""
    mean, mean_sq, std = values
    if b is None:
        return LayerTheory(key[0], key[1], mean, mean_sq, std)
    return LayerTheory(
        key[0],
        key[1],
        mean,
        mean_sq,
        std,
        b.mean,
        b.mean_sq,
        b.std,
        _finite(b.dispersion),
    )


def _predict(
    config: SimConfig, device: str | None, forward: _Forward, part: _ForwardPart, laws: Laws
) -> ConfigTheory:
    """`predict` without the guard, from the configuration's q recursion, and the
    `_ForwardPart` and laws (`_laws`) of it or of a deeper configuration that differs only in
    depth (`_DepthGroups`)."""
    n, depth = config.width, config.depth
    act = config.activation
    mu1, v, centred = forward.mu1, forward.v, forward.centred
    q, moments = forward.q, forward.moments
    notes: list[str] = []

    grad: list[float | None] = [None] * (depth + 2)
    grad[depth + 1] = 1.0  # E[r^2]; the factor n v is not applied above the top layer
    for layer in range(depth, 0, -1):
        m, above = moments[layer], grad[layer + 1]
        if m is None or above is None or (layer < depth and not centred):
            break
        factor = 1.0 if layer == depth else n * v
        grad[layer] = _finite(factor * m.deriv_sq * above)
    clean_grad = {}
    for layer in range(1, depth + 1):
        g = grad[layer]
        mean_g = 0.0 if g is not None else None
        clean_grad[(layer, "gradient")] = (_finite(mean_g), _finite(g), _finite(_sqrt0(g)))
    gradient = gradient_bounds(config, part.bounds, clean_grad)
    layers = [part.layers[0]]
    for layer in range(1, depth + 1):
        layers += part.layers[2 * layer - 1 : 2 * layer + 1]
        key = (layer, "gradient")
        layers.append(_bounded(key, clean_grad[key], gradient[layer]))

    q1 = q[1]
    maps_from = (math.sqrt(n * v), config.bias_std, act, q1) if centred and q1 is not None else None
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
    over_law, under_law = laws
    over = expected_first_layer(over_law, depth)
    under = expected_first_layer(under_law, depth)
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
        overflow_layer=_finite(over),
        underflow_layer=_finite(under),
        exact=centred and config.init.name != "orthogonal",
        notes=tuple(notes),
        overflow_cdf=None if over_law is None else tuple(over_law.tolist()),
        underflow_cdf=None if under_law is None else tuple(under_law.tolist()),
        maps_from=maps_from,
        width_note=width_note,
    )

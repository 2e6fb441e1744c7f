"""How far a finite-width Monte Carlo may lie from mean-field values: an interval per statistic.

Mean-field values are the infinite-width limit. At width n the conditional variance q_l of
z^l given h^{l-1} is random, log q_l close to Gaussian with variance sigma_l^2 = Var[log q_l]
~ kappa l / n (the log-normal walk of `finite_width.norm_walk`; Hanin & Nica 2019, "Products of
many large random matrices and gradients in deep neural networks"; Hanin & Rolnick 2018). Each
unit of z^l is exactly N(0, q_l) given q_l, so E[f(z^l)] = E[F(q_l)] with F(q) = E_z[f(sqrt(q)
z)], and the only finite-width effect on a forward expectation is the spread of q_l. To second
order in it (the delta method on t = log q, E[q_l] = qbar e^{eps_l}):

    E[F(q_l)] - F(qbar_l) ~ qbar F'(qbar) qbar eps_l + (1/2) qbar^2 F''(qbar) sigma_l^2,
    eps_{l+1} = r_l (s_l eps_l + (1/2) J_l sigma_l^2),   eps_1 = 0 (q^1 is exact),

with F = E[phi^2], s = d log F / d log q, J = s (s - 1) + ds / d log q and r_l the weights'
share of q_{l+1} (the rest is sigma_b^2). For positively homogeneous activations F = c q, J = 0
and every E[mean_sq] correction vanishes, as it must (the expectation over weights is
multiplicative); the relu mean, F = sqrt(q / 2 pi), gets -mean sigma^2 / 8, i.e. E[sqrt q] =
sqrt(E q) e^{-sigma^2/8}. Gradients of non-homogeneous activations add the same correction of
each factor E[phi'^2](q_k), k = l..depth, and 1/n per layer for the gradient independence
assumption (exact as n -> inf; Yang 2019, "Scaling limits of wide neural networks with weight
sharing", O(1/n) corrections); relu, leaky_relu and linear gradients of centred i.i.d. weights
have exact E[mean_sq] at any width (Hanin 2018, "Which neural net architectures give rise to
exploding and vanishing gradients?", Theorem 1).

A prediction p with correction delta gets, for its expectation, the interval from p to
p + FINITE_WIDTH_MULTIPLE delta (the stated multiple of the known O(depth/width) term, whose sign
is known), widened on both sides by the size of the next order, |p| sigma^4 / 8 ((J sigma^2 /
2)^2 / 2 with |J| <= 1; |p| is sqrt(E[mean_sq]) for a mean; for the relu mean, e^{-sigma^2/8}
= 1 - sigma^2/8 + sigma^4/128). `std` is bounded, not predicted: theory gives sqrt(E[std^2]), and
for S = std^2 with relative variance d (the spread of the per-trial mean_sq, `mean_sq_dispersion`,
plus 2/N for N values), sqrt(E S) / sqrt(1 + d) <= E[sqrt S] <= sqrt(E S) (Hoelder: E S <= (E sqrt
S)^(2/3) (E S^2)^(1/3)); E S is below the pooled E[mean_sq] - E[mean]^2 by Var(mean) <= E[mean_sq]
/ N + E[mean]^2 sigma^2 / 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scheduler.analysis.theory.finite_width import mean_sq_dispersions, norm_walk
from scheduler.analysis.theory.gaussian import (
    activation_fns,
    activation_moments,
    activation_moments_many,
)
from scheduler.analysis.theory.weights import is_centred, weight_moments
from worker.contract import Scheme, SimConfig

__all__ = [
    "FINITE_WIDTH_MULTIPLE",
    "Bounds",
    "ForwardBounds",
    "forward_bounds",
    "gradient_bounds",
    "layer_bounds",
    "log_derivative_points",
]

# The allowance is this many times the second-order finite-width term (plus the next order).
FINITE_WIDTH_MULTIPLE = 3.0
# Activations whose E[mean] is fixed by symmetry (phi(-u) = 2 phi(0) - phi(u)) at any width.
_SYMMETRIC_MEAN = ("linear", "tanh", "sigmoid")
_STEP = 0.02  # step in log q of the finite differences (quadrature is ~1e-13 accurate)


@dataclass(frozen=True)
class Bounds:
    """The intervals one (layer, quantity)'s expectations may lie in at this width (None: none)."""

    mean: tuple[float, float] | None
    mean_sq: tuple[float, float] | None
    std: tuple[float, float] | None
    dispersion: float | None  # relative variance over trials of the per-trial mean_sq


def _log_derivatives(
    activation: Scheme, q: float, which: tuple[str, ...]
) -> dict[str, tuple[float, float, float]]:
    """(F, q F', q^2 F'') of each F(q) of `which`: E[phi^2] ("mean_sq"), E[phi] ("mean") or
    E[phi'^2] ("deriv_sq") at q > 0: closed forms for positively homogeneous phi (F ~ q,
    sqrt q, 1), else central differences in t = log q (truncation ~1e-4 relative: a
    correction's size), all from the moments at the same three points."""
    if activation_fns(activation).homogeneous is not None:
        moments = activation_moments(activation, q)
        out = {}
        for name in which:
            f = getattr(moments, name)
            power = {"mean_sq": 1.0, "mean": 0.5, "deriv_sq": 0.0}[name]
            out[name] = (f, power * f, power * (power - 1.0) * f)
        return out
    points = activation_moments_many(activation, log_derivative_points(q))
    out = {}
    for name in which:
        low, mid, high = (getattr(m, name) for m in points)
        d1 = (high - low) / (2.0 * _STEP)
        d2 = (high - 2.0 * mid + low) / _STEP**2
        out[name] = (mid, d1, d2 - d1)
    return out


def log_derivative_points(q: float) -> tuple[float, float, float]:
    """The variances q e^-h, q, q e^h (h = 0.02) at which `layer_bounds` evaluates each
    activation moment at q^l (central differences in log q), for evaluating them ahead."""
    return q * math.exp(-_STEP), q * math.exp(0 * _STEP), q * math.exp(_STEP)


def _interval(p: float | None, delta: float, floor: float) -> tuple[float, float] | None:
    """From p to p + FINITE_WIDTH_MULTIPLE delta (the correction's sign is known), widened by
    `floor` on both sides; None without p or when not finite."""
    if p is None:
        return None
    far = p + FINITE_WIDTH_MULTIPLE * delta
    lo, hi = min(p, far) - floor, max(p, far) + floor
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _std_interval(
    std: float | None,
    mean_sq: tuple[float, float] | None,
    point: float | None,
    mean: float | None,
    dispersion: float | None,
    values: int,
    sigma2: float,
) -> tuple[float, float] | None:
    """[lo, hi] of E[std] around theory's sqrt(E[std^2]) = `std` (module docstring): the
    finite-width interval `mean_sq` of E[mean_sq] (point `point`) scales E[std^2]."""
    if std is None or mean_sq is None or dispersion is None or point is None:
        return None
    ms_lo, ms_hi = mean_sq
    ratio_lo, ratio_hi = (ms_lo / point, ms_hi / point) if point > 0.0 else (1.0, 1.0)
    mean2 = 0.0 if mean is None else mean * mean
    var_mean = max(ms_hi, 0.0) / values + mean2 * sigma2 / 4.0
    low_s = max(0.0, std * std * min(ratio_lo, 1.0) - var_mean)
    lo = math.sqrt(low_s / (1.0 + dispersion + 2.0 / values))
    hi = std * math.sqrt(max(ratio_hi, 1.0))
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _backward_dispersion(config: SimConfig, layer: int, forward: list[float | None]) -> float:
    """Relative variance of the per-trial gradient mean_sq at `layer`: the backward pass from the
    top multiplies the spread of the top layer by the forward pass's per-layer factor once per
    layer (both are products of the same random matrices; Hanin & Nica 2019). Capped at 1e300.
    `forward[l]`: `mean_sq_dispersion(config, l)`."""
    depth, n = config.depth, config.width
    top = forward[depth]
    if top is None:
        return math.inf
    log_top = math.log1p(top)
    if depth > 1:
        bottom = forward[1] or 0.0
        per_layer = max(log_top - math.log1p(bottom), 0.0) / (depth - 1)
    else:
        per_layer = math.log1p(2.0 / n)
    log_total = log_top + (depth - layer) * per_layer
    return 1e300 if log_total > 690.0 else math.expm1(log_total)


Predicted = dict[tuple[int, str], tuple[float | None, float | None, float | None]]


@dataclass(frozen=True)
class ForwardBounds:
    """The half of `layer_bounds` that does not depend on depth: the bounds of the input and of
    every layer's preactivation and activation up to the configuration's depth, and what the
    gradients' bounds read from the forward pass. A configuration that differs only in being
    shallower reads a prefix of it (each layer depends only on the layers below it).

    `sigma2[l]`: Var[log q_l] of the norm walk; `dispersions[l]`: `mean_sq_dispersion` at l
    (both over layers 0..depth); `grad_terms[l]`: the relative correction of E[phi'^2](q_l);
    `reached`: the last layer of the forward corrections (1..reached have one)."""

    bounds: dict[tuple[int, str], Bounds]
    sigma2: list[float]
    dispersions: list[float | None]
    grad_terms: list[float]
    reached: int


def layer_bounds(
    config: SimConfig, q: list[float | None], predicted: Predicted
) -> dict[tuple[int, str], Bounds]:
    """Bounds of every (layer, quantity) of `config` (module docstring).

    `q[l]` is the mean-field q^l (None where not predicted); `predicted[(l, quantity)]` the
    (mean, mean_sq, std) of the mean-field prediction. Layer 0 (the input) is exact up to its
    chi-square spread. Non-centred kernels: layer 1 only (exact there). `forward_bounds` and
    `gradient_bounds` together, in the order (0, activation), then per layer preactivation,
    activation, gradient.
    """
    forward = forward_bounds(config, q, predicted)
    gradient = gradient_bounds(config, forward, predicted)
    out = {(0, "activation"): forward.bounds[(0, "activation")]}
    for layer in range(1, config.depth + 1):
        for key in ((layer, "preactivation"), (layer, "activation")):
            out[key] = forward.bounds[key]
        out[(layer, "gradient")] = gradient[layer]
    return out


def forward_bounds(config: SimConfig, q: list[float | None], predicted: Predicted) -> ForwardBounds:
    """The bounds of (0, activation) and of every layer's preactivation and activation of
    `config` (`layer_bounds`' arguments; `predicted` needs no gradients), and the forward
    pass's share of the gradients' (`ForwardBounds`)."""
    n0, n, depth, batch = config.input_dim, config.width, config.depth, config.batch
    act = config.activation
    homogeneous = activation_fns(act).homogeneous is not None
    centred = is_centred(config)
    v = weight_moments(config.init, n, n)[1]
    sb2 = config.bias_std**2
    out: dict[tuple[int, str], Bounds] = {}
    mean0, ms0, std0 = predicted[(0, "activation")]
    out[(0, "activation")] = Bounds(
        _interval(mean0, 0.0, 0.0),
        _interval(ms0, 0.0, 0.0),
        _std_interval(
            std0, _interval(ms0, 0.0, 0.0), ms0, mean0, 2.0 / (batch * n0), batch * n0, 0.0
        ),
        2.0 / (batch * n0),
    )
    if centred:
        _, var = norm_walk(config, depth)
        sigma2 = [float(x) for x in var]
        dispersions = mean_sq_dispersions(config, sigma2)
    else:
        sigma2 = [0.0] * (depth + 1)
        dispersions = [None] * (depth + 1)
    eps = 0.0  # relative error of E[q_l] against the mean-field q^l
    # the moments whose derivatives a layer needs; relu-like (not linear): mean ~ sqrt(q)
    if not homogeneous:
        wanted: tuple[str, ...] = ("mean_sq", "mean", "deriv_sq")
    elif activation_fns(act).homogeneous != (1.0, 1.0):
        wanted = ("mean_sq", "mean")
    else:
        wanted = ("mean_sq",)
    grad_terms: list[float] = [0.0] * (depth + 2)  # relative correction of each E[phi'^2]
    forward: dict[int, tuple[float, float, float]] = {}
    for layer in range(1, depth + 1):
        ql = q[layer]
        if ql is None or (layer > 1 and not centred):
            break
        s2 = sigma2[layer]
        d_act = d_mean = 0.0
        if ql > 0.0 and math.isfinite(ql):
            derivs = _log_derivatives(act, ql, wanted)
            f, qf1, q2f2 = derivs["mean_sq"]
            d_act = qf1 * eps + 0.5 * q2f2 * s2
            if "mean" in derivs:
                _, m1, m2 = derivs["mean"]
                d_mean = m1 * eps + 0.5 * m2 * s2
            if "deriv_sq" in derivs:
                g, g1, g2 = derivs["deriv_sq"]
                grad_terms[layer] = (g1 * eps + 0.5 * g2 * s2) / g if g > 0.0 else math.inf
            forward[layer] = (ql * eps, d_act, d_mean)
            share = n * v * f / (n * v * f + sb2) if n * v * f + sb2 > 0.0 else 0.0
            eps = share * d_act / f if f > 0.0 else 0.0
        else:
            forward[layer] = (0.0, 0.0, 0.0)
    symmetric = act.name in _SYMMETRIC_MEAN
    for layer in range(1, depth + 1):
        s2 = sigma2[layer]
        next_order = 0.0 if homogeneous else s2 * s2 / 8.0  # homogeneous E[mean_sq] is exact
        dispersion = dispersions[layer] if centred else 2.0 / (batch * n)
        values = batch * n
        d_pre, d_act, d_mean = forward.get(layer, (math.nan, math.nan, math.nan))
        for quantity, d_ms, d_m in (("preactivation", d_pre, 0.0), ("activation", d_act, d_mean)):
            mean, ms, std = predicted[(layer, quantity)]
            if not math.isfinite(d_ms) or dispersion is None:
                out[(layer, quantity)] = Bounds(None, None, None, None)
                continue
            ms_bounds = _interval(ms, d_ms, 0.0 if ms is None else abs(ms) * next_order)
            exact_mean = quantity == "preactivation" or symmetric
            scale = 0.0 if exact_mean or ms is None else math.sqrt(max(ms, 0.0)) * s2 * s2 / 8.0
            out[(layer, quantity)] = Bounds(
                _interval(mean, 0.0 if exact_mean else d_m, scale),
                ms_bounds,
                _std_interval(std, ms_bounds, ms, mean, dispersion, values, s2),
                dispersion,
            )
    return ForwardBounds(out, sigma2, dispersions, grad_terms, len(forward))


def gradient_bounds(
    config: SimConfig, forward: ForwardBounds, predicted: Predicted
) -> dict[int, Bounds]:
    """The bounds of each layer's gradient of `config`, by layer, from `forward`: the
    `forward_bounds` of `config` or of one that differs only in being deeper. `predicted`
    needs only the gradients (`layer_bounds`)."""
    n, depth, batch = config.width, config.depth, config.batch
    homogeneous = activation_fns(config.activation).homogeneous is not None
    centred = is_centred(config)
    sigma2, dispersions, grad_terms = forward.sigma2, forward.dispersions, forward.grad_terms
    out: dict[int, Bounds] = {}
    for layer in range(1, depth + 1):
        s2 = sigma2[layer]
        next_order = 0.0 if homogeneous else s2 * s2 / 8.0  # homogeneous E[mean_sq] is exact
        dispersion = dispersions[layer] if centred else 2.0 / (batch * n)
        values = batch * n
        mean, ms, std = predicted[(layer, "gradient")]
        if layer > forward.reached or ms is None or dispersion is None:
            out[layer] = Bounds(None, None, None, None)
            continue
        # exact at any width for homogeneous activations (Hanin 2018); else each factor's
        # correction and 1/n per layer for the gradient independence assumption
        rel = independence = 0.0
        if not homogeneous:
            rel = sum(grad_terms[k] for k in range(layer, depth + 1))
            independence = FINITE_WIDTH_MULTIPLE * (depth - layer) / n  # sign unknown
        if not math.isfinite(rel):
            out[layer] = Bounds(None, None, None, None)
            continue
        grad_ms = _interval(ms, ms * rel, abs(ms) * (next_order + independence))
        grad_dispersion = _backward_dispersion(config, layer, dispersions)
        out[layer] = Bounds(
            _interval(mean, 0.0, 0.0),
            grad_ms,
            _std_interval(std, grad_ms, ms, mean, grad_dispersion, values, 0.0),
            grad_dispersion,
        )
    return out

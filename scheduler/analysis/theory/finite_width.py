"""Finite width: the log-normal walk of the per-row norm, the spread of mean_sq, the note.

Mean-field values are the infinite-width limit; at width n the per-trial squared norm of a row
is a product of one random factor per layer, so its log walks with drift and variance O(1/n) per
layer (Hanin & Rolnick 2018). With lambda_l = log q_l, q_l = v |h^{l-1}|^2 + sigma_b^2 (the
variance of z^l given h^{l-1}), one layer advances lambda by log(n v E[phi^2](q_l)) - kappa / (2n)
with variance kappa / n, kappa = E[phi^4] / E[phi^2]^2 - 1 (2 for linear, 5 for relu; for linear
exactly E log(chi^2_n / n) = digamma(n/2) + log(2/n) and Var = trigamma(n/2)). `norm_walk` is
that walk (the overflow and underflow layers of `precision` use it); `mean_sq_dispersion` and
`finite_width_note` say how far a configuration is from the mean-field limit.

`exact_log_mean_sq` is the exact law where it exists: i.i.d. centred Gaussian weights (entry
variance v_l), no bias, batch 1, linear or relu. Given h^{l-1}, the z^l_j are i.i.d.
N(0, v_l |h^{l-1}|^2), so with x ~ N(0, I_{n_0}) and n_l the width of layer l

    |h^0|^2 = |x|^2 ~ chi^2_{n_0}
    |z^l|^2 = v_l |h^{l-1}|^2 C_l,   C_l ~ chi^2_{n_l}
    |h^l|^2 = v_l |h^{l-1}|^2 D_l,   D_l = C_l (linear);  D_l ~ chi^2_{K_l}, K_l ~ Bin(n_l, 1/2) (relu)

(relu keeps the K_l positive coordinates, whose squares are chi^2_1 given their sign), each
factor independent of the layers below it, so log mean_sq = log |.|^2 - log n_l is a sum of
independent terms (Hanin & Nica 2019, "Products of many large random matrices and gradients in
deep neural networks", sec. 2; Hanin 2018, "Which neural net architectures give rise to
exploding and vanishing gradients?"). With E log chi^2_k = psi(k/2) + log 2 and
Var log chi^2_k = psi'(k/2) (digamma, trigamma), the relu factor's moments are the mixtures
over k ~ Bin(n, 1/2) conditioned on k >= 1 (a trial with K_l = 0 is all zeros from layer l on:
its log is -inf and it is left out of the measured moments, exactly that conditioning):

    E log D   = sum_k p_k (psi(k/2) + log 2) / (1 - 2^-n)
    Var log D = sum_k p_k (psi'(k/2) + (psi(k/2) + log 2)^2) / (1 - 2^-n) - (E log D)^2

For linear networks the gradient is exact too: g^D = r ~ N(0, I_{n_D}) independent of the
weights, g^{l-1} = g^l W^{l T}, so |g^l|^2 = |r|^2 prod_{i=l+1}^{D} v_i chi^2_{n_{i-1}} (the
relu gradient's mask is not independent of W^{l+1}: no exact law is claimed there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

from scheduler.analysis.theory.gaussian import (
    ActivationMoments,
    FloatArray,
    activation_fns,
    cached_moments_at_log_qs,
    moments_at_log_qs,
)
from scheduler.analysis.theory.weights import is_centred, weight_moments
from worker.contract import Scheme, SimConfig
from worker.schemes import is_iid_gaussian

__all__ = [
    "WalkStart",
    "exact_log_mean_sq",
    "finite_width_note",
    "forget_walks",
    "log_chi2_moments",
    "mean_sq_dispersion",
    "mean_sq_dispersions",
    "norm_walk",
    "norm_walks",
    "walk_start",
]

LogMoments = tuple[float, float]  # (E[log X], Var[log X])


def log_chi2_moments(k: int) -> LogMoments:
    """(E, Var) of log chi^2_k: (psi(k/2) + log 2, psi'(k/2))."""
    half = k / 2.0
    return float(special.digamma(half)) + math.log(2.0), float(special.polygamma(1, half))


@lru_cache(maxsize=64)
def log_relu_chi2_moments(n: int) -> LogMoments:
    """(E, Var) of log chi^2_K, K ~ Bin(n, 1/2) conditioned on K >= 1 (module docstring)."""
    from scipy import stats

    k = np.arange(1, n + 1)
    sd = math.sqrt(n) / 2.0
    keep = np.abs(k - n / 2.0) <= 40.0 * sd + 2.0  # pmf < 1e-300 outside
    k = k[keep]
    p = stats.binom.pmf(k, n, 0.5)
    p = p / p.sum()  # conditioned on K >= 1 (and the negligible far tails)
    mean_k = special.digamma(k / 2.0) + math.log(2.0)
    mean = float(np.dot(p, mean_k))
    var = float(np.dot(p, special.polygamma(1, k / 2.0) + (mean_k - mean) ** 2))
    return mean, var


def _exact_applies(config: SimConfig) -> bool:
    return (
        config.activation.name in ("linear", "relu")
        and config.bias_std == 0.0
        and config.batch == 1
        and is_iid_gaussian(config.init)
        and is_centred(config)
    )


@lru_cache(maxsize=256)
def exact_log_mean_sq(config: SimConfig) -> dict[tuple[int, str], LogMoments] | None:
    """(E, Var) of log mean_sq per (layer, quantity), exact at any width and depth.

    For i.i.d. centred Gaussian weights, no bias, batch 1, linear or relu (module docstring):
    activation at layers 0..depth and preactivation at 1..depth; gradient at 1..depth for
    linear. None where the law is not a product of independent chi-square factors.
    """
    if not _exact_applies(config):
        return None
    variances = [weight_moments(config.init, *config.fans(layer))[1] for layer in (1, 2)]
    if not all(v > 0.0 and math.isfinite(v) for v in variances):
        return None  # zero weights (std=0, gain=0): every layer above the input is exactly 0
    relu = config.activation.name == "relu"
    n0, n, depth = config.input_dim, config.width, config.depth
    out: dict[tuple[int, str], LogMoments] = {}
    if config.input_q is None:
        mu, var = log_chi2_moments(n0)  # log |h^0|^2, h^0 ~ N(0, I)
    else:
        mu, var = math.log(config.input_q * n0), 0.0  # |h^0|^2 = input_q n0 exactly
    out[(0, "activation")] = (mu - math.log(n0), var)
    c_mu, c_var = log_chi2_moments(n)
    d_mu, d_var = log_relu_chi2_moments(n) if relu else (c_mu, c_var)
    for layer in range(1, depth + 1):
        log_v = math.log(weight_moments(config.init, *config.fans(layer))[1])
        out[(layer, "preactivation")] = (mu + log_v + c_mu - math.log(n), var + c_var)
        mu, var = mu + log_v + d_mu, var + d_var
        out[(layer, "activation")] = (mu - math.log(n), var)
    if not relu:
        g_mu, g_var = c_mu, c_var  # log |g^depth|^2 = log |r|^2, r ~ N(0, I_n)
        out[(depth, "gradient")] = (g_mu - math.log(n), g_var)
        for layer in range(depth - 1, 0, -1):
            log_v = math.log(weight_moments(config.init, *config.fans(layer + 1))[1])
            k_mu, k_var = log_chi2_moments(config.fans(layer + 1)[0])
            g_mu, g_var = g_mu + log_v + k_mu, g_var + k_var
            out[(layer, "gradient")] = (g_mu - math.log(n), g_var)
    return out


@lru_cache(maxsize=256)
def norm_walk(config: SimConfig, horizon: int) -> tuple[FloatArray, FloatArray]:
    """Mean and variance of lambda_l = log q_l for l = 0..horizon (q_0 = 1 for the input, or
    its `input_q`).

    q_l = v |h^{l-1}|^2 + sigma_b^2 is the variance of each z^l_j given h^{l-1}. One layer:
    |h^l|^2 = n Y with Y = mean_j phi(z_j)^2, E[log Y] ~ log E[phi^2] - kappa/(2n),
    Var[log Y] ~ kappa/n (delta method; kappa = E[phi^4]/E[phi^2]^2 - 1; exact digamma and
    trigamma of chi^2_n / n for linear), and the fluctuation of lambda_l propagates with the
    log-slope d log E[phi^2] / d log q. Orthogonal square kernels fix |z^l| = gain |h^{l-1}|:
    only the angular part of Y fluctuates, kappa - 2 in place of kappa (0 for linear).
    `norm_walks` with one walk.
    """
    mu, var, _ = norm_walks([(config, horizon)])[0]
    return mu, var


MomentsFn = Callable[[Scheme, Sequence[float]], list[ActivationMoments]]


@dataclass(frozen=True)
class WalkStart:
    """What a walk depends on (configurations that agree here walk alike, whatever their
    depth): the activation, input and layer widths n0 and n, the entry variances v1 (first
    kernel) and v (square ones), sigma_b^2, orthogonal kernels, the prescribed input q."""

    activation: Scheme
    n0: int
    n: int
    v1: float
    v: float
    sb2: float
    orthogonal: bool
    input_q: float | None


def walk_start(config: SimConfig) -> WalkStart:
    """The `WalkStart` of `config`."""
    n0, n = config.input_dim, config.width
    return WalkStart(
        activation=config.activation,
        n0=n0,
        n=n,
        v1=weight_moments(config.init, n0, n)[1],
        v=weight_moments(config.init, n, n)[1],
        sb2=config.bias_std**2,
        orthogonal=config.init.name == "orthogonal",
        input_q=config.input_q,
    )


_SHARED_WALKS = 8192  # walks `norm_walks` keeps (each a few kB); cleared when full
_shared: dict[WalkStart, _Walk] = {}


def norm_walks(
    walks: Sequence[tuple[SimConfig, int]],
    moments_at: MomentsFn = moments_at_log_qs,
) -> list[tuple[FloatArray, FloatArray, list[ActivationMoments]]]:
    """For each (config, horizon): `norm_walk(config, horizon)` (bit for bit) and the
    activation's moments at lambda_1 .. lambda_{horizon - 1}, the ones the walk stepped with.

    The walks advance together: each layer's moments of all of them are one `moments_at` call
    per activation (`moments_at_log_qs`; another rule, e.g. a table, gives that rule's walk).
    With the default rule, walks are kept per `WalkStart` for the process and extended when a
    longer horizon is asked for: configurations that differ only in depth share one walk, each
    reading its prefix (a step depends only on the layers below it), and the moments come from
    `cached_moments_at_log_qs` (the same values, each distinct lambda computed once).
    """
    if moments_at is moments_at_log_qs:
        if len(_shared) + len(walks) > _SHARED_WALKS:
            _shared.clear()
        states = []
        for config, _ in walks:
            start = walk_start(config)
            if start not in _shared:
                _shared[start] = _Walk(start)
            states.append(_shared[start])
        _advance(states, [h for _, h in walks], cached_moments_at_log_qs)
    else:
        states = [_Walk(walk_start(config)) for config, _ in walks]
        _advance(states, [h for _, h in walks], moments_at)
    return [state.result(h) for state, (_, h) in zip(states, walks, strict=True)]


def forget_walks() -> None:
    """Empty the walks `norm_walks` keeps and `norm_walk`'s cache."""
    _shared.clear()
    norm_walk.cache_clear()


def _advance(states: Sequence[_Walk], horizons: Sequence[int], moments_at: MomentsFn) -> None:
    """Step every walk of `states` (the same object may appear more than once) up to the
    largest of its `horizons`, layer by layer, one `moments_at` call per activation and layer
    for the walks still short of it."""
    target: dict[int, int] = {}
    walk_of: dict[int, _Walk] = {}
    for state, h in zip(states, horizons, strict=True):
        target[id(state)] = max(target.get(id(state), 0), h)
        walk_of[id(state)] = state
    by_activation: dict[Scheme, list[_Walk]] = {}
    for key, state in walk_of.items():
        if state.layer < target[key]:
            by_activation.setdefault(state.activation, []).append(state)
    top = max((target[id(s)] for group in by_activation.values() for s in group), default=0)
    for layer in range(2, top + 1):
        for activation, members in by_activation.items():
            live = [s for s in members if s.layer == layer - 1 and target[id(s)] >= layer]
            if not live:
                continue
            moments = moments_at(activation, [s.lam for s in live])
            for s, m in zip(live, moments, strict=True):
                s.step(m)


FieldsFn = Callable[[str, FloatArray], FloatArray]


def walk_arrays(
    configs: Sequence[SimConfig], horizon: int, fields: FieldsFn
) -> tuple[FloatArray, FloatArray]:
    """`norm_walk` of each of `configs` (one activation) to `horizon`, as arrays over the
    configurations, with the activation's moments read from `fields(name, log_qs)` (a
    `theory.moment_table.MomentTable.field`): mu and var of shape (len(configs), horizon + 1).
    The steps are `_Walk`'s, in numpy: the same to rounding, not bit for bit (for screening)."""
    k = len(configs)
    n0 = np.array([c.input_dim for c in configs], dtype=np.float64)
    n = np.array([c.width for c in configs], dtype=np.float64)
    v1 = np.array([weight_moments(c.init, c.input_dim, c.width)[1] for c in configs])
    v = np.array([weight_moments(c.init, c.width, c.width)[1] for c in configs])
    sb2 = np.array([c.bias_std**2 for c in configs])
    q0 = np.array([np.nan if c.input_q is None else c.input_q for c in configs])
    radial = np.array([0.0 if c.init.name == "orthogonal" else 2.0 for c in configs])
    linear = activation_fns(configs[0].activation).homogeneous == (1.0, 1.0) if k else False
    mu, var = np.zeros((k, horizon + 1)), np.zeros((k, horizon + 1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_sb2, log_nv = np.log(sb2), np.log(n * v)
        x = np.where(
            np.isnan(q0),
            np.log(n0 * v1) + special.digamma(n0 / 2.0) + np.log(2.0 / n0),
            np.log(n0 * v1 * q0),
        )
        spread = np.where(np.isnan(q0), special.polygamma(1, n0 / 2.0), 0.0)
        lam = np.logaddexp(x, log_sb2)
        r = np.where(x > -np.inf, np.exp(x - lam), 0.0)
        mu[:, 1], var[:, 1] = lam, r * r * spread
        lin_drift = special.digamma(n / 2.0) + np.log(2.0 / n)
        lin_noise = special.polygamma(1, n / 2.0)
        for layer in range(2, horizon + 1):
            if linear:
                drift = np.where(radial > 0, lin_drift, 0.0)
                noise = np.where(radial > 0, lin_noise, 0.0)
            else:
                kappa = np.maximum(0.0, fields("kurtosis", lam) - 3.0 + radial)
                drift, noise = -kappa / (2.0 * n), kappa / n
            slope = fields("log_slope", lam)
            x = log_nv + fields("log_mean_sq", lam) + drift
            lam = np.logaddexp(x, log_sb2)
            r = np.where(x > -np.inf, np.exp(x - lam), 0.0)
            mu[:, layer] = lam
            var[:, layer] = (r * slope) ** 2 * var[:, layer - 1] + r * r * noise
    return mu, var


class _Walk:
    """`norm_walk`'s state: layers 0..layer done, lambda_layer in `lam` (one home of a step);
    it grows as it steps, so that a longer horizon extends it."""

    def __init__(self, start: WalkStart) -> None:
        n0, n, v1, v, sb2 = start.n0, start.n, start.v1, start.v, start.sb2
        self.activation = start.activation
        self.log_sb2 = math.log(sb2) if sb2 > 0.0 else -math.inf
        self.linear = activation_fns(start.activation).homogeneous == (1.0, 1.0)
        self.radial = 0.0 if start.orthogonal else 2.0  # kappa of |z|'s norm
        self.n, self.log_nv = n, _log(n * v)
        if start.input_q is None:  # log |x|^2 / n0 of x ~ N(0, I): log chi^2_n0 / n0
            x = _log(n0 * v1) + _digamma(n0 / 2.0) + math.log(2.0 / n0)
            spread = _trigamma(n0 / 2.0)
        else:  # a prescribed input geometry: |x|^2 / n0 = input_q exactly
            x, spread = _log(n0 * v1 * start.input_q), 0.0
        self.lam = float(np.logaddexp(x, self.log_sb2))
        r = _share(x, self.lam)
        self.mu: list[float] = [0.0, self.lam]
        self.var: list[float] = [0.0, r * r * spread]
        self.used: list[ActivationMoments] = []

    @property
    def layer(self) -> int:
        return len(self.mu) - 1

    def step(self, m: ActivationMoments) -> None:
        """Advance one layer, given the activation's moments at the current lambda."""
        n = self.n
        if self.linear and self.radial:
            drift = _digamma(n / 2.0) + math.log(2.0 / n)
            noise = _trigamma(n / 2.0)
        else:
            kappa = max(0.0, m.kurtosis - 3.0 + self.radial)
            drift, noise = -kappa / (2.0 * n), kappa / n
        x = self.log_nv + m.log_mean_sq + drift
        self.lam = float(np.logaddexp(x, self.log_sb2))
        r = _share(x, self.lam)
        self.var.append((r * m.log_slope) ** 2 * self.var[-1] + r * r * noise)
        self.mu.append(self.lam)
        self.used.append(m)

    def result(self, horizon: int) -> tuple[FloatArray, FloatArray, list[ActivationMoments]]:
        """(mu, var) over layers 0..horizon, read-only, and the moments stepped with."""
        mu = np.zeros(horizon + 1)
        var = np.zeros(horizon + 1)
        mu[: horizon + 1] = self.mu[: horizon + 1]
        var[: horizon + 1] = self.var[: horizon + 1]
        mu.setflags(write=False)
        var.setflags(write=False)
        return mu, var, self.used[: max(0, horizon - 1)]


@lru_cache(maxsize=1024)
def _digamma(x: float) -> float:
    """psi(x) (a walk asks for the same few values at every layer)."""
    return float(special.digamma(x))


@lru_cache(maxsize=1024)
def _trigamma(x: float) -> float:
    """psi'(x)."""
    return float(special.polygamma(1, x))


def _log(x: float) -> float:
    """log x, -inf at 0 (zero weights: the walk sits at q = sigma_b^2 or at log q = -inf)."""
    return math.log(x) if x > 0.0 else -math.inf


def _share(x: float, lam: float) -> float:
    """exp(x - lam): the weights' share of q = exp(x) + sigma_b^2 = exp(lam); 0 when both vanish."""
    return math.exp(x - lam) if x > -math.inf else 0.0


@lru_cache(maxsize=65536)
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
    return _dispersion(config, layer, lambda at: norm_walk(config, at)[1][at])


def mean_sq_dispersions(config: SimConfig, var: Sequence[float]) -> list[float | None]:
    """`mean_sq_dispersion(config, l)` for l = 0..config.depth, from `var`, the variances of
    `norm_walk(config, config.depth)` (each layer's walk is a prefix of the deepest's)."""
    return [_dispersion(config, layer, var.__getitem__) for layer in range(config.depth + 1)]


def _dispersion(config: SimConfig, layer: int, walk_var: Callable[[int], float]) -> float | None:
    """`mean_sq_dispersion`, with Var[log q_layer] of the norm walk read from `walk_var`."""
    if not is_centred(config) or not 1 <= layer <= config.depth:
        return None
    n0, n = config.input_dim, config.width
    act = activation_fns(config.activation)
    ortho = config.init.name == "orthogonal"
    if act.homogeneous is not None and config.bias_std == 0.0 and (not ortho or n0 <= n):
        top = max(abs(act.homogeneous[0]), abs(act.homogeneous[1]))  # >= 1 (a+ = 1)
        a_pos, a_neg = act.homogeneous[0] / top, act.homogeneous[1] / top  # a^4 stays finite
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
    radial_var = 0.0 if ortho else _trigamma(n / 2.0)
    return math.expm1(float(walk_var(layer)) + radial_var)


@lru_cache(maxsize=16384)
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
    if ratio <= 0.1 or not is_centred(config):
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
    act = activation_fns(config.activation)
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

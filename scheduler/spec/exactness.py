"""Where the conditional sampler stops reproducing the dense one: the flush-to-zero range.

The conditional sampler (`worker.sim.conditional`) draws z = h W given h in a scaled form, so
it rounds (and flushes to zero) only the result. The dense sampler's matmul also flushes every
product h_i W_ij and every partial sum below the dtype's smallest normal `tiny` (TensorFlow runs
CPU kernels under flush-to-zero), so in a vanishing network it collapses about a layer earlier
(float32, linear, N(0, 0.05^2): dense 123.5, conditional ~124.5). No O(width) sampler can draw
those individual products, so `sampler: auto` picks dense for a configuration whose values can
come near that range within its depth, and `sampler: conditional` is refused there. float16
never does: its matmul forms products and sums in float32 and rounds each result once, as the
conditional sampler does.

`conditional_limit(config)`: the first layer l (or None) at which, K = 6 standard deviations
into the lower tail of the log-norm walk (`theory.finite_width.norm_walk`), the typical size of
the products of a forward (h W) or backward (g W^T) matmul, s_l = sqrt(E[mean_sq] / fan), is
within a factor eps^(-2/3) of `tiny`. Below that factor the products the dense matmul flushes
(each under tiny, a fraction ~ tiny / s of them) change a sum by ~ (tiny / s)^(3/2) of its size,
under the dtype's rounding eps: the two samplers differ by less than one rounding. E[mean_sq]
of preactivations and gradients is the mean-field recursion in log space (`conditional_limit`);
a configuration theory cannot predict (non-centred kernels, or a theory error) has no bound,
and so is treated as reaching the range. Overflow needs no such rule: the dense
matmul's partial sums overflow where its result does, up to a factor O(1), which the two-sample
tests (tests/sim/test_conditional_extremes.py) do not resolve.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from scheduler.analysis.theory.finite_width import norm_walk, norm_walks, walk_arrays
from scheduler.analysis.theory.gaussian import (
    FloatArray,
    moments_at_log_q,
    moments_at_log_qs,
)
from scheduler.analysis.theory.moment_table import HI as TABLE_HI
from scheduler.analysis.theory.moment_table import LO as TABLE_LO
from scheduler.analysis.theory.moment_table import STEP as TABLE_STEP
from scheduler.analysis.theory.moment_table import MomentTable, moment_table
from scheduler.analysis.theory.precision import DTYPE_LIMITS
from scheduler.analysis.theory.weights import weight_moments
from worker.contract import Scheme, SimConfig

__all__ = [
    "TAIL_SD",
    "Limit",
    "conditional_limit",
    "conditional_limits",
    "limit_reason",
    "prefetch_limits",
]

TAIL_SD = 6.0
# Unit roundoff of each dtype (numpy's eps / 2).
_EPS = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


@dataclass(frozen=True)
class Limit:
    """Where the flush range may be reached: a layer and the quantity ("preactivation" or
    "gradient"; "prediction" when theory has none)."""

    layer: int
    quantity: str


_CACHE_SIZE = 1 << 17  # > MAX_CONFIGS: a sweep's limits stay known from expansion to estimate
_cache: dict[SimConfig, Limit | None] = {}


def conditional_limit(config: SimConfig) -> Limit | None:
    """The first (layer, quantity) where the conditional sampler may differ from the dense one
    (module doc); None where it reproduces the dense sampler at every layer of the depth.

    All in log space (no overflow at any depth): log E mean_sq(z^l) = lambda_l, the mean of the
    log-norm walk; gradients from the top, log E mean_sq(g^D) = log E phi'(z^D)^2 and
    log E mean_sq(g^l) = log E mean_sq(g^{l+1}) + log(n v) + log E phi'(z^l)^2, with the walk's
    spread over the D - l + 1 layers it has crossed."""
    try:
        return _cache[config]
    except KeyError:
        return conditional_limits([config])[0]


def prefetch_limits(configs: Iterable[SimConfig]) -> None:
    """Compute the limits of `configs` together (`conditional_limits`) ahead of the calls that
    read them one at a time. Raises nothing: whatever fails here fails again in that call, in
    its place among the others."""
    with contextlib.suppress(Exception):  # met again, in its place, by the caller's own call
        conditional_limits(list(configs))


def conditional_limits(configs: Sequence[SimConfig]) -> list[Limit | None]:
    """`conditional_limit` of each of `configs`, in order. Those not known yet are computed
    together: one walk per (init, activation, bias, width, input_dim, input_q), as deep as the
    deepest of them (a walk's first layers do not depend on how far it goes), the walks' moments
    batched (`finite_width.norm_walks`); the same values, bit for bit, as one at a time. Many
    walks of one smooth activation are screened first on its tabulated moments (`_screen`):
    a group cleared there has no limit, as the exact walk would find; the others walk exactly."""
    todo = list(dict.fromkeys(c for c in configs if c not in _cache))
    groups: dict[tuple[object, ...], list[SimConfig]] = {}
    for c in todo:
        key = (c.init, c.activation, c.bias, c.width, c.input_dim, c.input_q)
        groups.setdefault(key, []).append(c)
    members = list(groups.values())
    kernels = [_Kernels(g[0]) for g in members]
    cleared = _screen(members, kernels)
    exact = [i for i, ok in enumerate(cleared) if not ok]
    walks: list[_Walk | None] = [None] * len(members)
    for i, walk in zip(
        exact,
        _walks([(members[i][0], max(c.depth for c in members[i])) for i in exact]),
        strict=True,
    ):
        walks[i] = walk
    if len(_cache) + len(todo) > _CACHE_SIZE:
        _cache.clear()
    for group, kernel, walk, ok in zip(members, kernels, walks, cleared, strict=True):
        if ok:  # a cleared group's limits depend on the dtype alone (`_limit`)
            by_dtype: dict[str, Limit | None] = {}
            for c in group:
                if c.dtype not in by_dtype:
                    by_dtype[c.dtype] = _limit(c, kernel, None, cleared=True)
                _cache[c] = by_dtype[c.dtype]
        else:
            for c in group:
                _cache[c] = _limit(c, kernel, walk)
    return [_cache[c] if c in _cache else _limit(c, _Kernels(c), None) for c in configs]


# A table costs about as much as this many exact moments per grid point: below that many walk
# layers of one activation the exact walks are cheaper.
_SCREEN_MIN_LAYERS = 2 * round((TABLE_HI - TABLE_LO) / TABLE_STEP)
_SCREEN_MARGIN = 1.0  # nats of log-scale headroom a screened decision keeps beyond its bounds
_TAIL_SLACK = 1.5  # the screened walk's tail may be this much short of the exact one


def _screen(members: list[list[SimConfig]], kernels: list[_Kernels]) -> list[bool]:
    """Per group: True when its walk on the activation's tabulated moments
    (`theory.moment_table`, `finite_width.walk_arrays`) shows every member clear of the flush
    range with room for the table's error bounds, propagated along the walk (so the exact walk
    clears it too).

    Along the screened walk, lambda_l is within E_l of the exact one, E_1 = 0 and
    E_l = e(log E phi^2) + L(log E phi^2) E_{l-1} + (e(kurtosis) + L(kurtosis) E_{l-1}) / 2n
    (e: the interpolation error bound, L: the Lipschitz bound of a field; the step from x to
    lambda = logaddexp(x, log sigma_b^2) is 1-Lipschitz); the log of a gradient's mean square
    within G = sum_k e(log E phi'^2) + L(log E phi'^2) E_k. A member is cleared when each of
    its tests (`_limit`) holds for mu - E (or log g - G), a tail _TAIL_SLACK times as wide,
    and _SCREEN_MARGIN nats more, at its group's strictest dtype floor."""
    cleared = [False] * len(members)
    by_activation: dict[Scheme, list[int]] = {}
    for i, (group, kernel) in enumerate(zip(members, kernels, strict=True)):
        if not kernel.failed and kernel.first_mean == 0.0 and kernel.deep_mean == 0.0:
            by_activation.setdefault(group[0].activation, []).append(i)
    for activation, idx in by_activation.items():
        horizons = [max(c.depth for c in members[i]) for i in idx]
        table = moment_table(activation)
        if table.homogeneous is None and sum(horizons) < _SCREEN_MIN_LAYERS:
            continue  # fewer walk layers than the table's grid: the exact walks are cheaper
        if not max(table.error[f] for f in ("log_mean_sq", "kurtosis", "log_slope")) < 1e-2:
            continue
        try:
            ok = _cleared([members[i] for i in idx], [kernels[i] for i in idx], table)
        except (ArithmeticError, ValueError):
            continue
        for i, good in zip(idx, ok, strict=True):
            cleared[i] = good
    return cleared


def _cleared(
    groups: list[list[SimConfig]], kernels: list[_Kernels], table: MomentTable
) -> list[bool]:
    """`_screen`'s test of groups of one activation, their walks together (arrays over groups
    and layers)."""
    heads = [g[0] for g in groups]
    horizon = max(c.depth for g in groups for c in g)
    mu, var = walk_arrays(heads, horizon, table.clamped)
    n = np.array([h.width for h in heads], dtype=np.float64)[:, None]
    e_m, l_m = table.error["log_mean_sq"], table.slope_bound["log_mean_sq"]
    e_k, l_k = table.error["kurtosis"], table.slope_bound["kurtosis"]
    e_d, l_d = table.error["log_deriv_sq"], table.slope_bound["log_deriv_sq"]
    if not math.isfinite(e_d + l_d + e_m + l_m + e_k + l_k):
        return [False] * len(groups)
    err = np.zeros_like(mu)
    for layer in range(2, horizon + 1):
        prev = err[:, layer - 1 : layer]
        err[:, layer : layer + 1] = e_m + l_m * prev + (e_k + l_k * prev) / (2.0 * n)
    inside = np.isfinite(mu) & (mu >= table.lo) & (mu <= table.hi)
    log_deriv = table.clamped("log_deriv_sq", mu)
    tail = _TAIL_SLACK * TAIL_SD * np.sqrt(np.maximum(var, 0.0))
    log_nv = np.array([k.log_nv for k in kernels])
    fan = np.log(np.array([[h.input_dim] + [h.width] * horizon for h in heads], dtype=np.float64))[
        :, 1:
    ]
    # per member depth: the groups with a member of that depth, and the strictest floor of
    # those members' dtypes (float16: none)
    floors: dict[int, dict[int, float]] = {}
    for r, g in enumerate(groups):
        for c in g:
            if c.dtype != "float16":
                at = floors.setdefault(c.depth, {})
                at[r] = max(at.get(r, -math.inf), _floor(c.dtype))
    room = 0.5 * (mu[:, 1:] - err[:, 1:] - tail[:, 1:] - fan)  # preactivations, layers 1..H
    log_width = np.log(n[:, 0])
    ok = np.ones(len(groups), dtype=bool)
    for depth, by_row in floors.items():
        rows = np.fromiter(by_row, dtype=np.intp, count=len(by_row))
        limit = np.fromiter(by_row.values(), dtype=np.float64, count=len(by_row))[:, None]
        limit = limit + _SCREEN_MARGIN
        good = inside[rows, : depth + 1].all(axis=1) & (room[rows, :depth] >= limit).all(axis=1)
        steps = log_deriv[rows, 1 : depth + 1] + log_nv[rows, None]
        steps[:, -1] -= log_nv[rows]  # the top layer's gradient is phi' of the readout alone
        log_g = np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]  # layer l: the sum over l..depth
        low = np.cumsum((e_d + l_d * err[rows, 1 : depth + 1])[:, ::-1], axis=1)[:, ::-1]
        grad_tail = tail[rows, depth:0:-1]  # tail[depth - l + 1] for l = 1..depth
        grad_room = 0.5 * (log_g - low - grad_tail - log_width[rows, None])
        good &= np.isfinite(steps).all(axis=1) & (grad_room >= limit).all(axis=1)
        ok[rows] &= good
    return [bool(v) for v in ok]


@functools.cache
def _floor(dtype: str) -> float:
    """log of the products' size below which a dense matmul's flushes matter (module doc)."""
    return math.log(DTYPE_LIMITS[dtype][1]) - (2.0 / 3.0) * math.log(_EPS[dtype])


class _Kernels:
    """What `is_centred` and log(n v) read of a configuration's kernels (not its depth);
    `failed` when theory raises on them (every depth is then 'prediction')."""

    def __init__(self, config: SimConfig) -> None:
        n0, n = config.input_dim, config.width
        try:
            self.first_mean = weight_moments(config.init, n0, n)[0]
            self.deep_mean, v = weight_moments(config.init, n, n)
            self.log_nv = math.log(config.width * v)
            self.failed = False
        except (ArithmeticError, ValueError):
            self.failed = True


class _Walk:
    """A walk (`norm_walks`) as floats, E phi'(z)^2 at mu[0..horizon], and per dtype the first
    layer whose preactivations reach the flush range (it does not depend on the depth)."""

    def __init__(self, mu: FloatArray, var: FloatArray, deriv: list[float]) -> None:
        self.mu, self.var, self.deriv = mu.tolist(), var.tolist(), deriv
        self.tail = [TAIL_SD * math.sqrt(v) for v in self.var]
        self.log_deriv = [math.log(d) if d > 0.0 else math.nan for d in deriv]
        self._first: dict[str, int | None] = {}

    def first_preactivation(self, config: SimConfig, floor: float) -> int | None:
        key = config.dtype
        if key not in self._first:
            self._first[key] = next(
                (
                    layer
                    for layer in range(1, len(self.mu))
                    if not 0.5
                    * (
                        self.mu[layer]
                        - self.tail[layer]
                        - math.log(config.input_dim if layer == 1 else config.width)
                    )
                    >= floor
                ),
                None,
            )
        return self._first[key]


def _walks(requests: list[tuple[SimConfig, int]]) -> list[_Walk | None]:
    """The walks (`norm_walks`) with their E phi'^2 per layer; None for a walk theory fails on
    (its configurations are then computed alone, as `_limit` without a walk)."""
    try:
        walks = norm_walks(requests)
        tops: dict[Scheme, list[int]] = {}
        for i, (config, _) in enumerate(requests):
            tops.setdefault(config.activation, []).append(i)
        last: dict[int, float] = {}
        for activation, idx in tops.items():
            top = moments_at_log_qs(activation, [float(walks[i][0][-1]) for i in idx])
            last.update((i, m.deriv_sq) for i, m in zip(idx, top, strict=True))
        out: list[_Walk | None] = []
        for i, ((config, _), (mu, var, used)) in enumerate(zip(requests, walks, strict=True)):
            zero = moments_at_log_q(config.activation, float(mu[0])).deriv_sq
            out.append(_Walk(mu, var, [zero, *(m.deriv_sq for m in used), last[i]]))
        return out
    except (ArithmeticError, ValueError):
        if len(requests) == 1:
            return [None]
        return [w for r in requests for w in _walks([r])]


def _limit(
    config: SimConfig, kernels: _Kernels, walk: _Walk | None, *, cleared: bool = False
) -> Limit | None:
    """`conditional_limit` of `config` from its group's kernels and walk (None: its own;
    `cleared`: its group passed `_screen`, so the walk's tests hold)."""
    depth = config.depth
    if kernels.failed or kernels.first_mean != 0.0 or (depth >= 2 and kernels.deep_mean != 0.0):
        return Limit(1, "prediction")  # not centred (`is_centred`), or no theory
    if walk is None and not cleared:
        try:
            mu, var = norm_walk(config, depth)
            deriv = [
                moments_at_log_q(config.activation, float(mu[layer])).deriv_sq
                for layer in range(depth + 1)
            ]
        except (ArithmeticError, ValueError):
            return Limit(1, "prediction")
        walk = _Walk(mu, var, deriv)
    if config.dtype == "float16":
        # On CPU a float16 matmul forms its products and sums in float32 and rounds each result
        # to float16 once (`theory.precision.underflow_model`), as the conditional sampler does:
        # from float16 values (>= 2^-24 or 0) no product comes near float32's flush range.
        return None
    if config.input_q is not None and config.input_q != 1.0:
        # The walk above is that of inputs of mean square 1; no scale is predicted for others.
        return Limit(1, "prediction")
    if walk is None:  # cleared by `_screen`: every test below holds
        return None
    floor = _floor(config.dtype)
    first = walk.first_preactivation(config, floor)
    if first is not None and first <= depth:
        return Limit(first, "preactivation")
    # gradients from the top: a sum in this order, so it is per depth
    log_fan, log_nv, deriv, log_deriv, tail = (
        math.log(config.width),
        kernels.log_nv,
        walk.deriv,
        walk.log_deriv,
        walk.tail,
    )
    log_g = 0.0
    for layer in range(depth, 0, -1):
        if deriv[layer] <= 0.0:
            return Limit(layer, "gradient")
        log_g += log_deriv[layer] + (log_nv if layer < depth else 0.0)
        if not 0.5 * (log_g - tail[depth - layer + 1] - log_fan) >= floor:
            return Limit(layer, "gradient")
    return None


def limit_reason(config: SimConfig, limit: Limit) -> str:
    """Why the conditional sampler is not exact for `config` (for messages)."""
    if limit.quantity == "prediction":
        where = f"theory has no prediction of its scale from layer {limit.layer}, so its values"
    else:
        where = f"its {limit.quantity}s at layer {limit.layer} (of {config.depth})"
    return (
        f"{where} can reach {config.dtype}'s flush-to-zero range, where the dense matmul "
        "flushes individual products and the conditional sampler cannot"
    )

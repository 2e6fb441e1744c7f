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

import dataclasses
import functools
import math
from dataclasses import dataclass

from scheduler.analysis.theory.finite_width import norm_walk
from scheduler.analysis.theory.gaussian import moments_at_log_q
from scheduler.analysis.theory.precision import DTYPE_LIMITS
from scheduler.analysis.theory.weights import is_centred, weight_moments
from worker.contract import SimConfig

__all__ = ["TAIL_SD", "Limit", "conditional_limit", "limit_reason"]

TAIL_SD = 6.0
# Unit roundoff of each dtype (numpy's eps / 2).
_EPS = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


@dataclass(frozen=True)
class Limit:
    """Where the flush range may be reached: a layer and the quantity ("preactivation" or
    "gradient"; "prediction" when theory has none)."""

    layer: int
    quantity: str


@functools.lru_cache(maxsize=4096)
def conditional_limit(config: SimConfig) -> Limit | None:
    """The first (layer, quantity) where the conditional sampler may differ from the dense one
    (module doc); None where it reproduces the dense sampler at every layer of the depth.

    All in log space (no overflow at any depth): log E mean_sq(z^l) = lambda_l, the mean of the
    log-norm walk; gradients from the top, log E mean_sq(g^D) = log E phi'(z^D)^2 and
    log E mean_sq(g^l) = log E mean_sq(g^{l+1}) + log(n v) + log E phi'(z^l)^2, with the walk's
    spread over the D - l + 1 layers it has crossed."""
    cfg = dataclasses.replace(config, sampler="dense")
    try:
        if not is_centred(cfg):
            return Limit(1, "prediction")
        mu, var = norm_walk(cfg, cfg.depth)
        log_nv = math.log(cfg.width * weight_moments(cfg.init, cfg.width, cfg.width)[1])
        deriv = [
            moments_at_log_q(cfg.activation, float(mu[layer])).deriv_sq
            for layer in range(cfg.depth + 1)
        ]
    except (ArithmeticError, ValueError):
        return Limit(1, "prediction")
    if cfg.dtype == "float16":
        # On CPU a float16 matmul forms its products and sums in float32 and rounds each result
        # to float16 once (`theory.precision.underflow_model`), as the conditional sampler does:
        # from float16 values (>= 2^-24 or 0) no product comes near float32's flush range.
        return None
    if cfg.input_q is not None and cfg.input_q != 1.0:
        # The walk above is that of inputs of mean square 1; no scale is predicted for others.
        return Limit(1, "prediction")
    tiny = DTYPE_LIMITS[cfg.dtype][1]
    floor = math.log(tiny) - (2.0 / 3.0) * math.log(_EPS[cfg.dtype])

    def reached(log_mean_sq: float, log_var: float, fan: int) -> bool:
        return not 0.5 * (log_mean_sq - TAIL_SD * math.sqrt(log_var) - math.log(fan)) >= floor

    for layer in range(1, cfg.depth + 1):
        if reached(float(mu[layer]), float(var[layer]), cfg.input_dim if layer == 1 else cfg.width):
            return Limit(layer, "preactivation")
    log_g = 0.0
    for layer in range(cfg.depth, 0, -1):
        if deriv[layer] <= 0.0:
            return Limit(layer, "gradient")
        log_g += math.log(deriv[layer]) + (log_nv if layer < cfg.depth else 0.0)
        if reached(log_g, float(var[cfg.depth - layer + 1]), cfg.width):
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

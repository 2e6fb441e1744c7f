"""Precision limits: where a configuration's values overflow or underflow its dtype.

Overflow and underflow are predicted from the log-normal approximation of the per-row norm
(`finite_width.norm_walk`): lambda_l = log q_l with q_l = v |h^{l-1}|^2 + sigma_b^2 (the variance
of z^l given h^{l-1}); the extreme of n Gaussians is handled with the exact law of max_j |Z_j|.
See `overflow_layer` and `underflow_layer`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import special

from scheduler.analysis.theory.finite_width import norm_walk
from scheduler.analysis.theory.gaussian import FloatArray, activation_fns, normal_pdf, panel_rule
from scheduler.analysis.theory.weights import (
    TRUNCATED_VARIANCE_FACTOR,
    is_centred,
    scheme_param,
    weight_moments,
)
from worker.contract import DTYPES, INIT_SCHEMES, Scheme, SimConfig

__all__ = ["DTYPE_LIMITS", "overflow_layer", "underflow_layer"]

# (largest finite, smallest normal, smallest subnormal) per dtype.
DTYPE_LIMITS: dict[str, tuple[float, float, float]] = {
    "float32": (3.4028234663852886e38, 1.1754943508222875e-38, 1.401298464324817e-45),
    "float64": (1.7976931348623157e308, 2.2250738585072014e-308, 5e-324),
    "float16": (65504.0, 6.103515625e-05, 5.960464477539063e-08),
    "bfloat16": (3.3895313892515355e38, 1.1754943508222875e-38, 9.183549615799121e-41),
}


@lru_cache(maxsize=1024)
def _log_max_abs_normal(n: int) -> tuple[float, float]:
    """Mean and variance of log max_{j <= n} |Z_j|, Z_j ~ N(0, 1) i.i.d. (exact law, quadrature).

    P(max <= t) = erf(t / sqrt 2)^n, so the density is n erf(t/sqrt 2)^{n-1} 2 phi(t).
    """
    t, w = panel_rule(np.linspace(0.0, 14.0, 561))
    erf = np.asarray(special.erf(t / math.sqrt(2.0)), dtype=np.float64)
    density = (
        2.0 * normal_pdf(t) if n == 1 else n * np.exp((n - 1) * np.log(erf)) * 2.0 * normal_pdf(t)
    )
    wd = w * density
    log_t = np.log(t)
    mean = float(np.dot(wd, log_t))
    return mean, float(np.dot(wd, (log_t - mean) ** 2))


def _weight_log_row_max(init: Scheme, fan_in: int, fan_out: int) -> float:
    """Typical log max_j |W_ij| over one row (fan_out entries) of a centred kernel."""
    _, var = weight_moments(init, fan_in, fan_out)
    sd = math.sqrt(var)
    name = init.name
    distribution = (
        str(scheme_param(init, INIT_SCHEMES, "distribution")) if name == "variance_scaling" else ""
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
    of `norm_walk`; row overflow when the max (times the activation's largest asymptotic
    slope, for selu's 1.0507) exceeds the dtype's largest finite value; rows independent:
    P(trial overflowed by l) = 1 - (1 - p_row)^batch. Returns E[L] = sum_l P(L > l) when the
    median trial overflows within the configuration's depth, else None. Forward pass only; the
    gradient can overflow on its own (bounded activations in the chaotic phase). Non-centred
    kernels: None. For 100 linear N(0, 1) layers of width 100 in float32: ~38.8 (a numpy float32
    run gives 38 in ~1/4 of the trials and 39 otherwise; the seed notebook's one pass gave 38).
    """
    if not is_centred(config):
        return None
    big = DTYPE_LIMITS[_dtype(config)][0]
    slopes = activation_fns(config.activation).slopes_inf or (1.0, 1.0)
    log_gain = math.log(max(1.0, abs(slopes[0]), abs(slopes[1])))
    m_max, v_max = _log_max_abs_normal(config.width)
    mu, var = norm_walk(config, _horizon(config))
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
    act = activation_fns(config.activation)
    if not is_centred(config) or config.bias_std > 0.0 or act.slopes_zero is None:
        return None
    _, tiny, subnormal = DTYPE_LIMITS[_dtype(config)]
    log_thr = math.log(tiny if flush_denormals else subnormal / 2.0)
    n0, n = config.input_dim, config.width
    log_b = math.log(max(abs(act.slopes_zero[0]), abs(act.slopes_zero[1])))
    m0, v0 = _log_max_abs_normal(n0)
    m_max, v_max = _log_max_abs_normal(n)
    w1 = _weight_log_row_max(config.init, n0, n)
    w = _weight_log_row_max(config.init, n, n)
    mu, var = norm_walk(config, _horizon(config))
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

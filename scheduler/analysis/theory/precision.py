"""Precision limits: where a configuration's values overflow or underflow its dtype.

Overflow and underflow are predicted from the log-normal approximation of the per-row norm
(`finite_width.norm_walk`): lambda_l = log q_l with q_l = v |h^{l-1}|^2 + sigma_b^2 (the variance
of z^l given h^{l-1}); the extreme of n Gaussians is handled with the exact law of max_j |Z_j|.
See `overflow_layer` and `underflow_layer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

__all__ = [
    "DTYPE_LIMITS",
    "Underflow",
    "expected_first_layer",
    "horizon",
    "overflow_cdf",
    "overflow_layer",
    "underflow_cdf",
    "underflow_layer",
    "underflow_model",
]

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
    if var == 0.0:  # zero weights (std, gain 0): every product is exactly 0
        return -math.inf
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


def expected_first_layer(p_by: FloatArray | None, depth: int) -> float | None:
    """E[L] from P(L <= l), l = 0..H (monotone; `overflow_cdf`, `underflow_cdf`); None if
    P(L <= depth) < 1/2 (or no law)."""
    if p_by is None or p_by[min(depth, p_by.size - 1)] < 0.5:
        return None
    return float(np.sum(1.0 - p_by))


def _monotone(p_by: FloatArray) -> FloatArray:
    """`p_by` as a CDF: nan as 0, clipped to [0, 1], non-decreasing; read-only."""
    out = np.maximum.accumulate(np.clip(np.where(np.isnan(p_by), 0.0, p_by), 0.0, 1.0))
    out.setflags(write=False)
    return out


def horizon(config: SimConfig) -> int:
    """The last layer of the laws `overflow_cdf` and `underflow_cdf` (past the depth, so that
    E[L] and a band of a few layers around the depth are defined)."""
    return max(2 * config.depth, config.depth + 100)


@dataclass(frozen=True)
class Underflow:
    """How one dtype's layer z = h W rounds tiny values to 0 on one kind of device.

    mode "products": every product h_i W_ij is rounded in the dtype (flush-to-zero below the
    smallest normal, or IEEE rounding below half the smallest subnormal): z_j = 0 when every
    product is below the threshold. mode "sum": products are accumulated in a wider type (float16
    in float32) and z_j rounds to 0 once when |z_j| is below the threshold.
    """

    mode: str
    log_threshold: float  # log of the threshold (half of float64's smallest subnormal is 0.0)
    flushes: bool  # subnormals of the dtype are flushed to 0 (False: kept, gradual underflow)


def underflow_model(dtype: str, device: str | None = None) -> Underflow:
    """The subnormal behaviour of `dtype` on `device` (a chunk's provenance device name).

    CPU (device None, or a name without "GPU"/"NVIDIA"/"AMD"/"TPU"; measured: TensorFlow runs CPU
    kernels under `port::ScopedFlushDenormal`): float32, float64 and bfloat16 (computed in
    float32) flush products below the smallest normal; float16 is computed in float32 and
    rounded to float16 once per value, so float16 subnormals are kept: z rounds to 0 below half
    the smallest float16 subnormal, 2^-25 (the audit: collapse at 27.1 +- 0.03 for linear
    N(0, 0.05^2) width 100, where a flushed-products model says 14). Accelerators (assumed, not
    measured here: cuBLAS keeps subnormals unless asked to flush): gradual underflow, float16
    and bfloat16 accumulated in float32.
    """
    _, tiny, subnormal = DTYPE_LIMITS[_dtype_name(dtype)]
    half_subnormal = math.log(subnormal) - math.log(2.0)
    name = (device or "CPU").upper()
    accelerator = any(k in name for k in ("GPU", "NVIDIA", "AMD", "TPU", "CUDA"))
    if dtype == "float16":
        return Underflow("sum", half_subnormal, flushes=False)
    if not accelerator:
        return Underflow("products", math.log(tiny), flushes=True)
    if dtype == "bfloat16":
        return Underflow("sum", half_subnormal, flushes=False)
    return Underflow("products", half_subnormal, flushes=False)


def overflow_cdf(config: SimConfig) -> FloatArray | None:
    """P(first non-finite forward layer <= l) for l = 0..`horizon` (None: not predicted).

    Row b of z^l is N(0, q_l) given h^{l-1}, so log max_j |z^l_bj| = lambda_l / 2 + log M_n,
    M_n = max of n |N(0, 1)| (exact law). lambda_l is taken Gaussian with the mean and variance
    of `norm_walk`; row overflow when the max (times the activation's largest asymptotic
    slope, for selu's 1.0507) exceeds the dtype's largest finite value; rows independent:
    P(trial overflowed by l) = 1 - (1 - p_row)^batch. Forward pass only; the gradient can
    overflow on its own (bounded activations in the chaotic phase). Non-centred kernels: None.
    """
    if not is_centred(config):
        return None
    big = DTYPE_LIMITS[_dtype(config)][0]
    slopes = activation_fns(config.activation).slopes_inf or (1.0, 1.0)
    log_gain = math.log(max(1.0, abs(slopes[0]), abs(slopes[1])))
    m_max, v_max = _log_max_abs_normal(config.width)
    mu, var = norm_walk(config, horizon(config))
    with np.errstate(invalid="ignore"):
        arg = (mu / 2.0 + m_max + log_gain - math.log(big)) / np.sqrt(var / 4.0 + v_max)
    p_row = np.asarray(special.ndtr(arg), dtype=np.float64)
    p_row[0] = 0.0
    p_by = -np.expm1(config.batch * np.log1p(-np.minimum(p_row, 1.0 - 1e-16)))
    p_by[p_row >= 1.0 - 1e-16] = 1.0
    return _monotone(p_by)


def overflow_layer(config: SimConfig) -> float | None:
    """Expected first layer (1-based) whose forward values are non-finite; None if unlikely.

    E[L] = sum_l P(L > l) from `overflow_cdf` when the median trial overflows within the
    configuration's depth, else None. For 100 linear N(0, 1) layers of width 100 in float32:
    ~38.8 (a numpy float32 run gives 38 in ~1/4 of the trials and 39 otherwise; the seed
    notebook's one pass gave 38).
    """
    return expected_first_layer(overflow_cdf(config), config.depth)


def underflow_cdf(
    config: SimConfig, *, device: str | None = None, flush_denormals: bool | None = None
) -> FloatArray | None:
    """P(preactivations collapsed to exactly 0 by layer l) for l = 0..`horizon`; None: none.

    The rounding is `underflow_model(dtype, device)`, or when `flush_denormals` is given,
    products rounded in the dtype below its smallest normal (True) or half its smallest
    subnormal (False). Products: log max_ij |h_i W_ij| ~ log max_i |h_i| + log max_j |W_ij| with
    log max |h^{l-1}| = lambda_{l-1}/2 + log M_n + log b (b the larger slope of phi at 0). Sum:
    log max_j |z^l_j| = lambda_l/2 + log M_n. A trial collapses when every row does:
    p_row^batch; collapse is absorbing. A bias keeps values ~sigma_b: all zeros (never) unless
    sigma_b M_n itself rounds to 0 in the dtype. None for non-centred kernels and phi(0) != 0
    (sigmoid, softplus).
    """
    act = activation_fns(config.activation)
    if not is_centred(config) or act.slopes_zero is None:
        return None
    if flush_denormals is None:
        model = underflow_model(_dtype(config), device)
    else:
        _, tiny, subnormal = DTYPE_LIMITS[_dtype(config)]
        log_thr = math.log(tiny) if flush_denormals else math.log(subnormal) - math.log(2.0)
        model = Underflow("products", log_thr, flush_denormals)
    log_thr = model.log_threshold
    n0, n = config.input_dim, config.width
    m_max, v_max = _log_max_abs_normal(n)
    size = horizon(config)
    if config.bias_std > 0.0 and math.log(config.bias_std) + m_max >= log_thr:
        return _monotone(np.zeros(size + 1))
    mu, var = norm_walk(config, size)
    if model.mode == "sum":
        with np.errstate(invalid="ignore"):
            arg = (log_thr - mu[1:] / 2.0 - m_max) / np.sqrt(var[1:] / 4.0 + v_max)
        p_row = np.asarray(special.ndtr(arg), np.float64)
    else:
        log_b = math.log(max(abs(act.slopes_zero[0]), abs(act.slopes_zero[1])))
        m0, v0 = _log_max_abs_normal(n0)
        w1 = _weight_log_row_max(config.init, n0, n)
        w = _weight_log_row_max(config.init, n, n)
        # log max |h^{l-1}| for l = 1..H (h^0 = x, unit variance)
        h_mean = np.concatenate(([m0], mu[1:-1] / 2.0 + m_max + log_b))
        h_var = np.concatenate(([v0], var[1:-1] / 4.0 + v_max))
        w_row = np.full(h_mean.size, w)
        w_row[0] = w1
        with np.errstate(invalid="ignore"):
            arg = (log_thr - h_mean - w_row) / np.sqrt(h_var)
        p_row = np.asarray(special.ndtr(arg), np.float64)
    return _monotone(np.concatenate(([0.0], p_row**config.batch)))


def underflow_layer(
    config: SimConfig, *, device: str | None = None, flush_denormals: bool | None = None
) -> float | None:
    """Expected first layer whose preactivations (and so activations) are all exactly 0.

    E[L] from `underflow_cdf`; None when the median trial survives `depth` or there is no law.
    The seed notebook's cell 157 (linear, N(0, 0.05^2), width 100, float32): 125.2 flushed
    (a numpy emulation of flush-to-zero products gives 124.4) and 149.0 gradual (numpy float32
    matmul: 149.0); so its 100 layers never collapse.
    """
    law = underflow_cdf(config, device=device, flush_denormals=flush_denormals)
    return expected_first_layer(law, config.depth)


def _dtype(config: SimConfig) -> str:
    return _dtype_name(config.dtype)


def _dtype_name(dtype: str) -> str:
    if dtype not in DTYPE_LIMITS:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}. Received: {dtype!r}")
    return dtype

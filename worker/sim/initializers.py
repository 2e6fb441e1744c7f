"""Weight schemes of `worker.contract.INIT_SCHEMES`, drawn for T trials at once: (T, fan_in, fan_out).

Keras semantics per 2-D kernel of shape (fan_in, fan_out) = (rows, cols), re-implemented here on
batched stateless draws (a Keras initializer handed the batched shape would compute its fans from
(T, fan_in, fan_out) and be wrong). References: keras/src/initializers/random_initializers.py
(RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling and its Glorot/He/LeCun presets,
Orthogonal) and torch.nn.init (kaiming_normal_, xavier_normal_). Every kernel is

    W = shift + scale * B

with B a standard draw of one of four laws: N(0, 1); U[0, 1); N(0, 1) truncated to [-2, 2];
Haar-orthogonal (Keras Orthogonal). With fan = fan_in, fan_out or (fan_in + fan_out) / 2 by
`mode`, floored at 1 like Keras:

    normal(mean, std)                    shift = mean, scale = std, B ~ N(0, 1)
    uniform(low, high)                   shift = low, scale = high - low, B ~ U[0, 1)
    truncated_normal(mean, std)          shift = mean, scale = std, B ~ TN(-2, 2)  (not rescaled)
    scaled_uniform(low, high, s, mode)   c = sqrt(s / fan): shift = c low, scale = c (high - low)
    variance_scaling(s, mode, dist)      truncated_normal: scale = sqrt(s / fan) / 0.87962566
                                         untruncated_normal: scale = sqrt(s / fan)
                                         uniform: limit = sqrt(3 s / fan), shift = -limit,
                                         scale = 2 limit
    glorot_* / he_* / lecun_*            variance_scaling(1 fan_avg | 2 fan_in | 1 fan_in, ...);
                                         *_normal = truncated_normal, *_uniform = uniform
    kaiming_normal(a)                    scale = sqrt(2 / ((1 + a^2) fan_in)), B ~ N(0, 1)
    xavier_normal(gain)                  scale = gain sqrt(2 / (fan_in + fan_out)), B ~ N(0, 1)
    orthogonal(gain)                     scale = gain, B = Q sign(diag R), A = QR with
                                         A ~ N(0, 1)^(max(r, c) x min(r, c)), transposed if r < c

The truncated law is sampled exactly by inverse CDF from the uniform stream,
B = ndtri(Phi(-2) + u (Phi(2) - Phi(-2))), one uniform per weight (no rejection, so the counter
layout of `worker.sim.rng` holds); TF's own truncated normal resamples and is not counter-exact.
0.87962566 is the std of N(0, 1) truncated to [-2, 2], so Keras' *_normal have variance s / fan.

`sample_kernels(..., factored=True)` may return the pair (B, scale) instead of W when shift == 0
and the dtype is float32/float64: the network then multiplies the small operand (h or g) by
`scale` instead of the big kernel, which saves one pass over every weight. The products
(scale h_i) B_ij and h_i (scale B_ij) are equal up to one rounding, with the same overflow and
underflow behaviour. float16/bfloat16 kernels are always materialised as cast(shift + scale B)
so low-precision weights are exactly the rounded law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from worker.contract import INIT_SCHEMES, TRUNCATED_NORMAL_STD, ParamValue, Scheme
from worker.sim import rng

_PHI_M2 = 0.022750131948179209  # Phi(-2)
_PHI_WIDTH = 0.95449973610364158  # Phi(2) - Phi(-2)

_VS_PRESETS: dict[str, tuple[float, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}


@dataclass(frozen=True)
class Law:
    """W = shift + scale * B with B of law `kind`: normal, uniform, truncated or orthogonal."""

    kind: str
    shift: float
    scale: float


@dataclass(frozen=True)
class KernelDraw:
    """Kernels of T trials as W = scale * base; base has shape (T, fan_in, fan_out)."""

    base: tf.Tensor
    scale: float

    def materialize(self) -> tf.Tensor:
        """W itself, (T, fan_in, fan_out)."""
        if self.scale == 1.0:
            return self.base
        return self.base * tf.constant(self.scale, self.base.dtype)


def _param(init: Scheme, key: str) -> ParamValue:
    """Parameter `key` of `init`, falling back to the registry default."""
    try:
        return init.get(key)
    except KeyError:
        return INIT_SCHEMES[init.name][key]


def _num(init: Scheme, key: str) -> float:
    value = _param(init, key)
    if isinstance(value, str):
        raise ValueError(f"init.{init.name}.{key}: expected a number. Received: {value!r}")
    return float(value)


def fan(mode: str, fan_in: int, fan_out: int) -> float:
    """Keras `compute_fans` + mode selection, floored at 1 like VarianceScaling."""
    if mode == "fan_in":
        n = float(fan_in)
    elif mode == "fan_out":
        n = float(fan_out)
    elif mode == "fan_avg":
        n = (fan_in + fan_out) / 2.0
    else:
        raise ValueError(f"mode: expected one of fan_in, fan_out, fan_avg. Received: {mode!r}")
    return max(1.0, n)


def law(init: Scheme, fan_in: int, fan_out: int) -> Law:
    """The affine law of the weights of `init` for one (fan_in, fan_out) kernel (see module doc)."""
    name = init.name
    if name not in INIT_SCHEMES:
        raise ValueError(f"init: expected one of {sorted(INIT_SCHEMES)}. Received: {name!r}")
    if name == "normal":
        return Law("normal", _num(init, "mean"), _num(init, "std"))
    if name == "uniform":
        low, high = _num(init, "low"), _num(init, "high")
        return Law("uniform", low, high - low)
    if name == "truncated_normal":
        return Law("truncated", _num(init, "mean"), _num(init, "std"))
    if name == "scaled_uniform":
        c = math.sqrt(_num(init, "scale") / fan(str(_param(init, "mode")), fan_in, fan_out))
        low, high = _num(init, "low"), _num(init, "high")
        return Law("uniform", c * low, c * (high - low))
    if name == "kaiming_normal":
        a = _num(init, "a")
        return Law("normal", 0.0, math.sqrt(2.0 / ((1.0 + a * a) * max(1, fan_in))))
    if name == "xavier_normal":
        return Law("normal", 0.0, _num(init, "gain") * math.sqrt(2.0 / max(1, fan_in + fan_out)))
    if name == "orthogonal":
        return Law("orthogonal", 0.0, _num(init, "gain"))
    if name == "variance_scaling":
        scale, mode, dist = (
            _num(init, "scale"),
            str(_param(init, "mode")),
            str(_param(init, "distribution")),
        )
    else:
        scale, mode, dist = _VS_PRESETS[name]
    var = scale / fan(mode, fan_in, fan_out)
    if dist == "truncated_normal":
        return Law("truncated", 0.0, math.sqrt(var) / TRUNCATED_NORMAL_STD)
    if dist == "untruncated_normal":
        return Law("normal", 0.0, math.sqrt(var))
    if dist == "uniform":
        limit = math.sqrt(3.0 * var)
        return Law("uniform", -limit, 2.0 * limit)
    raise ValueError(
        f"init.{name}.distribution: expected one of truncated_normal, untruncated_normal, "
        f"uniform. Received: {dist!r}"
    )


def _standard(
    kind: str,
    fan_in: int,
    fan_out: int,
    n_trials: int | tf.Tensor,
    *,
    key: tf.Tensor,
    stream: int | tf.Tensor,
    trial_offset: int | tf.Tensor,
    dtype: tf.DType,
) -> tf.Tensor:
    """B of law `kind` in the draw dtype, (T, fan_in, fan_out)."""
    m = fan_in * fan_out
    common = {"key": key, "stream": stream, "trial_offset": trial_offset, "dtype": dtype}
    if kind == "normal":
        flat = rng.draw("normal", m, n_trials, **common)
    elif kind == "uniform":
        flat = rng.draw("uniform", m, n_trials, **common)
    elif kind == "truncated":
        u = rng.draw("uniform", m, n_trials, **common)
        p = tf.constant(_PHI_M2, dtype) + u * tf.constant(_PHI_WIDTH, dtype)
        # ndtri of the float p may land a rounding outside [-2, 2]; clip keeps the support exact.
        flat = tf.clip_by_value(tf.math.ndtri(p), tf.constant(-2.0, dtype), tf.constant(2.0, dtype))
    elif kind == "orthogonal":
        rows, cols = max(fan_in, fan_out), min(fan_in, fan_out)
        a = tf.reshape(rng.draw("normal", m, n_trials, **common), [-1, rows, cols])
        q, r = tf.linalg.qr(a)  # batched reduced QR: q (T, rows, cols), r (T, cols, cols)
        # Sign fix makes Q Haar-distributed (Mezzadri 2007); Keras does the same.
        q = q * tf.sign(tf.linalg.diag_part(r))[:, tf.newaxis, :]
        return tf.linalg.matrix_transpose(q) if fan_in < fan_out else q
    else:
        raise ValueError(f"law: unknown kind {kind!r}")
    return tf.reshape(flat, [-1, fan_in, fan_out])


def kernel_scale(
    init: Scheme, fan_in: int, fan_out: int, dtype: str | tf.DType, *, factored: bool
) -> float:
    """The `KernelDraw.scale` that `sample_kernels` returns for these arguments."""
    spec = law(init, fan_in, fan_out)
    dtype = tf.as_dtype(dtype)
    if factored and spec.shift == 0.0 and dtype == rng.draw_dtype(dtype):
        return spec.scale
    return 1.0


def sample_kernels(
    init: Scheme,
    fan_in: int,
    fan_out: int,
    n_trials: int | tf.Tensor,
    *,
    key: tf.Tensor,
    stream: int | tf.Tensor,
    trial_offset: int | tf.Tensor,
    dtype: str | tf.DType,
    factored: bool = False,
) -> KernelDraw:
    """Kernels of trials [trial_offset, trial_offset + n_trials) of `init`, as W = scale * base.

    Without `factored` (or when the law has a shift, or dtype is float16/bfloat16) scale == 1
    and base is W. Trial i's kernel is a function of (key, trial_offset + i, stream) only.
    """
    dtype = tf.as_dtype(dtype)
    ddtype = rng.draw_dtype(dtype)
    spec = law(init, fan_in, fan_out)
    b = _standard(
        spec.kind,
        fan_in,
        fan_out,
        n_trials,
        key=key,
        stream=stream,
        trial_offset=trial_offset,
        dtype=ddtype,
    )
    if factored and spec.shift == 0.0 and dtype == ddtype:
        return KernelDraw(b, spec.scale)  # == kernel_scale(..., factored=True)
    w = b if spec.scale == 1.0 else b * tf.constant(spec.scale, ddtype)
    if spec.shift != 0.0:
        w = w + tf.constant(spec.shift, ddtype)
    return KernelDraw(tf.cast(w, dtype) if dtype != ddtype else w, 1.0)


def draw_kernels(
    init: Scheme,
    fan_in: int,
    fan_out: int,
    n_trials: int | tf.Tensor,
    *,
    key: tf.Tensor,
    stream: int | tf.Tensor,
    trial_offset: int | tf.Tensor,
    dtype: str | tf.DType,
) -> tf.Tensor:
    """Materialised kernels W of `init`, shape (T, fan_in, fan_out), in `dtype`."""
    return sample_kernels(
        init,
        fan_in,
        fan_out,
        n_trials,
        key=key,
        stream=stream,
        trial_offset=trial_offset,
        dtype=dtype,
    ).materialize()

"""Weight schemes drawn for T trials at once: kernels (T, fan_in, fan_out) of a `worker.schemes.Law`.

Every kernel is W = shift + scale * B with (kind, shift, scale) = `worker.schemes.law(init, fan_in,
fan_out)` (Keras/PyTorch semantics, fans of each 2-D kernel), or a `worker.sim.network.KernelLaw`
whose shift and scale are scalars fed to a compiled graph, re-implemented here on batched
stateless draws (a Keras initializer handed the batched shape would compute its fans from
(T, fan_in, fan_out) and be wrong). B, per kind, from the trial's own Philox stream:

    normal        N(0, 1)                            rng.draw("normal")
    uniform       U[0, 1)                            rng.draw("uniform")
    truncated     N(0, 1) truncated to [-2, 2]       inverse CDF of one uniform per weight
    orthogonal    Q sign(diag R), A = QR             A ~ N(0, 1)^(max(r, c) x min(r, c)),
                                                     transposed if r < c (Keras Orthogonal)

The truncated law is sampled exactly by inverse CDF from the uniform stream,
B = ndtri(Phi(-2) + u (Phi(2) - Phi(-2))), one uniform per weight (no rejection, so the counter
layout of `worker.sim.rng` holds); TF's own truncated normal resamples and is not counter-exact.

`sample_kernels(..., factored=True)` may return the pair (B, scale) instead of W when shift == 0
and the dtype is float32/float64: the network then multiplies the small operand (h or g) by
`scale` instead of the big kernel, which saves one pass over every weight. The products
(scale h_i) B_ij and h_i (scale B_ij) are equal up to one rounding, but not in underflow: the
elementwise scale * h flushes before the products do, so the dense sampler does not use it
(`worker.sim.dense`, issue 10 item 6). float16/bfloat16 kernels are always materialised as cast(shift + scale B)
so low-precision weights are exactly the rounded law.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from worker.contract import Scheme
from worker.schemes import law
from worker.sim import rng
from worker.sim.network import KernelLaw, Scalar, constant

_PHI_M2 = 0.022750131948179209  # Phi(-2)
_PHI_WIDTH = 0.95449973610364158  # Phi(2) - Phi(-2)


@dataclass(frozen=True)
class KernelDraw:
    """Kernels of T trials as W = scale * base; base has shape (T, fan_in, fan_out); scale None
    is 1 (a Python float, or a fed scalar tensor of base's dtype inside a compiled graph)."""

    base: tf.Tensor
    scale: Scalar | None

    def materialize(self) -> tf.Tensor:
        """W itself, (T, fan_in, fan_out)."""
        if self.scale is None:
            return self.base
        return self.base * constant(self.scale, self.base.dtype)


def kernel_law(init: Scheme | KernelLaw, fan_in: int, fan_out: int) -> KernelLaw:
    """A `KernelLaw` as it is, or the law of scheme `init` for these fans with Python numbers
    (a shift of 0 and a scale of 1 are None, as `worker.sim.network.split` leaves them out)."""
    if isinstance(init, KernelLaw):
        return init
    spec = law(init, fan_in, fan_out)
    return KernelLaw(
        spec.kind,
        None if spec.shift == 0.0 else spec.shift,
        None if spec.scale == 1.0 else spec.scale,
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
    init: Scheme | KernelLaw, fan_in: int, fan_out: int, dtype: str | tf.DType, *, factored: bool
) -> Scalar | None:
    """The `KernelDraw.scale` that `sample_kernels` returns for these arguments."""
    spec = kernel_law(init, fan_in, fan_out)
    dtype = tf.as_dtype(dtype)
    if factored and spec.shift is None and dtype == rng.draw_dtype(dtype):
        return spec.scale
    return None


def sample_kernels(
    init: Scheme | KernelLaw,
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

    `init`: a weight scheme, or its `KernelLaw` for these fans (numbers fed to a compiled
    graph). Without `factored` (or when the law has a shift, or dtype is float16/bfloat16)
    scale is None and base is W. Trial i's kernel is a function of (key, trial_offset + i,
    stream) only.
    """
    dtype = tf.as_dtype(dtype)
    ddtype = rng.draw_dtype(dtype)
    spec = kernel_law(init, fan_in, fan_out)
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
    if factored and spec.shift is None and dtype == ddtype:
        return KernelDraw(b, spec.scale)  # == kernel_scale(..., factored=True)
    w = b if spec.scale is None else b * constant(spec.scale, ddtype)
    if spec.shift is not None:
        w = w + constant(spec.shift, ddtype)
    return KernelDraw(tf.cast(w, dtype) if dtype != ddtype else w, None)


def draw_kernels(
    init: Scheme | KernelLaw,
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

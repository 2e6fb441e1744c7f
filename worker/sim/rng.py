"""Per-trial counter-based random numbers: TF's stateless Philox with explicit counters.

Contract
--------
Every random number of trial ``t`` (global trial index of a configuration) is a pure function of
``(seed_key, t, stream)``; it does not depend on the chunk, the sub-batch, the process or the
host. We call TF's Philox-4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as
1, 2, 3") through the raw stateless V2 ops, which take the 64-bit key and the 128-bit counter
explicitly::

    StatelessRandomUniformV2(shape=[T, m_pad], key=[seed_key], counter=[t0 * groups, stream],
                             alg=1)

One Philox step yields 128 bits, which TF's uniform kernel turns into 4 float32 (23-bit
mantissas) or 2 float64 (52-bit), consumed in row-major element order. A trial's ``m`` numbers
are padded to ``m_pad = groups * group_size``, so row ``i`` of a ``[T, m_pad]`` draw at counter low
word ``t0 * groups`` starts exactly at step ``(t0 + i) * groups``: it equals a ``[1, m_pad]`` draw
at counter ``(t0 + i) * groups`` bit for bit (``tests/sim/test_rng.py``).

The counter high word selects an independent stream, ``stream = layer * 16 + purpose`` with
`Purpose` below; the low word never carries into it because ``trial_end * groups < 2**64`` is
asserted (`check_counter_range`). The key is the configuration's 63-bit seed key
(`worker.seeding.config_seed_key`).

Normal numbers are Box-Muller (1958) on a trial's own uniform row ``u`` (h = m_pad / 2):

    z[j]     = sqrt(-2 ln(1 - u[j])) * cos(2 pi u[h + j])
    z[h + j] = sqrt(-2 ln(1 - u[j])) * sin(2 pi u[h + j])          j < h

exactly N(0, 1) up to rounding, with the tail cut of TF's own normal kernel (1 - u >= 2^-23 in
float32: |z| <= 5.65, P(|z| > 5.65) = 1.6e-8; float64: |z| <= 8.5). It is the same Philox stream and counter layout as
``StatelessRandomUniformV2``; written as vectorised elementwise ops it runs ~1.9x faster on CPU
than ``StatelessRandomNormalV2`` (whose Box-Muller is scalar), and weights are most of the work.
The transform acts within a trial's row, so the per-trial contract above carries over, with one
caveat: Eigen computes the last (size mod SIMD width) elements of a tensor with scalar code whose
log/sin/cos differ from the SIMD ones in the last bit. `worker.sim.graph.padding_trials` draws
a few extra trials so that tail never belongs to a kept trial.

Numbers are drawn in float64 for float64 configurations and float32 otherwise; the caller casts
to the compute dtype (float16/bfloat16 get float32 draws rounded once, never a low-precision
Box-Muller).
"""

from __future__ import annotations

import math
from enum import IntEnum

import tensorflow as tf

PHILOX = 1  # `alg` of the V2 stateless ops: RNG_ALG_PHILOX
STREAMS_PER_LAYER = 16
COUNTER_LIMIT = 1 << 64


class Purpose(IntEnum):
    """Low 4 bits of a stream id: what a draw is for."""

    WEIGHTS = 0
    BIAS = 1
    INPUT = 2  # h^0 = x, used with layer 0
    READOUT = 3  # r of L = <r, h^depth>, used with layer 0
    COND_FWD = 4  # conditional sampler: the forward product's xi (worker.sim.conditional)
    COND_BWD = 5  # conditional sampler: the backward product's fresh xi'
    COND_INF = 6  # conditional sampler: the product's sign law past a forward overflow
    # 7 reserved for the conditional sampler; 8..15 free.


def stream_id(layer: int, purpose: Purpose) -> int:
    """Counter high word of the draws of `purpose` at `layer` (layer * 16 + purpose)."""
    if layer < 0:
        raise ValueError(f"layer: expected a non-negative integer. Received: {layer}")
    return layer * STREAMS_PER_LAYER + int(purpose)


def stream_tensor(layer: int | tf.Tensor, purpose: Purpose) -> int | tf.Tensor:
    """`stream_id` for a Python layer, or as a uint64 tensor for a layer index tensor."""
    if isinstance(layer, int):
        return stream_id(layer, purpose)
    base = tf.cast(layer, tf.uint64) * tf.constant(STREAMS_PER_LAYER, tf.uint64)
    return base + tf.constant(int(purpose), tf.uint64)


def draw_dtype(dtype: str | tf.DType) -> tf.DType:
    """The dtype random numbers are drawn in for a compute dtype: float64 or float32."""
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


def group_size(dtype: tf.DType) -> int:
    """Numbers per Philox counter step for a draw dtype (float32: 4, float64: 2)."""
    if dtype == tf.float32:
        return 4
    if dtype == tf.float64:
        return 2
    raise ValueError(f"draw dtype: expected float32 or float64. Received: {dtype.name}")


def padded_size(m: int, dtype: tf.DType) -> tuple[int, int]:
    """(m_pad, groups): `m` numbers per trial rounded up to whole Philox steps."""
    g = group_size(dtype)
    groups = max(1, -(-m // g))
    return groups * g, groups


def check_counter_range(trial_end: int, groups: int) -> None:
    """Assert that counters up to trial `trial_end` (exclusive) fit the 64-bit low word."""
    if trial_end < 0 or groups < 1:
        raise ValueError(
            f"counter range: expected trial_end >= 0, groups >= 1. Received: {trial_end}, {groups}"
        )
    if trial_end * groups >= COUNTER_LIMIT:
        raise OverflowError(
            f"Philox counter overflow: trial_end * groups = {trial_end} * {groups} >= 2**64; "
            "trials this far apart cannot share a key"
        )


def _counter(trial_offset: int | tf.Tensor, groups: int, stream: int | tf.Tensor) -> tf.Tensor:
    """[low, high] = [trial_offset * groups, stream] as a uint64 vector.

    A Python int offset is range-checked here; a uint64 tensor (inside a compiled sub-batch)
    must have been checked by the caller with `check_counter_range`. `stream` may be a tensor
    (the layer index of a graph loop).
    """
    if isinstance(trial_offset, int) and isinstance(stream, int):
        check_counter_range(trial_offset, groups)
        return tf.constant([trial_offset * groups, stream], dtype=tf.uint64)
    if isinstance(trial_offset, int):
        check_counter_range(trial_offset, groups)
        low = tf.constant(trial_offset * groups, tf.uint64)
    else:
        low = tf.cast(trial_offset, tf.uint64) * tf.constant(groups, tf.uint64)
    return tf.stack([low, tf.cast(stream, tf.uint64)])


def _shape(n_trials: int | tf.Tensor, m_pad: int) -> tf.Tensor:
    if isinstance(n_trials, int):
        return tf.constant([n_trials, m_pad], dtype=tf.int32)
    return tf.stack([tf.cast(n_trials, tf.int32), tf.constant(m_pad, tf.int32)])


def draw(
    kind: str,
    m: int,
    n_trials: int | tf.Tensor,
    *,
    key: tf.Tensor,
    stream: int | tf.Tensor,
    trial_offset: int | tf.Tensor,
    dtype: tf.DType,
) -> tf.Tensor:
    """`m` numbers per trial for trials [trial_offset, trial_offset + n_trials): shape (T, m).

    kind: "normal" (N(0, 1)) or "uniform" (U[0, 1)); dtype: float32 or float64 (draw dtype).
    key: uint64 tensor of shape [1]. Row i depends only on (key, trial_offset + i, stream).
    """
    if kind not in ("normal", "uniform"):
        raise ValueError(f"kind: expected 'normal' or 'uniform'. Received: {kind!r}")
    m_pad, groups = padded_size(m, dtype)
    if isinstance(trial_offset, int) and isinstance(n_trials, int):
        check_counter_range(trial_offset + n_trials, groups)
    out = tf.raw_ops.StatelessRandomUniformV2(
        shape=_shape(n_trials, m_pad),
        key=key,
        counter=_counter(trial_offset, groups, stream),
        alg=PHILOX,
        dtype=dtype,
    )
    if kind == "normal":
        out = box_muller(out)
    return out if m_pad == m else out[:, :m]


def box_muller(u: tf.Tensor) -> tf.Tensor:
    """N(0, 1) from uniforms u in [0, 1), row by row: (T, 2h) -> (T, 2h) (module doc formula)."""
    h = u.shape[1] // 2
    one = tf.constant(1.0, u.dtype)
    radius = tf.sqrt(tf.constant(-2.0, u.dtype) * tf.math.log(one - u[:, :h]))
    theta = tf.constant(2.0 * math.pi, u.dtype) * u[:, h:]
    return tf.concat([radius * tf.cos(theta), radius * tf.sin(theta)], axis=1)


def key_tensor(seed_key: int) -> tf.Tensor:
    """The Philox key [seed_key] as a uint64 tensor (seed keys are 63-bit, see worker.seeding)."""
    if not 0 <= seed_key < (1 << 63):
        raise ValueError(f"seed_key: expected an integer in [0, 2**63). Received: {seed_key}")
    return tf.constant([seed_key], dtype=tf.uint64)

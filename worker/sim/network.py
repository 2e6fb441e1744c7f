"""Forward and manual backward pass of T trials of a deep fully-connected network, as one graph.

Per trial (all trials of a sub-batch batched along a leading axis T), layers l = 1..D:

    h^0 = x ~ N(0, I)                          (T, batch, input_dim)   stream (0, INPUT)
    W^l ~ init                                 (T, fan_in, fan_out)    stream (l, WEIGHTS)
    b^l ~ N(0, bias_std^2) or 0                (T, 1, width)           stream (l, BIAS)
    z^l = h^{l-1} W^l + b^l                    (T, batch, width)       batched matmul
    h^l = phi(z^l)
    L   = <r, h^D>,  r ~ N(0, I)               (T, batch, width)       stream (0, READOUT)
    g^D = r * phi'(z^D)
    g^l = phi'(z^l) * (g^{l+1} W^{l+1 T})      l = D-1..1, g^l = dL/dz^l

The backward pass reuses the stored kernels (batched matmul), no GradientTape.
When a kernel is factored as W = s B (see `initializers.sample_kernels`), z = (s h) B and
g W^T = (s g) B^T: the scalar multiplies the small operand, never the (T, fan_in, fan_out) one.

Layer 1 (fan_in = input_dim) is built once; layers 2..D, all (width, width), run in a graph
while-loop whose body draws W^l at stream (l, WEIGHTS) from the loop index, so the trace and its
optimisation cost the same for depth 3 or 3000 (an unrolled depth-100 graph has ~7000 ops and
takes ~6 s to trace and optimise, longer than many chunks run). The loop keeps for the backward
pass only what it needs: W^2..W^D (B, in a TensorArray) and phi'(z^l) (not for linear); the
observables of z^l, h^l and g^l are reduced on the fly, one layer of float64 scratch at a time,
as `worker.memory` assumes. W^1 is never needed backward (g^1 uses W^2).

`compiled(config)` returns one `tf.function` per configuration with a dynamic trial axis, so
sub-batches of any size share one trace:

    fn(key: uint64[1], trial_offset: uint64[], n_trials: int32[]) ->
        (act (T, D+1, 4), pre (T, D, 4), grad (T, D, 4))  float64 observables
        (mean, std, mean_sq, max|v|; see `worker.sim.observables`); act[:, 0] is h^0 = x.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeAlias

import tensorflow as tf

from worker.contract import SimConfig
from worker.sim import rng
from worker.sim.activations import activation
from worker.sim.initializers import kernel_scale, sample_kernels
from worker.sim.observables import trial_observables

SubBatchFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
Layer: TypeAlias = int | tf.Tensor


def max_groups(config: SimConfig) -> int:
    """Largest Philox steps per trial of any draw of `config` (for the counter range check)."""
    d = rng.draw_dtype(config.dtype)
    sizes = [config.fans(layer)[0] * config.fans(layer)[1] for layer in range(1, config.depth + 1)]
    sizes += [config.batch * config.input_dim, config.batch * config.width, config.width]
    return max(rng.padded_size(m, d)[1] for m in sizes)


# Eigen evaluates elementwise ops in SIMD packets and the last (size mod packet) elements of a
# tensor with scalar code; the two differ in the last bit for log, exp, sin, erfc, ... (measured
# on TF 2.21 CPU). Those tail elements would be the last trial's, so a trial's bits would depend
# on the sub-batch size. Computing `padding_trials` extra trials (the next trial indices, thrown
# away) puts every tail into a discarded trial: each kept element always takes the packet path.
TAIL_GUARD = 64  # elements; above any CPU packet width (AVX-512 float16: 32 lanes)


def padding_trials(config: SimConfig) -> int:
    """Trials computed past the sub-batch and discarded, so scalar tails never hit kept trials."""
    smallest = min(config.batch * config.width, config.batch * config.input_dim, config.width) // 2
    return -(-TAIL_GUARD // max(1, smallest))


def _scaled(t: tf.Tensor, scale: float) -> tf.Tensor:
    return t if scale == 1.0 else t * tf.constant(scale, t.dtype)


def _times_transpose(g: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """g W^T for g (T, b, n), W (T, k, n) -> (T, b, k).

    Computed as (W g^T)^T: oneDNN's batched matmul streams W faster in this orientation
    (measured ~15% on (200, 100, 100) kernels, memory-bound); for b == 1 the transpose is a
    reshape.
    """
    wg = tf.linalg.matmul(w, g, adjoint_b=True)  # (T, k, b)
    if g.shape[1] == 1:
        return tf.reshape(wg, [-1, 1, w.shape[1]])
    return tf.linalg.matrix_transpose(wg)


def _by_trial(ta: tf.TensorArray) -> tf.Tensor:
    """TensorArray of D (T, 4) entries -> (T, D, 4)."""
    return tf.transpose(ta.stack(), [1, 0, 2])


def forward_backward(
    config: SimConfig, key: tf.Tensor, trial_offset: tf.Tensor | int, n_trials: tf.Tensor | int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The sub-batch computation (see module doc); runs eagerly too, with Python ints."""
    kept = n_trials
    n_trials = n_trials + padding_trials(config)
    dtype = tf.as_dtype(config.dtype)
    ddtype = rng.draw_dtype(dtype)
    act = activation(config.activation)
    depth, width, batch = config.depth, config.width, config.batch
    bias_std = config.bias_std

    def gaussian(m: int, stream: int | tf.Tensor, shape: list[int], std: float = 1.0) -> tf.Tensor:
        flat = rng.draw(
            "normal", m, n_trials, key=key, stream=stream, trial_offset=trial_offset, dtype=ddtype
        )
        if std != 1.0:
            flat = flat * tf.constant(std, ddtype)
        return tf.cast(tf.reshape(flat, [-1, *shape]), dtype)

    def kernel(layer: Layer) -> tuple[tf.Tensor, float]:
        """(B, scale) of W^layer; a tensor `layer` is one of 2..D, all of fans (width, width)."""
        fan_in, fan_out = config.fans(layer if isinstance(layer, int) else 2)
        k = sample_kernels(
            config.init,
            fan_in,
            fan_out,
            n_trials,
            key=key,
            stream=rng.stream_tensor(layer, rng.Purpose.WEIGHTS),
            trial_offset=trial_offset,
            dtype=dtype,
            factored=True,
        )
        return k.base, k.scale

    def forward(
        layer: Layer, h: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """(z, h, phi'(z) or None for linear, B) of `layer` given h^{layer-1}."""
        base, scale = kernel(layer)
        z = tf.linalg.matmul(_scaled(h, scale), base)
        if bias_std != 0.0:
            z = z + gaussian(
                width, rng.stream_tensor(layer, rng.Purpose.BIAS), [1, width], bias_std
            )
        h_new = act.phi(z)
        d = None if act.dphi is None else act.dphi(z, h_new)
        return z, h_new, d, base

    x = gaussian(
        batch * config.input_dim, rng.stream_id(0, rng.Purpose.INPUT), [batch, config.input_dim]
    )
    r = gaussian(batch * width, rng.stream_id(0, rng.Purpose.READOUT), [batch, width])

    ta = functools.partial(tf.TensorArray, size=depth, element_shape=tf.TensorShape([None, 4]))
    pre_ta, act_ta = ta(tf.float64), ta(tf.float64)
    dphi_ta = tf.TensorArray(
        dtype,
        size=depth,
        element_shape=tf.TensorShape([None, batch, width]),
        clear_after_read=False,
    )
    w_ta = tf.TensorArray(
        dtype,
        size=max(depth - 1, 0),
        element_shape=tf.TensorShape([None, width, width]),
        clear_after_read=False,
    )

    z, h, d, _ = forward(1, x)
    # For the identity h^l is z^l: its observables are the pre-activation's, not recomputed.
    identity = act.dphi is None
    pre_ta = pre_ta.write(0, trial_observables(z))
    if not identity:
        act_ta = act_ta.write(0, trial_observables(h))
    if not identity:
        dphi_ta = dphi_ta.write(0, d)
    # W^2..W^D share one law, hence one factored scale (a Python float, not a tensor).
    deep_scale = kernel_scale(config.init, width, width, dtype, factored=True)
    if depth > 1:

        def fwd_body(layer, h, pre_ta, act_ta, dphi_ta, w_ta):  # type: ignore[no-untyped-def]
            z, h, d, base = forward(layer, h)
            i = layer - 1
            if not identity:
                dphi_ta = dphi_ta.write(i, d)
            return (
                layer + 1,
                h,
                pre_ta.write(i, trial_observables(z)),
                act_ta if identity else act_ta.write(i, trial_observables(h)),
                dphi_ta,
                w_ta.write(layer - 2, base),
            )

        _, h, pre_ta, act_ta, dphi_ta, w_ta = tf.while_loop(
            lambda layer, *_: layer <= depth,
            fwd_body,
            [tf.constant(2), h, pre_ta, act_ta, dphi_ta, w_ta],
            parallel_iterations=1,  # one layer's draw temporaries at a time (worker.memory)
        )

    grad_ta = ta(tf.float64)
    g = r if act.dphi is None else r * dphi_ta.read(depth - 1)
    grad_ta = grad_ta.write(depth - 1, trial_observables(g))
    if depth > 1:

        def bwd_body(layer, g, grad_ta):  # type: ignore[no-untyped-def]
            # g^layer = phi'(z^layer) * ((s g^{layer+1}) B^{layer+1 T}); W^{layer+1} is w_ta[layer-1].
            g = _times_transpose(_scaled(g, deep_scale), w_ta.read(layer - 1))
            if act.dphi is not None:
                g = dphi_ta.read(layer - 1) * g
            return layer - 1, g, grad_ta.write(layer - 1, trial_observables(g))

        _, g, grad_ta = tf.while_loop(
            lambda layer, *_: layer >= 1,
            bwd_body,
            [tf.constant(depth - 1), g, grad_ta],
            parallel_iterations=1,
        )

    pre = _by_trial(pre_ta)
    act_obs = tf.concat(
        [trial_observables(x)[:, tf.newaxis, :], pre if identity else _by_trial(act_ta)], axis=1
    )
    return act_obs[:kept], pre[:kept], _by_trial(grad_ta)[:kept]


def sampler_graph(config: SimConfig) -> Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """The sub-batch computation of `config.sampler`: this module's `forward_backward` for
    "dense", `worker.sim.conditional.forward_backward` (same contract) for "conditional"."""
    if config.sampler == "dense":
        return forward_backward
    if config.sampler == "conditional":
        from worker.sim import conditional  # imports this module: bound late

        return conditional.forward_backward
    raise ValueError(f"sampler: expected one of dense, conditional. Received: {config.sampler!r}")


@functools.lru_cache(maxsize=16)
def compiled(config: SimConfig) -> SubBatchFn:
    """The compiled sub-batch function of `config` (one trace per configuration, cached)."""
    graph = sampler_graph(config)

    @tf.function(
        input_signature=[
            tf.TensorSpec([1], tf.uint64),
            tf.TensorSpec([], tf.uint64),
            tf.TensorSpec([], tf.int32),
        ],
        autograph=False,
    )
    def fn(
        key: tf.Tensor, trial_offset: tf.Tensor, n_trials: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return graph(config, key, trial_offset, n_trials)

    return fn

"""The dense sampler: forward and manual backward pass of T trials of a deep fully-connected
network, every weight matrix drawn, as one graph.

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
Kernels are materialised (W = s B drawn, then h W), never factored as z = (s h) B: the
elementwise s h flushes to zero before any product does, which moved float32's collapse layer
(123.42 factored vs 124.72 materialised, issue 10 item 6); the user's network has W itself.
(`_scaled` and `deep_scale` are then the identity; kept so `factored=True` can return where a
configuration provably stays clear of the flush range.)

Layer 1 (fan_in = input_dim) is built once; layers 2..D, all (width, width), run in a graph
while-loop whose body draws W^l at stream (l, WEIGHTS) from the loop index, so the trace and its
optimisation cost the same for depth 3 or 3000 (an unrolled depth-100 graph has ~7000 ops and
takes ~6 s to trace and optimise, longer than many chunks run). The loop keeps for the backward
pass only what it needs: W^2..W^D (B, in a TensorArray) and phi'(z^l) (not for linear); the
observables of z^l, h^l and g^l are reduced on the fly, one layer of float64 scratch at a time,
as `worker.memory` assumes. W^1 is never needed backward (g^1 uses W^2).

`forward_backward(config, key, trial_offset, n_trials)` (config: a `worker.sim.network.Network`,
whose depth, kernel laws and bias std may be fed tensors) returns, for the n_trials trials it is
given, (act (T, D+1, C), pre (T, D, C), grad (T, D, C)) float64 observables (C =
`observables.N_COLUMNS`: mean, std, mean_sq, max|v|, mean_sq's exponent; see
`worker.sim.observables`); act[:, 0] is h^0 = x. `worker.sim.graph` pads, selects this sampler
for `config.sampler == "dense"` and compiles it.
"""

from __future__ import annotations

from typing import TypeAlias

import tensorflow as tf

from worker.sim import rng
from worker.sim.initializers import kernel_scale, sample_kernels
from worker.sim.network import Network, Scalar, constant
from worker.sim.observables import SubBatch, by_trial, observables_array, trial_observables

Layer: TypeAlias = int | tf.Tensor


def _scaled(t: tf.Tensor, scale: Scalar | None) -> tf.Tensor:
    return t if scale is None else t * constant(scale, t.dtype)


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


def forward_backward(
    config: Network, key: tf.Tensor, trial_offset: tf.Tensor | int, n_trials: tf.Tensor | int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The sub-batch computation (see module doc); runs eagerly too, with Python ints."""
    sub = SubBatch.open(config, key, trial_offset, n_trials)
    dtype, act = sub.dtype, sub.act
    depth, width = config.depth, config.width
    bias_std = config.bias_std
    loops = not isinstance(depth, int) or depth > 1  # a fed depth: the loops may run 0 times

    def kernel(layer: Layer) -> tuple[tf.Tensor, Scalar | None]:
        """(B, scale) of W^layer; a tensor `layer` is one of 2..D, all of fans (width, width)."""
        fan_in, fan_out = config.fans(layer if isinstance(layer, int) else 2)
        k = sample_kernels(
            config.law(layer),
            fan_in,
            fan_out,
            n_trials,
            key=key,
            stream=rng.stream_tensor(layer, rng.Purpose.WEIGHTS),
            trial_offset=trial_offset,
            dtype=dtype,
            factored=False,
        )
        return k.base, k.scale

    def forward(
        layer: Layer, h: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """(z, h, phi'(z) or None for linear, B) of `layer` given h^{layer-1}."""
        base, scale = kernel(layer)
        z = tf.linalg.matmul(_scaled(h, scale), base)
        if bias_std is not None:
            bias = sub.normal(
                width, rng.stream_tensor(layer, rng.Purpose.BIAS), [1, width], bias_std
            )
            z = z + tf.cast(bias, dtype)
        h_new = act.phi(z)
        d = None if act.dphi is None else act.dphi(z, h_new)
        return z, h_new, d, base

    x, r = sub.inputs()

    pre_ta, act_ta = observables_array(depth, config.batch), observables_array(depth, config.batch)
    dphi_ta = tf.TensorArray(
        dtype,
        size=depth,
        element_shape=tf.TensorShape([None, config.batch, width]),
        clear_after_read=False,
    )
    w_ta = tf.TensorArray(
        dtype,
        size=depth - 1,
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
    # W^2..W^D share one law, hence one scale (None: kernels are materialised, see module doc).
    deep_scale = kernel_scale(config.deep, width, width, dtype, factored=False)
    if loops:

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

    grad_ta = observables_array(depth, config.batch)
    g = r if act.dphi is None else r * dphi_ta.read(depth - 1)
    grad_ta = grad_ta.write(depth - 1, trial_observables(g))
    if loops:

        def bwd_body(layer, g, grad_ta):  # type: ignore[no-untyped-def]
            # g^layer = phi'(z^layer) * ((s g^{layer+1}) B^{layer+1 T}); W^{layer+1} is w_ta[layer-1].
            g = _times_transpose(_scaled(g, deep_scale), w_ta.read(layer - 1))
            if act.dphi is not None:
                g = dphi_ta.read(layer - 1) * g
            return layer - 1, g, grad_ta.write(layer - 1, trial_observables(g))

        _, g, grad_ta = tf.while_loop(
            lambda layer, *_: layer >= 1,
            bwd_body,
            [tf.convert_to_tensor(depth - 1, tf.int32), g, grad_ta],
            parallel_iterations=1,
        )

    pre = by_trial(pre_ta)
    act_obs = tf.concat(
        [trial_observables(x)[:, tf.newaxis, :], pre if identity else by_trial(act_ta)], axis=1
    )
    return act_obs, pre, by_trial(grad_ta)

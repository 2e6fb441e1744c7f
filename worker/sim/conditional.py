"""Exact O(width) sampler for i.i.d. Gaussian weights: the products, never the matrices.

For W with i.i.d. N(mu, sigma^2) entries, write W = mu J + sigma Xi (J all ones, Xi standard).

Forward. Given h (B x n_in), thin QR h^T = Q R (Q: n_in x k orthonormal columns, R: k x B,
k = min(B, n_in)). Q^T Xi is k x n_out standard normal (rotation invariance), so

    h W = mu (h 1) 1^T + sigma R^T xi,      xi ~ N(0, I) of shape (k, n_out)

has exactly the law of the dense product (Bartlett decomposition / rotation invariance of the
Gaussian ensemble).

Backward. Conditionally on the forward draw, Xi = Q xi + (I - Q Q^T) Xi' with Xi' fresh and
independent of everything downstream (the part of Xi orthogonal to span(Q) is independent of
Q^T Xi). Hence, for the gradient g (B x n_out) arriving from above,

    g W^T = mu (g 1) 1^T + sigma (g xi^T) Q^T + sigma (g Xi'^T)(I - Q Q^T)

and g Xi'^T is sampled like a forward product: thin QR g^T = Q_g R_g, g Xi'^T = R_g^T xi',
xi' ~ N(0, I) of shape (k', n_in), k' = min(B, n_out). Per layer and trial this costs
O(B n + B^2 n) instead of the O(n_in n_out) of drawing W, so widths of 8192 and beyond are cheap.
See Saxe et al. (2014) and Pennington et al. (2017) for the rotation-invariance argument; the
backward identity is the Gaussian conditioning used by Yang (2019), "Tensor Programs I".

Streams: xi of layer l at stream (l, COND_FWD), xi' at (l, COND_BWD); bias, input and readout
use the same streams as the dense sampler, so x, r and b of a trial are identical under both
samplers (only the weights' randomness differs). Linear algebra runs in the draw dtype (float32,
or float64 for float64 configurations); activations in the configuration's dtype.

Range limits. h and g are scaled by a power of two before any norm or QR (`_thin_qr`), so the
sampler overflows where the dense one does. Past a forward overflow (h not finite) Q is 0
(inf * W reveals nothing about W in floating point), so gradients stay finite as the dense
ones do, and z takes the dense matmul's law of +-inf and nan (`_past_overflow`, stream
(l, COND_INF)), on which phi' (0 at nan for relu) and so the gradients depend. It cannot reproduce the dense matmul's
flush-to-zero of subnormal partial sums (dense collapses about a layer earlier in a vanishing
network): `sampler: auto` picks dense where values can reach that range (scheduler.spec).
"""

from __future__ import annotations

import functools
import math

import tensorflow as tf

from worker.sim import rng
from worker.sim.network import Network, Scalar, constant
from worker.sim.observables import (
    SubBatch,
    by_trial,
    observables_array,
    pow2_scale,
    trial_observables,
)


def _thin_qr(a: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Thin QR of a batch of (n, B) matrices, scaled: Q (T, n, k), R_u (T, k, B), k = min(n, B),
    and per trial up = 2^-k (T, 1, 1) with R = R_u up: a is first scaled by a power of two to
    max|a| in [2, 4) (`observables.pow2_scale`, exact), so no norm or QR squares overflow or
    underflow at half the dynamic range; apply `up` after the product with R_u.

    B = 1 has the closed form Q = a / |a|, R = |a| (Q = 0 when a = 0: then nothing about W is
    revealed and the backward pass correctly draws all of g W^T afresh).
    """
    down, up = pow2_scale(tf.reduce_max(tf.abs(a), axis=[-2, -1], keepdims=True))
    a = a * down
    if a.shape[-1] == 1:
        norm = tf.norm(a, axis=-2, keepdims=True)  # (T, 1, 1)
        safe = tf.where(norm > 0, norm, tf.ones_like(norm))
        q = tf.where(norm > 0, a / safe, tf.zeros_like(a))
        return q, norm, up
    q, r = tf.linalg.qr(a, full_matrices=False)
    return q, r, up


def _past_overflow(
    hd: tf.Tensor, z: tf.Tensor, u: tf.Tensor, log_p: tf.Tensor, log_q: tf.Tensor
) -> tf.Tensor:
    """z of the rows whose input is not finite, with the dense matmul's law; z elsewhere.

    hd (T, B, n_in), z and u (T, B, n_out), u ~ U[0, 1). In z_bj = sum_i h_bi W_ij every
    infinite h_bi contributes an infinite product of sign sign(h_bi) sign(W_ij), and W_ij > 0
    with probability p = Phi(mu / sigma) independently (log_p, log_q = log p, log(1 - p),
    scalars in z's dtype; nothing about W is revealed: Q = 0, see `forward_backward`). So with
    m+ (m-) entries +inf (-inf), z_bj = +inf with probability P+ = p^m+ (1-p)^m-, -inf with P- = (1-p)^m+ p^m-, and nan otherwise (inf - inf); a nan
    in h_b makes the row nan. Exact per row; rows of a batch are drawn independently given their
    inputs (the dense rows share the signs of W, which only matters when two rows overflow at
    the same entries).
    """
    inf = tf.constant(float("inf"), z.dtype)
    nan = tf.constant(float("nan"), z.dtype)
    m_pos = tf.reduce_sum(tf.cast(tf.equal(hd, inf), z.dtype), axis=-1, keepdims=True)
    m_neg = tf.reduce_sum(tf.cast(tf.equal(hd, -inf), z.dtype), axis=-1, keepdims=True)
    has_nan = tf.reduce_any(tf.math.is_nan(hd), axis=-1, keepdims=True)

    def log_prob(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:  # a log p + b log q, 0 log 0 = 0
        zero = tf.zeros_like(a)
        return tf.where(a > 0, a * log_p, zero) + tf.where(b > 0, b * log_q, zero)

    p_plus = tf.exp(log_prob(m_pos, m_neg))
    p_minus = tf.exp(log_prob(m_neg, m_pos))
    signed = tf.where(u < p_plus, inf, tf.where(u < p_plus + p_minus, -inf, nan))
    return tf.where(has_nan, nan, tf.where(m_pos + m_neg > 0, signed, z))


def forward_backward(
    config: Network, key: tf.Tensor, trial_offset: tf.Tensor | int, n_trials: tf.Tensor | int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Same contract as `worker.sim.dense.forward_backward`, with the conditional sampler."""
    depth, width, batch = config.depth, config.width, config.batch
    loops = not isinstance(depth, int) or depth > 1  # a fed depth: the loops may run 0 times
    for where, lw in (("layer 1", config.first), ("layers 2..depth", config.deep)):
        if lw.kind != "normal":
            raise ValueError(
                f"sampler: 'conditional' is exact only for i.i.d. Gaussian weights. "
                f"Received: {lw.kind} weights ({where})"
            )
    sub = SubBatch.open(config, key, trial_offset, n_trials)
    dtype, ddtype, act = sub.dtype, sub.draw_dtype, sub.act

    def layer_law(layer: int | tf.Tensor) -> tuple[Scalar | None, tf.Tensor]:
        """(mu or None for 0, sigma) of `layer`, in the draw dtype."""
        lw = config.law(layer)
        return lw.shift, constant(1.0 if lw.scale is None else lw.scale, ddtype)

    def sign_law(mu: Scalar | None, sigma: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(log P(W_ij > 0), log P(W_ij < 0)) = log Phi(+-mu / sigma), in the draw dtype (each
        from its own erfc, so neither loses digits to 1 - p; nan for mu = sigma = 0)."""
        if mu is None:
            half = tf.constant(math.log(0.5), ddtype)
            return half, half
        t = constant(mu, ddtype) / (sigma * math.sqrt(2.0))
        return tf.math.log(0.5 * tf.math.erfc(-t)), tf.math.log(0.5 * tf.math.erfc(t))

    def forward(layer: int | tf.Tensor, h: tf.Tensor, n_in: int):  # type: ignore[no-untyped-def]
        """(z, h', phi'(z), Q, xi) of `layer` given h^{layer-1} (T, B, n_in) in dtype."""
        mu, sigma = layer_law(layer)
        hd = tf.cast(h, ddtype)
        q, r, up = _thin_qr(tf.linalg.matrix_transpose(hd))  # (T, n_in, k), (T, k, B)
        # A non-finite h (past a forward overflow) reveals nothing about W in floating point
        # (inf * W is +-inf or nan whatever W is): Q = 0, so the backward draws all of g W^T
        # afresh and stays finite, as the dense sampler's finite W keeps it.
        finite = tf.reduce_all(tf.math.is_finite(hd), axis=[-2, -1], keepdims=True)
        q = tf.where(finite, q, tf.zeros_like(q))
        k = min(batch, n_in)
        xi = sub.normal(k * width, rng.stream_tensor(layer, rng.Purpose.COND_FWD), [k, width])
        z = tf.linalg.matmul(r, xi, adjoint_a=True) * sigma * up
        if mu is not None:
            z = z + constant(mu, ddtype) * tf.reduce_sum(hd, axis=-1, keepdims=True)
        if not isinstance(layer, int):  # h^0 = x is finite: layers 2..D only
            u = rng.draw(
                "uniform",
                batch * width,
                sub.n_trials,
                key=sub.key,
                stream=rng.stream_tensor(layer, rng.Purpose.COND_INF),
                trial_offset=sub.trial_offset,
                dtype=ddtype,
            )
            log_p, log_q = sign_law(mu, sigma)
            z = _past_overflow(hd, z, tf.reshape(u, [-1, batch, width]), log_p, log_q)
        if config.bias_std is not None:
            b = sub.normal(width, rng.stream_tensor(layer, rng.Purpose.BIAS), [1, width])
            z = z + b * constant(config.bias_std, ddtype)
        z = tf.cast(z, dtype)
        h_new = act.phi(z)
        d = act.dphi(z, h_new) if act.dphi is not None else tf.ones_like(z)
        return z, h_new, d, q, xi

    def backward(layer: int | tf.Tensor, g: tf.Tensor, q: tf.Tensor, xi: tf.Tensor, n_in: int):  # type: ignore[no-untyped-def]
        """g W^T (T, B, n_in) of `layer`, given g = dL/dz^layer and the forward's (Q, xi)."""
        mu, sigma = layer_law(layer)
        gd = tf.cast(g, ddtype)
        known = tf.linalg.matmul(tf.linalg.matmul(gd, xi, adjoint_b=True), q, adjoint_b=True)
        qg, rg, up_g = _thin_qr(tf.linalg.matrix_transpose(gd))  # (T, n_out, k'), (T, k', B)
        del qg
        k2 = min(batch, width)
        fresh_xi = sub.normal(k2 * n_in, rng.stream_tensor(layer, rng.Purpose.COND_BWD), [k2, n_in])
        fresh = tf.linalg.matmul(rg, fresh_xi, adjoint_a=True) * up_g  # (T, B, n_in)
        fresh = fresh - tf.linalg.matmul(tf.linalg.matmul(fresh, q), q, adjoint_b=True)
        out = (known + fresh) * sigma
        if mu is not None:
            out = out + constant(mu, ddtype) * tf.reduce_sum(gd, axis=-1, keepdims=True)
        return tf.cast(out, dtype)

    x, r = sub.inputs()

    keep = functools.partial(tf.TensorArray, size=depth, clear_after_read=False)
    k_deep = min(batch, width)
    pre_ta, act_ta = observables_array(depth, config.batch), observables_array(depth, config.batch)
    dphi_ta = keep(dtype, element_shape=tf.TensorShape([None, batch, width]))
    q_ta = keep(ddtype, element_shape=tf.TensorShape([None, width, k_deep]))
    xi_ta = keep(ddtype, element_shape=tf.TensorShape([None, k_deep, width]))

    z, h, d, q1, xi1 = forward(1, x, config.input_dim)
    pre_ta = pre_ta.write(0, trial_observables(z))
    act_ta = act_ta.write(0, trial_observables(h))
    dphi_ta = dphi_ta.write(0, d)
    if loops:

        def fwd_body(layer, h, pre_ta, act_ta, dphi_ta, q_ta, xi_ta):  # type: ignore[no-untyped-def]
            z, h, d, q, xi = forward(layer, h, width)
            i = layer - 1
            return (
                layer + 1,
                h,
                pre_ta.write(i, trial_observables(z)),
                act_ta.write(i, trial_observables(h)),
                dphi_ta.write(i, d),
                q_ta.write(i, q),
                xi_ta.write(i, xi),
            )

        _, h, pre_ta, act_ta, dphi_ta, q_ta, xi_ta = tf.while_loop(
            lambda layer, *_: layer <= depth,
            fwd_body,
            [tf.constant(2), h, pre_ta, act_ta, dphi_ta, q_ta, xi_ta],
            parallel_iterations=1,
        )

    grad_ta = observables_array(depth, config.batch)
    g = r * dphi_ta.read(depth - 1)
    grad_ta = grad_ta.write(depth - 1, trial_observables(g))
    if loops:

        def bwd_body(layer, g, grad_ta):  # type: ignore[no-untyped-def]
            # g^layer = phi'(z^layer) * (g^{layer+1} W^{layer+1 T}); (Q, xi) of layer+1 at index layer.
            gw = backward(layer + 1, g, q_ta.read(layer), xi_ta.read(layer), width)
            g = dphi_ta.read(layer - 1) * gw
            return layer - 1, g, grad_ta.write(layer - 1, trial_observables(g))

        _, g, grad_ta = tf.while_loop(
            lambda layer, *_: layer >= 1,
            bwd_body,
            [tf.convert_to_tensor(depth - 1, tf.int32), g, grad_ta],
            parallel_iterations=1,
        )
    del q1, xi1  # W^1 is never needed backward (g^1 = phi'(z^1) * g^2 W^{2 T})

    act_obs = tf.concat([trial_observables(x)[:, tf.newaxis, :], by_trial(act_ta)], axis=1)
    return act_obs, by_trial(pre_ta), by_trial(grad_ta)

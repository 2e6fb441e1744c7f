"""Activations phi and their derivatives phi', elementwise, in the compute dtype.

Keras definitions (keras/src/activations/activations.py); the backward pass of
`worker.sim.dense` and `worker.sim.conditional` use the explicit derivative, written in terms of z and, where cheaper and
as accurate, of h = phi(z) (tested against tf.GradientTape in tests/sim/test_activations.py):

    linear      z                                   1
    tanh        tanh z                              1 - h^2
    sigmoid     s = 1 / (1 + e^-z)                  h (1 - h)
    relu        max(z, 0)                           [z > 0]  (TF's ReluGrad: 0 at z = 0)
    leaky_relu  z if z > 0 else alpha z             1 if z > 0 else alpha
    elu         z if z > 0 else alpha (e^z - 1)     1 if z > 0 else alpha e^z
    selu        lambda * elu_{alpha}(z), lambda = 1.0507009873554805, alpha = 1.6732632423543772
    gelu        z Phi(z)  (exact erf form)          Phi(z) + z phi(z),  Phi(z) = erfc(-z/sqrt2)/2
    swish       z s(z)                              s (1 + z (1 - s))
    softplus    log(1 + e^z)                        s(z)

Branches are evaluated on min(z, 0) where an unselected branch could overflow, so no inf or NaN
appears that the input did not carry (overflow in the data is data, in a dead branch it is not).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from worker.contract import ACTIVATIONS, Scheme
from worker.sim.network import Scalar, alpha_of, constant

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

Fn = Callable[[tf.Tensor], tf.Tensor]
DFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


@dataclass(frozen=True)
class Activation:
    """phi(z) and phi'(z, h) with h = phi(z); `dphi` is None for the identity (phi' = 1)."""

    name: str
    phi: Fn
    dphi: DFn | None


def _c(value: Scalar, like: tf.Tensor) -> tf.Tensor:
    return constant(value, like.dtype)


def _elu_phi(alpha: Scalar, scale: float) -> Fn:
    # selu as tf.nn.selu computes it: scale * alpha is one constant, rounded to the dtype once
    # (rounding alpha and scale separately and multiplying twice doubles bfloat16's bias);
    # elu's alpha may be a fed tensor (scale 1)
    slope = alpha if scale == 1.0 else alpha * scale

    def phi(z: tf.Tensor) -> tf.Tensor:
        neg = _c(slope, z) * tf.math.expm1(tf.minimum(z, _c(0.0, z)))
        pos = z if scale == 1.0 else _c(scale, z) * z
        return tf.where(z > _c(0.0, z), pos, neg)

    return phi


def _elu_dphi(alpha: Scalar, scale: float) -> DFn:
    # elu's alpha may be a fed tensor (scale 1); selu's alpha * scale is one rounded constant
    slope = alpha if scale == 1.0 else alpha * scale

    def dphi(z: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        neg = _c(slope, z) * tf.exp(tf.minimum(z, _c(0.0, z)))
        return tf.where(z > _c(0.0, z), _c(scale, z) * tf.ones_like(z), neg)

    return dphi


def _gelu_phi(z: tf.Tensor) -> tf.Tensor:
    # tf.nn.gelu(approximate=False)'s formula; written out because its float64 path is only
    # float32-accurate (relative error ~1e-6) in TF 2.21, and this core promises float64.
    return _c(0.5, z) * z * tf.math.erfc(-z * _c(1.0 / math.sqrt(2.0), z))


def _gelu_dphi(z: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
    cdf = _c(0.5, z) * tf.math.erfc(-z * _c(1.0 / math.sqrt(2.0), z))
    pdf = tf.exp(_c(-0.5, z) * tf.square(z)) * _c(1.0 / math.sqrt(2.0 * math.pi), z)
    return cdf + z * pdf


def _swish_dphi(z: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
    s = tf.sigmoid(z)
    return s * (_c(1.0, z) + z * (_c(1.0, z) - s))


def activation(act: Scheme | str, alpha: Scalar | None = None) -> Activation:
    """phi and phi' of the activation `act` (see the module table); `alpha` (leaky_relu, elu)
    overrides the scheme's, and may be a scalar tensor of the compute dtype (a fed number)."""
    scheme = Scheme(act) if isinstance(act, str) else act
    name = scheme.name
    if name == "linear":
        return Activation(name, tf.identity, None)
    if name == "tanh":
        return Activation(name, tf.tanh, lambda z, h: _c(1.0, h) - tf.square(h))
    if name == "sigmoid":
        return Activation(name, tf.sigmoid, lambda z, h: h * (_c(1.0, h) - h))
    if name == "relu":
        return Activation(name, tf.nn.relu, lambda z, h: tf.cast(z > _c(0.0, z), z.dtype))
    if name == "leaky_relu":
        a = alpha_of(scheme) if alpha is None else alpha
        return Activation(
            name,
            lambda z: tf.where(z > _c(0.0, z), z, _c(a, z) * z),
            lambda z, h: tf.where(z > _c(0.0, z), tf.ones_like(z), _c(a, z) * tf.ones_like(z)),
        )
    if name == "elu":
        a = alpha_of(scheme) if alpha is None else alpha
        return Activation(name, _elu_phi(a, 1.0), _elu_dphi(a, 1.0))
    if name == "selu":
        return Activation(name, _elu_phi(SELU_ALPHA, SELU_SCALE), _elu_dphi(SELU_ALPHA, SELU_SCALE))
    if name == "gelu":
        return Activation(name, _gelu_phi, _gelu_dphi)
    if name == "swish":
        return Activation(name, lambda z: z * tf.sigmoid(z), _swish_dphi)
    if name == "softplus":
        return Activation(name, tf.nn.softplus, lambda z, h: tf.sigmoid(z))
    raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}. Received: {name!r}")

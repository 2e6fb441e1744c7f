"""phi against TF/Keras reference functions, phi' against tf.GradientTape of phi."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from worker.contract import ACTIVATIONS, Scheme, canonical_scheme
from worker.sim.activations import SELU_ALPHA, SELU_SCALE, activation

pytestmark = pytest.mark.sim

Z = np.concatenate([np.linspace(-12.0, 12.0, 481), [-700.0, -80.0, -1e-8, 0.0, 1e-8, 80.0, 700.0]])


def reference(name: str, alpha: float, z: np.ndarray) -> np.ndarray:
    """phi in numpy/scipy from the textbook definitions (float64)."""
    if name == "linear":
        return z
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return special.expit(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if name == "elu":
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
    if name == "selu":
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))
    if name == "gelu":
        return z * special.ndtr(z)
    if name == "swish":
        return z * special.expit(z)
    if name == "softplus":
        return np.logaddexp(0.0, z)
    raise AssertionError(name)


CASES = [(name, {}) for name in ACTIVATIONS] + [
    ("leaky_relu", {"alpha": 0.01}),
    ("elu", {"alpha": 0.5}),
]
IDS = [f"{n}{'-' + str(p['alpha']) if p else ''}" for n, p in CASES]


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_phi_matches_definition(name: str, params: dict[str, float]) -> None:
    scheme = canonical_scheme(ACTIVATIONS, name, params)
    alpha = float(dict(scheme.params).get("alpha", 0.0))
    got = activation(scheme).phi(tf.constant(Z, tf.float64)).numpy()
    np.testing.assert_allclose(got, reference(name, alpha, Z), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_derivative_matches_gradient_tape(name: str, params: dict[str, float]) -> None:
    scheme = canonical_scheme(ACTIVATIONS, name, params)
    act = activation(scheme)
    z = tf.constant(Z, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(z)
        h = act.phi(z)
    want = tape.gradient(h, z).numpy()
    got = np.ones_like(Z) if act.dphi is None else act.dphi(z, h).numpy()
    # Kinks (relu family at 0) are conventions: TF's gradient is that of the branch chosen at 0.
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-300)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16])
def test_low_precision_runs_and_stays_finite(name: str, dtype: tf.DType) -> None:
    act = activation(Scheme(name))
    z = tf.constant(np.linspace(-8, 8, 33), dtype)
    h = act.phi(z)
    assert h.dtype == dtype
    d = act.dphi(z, h) if act.dphi is not None else tf.ones_like(z)
    ref = reference(name, float(ACTIVATIONS[name].get("alpha", 0.0)), np.linspace(-8, 8, 33))
    tol = {tf.float32: 1e-5, tf.float16: 5e-3, tf.bfloat16: 3e-2}[dtype]
    np.testing.assert_allclose(tf.cast(h, tf.float64).numpy(), ref, rtol=tol, atol=tol)
    assert np.all(np.isfinite(tf.cast(d, tf.float64).numpy()))


def test_gelu_is_the_exact_erf_form() -> None:
    z = tf.constant([1.5], tf.float64)
    got = float(activation(Scheme("gelu")).phi(z)[0])
    assert got == pytest.approx(0.5 * 1.5 * (1 + math.erf(1.5 / math.sqrt(2))), rel=1e-14)
    assert got != pytest.approx(float(tf.nn.gelu(z, approximate=True)[0]), rel=1e-6)


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="activation: expected one of"):
        activation(Scheme("mish"))


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16, tf.float32])
def test_selu_rounds_its_constants_as_tf_nn_selu_does(dtype: tf.DType) -> None:
    """scale * alpha is one constant rounded once (TF's Selu functor), so the mean square of
    N(0, 1) inputs carries tf.nn.selu's rounding bias (bfloat16: -0.42%), not twice it (-0.83%
    before: alpha and scale rounded separately), and every value is within 4 ulp of the exact
    selu (tf.nn.selu's exp(z) - 1 is not, near 0: we keep expm1)."""
    z64 = np.random.default_rng(0).standard_normal(200_000)
    z = tf.constant(z64, dtype)
    exact = reference("selu", 0.0, tf.cast(z, tf.float64).numpy())
    got = tf.cast(activation(Scheme("selu")).phi(z), tf.float64).numpy()
    want = tf.cast(tf.nn.selu(z), tf.float64).numpy()
    ulp = {tf.bfloat16: 2.0**-7, tf.float16: 2.0**-10, tf.float32: 2.0**-23}[dtype]
    np.testing.assert_allclose(got, exact, rtol=4 * ulp, atol=1e-6 * ulp)
    bias_ours = np.mean(got**2) / np.mean(exact**2) - 1.0
    bias_tf = np.mean(want**2) / np.mean(exact**2) - 1.0
    assert abs(bias_ours - bias_tf) <= 0.15 * abs(bias_tf), (bias_ours, bias_tf)

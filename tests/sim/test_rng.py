"""The per-trial counter contract of worker.sim.rng, checked on TF's own kernels."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from worker.sim import rng

pytestmark = pytest.mark.sim

KEY = rng.key_tensor(0x5EED_1234_ABCD)


def guarded(kind: str, m: int, n: int, t0: int, stream: int, dtype: tf.DType) -> np.ndarray:
    """n rows, drawn with enough extra rows that Eigen's scalar tail (the last < 64 elements of
    the Box-Muller ops) falls in discarded rows, as worker.sim.graph.padding_trials does."""
    half = rng.padded_size(m, dtype)[0] // 2
    extra = -(-64 // half)
    out = rng.draw(kind, m, n + extra, key=KEY, stream=stream, trial_offset=t0, dtype=dtype)
    return out.numpy()[:n]


@pytest.mark.parametrize("kind", ["normal", "uniform"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("m", [1, 6, 7, 64, 1001])
def test_rows_equal_single_trial_draws(kind: str, dtype: tf.DType, m: int) -> None:
    """Row i of a batched draw at offset t0 == the one-trial draw at offset t0 + i, bit for bit."""
    t0, n, stream = 17, 9, rng.stream_id(3, rng.Purpose.WEIGHTS)
    batched = guarded(kind, m, n, t0, stream, dtype)
    assert batched.shape == (n, m)
    for i in range(n):
        np.testing.assert_array_equal(batched[i], guarded(kind, m, 1, t0 + i, stream, dtype)[0])


@pytest.mark.parametrize("m", [1, 7, 1001])
def test_uniform_rows_need_no_guard(m: int) -> None:
    """The Philox uniform kernel itself is exact per element: no tail effect at all."""
    batched = rng.draw(
        "uniform", m, 9, key=KEY, stream=1, trial_offset=17, dtype=tf.float32
    ).numpy()
    for i in range(9):
        one = rng.draw("uniform", m, 1, key=KEY, stream=1, trial_offset=17 + i, dtype=tf.float32)
        np.testing.assert_array_equal(batched[i], one.numpy()[0])


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_normal_is_box_muller_of_the_uniform_stream(dtype: tf.DType) -> None:
    """The documented transform, recomputed in numpy (libm vs Eigen: a few ulp), and the law
    (Kolmogorov-Smirnov against N(0, 1) on 2^17 numbers, p > 1e-4)."""
    from scipy import stats

    m, n = 4096, 32
    u = (
        rng.draw("uniform", m, n, key=KEY, stream=6, trial_offset=0, dtype=dtype)
        .numpy()
        .astype(np.float64)
    )
    z = rng.draw("normal", m, n, key=KEY, stream=6, trial_offset=0, dtype=dtype).numpy()
    h = m // 2
    radius = np.sqrt(-2 * np.log1p(-u[:, :h]))
    want = np.concatenate(
        [radius * np.cos(2 * np.pi * u[:, h:]), radius * np.sin(2 * np.pi * u[:, h:])], axis=1
    )
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    np.testing.assert_allclose(z, want, rtol=tol, atol=tol)
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-4
    assert np.abs(z).max() <= 5.65 if dtype == tf.float32 else True


def test_graph_draw_with_tensor_offsets_matches_eager() -> None:
    """Inside a tf.function, with offset, size and stream as tensors, the bits do not change."""
    m = 37

    @tf.function(autograph=False)
    def f(t0: tf.Tensor, n: tf.Tensor, layer: tf.Tensor) -> tf.Tensor:
        stream = rng.stream_tensor(layer, rng.Purpose.BIAS)
        return rng.draw("normal", m, n, key=KEY, stream=stream, trial_offset=t0, dtype=tf.float32)

    got = f(tf.constant(5, tf.uint64), tf.constant(4), tf.constant(7)).numpy()
    want = rng.draw(
        "normal",
        m,
        4,
        key=KEY,
        stream=rng.stream_id(7, rng.Purpose.BIAS),
        trial_offset=5,
        dtype=tf.float32,
    )
    np.testing.assert_array_equal(got, want.numpy())


def test_streams_and_keys_are_independent() -> None:
    a = rng.draw("normal", 256, 2, key=KEY, stream=0, trial_offset=0, dtype=tf.float32).numpy()
    b = rng.draw("normal", 256, 2, key=KEY, stream=1, trial_offset=0, dtype=tf.float32).numpy()
    c = rng.draw(
        "normal", 256, 2, key=rng.key_tensor(1), stream=0, trial_offset=0, dtype=tf.float32
    )
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c.numpy())
    # Different trials of one stream differ too (rows are not repeated).
    assert not np.array_equal(a[0], a[1])
    # Weak independence check: correlation of two streams ~ N(0, 1/512), far below 4 SE.
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 4 / np.sqrt(a.size)


def test_stream_ids_are_disjoint() -> None:
    ids = {rng.stream_id(layer, p) for layer in range(50) for p in rng.Purpose}
    assert len(ids) == 50 * len(rng.Purpose)
    assert rng.stream_id(2, rng.Purpose.BIAS) == 33


def test_counter_overflow_and_key_range_are_refused() -> None:
    rng.check_counter_range((1 << 62) - 1, 4)
    with pytest.raises(OverflowError):
        rng.check_counter_range(1 << 62, 4)
    with pytest.raises(OverflowError):
        rng.draw("normal", 8, 2, key=KEY, stream=0, trial_offset=(1 << 63) - 1, dtype=tf.float32)
    with pytest.raises(ValueError, match="seed_key"):
        rng.key_tensor(1 << 63)
    with pytest.raises(ValueError, match="seed_key"):
        rng.key_tensor(-1)


def test_padding_rounds_to_whole_philox_steps() -> None:
    assert rng.padded_size(7, tf.float32) == (8, 2)
    assert rng.padded_size(8, tf.float32) == (8, 2)
    assert rng.padded_size(7, tf.float64) == (8, 4)
    assert rng.draw_dtype("bfloat16") == tf.float32
    assert rng.draw_dtype("float64") == tf.float64

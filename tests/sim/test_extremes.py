"""Per-trial observables exact up to the dtype's own limits (issue 10, items 3 and 4).

float64 values far outside [2^-400, 2^480] are scaled by a power of two before any square, so no
sum, square or variance overflows or underflows before the values do; a trial is non-finite
exactly when one of its values is.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import tensorflow as tf

from worker.contract import ChunkTask, Scheme, SimConfig
from worker.persist import record_from_row, record_values
from worker.sim import graph, rng
from worker.sim.initializers import draw_kernels
from worker.sim.network import Network
from worker.sim.observables import SubBatch, trial_observables
from worker.sim.runner import simulate_chunk


def _obs(values: list[list[float]], dtype: tf.DType = tf.float64) -> np.ndarray:
    """trial_observables with mean and std scaled back (as `QuantityTrials.from_array`)."""
    obs = np.asarray(trial_observables(tf.constant(values, dtype)).numpy())
    half = (obs[:, 4] / 2).astype(np.int32)
    obs[:, 0], obs[:, 1] = np.ldexp(obs[:, 0], half), np.ldexp(obs[:, 1], half)
    return obs


def _exact_mean_sq(row: np.ndarray) -> Fraction:
    """A trial's mean_sq, column 2 times 2^(column 4), as an exact rational."""
    assert row[4] == int(row[4])
    return Fraction(float(row[2])) * Fraction(2) ** int(row[4])


def _close(a: Fraction, b: Fraction, rel: float) -> bool:
    return abs(a - b) <= Fraction(rel) * abs(b)


def test_huge_float64_values_keep_mean_and_std_and_stay_finite() -> None:
    v = np.array([[3e200, -4e200, 1e200, 2e200]])
    row = _obs(v.tolist())[0]
    mean, std, _, peak, _ = row
    ref = v[0] / 1e200
    assert math.isclose(mean, 1e200 * ref.mean(), rel_tol=1e-15)
    assert math.isclose(std, 1e200 * ref.std(), rel_tol=1e-15)
    # 7.5e400 exceeds float64: held in scaled form, exact
    want = sum(Fraction(float(x)) ** 2 for x in v[0]) / 4
    assert _close(_exact_mean_sq(row), want, 1e-15)
    assert peak == 4e200


def test_mean_sq_up_to_float64_max() -> None:
    v = [[3e153, 4e153]]  # mean_sq 1.25e307: the unscaled sum of squares overflows
    row = _obs(v)[0]
    assert _close(_exact_mean_sq(row), Fraction(12.5e306), 1e-15)
    assert math.isclose(math.ldexp(row[2], int(row[4])), 12.5e306, rel_tol=1e-15)


def test_tiny_float64_values_have_nonzero_std_and_mean_sq() -> None:
    v = np.array([[3e-160, -4e-160, 0.0, 1e-160]])
    row = _obs(v.tolist())[0]
    mean, std, _, peak, _ = row
    ref = v[0] * 1e160
    assert math.isclose(mean, 1e-160 * ref.mean(), rel_tol=1e-15)
    assert math.isclose(std, 1e-160 * ref.std(), rel_tol=1e-15)
    # 6.5e-320 is below float64's normal range (TF on CPU flushes subnormals): scaled form, exact
    want = sum(Fraction(float(x)) ** 2 for x in v[0]) / 4
    assert _close(_exact_mean_sq(row), want, 1e-15)
    assert peak == 4e-160
    tiny = np.array([[2.0**-1000, -(2.0**-1020)]])  # mean_sq ~ 2^-2001: no float64 at all
    want = (Fraction(2) ** -2000 + Fraction(2) ** -2040) / 2
    assert _close(_exact_mean_sq(_obs(tiny.tolist())[0]), want, 1e-15)
    v = np.array([[3e-154, -4e-154, 0.0, 1e-154]])  # mean_sq 6.5e-308: 1e-154^2 is subnormal
    want = sum(Fraction(float(x)) ** 2 for x in v[0]) / 4
    assert _close(_exact_mean_sq(_obs(v.tolist())[0]), want, 1e-15)


def test_non_finite_values_make_the_trial_non_finite() -> None:
    obs = _obs([[1.0, math.inf], [1.0, math.nan], [1e308, 1e308]])
    assert obs[0, 3] == math.inf and obs[1, 3] == math.inf
    assert math.isfinite(obs[2, 3]) and math.isclose(obs[2, 0], 1e308)


def test_ordinary_values_reduce_unscaled_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for scale, dtype in (
        (1.0, tf.float64),
        (1e100, tf.float64),
        (1e-100, tf.float64),
        (1.0, tf.float32),
        (1e38, tf.float32),
        (1e-44, tf.float32),
    ):
        v = tf.constant(rng.standard_normal((3, 50)) * scale, dtype)
        xd = tf.cast(v, tf.float64)
        mean = tf.reduce_mean(xd, axis=1)
        ref = np.stack(
            [
                mean.numpy(),
                tf.sqrt(tf.reduce_mean(tf.square(xd - mean[:, None]), axis=1)).numpy(),
                tf.reduce_mean(tf.square(xd), axis=1).numpy(),
            ],
            axis=1,
        )
        obs = trial_observables(v).numpy()
        assert np.array_equal(obs[:, :3], ref), (scale, dtype)
        assert np.all(obs[:, 4] == 0.0)


def _config(std: float, depth: int) -> SimConfig:
    return SimConfig(
        init=Scheme("normal", (("mean", 0.0), ("std", std))),
        activation=Scheme("linear"),
        depth=depth,
        width=100,
        input_dim=100,
        dtype="float64",
        sampler="dense",
    )


def test_float64_exploding_runs_to_true_overflow_and_stores() -> None:
    """linear N(0, 1), width 100, float64: values overflow at ~309 layers (E log10|z| grows by
    ~1 per layer); the run completes and every record maps to storable columns."""
    cfg = _config(1.0, 320)
    out = simulate_chunk(ChunkTask(cfg, seed_key=5, chunk_index=0, trial_start=0, n_trials=12))
    pre = {r.layer: r for r in out.records if r.quantity == "preactivation"}
    first = [layer for layer, r in sorted(pre.items()) for _ in range(r.n_first_nonfinite)]
    assert len(first) == 12
    median = float(np.median(first))
    assert abs(median - 309) <= 2, median
    for r in out.records:
        back = record_from_row(type("Row", (), record_values(r))())
        assert back.n_finite == r.n_finite


def test_float64_vanishing_reports_nonzero_std_wherever_values_are_nonzero() -> None:
    """linear N(0, 0.05^2), width 100, float64: E mean_sq(z^l) = 0.25^l E mean(x^2) halves
    log2|z| per layer; the values flush at ~1022 layers, their squares' mean leaves float64 at
    ~537. Wherever a trial has a nonzero value, std and mean_sq are nonzero and mean_sq is on
    the theory's line: log2 E mean_sq = -2 l within 6 SD of its log-normal spread (per layer
    ln chi^2_100 / 100 has variance 2/100, so SD(log2) = sqrt(0.02 l) / ln 2)."""
    cfg = _config(0.05, 1100)
    out = simulate_chunk(ChunkTask(cfg, seed_key=6, chunk_index=0, trial_start=0, n_trials=4))
    checked = 0
    for r in out.records:
        if r.n_finite == r.n_collapsed or r.layer == 0:
            continue
        # some trial has a nonzero value: its std is nonzero (std <= max|v| is representable)
        assert r.std.value > 0, (r.layer, r.quantity)
        assert r.mean_sq.mean > 0, (r.layer, r.quantity)
        if r.quantity == "preactivation":
            log2_msq = math.log2(r.mean_sq.mean) + r.mean_sq.exp2
            sd = math.sqrt(0.02 * r.layer) / math.log(2)
            assert abs(log2_msq + 2 * r.layer) <= 6 * sd + 2, (r.layer, log2_msq)
            checked += r.layer > 540
    assert checked > 400  # hundreds of layers where mean_sq has no float64


def test_largest_float64_values_in_a_graph() -> None:
    """max|v| >= 2^1023: the scale 2^-1023 would be subnormal; one normal factor, even after
    grappler's rewrites in a compiled graph."""
    fn = tf.function(trial_observables)
    obs = fn(tf.constant([[1.5e308, -1e308], [1e-300, 3e-300]], tf.float64)).numpy()
    half = (obs[:, 4] / 2).astype(np.int32)
    obs[:, 0], obs[:, 1] = np.ldexp(obs[:, 0], half), np.ldexp(obs[:, 1], half)
    assert math.isclose(obs[0, 0], 0.25e308, rel_tol=1e-15)
    assert math.isclose(obs[0, 1], 1.25e308, rel_tol=1e-15)
    want = (Fraction(1.5e308) ** 2 + Fraction(1e308) ** 2) / 2
    assert _close(_exact_mean_sq(obs[0]), want, 1e-15) and obs[0, 3] == 1.5e308
    assert math.isclose(obs[1, 1], 1e-300, rel_tol=1e-15)
    want = (Fraction(1e-300) ** 2 + Fraction(3e-300) ** 2) / 2  # 5e-600
    assert _close(_exact_mean_sq(obs[1]), want, 1e-15)


def test_dense_collapse_is_the_materialised_networks() -> None:
    """Issue 10 item 6: the dense sampler multiplies h by the materialised W (never (s h) B,
    whose elementwise s h flushes first: collapse 123.42 vs 124.72 layers in float32), so its
    per-trial collapse layers are those of h^l = h^{l-1} W^l computed from `draw_kernels`,
    trial by trial, through the vanishing regime (float32, linear N(0, 0.05^2), width 16)."""
    cfg = dataclasses.replace(_config(0.05, 70), width=16, input_dim=16, dtype="float32")
    n = 6
    key = rng.key_tensor(21)
    net = Network.of(cfg)
    _, pre, _ = graph.sub_batch(cfg.sampler, net, key, 0, n)
    sim_collapse = (pre.numpy()[:, :, 3] == 0).argmax(axis=1)
    x, _ = SubBatch.open(net, key, 0, n).inputs()
    h = x
    ref = np.full(n, -1)
    for layer in range(1, cfg.depth + 1):
        w = draw_kernels(
            cfg.init,
            *cfg.fans(layer),
            n,
            key=key,
            stream=rng.stream_id(layer, rng.Purpose.WEIGHTS),
            trial_offset=0,
            dtype=tf.float32,
        )
        h = tf.linalg.matmul(h, w)
        dead = (tf.reduce_max(tf.abs(h), axis=[1, 2]).numpy() == 0) & (ref < 0)
        ref[dead] = layer - 1
    assert (ref >= 0).all(), "every trial must collapse within the depth"
    np.testing.assert_array_equal(sim_collapse, ref)

"""Correlated inputs and the pair observables between a trial's inputs (issue 13).

The input geometry is exact (|x_a|^2 / n = q0, pairwise correlation c0) to float32's or
float64's rounding; the per-trial corr and cross of a tiny dense net equal a numpy
recomputation from the sampled tensors; the two samplers agree within 4 standard errors;
E[cross] of a depth-1 linear net is the closed form; batch 1 has none; merges and sub-batches
keep the bits.
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
import tensorflow as tf

from worker.contract import (
    ACTIVATIONS,
    INIT_SCHEMES,
    ChunkTask,
    LayerRecord,
    SimConfig,
    canonical_scheme,
    merge_records,
)
from worker.sim import dense, rng, simulate_chunk
from worker.sim.initializers import sample_kernels
from worker.sim.network import Network
from worker.sim.observables import (
    N_COLUMNS,
    QuantityStats,
    QuantityTrials,
    SubBatch,
    pair_observables,
)
from worker.sim.runner import validate
from worker.stats import Moments

pytestmark = pytest.mark.sim

BASE = SimConfig(
    init=canonical_scheme(INIT_SCHEMES, "normal", {"std": 0.3}),
    activation=canonical_scheme(ACTIVATIONS, "tanh", {}),
    depth=3,
    width=24,
    input_dim=16,
    batch=3,
    input_q=1.0,
    input_corr=0.5,
)


def _inputs(config: SimConfig, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    sub = SubBatch.open(Network.of(config), rng.key_tensor(5), 100, n)
    x, r = sub.inputs()
    return x.numpy().astype(np.float64), r.numpy().astype(np.float64)


@pytest.mark.parametrize(
    ("dtype", "tol"), [("float32", 1e-6), ("float64", 1e-12)], ids=["float32", "float64"]
)
@pytest.mark.parametrize(("q0", "c0"), [(1.0, 0.5), (2.5, -0.2), (0.3, -0.25), (1.7, 1.0)])
def test_input_geometry_is_exact(dtype: str, tol: float, q0: float, c0: float) -> None:
    """Every input has |x|^2/n == q0, every pair correlation c0 (-0.25 = -1/(k-1): the
    simplex), and the inputs share one readout row."""
    config = dataclasses.replace(BASE, batch=5, dtype=dtype, input_q=q0, input_corr=c0)
    x, r = _inputs(config)
    n = config.input_dim
    np.testing.assert_allclose((x * x).sum(axis=-1) / n, q0, rtol=tol)
    gram = np.einsum("tai,tbi->tab", x, x)
    norm = np.sqrt(np.einsum("taa->ta", gram))
    corr = gram / norm[:, :, None] / norm[:, None, :]
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(corr[:, off], c0, atol=tol)
    np.testing.assert_array_equal(r, np.broadcast_to(r[:, :1], r.shape))
    assert np.std(x[:, 0, 0]) > 0.1  # the inputs are random, not one fixed frame


def test_input_q_alone_normalises_the_default_draw() -> None:
    plain = dataclasses.replace(BASE, input_q=None, input_corr=None, dtype="float64")
    g, r_own = _inputs(plain)
    x, r = _inputs(dataclasses.replace(plain, input_q=2.0))
    n = plain.input_dim
    expected = g / np.linalg.norm(g, axis=-1, keepdims=True) * np.sqrt(2.0 * n)
    np.testing.assert_allclose(x, expected, rtol=1e-13)
    assert not np.array_equal(r_own[:, 0], r_own[:, 1])  # independent readouts without geometry
    np.testing.assert_array_equal(r[:, 1], r[:, 0])


def test_geometry_is_validated() -> None:
    for bad, match in (
        ({"input_corr": 0.5, "input_q": None}, "expected input_q with it"),
        ({"batch": 1}, "2 <= batch"),
        ({"batch": 17}, "2 <= batch <= input_dim=16"),
        ({"input_corr": -0.6}, r"\[-1/\(batch-1\), 1\]"),
        ({"input_q": -1.0}, "input_q: expected a positive number"),
    ):
        with pytest.raises(ValueError, match=match):
            validate(dataclasses.replace(BASE, **bad))


def _pairs(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial mean over pairs a < b of <v_a, v_b> / units and of the correlation, directly."""
    k, units = v.shape[1], v.shape[2]
    w = v / np.abs(v).max(axis=-1, keepdims=True)  # rows scaled first: no norm underflows
    cross, corr = [], []
    for a, b in itertools.combinations(range(k), 2):
        cross.append((v[:, a] * v[:, b]).sum(axis=-1) / units)
        dot = (w[:, a] * w[:, b]).sum(axis=-1)
        corr.append(dot / np.linalg.norm(w[:, a], axis=-1) / np.linalg.norm(w[:, b], axis=-1))
    return np.mean(cross, axis=0), np.mean(corr, axis=0)


def test_per_trial_pair_observables_are_the_direct_computation() -> None:
    """A depth-2 tanh dense net in float64: z, h and g recomputed in numpy from the sampled
    x, r and kernels; the sampler's per-trial corr and cross agree to float64 rounding."""
    config = dataclasses.replace(BASE, depth=2, width=8, input_dim=6, dtype="float64")
    net, key, t0, n = Network.of(config), rng.key_tensor(11), 40, 9
    act, pre, grad = (a.numpy() for a in dense.forward_backward(net, key, t0, n))
    sub = SubBatch.open(net, key, t0, n)
    x, r = (a.numpy() for a in sub.inputs())
    kernels = [
        sample_kernels(
            net.law(layer),
            *net.fans(layer),
            n,
            key=key,
            stream=rng.stream_tensor(layer, rng.Purpose.WEIGHTS),
            trial_offset=t0,
            dtype="float64",
        ).base.numpy()
        for layer in (1, 2)
    ]
    z1 = x @ kernels[0]
    h1 = np.tanh(z1)
    z2 = h1 @ kernels[1]
    h2 = np.tanh(z2)
    g2 = r * (1.0 - h2 * h2)
    g1 = (1.0 - h1 * h1) * (g2 @ np.swapaxes(kernels[1], 1, 2))
    expected = {
        ("activation", 0): x,
        ("preactivation", 0): z1,
        ("activation", 1): h1,
        ("preactivation", 1): z2,
        ("activation", 2): h2,
        ("gradient", 0): g1,
        ("gradient", 1): g2,
    }
    observed = {"activation": act, "preactivation": pre, "gradient": grad}
    for (quantity, index), v in expected.items():
        obs = observed[quantity][:, index]
        assert obs.shape[-1] == N_COLUMNS + 2
        assert np.all(obs[:, 4] == 0.0)  # ordinary trials: cross is unscaled
        cross, corr = _pairs(v)
        np.testing.assert_allclose(obs[:, 5], cross, rtol=1e-12, atol=1e-15, err_msg=quantity)
        np.testing.assert_allclose(obs[:, 6], corr, rtol=0, atol=1e-13, err_msg=quantity)
        np.testing.assert_allclose(obs[:, 2], (v * v).mean(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(act[:, 0, 6], 0.5, atol=1e-13)  # the input's c0


def test_pair_observables_are_scale_free_and_skip_zero_vectors() -> None:
    rows = np.random.default_rng(0).normal(size=(4, 3, 50))
    rows[1, 2] = 0.0  # an all-zero vector: no correlation
    rows[2, 0] *= 2.0**-700  # rows of very different sizes
    rows[3] *= 2.0**900
    cross, corr = (a.numpy() for a in pair_observables(tf.constant(rows)))
    want_cross, want_corr = _pairs(rows[[0, 2]])
    assert np.isnan(corr[1]) and not np.isnan(corr[[0, 2, 3]]).any()
    np.testing.assert_allclose(corr[[0, 2]], want_corr, atol=1e-14)
    np.testing.assert_allclose(corr[3], _pairs(rows[3:] * 2.0**-900)[1], atol=1e-14)
    np.testing.assert_allclose(cross[0], want_cross[0], rtol=1e-12)

    obs = np.zeros((4, 1, N_COLUMNS + 2))
    obs[..., 2] = obs[..., 3] = 1.0
    obs[:, 0, 5], obs[:, 0, 6] = [0.1, 0.2, 0.3, 0.4], [0.5, np.nan, 0.7, 0.8]
    stats = QuantityStats.of(QuantityTrials.from_array(1, obs), reverse=False)
    assert stats.corr is not None and stats.cross is not None
    assert (stats.corr.item(0).n, stats.cross.item(0).n) == (3, 4)
    assert stats.corr.item(0).mean == pytest.approx(2.0 / 3.0)


def _run(config: SimConfig, n: int, start: int = 0, **kw: int) -> list[LayerRecord]:
    task = ChunkTask(config, seed_key=0xC0FFEE, chunk_index=start, trial_start=start, n_trials=n)
    return list(simulate_chunk(task, **kw).records)


def _z(a: Moments | None, b: Moments | None) -> float:
    assert a is not None and b is not None
    se = np.hypot(a.sem, b.sem)
    return abs(a.value - b.value) / se if se > 0 else abs(a.value - b.value) * np.inf


def test_dense_and_conditional_agree_on_correlations() -> None:
    """tanh, c0 = 0.5: per (layer, quantity), corr and cross of the two samplers within 4 SE."""
    dense_records = _run(BASE, 600)
    cond_records = _run(dataclasses.replace(BASE, sampler="conditional"), 600)
    for a, b in zip(dense_records, cond_records, strict=True):
        assert a.key == b.key
        assert a.corr is not None and a.corr.n == a.n_finite == 600
        if a.layer == 0:  # the same inputs under both samplers
            assert a.corr == b.corr and a.cross == b.cross
            continue
        assert _z(a.corr, b.corr) < 4.0, (a.key, a.corr, b.corr)
        assert _z(a.cross, b.cross) < 4.0, (a.key, a.cross, b.cross)
    by_key = {r.key: r for r in dense_records}
    top = by_key[(BASE.depth, "gradient")].corr
    assert top is not None and top.value > 0.5  # one readout: correlated error signals


def test_linear_depth_one_cross_is_the_closed_form() -> None:
    """z_a = x_a W, W ~ N(0, s^2): E[<z_a, z_b>] / width = s^2 <x_a, x_b> = s^2 q0 n_in c0."""
    config = dataclasses.replace(
        BASE, activation=canonical_scheme(ACTIVATIONS, "linear", {}), depth=1, input_q=1.5
    )
    records = {r.key: r for r in _run(config, 800)}
    cross = records[(1, "preactivation")].cross
    corr = records[(1, "preactivation")].corr
    assert cross is not None and corr is not None
    expected = 0.3**2 * 1.5 * config.input_dim * 0.5
    assert abs(cross.value - expected) < 4.0 * cross.sem
    assert abs(corr.value - 0.5) < 0.05  # c0 up to O(1/width)
    grad = records[(1, "gradient")].corr  # linear, one readout: g_a = r for every input
    assert grad is not None and grad.value == pytest.approx(1.0, abs=1e-12)


def test_batch_one_has_no_pair_observables() -> None:
    config = dataclasses.replace(BASE, batch=1, input_corr=None, input_q=None, depth=2)
    assert all(r.corr is None and r.cross is None for r in _run(config, 5))
    independent = dataclasses.replace(BASE, input_q=None, input_corr=None, depth=2)
    records = _run(independent, 5)
    assert all(r.corr is not None for r in records)


def _as_json(records: list[LayerRecord]) -> str:
    return json.dumps([dataclasses.asdict(r) for r in records])


def test_sub_batches_keep_the_bits_and_chunks_merge_to_the_whole() -> None:
    config = dataclasses.replace(BASE, depth=2, dtype="float64", input_corr=-0.3)
    one = _as_json(_run(config, 40, sub_batch=1))
    for size in (7, 40):
        assert _as_json(_run(config, 40, sub_batch=size)) == one
    whole = _run(config, 64)
    parts = merge_records([_run(config, 32), _run(config, 32, start=32)])
    for a, b in zip(parts, whole, strict=True):
        for x, y in ((a.corr, b.corr), (a.cross, b.cross)):
            assert x is not None and y is not None and x.n == y.n
            assert x.mean == pytest.approx(y.mean, rel=1e-12, abs=1e-15)
            assert x.m2 == pytest.approx(y.m2, rel=1e-11)

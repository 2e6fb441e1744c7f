"""The conditional sampler against the dense one at the range limits (issue 10, items 1 and 2).

Exploding (N(0, 1), overflow): scaled norms and QR, so nothing overflows at half the dynamic
range, and Q = 0 past a forward overflow, so gradients stay finite as the dense sampler's do.
Two-sample KS tests, dense vs conditional, 200 trials each, on the per-trial first non-finite
layer of the preactivations and of the gradients (in backward order), at a false-alarm rate of
1e-3 per test (p > 1e-3 passes). Before the fix, float32 linear width 100 overflowed at layer 20
under conditional vs 39 under dense (p ~ 1e-90), and its gradients were NaN from the top layer.

Vanishing (N(0, 0.05^2), collapse): the dense matmul flushes each subnormal product and partial
sum, the conditional sampler only its result, so past collapse they differ (dense ~1 layer
earlier) and `sampler: auto` runs dense there (`scheduler.spec.exactness`); short of that range
(where auto keeps the conditional sampler) their observables agree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from scheduler.spec.exactness import conditional_limit
from scheduler.spec.expand import resolve_sampler
from worker.contract import ChunkTask, LayerRecord, Scheme, SimConfig
from worker.sim.graph import compiled
from worker.sim.rng import key_tensor
from worker.sim.runner import simulate_chunk

pytestmark = pytest.mark.sim

ALPHA = 1e-3
N = 200


def _records(cfg: SimConfig, seed: int = 11) -> dict[str, list[LayerRecord]]:
    """Records of N trials by quantity, in layer order."""
    out = simulate_chunk(ChunkTask(cfg, seed_key=seed, chunk_index=0, trial_start=0, n_trials=N))
    by: dict[str, list[LayerRecord]] = {}
    for r in sorted(out.records, key=lambda r: r.layer):
        by.setdefault(r.quantity, []).append(r)
    return by


def _first_nonfinite(records: list[LayerRecord], *, never: int) -> np.ndarray:
    """Per trial, the first non-finite layer (propagation order); `never` for trials without."""
    layers = [r.layer for r in records for _ in range(r.n_first_nonfinite)]
    return np.asarray(layers + [never] * (N - len(layers)), dtype=float)


def _collapse(records: list[LayerRecord]) -> np.ndarray:
    """Per trial, the first collapsed preactivation layer (absorbing for linear/relu)."""
    prev, layers = 0, []
    for r in records:
        layers += [r.layer] * (r.n_collapsed - prev)
        prev = r.n_collapsed
    assert len(layers) == N, "every trial must collapse within the depth"
    return np.asarray(layers, dtype=float)


def _config(
    activation: str, std: float, depth: int, width: int, batch: int, dtype: str, sampler: str
) -> SimConfig:
    gain = 2.0 if activation == "relu" else 1.0
    return SimConfig(
        init=Scheme("normal", (("mean", 0.0), ("std", std * gain**0.5))),
        activation=Scheme(activation),
        depth=depth,
        width=width,
        input_dim=width,
        batch=batch,
        dtype=dtype,
        sampler=sampler,
    )


# Exploding at width 16: log|z| drifts by ~ln(16)/2 per layer: float16 overflows at ~8 layers,
# float32 and bfloat16 at ~66, float64 at ~525 (relu: the same with He scaling, more slowly
# since a layer's log-growth has a lower mean where half the units are off).
DEPTH = {"float16": 24, "bfloat16": 120, "float32": 120, "float64": 700}
RELU_DEPTH = {**DEPTH, "float64": 1000}


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("batch", [1, 3])
def test_conditional_matches_dense_when_exploding(dtype: str, activation: str, batch: int) -> None:
    depth = (RELU_DEPTH if activation == "relu" else DEPTH)[dtype]
    pre, grad = [], []
    for sampler in ("dense", "conditional"):
        cfg = _config(activation, 1.0, depth, 16, batch, dtype, sampler)
        records = _records(cfg)
        first = _first_nonfinite(records["preactivation"], never=depth + 1)
        # relu: a trial whose units are all off at some layer is 0 from there on and never
        # overflows (2^-16 per layer and row at width 16); it counts as `never` under both
        assert (first <= depth).mean() >= (0.95 if activation == "relu" else 1.0), (
            "nearly every trial must overflow within the depth"
        )
        pre.append(first)
        grad.append(_first_nonfinite(records["gradient"], never=0))
    assert resolve_sampler("auto", cfg) == "conditional"
    p_pre = stats.ks_2samp(*pre).pvalue
    p_grad = stats.ks_2samp(*grad).pvalue
    assert p_pre > ALPHA, (np.median(pre[0]), np.median(pre[1]), p_pre)
    assert p_grad > ALPHA, (np.median(grad[0]), np.median(grad[1]), p_grad)


def test_gradients_after_a_forward_overflow_stay_finite_as_dense_ones_do() -> None:
    """Issue 10 item 2: linear N(0, 1), width 100, depth 60, float32. The forward pass
    overflows at ~39; the gradient never sees it (g^l = g^{l+1} W^T) and first overflows
    about 38 layers below the top, under both samplers (it was layer 59 in 300/300 trials)."""
    grad = []
    for sampler in ("dense", "conditional"):
        cfg = _config("linear", 1.0, 60, 100, 1, "float32", sampler)
        first = _first_nonfinite(_records(cfg, seed=3)["gradient"], never=0)
        assert (first > 0).all() and np.median(first) < 30
        grad.append(first)
    p = stats.ks_2samp(*grad).pvalue
    assert p > ALPHA, (np.median(grad[0]), np.median(grad[1]), p)


# Vanishing at width 16 (log|z| drops by ~1.6 per layer): past collapse by these depths.
COLLAPSED_BY = {"float16": 40, "bfloat16": 80, "float32": 80, "float64": 600}


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("batch", [1, 3])
def test_float16_past_collapse_the_samplers_agree(activation: str, batch: int) -> None:
    """float16's matmul forms products in float32 and rounds each result to float16 once (CPU),
    as the conditional sampler does: their collapse layers agree (KS), so `auto` keeps the
    conditional sampler however deep a float16 network vanishes."""
    depth = COLLAPSED_BY["float16"]
    collapse = []
    for sampler in ("dense", "conditional"):
        cfg = _config(activation, 0.05, depth, 16, batch, "float16", sampler)
        collapse.append(_collapse(_records(cfg)["preactivation"]))
    assert conditional_limit(cfg) is None
    assert resolve_sampler("auto", cfg) == "conditional"
    p = stats.ks_2samp(*collapse).pvalue
    assert p > ALPHA, (np.median(collapse[0]), np.median(collapse[1]), p)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("batch", [1, 3])
def test_past_collapse_the_samplers_differ_so_auto_runs_dense(
    dtype: str, activation: str, batch: int
) -> None:
    """N(0, 0.05^2) at width 16 (log|z| drops by ~1.6 per layer): past collapse the dense
    sampler collapses earlier (its matmul flushes the products), detectably in 200 trials;
    `auto` runs dense for these configurations and refuses `conditional`."""
    depth = COLLAPSED_BY[dtype]
    collapse = []
    for sampler in ("dense", "conditional"):
        cfg = _config(activation, 0.05, depth, 16, batch, dtype, sampler)
        collapse.append(_collapse(_records(cfg)["preactivation"]))
    assert conditional_limit(cfg) is not None
    assert resolve_sampler("auto", cfg) == "dense"
    # dense flushes more (products and partial sums), so it never collapses later
    p = stats.ks_2samp(*collapse).pvalue
    assert np.median(collapse[0]) <= np.median(collapse[1]), (
        np.median(collapse[0]),
        np.median(collapse[1]),
        p,
    )


def _per_trial(cfg: SimConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fn = compiled(cfg)
    act, pre, grad = fn(key_tensor(seed), tf.constant(0, tf.uint64), tf.constant(N, tf.int32))
    return act.numpy(), pre.numpy(), grad.numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("batch", [1, 3])
def test_vanishing_short_of_the_flush_range_the_samplers_agree(
    dtype: str, activation: str, batch: int
) -> None:
    """N(0, 0.05^2), width 16, at the deepest depth `auto` still runs conditional: per-trial
    log mean_sq and std of the top preactivation and of the layer-1 gradient agree (KS,
    Bonferroni over the 4 tests of a case, 1e-3 per case)."""
    probe = _config(activation, 0.05, 2, 16, batch, dtype, "dense")
    depth = 2
    alive = 8  # float16 is never refused (see above); its values live to ~11 layers
    while conditional_limit(dataclasses.replace(probe, depth=depth + 1)) is None:
        depth += 1
        if dtype == "float16" and depth == alive:
            break
    assert depth >= {"float16": alive, "bfloat16": 20, "float32": 20, "float64": 150}[dtype]
    cfgs = [_config(activation, 0.05, depth, 16, batch, dtype, s) for s in ("dense", "conditional")]
    assert resolve_sampler("auto", cfgs[0]) == "conditional"
    (_, d_pre, d_grad), (_, c_pre, c_grad) = _per_trial(cfgs[0], 5), _per_trial(cfgs[1], 6)
    failures = []
    pairs = (("pre[top]", d_pre[:, -1], c_pre[:, -1]), ("grad[1]", d_grad[:, 0], c_grad[:, 0]))
    for name, d, c in pairs:
        # a relu trial can die (every unit of a layer <= 0: 2^-16 a layer at width 16), under
        # both samplers alike; its zeros have no log: compare the living trials
        d, c = d[d[:, 3] > 0], c[c[:, 3] > 0]
        assert min(len(d), len(c)) > 0.9 * N, f"{name}: {N - len(d)}, {N - len(c)} dead trials"
        for label, a, b in (
            ("log mean_sq", np.log2(d[:, 2]) + d[:, 4], np.log2(c[:, 2]) + c[:, 4]),
            ("log std", np.log2(d[:, 1]) + d[:, 4] / 2, np.log2(c[:, 1]) + c[:, 4] / 2),
        ):
            p = stats.ks_2samp(a, b).pvalue
            if p < ALPHA / 4:
                failures.append(f"{name} {label}: p={p:.1e}")
    assert not failures, (depth, failures)

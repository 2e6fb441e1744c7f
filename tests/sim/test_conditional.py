"""The conditional sampler has the dense sampler's law, forward and backward, and theory's moments.

Two-sample Kolmogorov-Smirnov tests on 2000 trials per side (fixed seeds, different streams for
the two samplers' weights) of per-trial observables (mean_sq and std of pre-activations,
activations and gradients) at the first, middle and last layer. The false-alarm rate of the whole
file is held at 1e-3 by Bonferroni: each KS test uses alpha = 1e-3 / (number of tests). Both
samplers' E[mean_sq] also agree with mean-field theory within 4 standard errors.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from scheduler.analysis.theory import predict
from worker.contract import INIT_SCHEMES, ChunkTask, Scheme, SimConfig, canonical_scheme
from worker.memory import sub_batch_size
from worker.sim import simulate_chunk
from worker.sim.graph import compiled
from worker.sim.rng import key_tensor

pytestmark = pytest.mark.sim

TRIALS = 2000
# (activation, batch, depth, width, bias std): every level of every factor of the acceptance
# grid (linear/relu/tanh; batch 1 and 4; depth 1, 10, 50; widths 64..1024; with/without bias),
# in a covering design sized for a 2-core machine.
CASES = [
    ("linear", 1, 1, 1024, 0.0),
    ("relu", 4, 1, 512, 0.1),
    ("tanh", 1, 10, 256, 0.05),
    ("relu", 4, 10, 128, 0.0),
    ("linear", 4, 10, 64, 0.1),
    ("tanh", 4, 50, 64, 0.0),
    ("relu", 1, 50, 64, 0.05),
    ("tanh", 1, 50, 128, 0.1),
]
LAYERS_PER_CASE = 3
N_TESTS = len(CASES) * LAYERS_PER_CASE * 3 * 2  # layers x quantities x observables
ALPHA = 1e-3 / N_TESTS


def _config(act: str, batch: int, depth: int, width: int, bias: float, sampler: str) -> SimConfig:
    sigma_w2 = {"linear": 1.0, "relu": 2.0, "tanh": 1.0}[act]
    init = canonical_scheme(
        INIT_SCHEMES,
        "variance_scaling",
        {"scale": sigma_w2, "mode": "fan_in", "distribution": "untruncated_normal"},
    )
    biasing = Scheme("normal", (("std", bias),)) if bias else Scheme("zeros")
    return SimConfig(
        init=init,
        activation=Scheme(act),
        depth=depth,
        width=width,
        input_dim=width,
        batch=batch,
        bias=biasing,
        sampler=sampler,
    )


def _per_trial(config: SimConfig, seed_key: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-trial observables (T, layers, 4) of act, pre, grad for TRIALS trials."""
    import tensorflow as tf

    fn = compiled(config)
    step = sub_batch_size(config, TRIALS)
    parts = [
        fn(key_tensor(seed_key), tf.constant(t0, tf.uint64), tf.constant(min(step, TRIALS - t0)))
        for t0 in range(0, TRIALS, step)
    ]
    return tuple(np.concatenate([p[i].numpy() for p in parts]) for i in range(3))  # type: ignore[return-value]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-b{c[1]}-d{c[2]}-w{c[3]}-s{c[4]}")
def test_conditional_matches_dense_in_law(case: tuple[str, int, int, int, float]) -> None:
    dense = _config(*case, "dense")
    cond = _config(*case, "conditional")
    d_act, d_pre, d_grad = _per_trial(dense, 1234)
    c_act, c_pre, c_grad = _per_trial(cond, 98765)
    depth = dense.depth
    layers = sorted({1, (depth + 1) // 2, depth})
    failures = []
    for name, d, c, offset in (
        ("preactivation", d_pre, c_pre, 1),
        ("activation", d_act, c_act, 0),
        ("gradient", d_grad, c_grad, 1),
    ):
        for layer in layers:
            for col, obs in ((2, "mean_sq"), (1, "std")):
                a, b = d[:, layer - offset, col], c[:, layer - offset, col]
                assert np.isfinite(a).all() and np.isfinite(b).all()
                p = stats.ks_2samp(a, b).pvalue
                if p < ALPHA:
                    failures.append(f"{name}[{layer}].{obs}: KS p={p:.2e} < {ALPHA:.1e}")
    assert not failures, failures


@pytest.mark.parametrize("case", CASES[1:5], ids=lambda c: f"{c[0]}-b{c[1]}-d{c[2]}-w{c[3]}")
def test_both_samplers_agree_with_theory(case: tuple[str, int, int, int, float]) -> None:
    for sampler in ("dense", "conditional"):
        config = _config(*case, sampler)
        task = ChunkTask(
            config=config, seed_key=4321, chunk_index=0, trial_start=0, n_trials=TRIALS
        )
        outcome = simulate_chunk(task)
        assert outcome.provenance.sampler == sampler
        theory = predict(dataclasses.replace(config, sampler="dense"))
        for record in outcome.records:
            if record.quantity not in ("preactivation", "gradient") or record.layer == 0:
                continue
            want = theory.get(record.layer, record.quantity).mean_sq
            assert want is not None
            z = (record.mean_sq.mean - want) / record.mean_sq.sem
            assert abs(z) < 4, (sampler, record.layer, record.quantity, record.mean_sq, want, z)

"""simulate_chunk's outcome: record layout, provenance, dtypes, errors, overflow as data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from worker.contract import (
    ACTIVATIONS,
    INIT_SCHEMES,
    QUANTITIES,
    ChunkTask,
    LayerRecord,
    Scheme,
    SimConfig,
    canonical_scheme,
)
from worker.memory import MemoryBudgetError, sub_batch_size
from worker.sim import configure_runtime, simulate_chunk
from worker.sim.runtime import configured_threads

pytestmark = pytest.mark.sim


def config(**kw: object) -> SimConfig:
    base = SimConfig(
        init=canonical_scheme(INIT_SCHEMES, "lecun_normal", {}),
        activation=canonical_scheme(ACTIVATIONS, "tanh", {}),
        depth=4,
        width=32,
        input_dim=16,
        batch=2,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def run(cfg: SimConfig, n: int = 50, **kw: object):  # type: ignore[no-untyped-def]
    return simulate_chunk(
        ChunkTask(cfg, seed_key=42, chunk_index=3, trial_start=500, n_trials=n), **kw
    )  # type: ignore[arg-type]


def by_key(records: tuple[LayerRecord, ...]) -> dict[tuple[int, str], LayerRecord]:
    return {r.key: r for r in records}


def test_records_layout_and_provenance() -> None:
    out = run(config())
    keys = [r.key for r in out.records]
    assert keys == [(0, "activation")] + [(layer, q) for layer in range(1, 5) for q in QUANTITIES]
    assert out.chunk_index == 3 and out.n_trials == 50
    assert all(r.n_trials == 50 and r.n_finite == 50 for r in out.records)
    assert all(r.mean.n == r.std.n == r.mean_sq.n == 50 for r in out.records)
    p = out.provenance
    assert p.tf_version == tf.__version__ and p.device == "CPU"
    assert (p.sampler, p.dtype, p.seed_key) == ("dense", "float32", 42)
    assert p.sub_batch == sub_batch_size(config(), 50) == 50
    assert p.duration_s > 0


def test_std_and_mean_sq_are_consistent() -> None:
    """Per trial mean_sq = std^2 + mean^2, so the trial means agree up to the spread of mean."""
    out = run(config())
    for r in out.records:
        lhs = r.mean_sq.mean
        rhs = r.std.mean**2 + r.std.m2 / r.std.n + r.mean.mean**2 + r.mean.m2 / r.mean.n
        assert lhs == pytest.approx(rhs, rel=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_dtypes_run_and_agree_with_float32(dtype: str) -> None:
    ref = by_key(run(config(), n=200).records)
    out = run(config(dtype=dtype), n=200)
    assert out.provenance.dtype == dtype
    for key, r in by_key(out.records).items():
        assert r.n_finite == 200, key
        want = ref[key].mean_sq
        if dtype == "float64":
            # float64 draws are other numbers (2 per Philox step): same law, within 4 SE.
            se = math.hypot(r.mean_sq.sem, want.sem)
            assert abs(r.mean_sq.mean - want.mean) < 4 * se, key
        else:
            # Half precision rounds the same float32 draws: the same trials, a few % apart.
            rel = {"float16": 0.01, "bfloat16": 0.05}[dtype]
            assert r.mean_sq.mean == pytest.approx(want.mean, rel=rel), key


def test_float16_overflow_is_counted_not_raised() -> None:
    """N(0, 1) weights, width 64: std x8 per layer passes float16's 65504 near layer 5-6."""
    cfg = config(
        init=canonical_scheme(INIT_SCHEMES, "normal", {"std": 1.0}),
        activation=Scheme("linear"),
        width=64,
        input_dim=64,
        depth=10,
        batch=1,
        dtype="float16",
    )
    recs = by_key(run(cfg, n=100).records)
    first = [recs[(layer, "activation")].n_first_nonfinite for layer in range(0, 11)]
    assert sum(first) == 100
    assert 4 <= int(np.argmax(first)) <= 7
    assert recs[(10, "activation")].n_finite == 0
    assert recs[(10, "activation")].mean.n == 0  # moments only over finite trials


def test_bias_enters_preactivations() -> None:
    """With sigma_b, q^1 = sigma_w^2 E[x^2] + sigma_b^2: linear, lecun (sigma_w = 1)."""
    cfg = config(
        activation=Scheme("linear"),
        init=canonical_scheme(
            INIT_SCHEMES, "variance_scaling", {"distribution": "untruncated_normal"}
        ),
        bias=canonical_scheme({"normal": {"std": 0.0}}, "normal", {"std": 2.0}),
    )
    r = by_key(run(cfg, n=400).records)[(1, "preactivation")]
    assert abs(r.mean_sq.mean - 5.0) < 4 * r.mean_sq.sem


def test_zero_trials() -> None:
    out = run(config(), n=0)
    assert len(out.records) == 1 + 4 * 3
    assert all(r.n_trials == 0 and r.mean.n == 0 for r in out.records)


def test_memory_budget_error_propagates() -> None:
    cfg = config(width=2048, input_dim=2048)
    t = ChunkTask(
        cfg, seed_key=1, chunk_index=0, trial_start=0, n_trials=4, memory_budget_bytes=1 << 20
    )
    with pytest.raises(MemoryBudgetError):
        simulate_chunk(t)


def test_unknown_sampler_is_refused() -> None:
    with pytest.raises(ValueError, match="sampler: expected one of dense, conditional"):
        run(config(sampler="lazy"))


def test_bad_sub_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="sub_batch"):
        run(config(), sub_batch=0)


def test_runtime_threads_are_fixed() -> None:
    threads = configured_threads()
    assert threads is not None
    assert configure_runtime(threads) == threads  # idempotent
    assert tf.config.threading.get_intra_op_parallelism_threads() == threads
    with pytest.raises(RuntimeError, match="threads"):
        configure_runtime(threads + 1)

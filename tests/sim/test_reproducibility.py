"""A trial's result depends only on (seed_key, trial index): across processes, sub-batches, chunks.

Per-trial observables are compared bit for bit (each trial is the same float32/float64
computation whatever the batch around it). Merged records are then compared with rtol 1e-12:
the only difference left is the float64 rounding of Chan merges over different groupings of
the same trial values, about (number of merges) x 2^-53 relative, <= 1e-13 for these sizes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

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
from worker.memory import trial_bytes
from worker.sim import rng, simulate_chunk
from worker.sim.graph import compiled

pytestmark = pytest.mark.sim

ROOT = Path(__file__).resolve().parents[2]

CONFIG = SimConfig(
    init=canonical_scheme(INIT_SCHEMES, "he_normal", {}),  # truncated normal: the inverse-CDF path
    activation=canonical_scheme(ACTIVATIONS, "tanh", {}),
    bias=canonical_scheme({"normal": {"std": 0.0}}, "normal", {"std": 0.2}),
    depth=6,
    width=32,
    input_dim=24,
    batch=3,
)


def task(start: int, n: int, config: SimConfig = CONFIG) -> ChunkTask:
    return ChunkTask(
        config, seed_key=0x1234_5678_9ABC, chunk_index=start // 100, trial_start=start, n_trials=n
    )


def as_json(records: tuple[LayerRecord, ...] | list[LayerRecord]) -> str:
    return json.dumps([dataclasses.asdict(r) for r in records])


def assert_records_close(a: list[LayerRecord], b: list[LayerRecord], rtol: float = 1e-12) -> None:
    assert [r.key for r in a] == [r.key for r in b]
    for x, y in zip(a, b, strict=True):
        counts = (x.n_trials, x.n_finite, x.n_first_nonfinite, x.n_collapsed)
        assert counts == (y.n_trials, y.n_finite, y.n_first_nonfinite, y.n_collapsed)
        for name in ("mean", "std", "mean_sq"):
            mx, my = getattr(x, name), getattr(y, name)
            assert mx.n == my.n
            scale = abs(mx.mean) + np.sqrt(mx.m2 / max(mx.n, 1))
            assert abs(mx.mean - my.mean) <= rtol * scale, (x.key, name, mx, my)
            assert abs(mx.m2 - my.m2) <= rtol * (mx.m2 + mx.n * mx.mean**2), (x.key, name, mx, my)


def test_same_chunk_is_bit_identical_in_a_fresh_process() -> None:
    t = task(100, 150)
    here = as_json(simulate_chunk(t, sub_batch=40).records)
    code = (
        "import dataclasses, json, sys\n"
        "from worker.contract import ChunkTask\n"
        "from worker.sim import simulate_chunk\n"
        "t = ChunkTask.from_json(json.loads(sys.stdin.read()))\n"
        "out = simulate_chunk(t, sub_batch=40)\n"
        "print(json.dumps([dataclasses.asdict(r) for r in out.records]))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(t.to_json()),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    there = proc.stdout.strip().splitlines()[-1]
    assert there == here


ODD = dataclasses.replace(
    CONFIG,
    width=100,
    input_dim=37,
    batch=1,
    init=canonical_scheme(INIT_SCHEMES, "normal", {"std": 0.1}),
)
VARIANTS = {
    "float32": CONFIG,
    "float64": dataclasses.replace(CONFIG, dtype="float64"),
    "odd-sizes": ODD,
    "odd-gelu-uniform": dataclasses.replace(
        ODD,
        activation=canonical_scheme(ACTIVATIONS, "gelu", {}),
        init=canonical_scheme(INIT_SCHEMES, "glorot_uniform", {}),
    ),
    "odd-bfloat16": dataclasses.replace(
        ODD, dtype="bfloat16", activation=canonical_scheme(ACTIVATIONS, "softplus", {})
    ),
    "tiny-width": dataclasses.replace(CONFIG, width=3, input_dim=5, batch=1),
}


@pytest.mark.parametrize("config", list(VARIANTS.values()), ids=list(VARIANTS))
def test_per_trial_observables_do_not_depend_on_the_batch(config: SimConfig) -> None:
    """The compiled graph on 64 trials at once == 64 one-trial calls, bit for bit.

    Sizes that are not multiples of the SIMD width exercise the scalar-tail guard
    (`graph.padding_trials`)."""
    fn = compiled(config)
    key = rng.key_tensor(99)
    batched = [a.numpy() for a in fn(key, tf.constant(1000, tf.uint64), tf.constant(64, tf.int32))]
    for i in (0, 1, 31, 63):
        single = [
            a.numpy() for a in fn(key, tf.constant(1000 + i, tf.uint64), tf.constant(1, tf.int32))
        ]
        for b, s in zip(batched, single, strict=True):
            np.testing.assert_array_equal(b[i], s[0])


CONDITIONAL64 = dataclasses.replace(
    CONFIG,
    init=canonical_scheme(INIT_SCHEMES, "normal", {"std": 0.2}),
    dtype="float64",
    sampler="conditional",
)


@pytest.mark.parametrize("config", [CONFIG, CONDITIONAL64], ids=["dense", "conditional64"])
def test_statistics_do_not_depend_on_the_sub_batch(config: SimConfig) -> None:
    """Issue 10, item 7: trial blocks aligned to the chunk's first trial, so any sub-batch
    (any memory budget) gives bit-identical records, the last partial block included."""
    t = dataclasses.replace(task(100, 75, config), chunk_index=1)
    one = as_json(simulate_chunk(t, sub_batch=1).records)
    for size in (3, 16, 17, 64, 75):
        out = simulate_chunk(t, sub_batch=size)
        assert out.provenance.sub_batch == size
        assert as_json(out.records) == one, size


def test_memory_budget_does_not_change_the_bits() -> None:
    small = dataclasses.replace(task(0, 40), memory_budget_bytes=trial_bytes(CONFIG) * 3)
    big = dataclasses.replace(task(0, 40), memory_budget_bytes=1 << 30)
    a, b = simulate_chunk(small), simulate_chunk(big)
    assert a.provenance.sub_batch < 16 < b.provenance.sub_batch
    assert as_json(a.records) == as_json(b.records)


def test_chunks_merge_to_the_whole() -> None:
    whole = list(simulate_chunk(task(0, 200)).records)
    parts = merge_records(
        [simulate_chunk(task(0, 100)).records, simulate_chunk(task(100, 100)).records]
    )
    assert_records_close(parts, whole)
    assert whole[0].n_trials == 200


def test_different_keys_differ() -> None:
    a = simulate_chunk(task(0, 20)).records
    b = simulate_chunk(dataclasses.replace(task(0, 20), seed_key=1)).records
    assert as_json(a) != as_json(b)

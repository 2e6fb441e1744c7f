"""`simulate_chunk`: a chunk's trials, in sub-batches, to per-(layer, quantity) statistics.

Pure: no IO, no database. Trials [trial_start, trial_start + n_trials) run in sub-batches of
`sub_batch` trials (default: as many as `worker.memory.sub_batch_size` allows under the task's
memory budget, less the discarded `graph.padding_trials`; a single trial over budget raises
`MemoryBudgetError`). Each sub-batch is one call of the compiled graph of the configuration's
shape with its numbers fed (`worker.sim.graph.compiled`, dense or conditional sampler; one
trace per shape and process); its per-trial observables (T x layers, float64) come back to
numpy, become `LayerRecord`s, and the sub-batches merge in order (Chan et al.). A trial's bits depend only on (seed_key, trial index), so any chunking or
sub-batching gives the same per-trial values and statistics equal up to float64 merge rounding,
and the same task gives bit-identical records (same hardware, TF version and thread count).
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from worker.contract import (
    DTYPES,
    SAMPLERS,
    ChunkOutcome,
    ChunkTask,
    LayerRecord,
    Provenance,
    SimConfig,
    merge_records,
)
from worker.memory import sub_batch_size, trial_bytes
from worker.sim import rng
from worker.sim.graph import compiled, max_groups, padding_trials
from worker.sim.observables import QuantityTrials, quantity_records
from worker.sim.runtime import configure_runtime, device_name


def validate(config: SimConfig) -> None:
    """Reject what the core cannot simulate, worded like Keras (where, expected, received)."""
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}. Received: {config.dtype!r}")
    if config.sampler not in SAMPLERS:
        raise ValueError(
            f"sampler: expected one of {', '.join(SAMPLERS)}. Received: {config.sampler!r}"
        )
    for name, value in (
        ("depth", config.depth),
        ("width", config.width),
        ("input_dim", config.input_dim),
        ("batch", config.batch),
    ):
        if value < 1:
            raise ValueError(f"{name}: expected a positive integer. Received: {value}")


def sub_batch_records(
    act: np.ndarray, pre: np.ndarray, grad: np.ndarray, *, dtype: str
) -> list[LayerRecord]:
    """Records of one sub-batch from the (T, L, 4) observables of the compiled graph."""
    trials = (
        ("activation", QuantityTrials.from_array(0, act), False),
        ("preactivation", QuantityTrials.from_array(1, pre), False),
        ("gradient", QuantityTrials.from_array(1, grad), True),
    )
    return [
        record
        for quantity, values, reverse in trials
        for record in quantity_records(quantity, values, reverse=reverse, dtype=dtype)
    ]


def _empty_records(config: SimConfig) -> list[LayerRecord]:
    empty = np.zeros((0, config.depth, 4))
    return sub_batch_records(np.zeros((0, config.depth + 1, 4)), empty, empty, dtype=config.dtype)


def simulate_chunk(task: ChunkTask, *, sub_batch: int | None = None) -> ChunkOutcome:
    """Simulate the trials of `task` and return their per-(layer, quantity) statistics."""
    configure_runtime()
    started = time.perf_counter()
    config = task.config
    validate(config)
    if task.n_trials < 0 or task.trial_start < 0:
        raise ValueError(
            f"chunk {task.chunk_index}: expected trial_start >= 0 and n_trials >= 0. "
            f"Received: {task.trial_start}, {task.n_trials}"
        )
    if sub_batch is not None and sub_batch < 1:
        raise ValueError(f"sub_batch: expected a positive integer. Received: {sub_batch}")
    pad = padding_trials(config)
    if sub_batch is None:
        size = sub_batch_size(config, max(task.n_trials, 1), task.memory_budget_bytes)
        # Each sub-batch computes `pad` discarded trials too (graph.padding_trials): keep the
        # total under the budget unless a single kept trial already fills it.
        size = max(1, min(size, task.memory_budget_bytes // trial_bytes(config) - pad))
    else:
        size = sub_batch
    size = max(1, min(size, task.n_trials))
    end = task.trial_start + task.n_trials
    rng.check_counter_range(end + pad, max_groups(config))

    # Sub-batches merge as they come (a left fold, the same merges in the same order as merging
    # them all at the end), so a chunk holds two sub-batches' records, not all of them.
    merged = merge_records([_empty_records(config)]) if task.n_trials == 0 else []
    if task.n_trials:
        fn = compiled(config)
        key = rng.key_tensor(task.seed_key)
        for t0 in range(task.trial_start, end, size):
            n = min(size, end - t0)
            act, pre, grad = fn(key, tf.constant(t0, tf.uint64), tf.constant(n, tf.int32))
            batch = sub_batch_records(act.numpy(), pre.numpy(), grad.numpy(), dtype=config.dtype)
            merged = merge_records([merged, batch] if merged else [batch])

    records = tuple(merged)
    return ChunkOutcome(
        chunk_index=task.chunk_index,
        n_trials=task.n_trials,
        records=records,
        provenance=Provenance(
            tf_version=tf.__version__,
            device=device_name(),
            sampler=config.sampler,
            dtype=config.dtype,
            seed_key=task.seed_key,
            duration_s=time.perf_counter() - started,
            sub_batch=size,
        ),
    )

"""`simulate_chunk`: a chunk's trials, in sub-batches, to per-(layer, quantity) statistics.

Pure: no IO, no database. Trials [trial_start, trial_start + n_trials) run in sub-batches of
`sub_batch` trials (default: as many as `worker.memory.sub_batch_size` allows under the task's
memory budget, less the discarded `graph.padding_trials`; a single trial over budget raises
`MemoryBudgetError`). Each sub-batch is one call of the compiled graph of the configuration's
shape with its numbers fed (`worker.sim.graph.compiled`, dense or conditional sampler; one
trace per shape and process); its per-trial observables (T x layers, float64) come back to
numpy.

A trial's bits depend only on (seed_key, trial index), never on the sub-batch (`graph`), and so
do the chunk's statistics: the per-trial values are cut into blocks of `TRIAL_BLOCK` trials in
trial order, counted from the chunk's first trial whatever the sub-batches were, each block
reduced two-pass (`QuantityStats.of`) and the blocks merged left to right (Chan et al. and
Pébay, vectorised over layers); the histograms are integer counts on fixed bins, added per
sub-batch. So the same task gives bit-identical records under any memory budget (same
hardware, TF version and thread count); any chunking gives statistics equal up to float64
merge rounding. At most TRIAL_BLOCK - 1 trials' observables wait for the next sub-batch.
"""

from __future__ import annotations

import math
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
from worker.sim.observables import (
    Histograms,
    QuantityStats,
    QuantityTrials,
    merge_histograms,
    n_columns,
    trial_histograms,
)
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
    validate_geometry(config)


def validate_geometry(config: SimConfig) -> None:
    """Reject an input geometry the inputs cannot have (`observables.input_geometry`)."""
    q0, c0, k = config.input_q, config.input_corr, config.batch
    if q0 is not None and not (math.isfinite(q0) and q0 > 0):
        raise ValueError(f"input_q: expected a positive number. Received: {q0}")
    if c0 is None:
        return
    if q0 is None:
        raise ValueError(f"input_corr: expected input_q with it. Received: input_corr={c0}")
    if k < 2 or k > config.input_dim:
        raise ValueError(
            f"input_corr: expected 2 <= batch <= input_dim={config.input_dim}. Received: batch={k}"
        )
    if not (math.isfinite(c0) and c0 * (k - 1) >= -1.0 and c0 <= 1.0):
        raise ValueError(
            f"input_corr: expected a number in [-1/(batch-1), 1] = [{-1.0 / (k - 1):.6g}, 1]. "
            f"Received: {c0}"
        )


TRIAL_BLOCK = 16  # trials per two-pass block; part of the contract (CONTRACT_VERSION)
Observables = tuple[np.ndarray, np.ndarray, np.ndarray]  # act, pre, grad: (T, layers, columns)
_QUANTITIES = (("activation", 0, False), ("preactivation", 1, False), ("gradient", 1, True))


def _trials(obs: Observables) -> list[QuantityTrials]:
    return [
        QuantityTrials.from_array(first, np.ascontiguousarray(o))
        for (_, first, _), o in zip(_QUANTITIES, obs, strict=True)
    ]


def block_stats(obs: Observables) -> list[QuantityStats]:
    """Statistics of one block of trials, per quantity (activation, preactivation, gradient)."""
    return [
        QuantityStats.of(trials, reverse=rev)
        for (_, _, rev), trials in zip(_QUANTITIES, _trials(obs), strict=True)
    ]


def block_histograms(obs: Observables, dtype: str) -> list[list[Histograms]]:
    """Per quantity, the `trial_histograms` of some trials computed in `dtype`."""
    return [trial_histograms(trials, dtype) for trials in _trials(obs)]


def stats_records(stats: list[QuantityStats], hists: list[list[Histograms]]) -> list[LayerRecord]:
    """The records of per-quantity statistics and histograms, in (layer, quantity) order."""
    records = [
        r
        for (name, _, _), q, h in zip(_QUANTITIES, stats, hists, strict=True)
        for r in q.records(name, h)
    ]
    return merge_records([records])  # sorts by (layer, quantity order)


def _empty_records(config: SimConfig) -> list[LayerRecord]:
    columns = n_columns(config.batch)
    empty = np.zeros((0, config.depth, columns))
    obs = (np.zeros((0, config.depth + 1, columns)), empty, empty)
    return stats_records(block_stats(obs), block_histograms(obs, config.dtype))


class _Blocks:
    """Per-trial observables in trial order -> statistics merged block by block."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.pending: list[np.ndarray] | None = None
        self.stats: list[QuantityStats] | None = None
        self.hists: list[list[Histograms]] | None = None

    def add(self, obs: Observables) -> None:
        """Append the next trials (in trial order); merge every full block. Only the trials
        that complete a pending block are copied (no copy of the whole sub-batch)."""
        arrays = list(obs)
        hists = block_histograms(obs, self.dtype)
        self.hists = (
            hists
            if self.hists is None
            else [merge_histograms(a, b) for a, b in zip(self.hists, hists, strict=True)]
        )
        start = 0
        if self.pending is not None:
            start = min(TRIAL_BLOCK - self.pending[0].shape[0], arrays[0].shape[0])
            head = [
                np.concatenate([p, a[:start]]) for p, a in zip(self.pending, arrays, strict=True)
            ]
            self.pending = None
            if head[0].shape[0] < TRIAL_BLOCK:
                self.pending = head
                return
            self._merge(head)
        n = arrays[0].shape[0]
        full = start + (n - start) // TRIAL_BLOCK * TRIAL_BLOCK
        for t in range(start, full, TRIAL_BLOCK):
            self._merge([a[t : t + TRIAL_BLOCK] for a in arrays])
        if full < n:
            self.pending = [a[full:].copy() for a in arrays]

    def _merge(self, block: list[np.ndarray]) -> None:
        act, pre, grad = block
        stats = block_stats((act, pre, grad))
        if self.stats is None:
            self.stats = stats
        else:
            self.stats = [a.merge(b) for a, b in zip(self.stats, stats, strict=True)]

    def records(self) -> list[LayerRecord]:
        """The records of every trial added (the last, partial block included)."""
        if self.pending is not None:
            self._merge(self.pending)
            self.pending = None
        assert self.stats is not None and self.hists is not None
        return stats_records(self.stats, self.hists)


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

    merged = merge_records([_empty_records(config)]) if task.n_trials == 0 else []
    if task.n_trials:
        fn = compiled(config)
        key = rng.key_tensor(task.seed_key)
        blocks = _Blocks(config.dtype)
        for t0 in range(task.trial_start, end, size):
            n = min(size, end - t0)
            act, pre, grad = fn(key, tf.constant(t0, tf.uint64), tf.constant(n, tf.int32))
            blocks.add((act.numpy(), pre.numpy(), grad.numpy()))
        merged = blocks.records()

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

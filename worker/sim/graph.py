"""One compiled sub-batch graph per configuration: the sampler table, the padding rule, the cache.

A sampler is a function `(config, key, trial_offset, n_trials) -> (act, pre, grad)` that
computes the float64 observables of exactly the n_trials trials it is given: act (T, D+1, C),
pre (T, D, C), grad (T, D, C) (C = `worker.sim.observables.N_COLUMNS`). `SAMPLER_GRAPHS` maps
`config.sampler` to one: "dense" (`worker.sim.dense`, every weight matrix drawn) or "conditional"
(`worker.sim.conditional`, exact O(width) products for i.i.d. Gaussian weights). `sub_batch`
runs the chosen one on `padding_trials(config)` extra trials and keeps the first n_trials.

`compiled(config)` returns one `tf.function` of `sub_batch` per configuration with a dynamic
trial axis, so sub-batches of any size share one trace:

    fn(key: uint64[1], trial_offset: uint64[], n_trials: int32[]) -> (act, pre, grad)

Eigen evaluates elementwise ops in SIMD packets and the last (size mod packet) elements of a
tensor with scalar code; the two differ in the last bit for log, exp, sin, erfc, ... (measured
on TF 2.21 CPU). Those tail elements would be the last trial's, so a trial's bits would depend
on the sub-batch size. Computing `padding_trials` extra trials (the next trial indices, thrown
away) puts every tail into a discarded trial: each kept element always takes the packet path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import tensorflow as tf

from worker.contract import SimConfig
from worker.sim import conditional, dense, rng

Observables = tuple[tf.Tensor, tf.Tensor, tf.Tensor]
SamplerFn = Callable[[SimConfig, tf.Tensor, tf.Tensor | int, tf.Tensor | int], Observables]
SubBatchFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], Observables]

SAMPLER_GRAPHS: dict[str, SamplerFn] = {
    "dense": dense.forward_backward,
    "conditional": conditional.forward_backward,
}

TAIL_GUARD = 64  # elements; above any CPU packet width (AVX-512 float16: 32 lanes)


def max_groups(config: SimConfig) -> int:
    """Largest Philox steps per trial of any draw of `config` (for the counter range check)."""
    d = rng.draw_dtype(config.dtype)
    sizes = [config.fans(layer)[0] * config.fans(layer)[1] for layer in range(1, config.depth + 1)]
    sizes += [config.batch * config.input_dim, config.batch * config.width, config.width]
    return max(rng.padded_size(m, d)[1] for m in sizes)


def padding_trials(config: SimConfig) -> int:
    """Trials computed past the sub-batch and discarded, so scalar tails never hit kept trials."""
    smallest = min(config.batch * config.width, config.batch * config.input_dim, config.width) // 2
    return -(-TAIL_GUARD // max(1, smallest))


def sampler_graph(config: SimConfig) -> SamplerFn:
    """The sampler of `config.sampler` (`SAMPLER_GRAPHS`)."""
    try:
        return SAMPLER_GRAPHS[config.sampler]
    except KeyError:
        raise ValueError(
            f"sampler: expected one of dense, conditional. Received: {config.sampler!r}"
        ) from None


def sub_batch(
    config: SimConfig, key: tf.Tensor, trial_offset: tf.Tensor | int, n_trials: tf.Tensor | int
) -> Observables:
    """Observables of trials [trial_offset, trial_offset + n_trials), computed with
    `padding_trials` more; runs eagerly too, with Python ints."""
    graph = sampler_graph(config)
    act, pre, grad = graph(config, key, trial_offset, n_trials + padding_trials(config))
    return act[:n_trials], pre[:n_trials], grad[:n_trials]


@functools.lru_cache(maxsize=16)
def compiled(config: SimConfig) -> SubBatchFn:
    """The compiled sub-batch function of `config` (one trace per configuration, cached)."""
    sampler_graph(config)  # an unknown sampler fails here, not at the first call

    @tf.function(
        input_signature=[
            tf.TensorSpec([1], tf.uint64),
            tf.TensorSpec([], tf.uint64),
            tf.TensorSpec([], tf.int32),
        ],
        autograph=False,
    )
    def fn(key: tf.Tensor, trial_offset: tf.Tensor, n_trials: tf.Tensor) -> Observables:
        return sub_batch(config, key, trial_offset, n_trials)

    return fn

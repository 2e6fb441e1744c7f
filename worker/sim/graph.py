"""One compiled sub-batch graph per shape: the sampler table, the padding rule, the trace cache.

A sampler is a function `(net, key, trial_offset, n_trials) -> (act, pre, grad)` of a
`worker.sim.network.Network` that computes the float64 observables of exactly the n_trials
trials it is given: act (T, D+1, C), pre (T, D, C), grad (T, D, C) (C =
`worker.sim.observables.N_COLUMNS`). `SAMPLER_GRAPHS` maps `config.sampler` to one: "dense"
(`worker.sim.dense`, every weight matrix drawn) or "conditional" (`worker.sim.conditional`,
exact O(width) products for i.i.d. Gaussian weights). `sub_batch` runs the chosen one on
`padding_trials(config)` extra trials and keeps the first n_trials.

`traced(shape)` is one `tf.function` per `network.Shape` (sampler, dtype, width, input_dim,
batch, activation, law kinds, which numbers exist), traced once, with a dynamic trial axis and
the configuration's numbers and depth as inputs:

    fn(key: uint64[1], trial_offset: uint64[], n_trials: int32[], depth: int32[],
       numbers: {name: scalar}) -> (act, pre, grad)

so a sweep over sigma_w, sigma_b, std, gain, alpha or depth traces once per process
(`trace_count`; with $INITSWEEP_TRACE_LOG=FILE each trace appends "pid shape" to FILE), not
once per configuration (~0.3 s each). `compiled(config)` binds a
configuration's numbers (`network.split`, `network.feed`) to its shape's function:

    compiled(config)(key, trial_offset, n_trials) -> (act, pre, grad)

A trial's bits do not depend on which configuration traced the function first: the numbers are
fed already rounded as the graph's constants were (`network.feed`), and enter the same ops.

Eigen evaluates elementwise ops in SIMD packets and the last (size mod packet) elements of a
tensor with scalar code; the two differ in the last bit for log, exp, sin, erfc, ... (measured
on TF 2.21 CPU). Those tail elements would be the last trial's, so a trial's bits would depend
on the sub-batch size. Computing `padding_trials` extra trials (the next trial indices, thrown
away) puts every tail into a discarded trial: each kept element always takes the packet path.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping

import tensorflow as tf

from worker.contract import SimConfig
from worker.sim import conditional, dense, rng
from worker.sim.network import Network, Shape, feed, split

Observables = tuple[tf.Tensor, tf.Tensor, tf.Tensor]
SamplerFn = Callable[[Network, tf.Tensor, tf.Tensor | int, tf.Tensor | int], Observables]
SubBatchFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], Observables]
TracedFn = Callable[
    [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, Mapping[str, tf.Tensor]], Observables
]

SAMPLER_GRAPHS: dict[str, SamplerFn] = {
    "dense": dense.forward_backward,
    "conditional": conditional.forward_backward,
}

TAIL_GUARD = 64  # elements; above any CPU packet width (AVX-512 float16: 32 lanes)
TRACED_SHAPES = 64  # compiled functions kept per process (least recently used dropped)
ENV_TRACE_LOG = "INITSWEEP_TRACE_LOG"  # a file each trace appends "pid shape" to

_traces = 0
_traces_lock = threading.Lock()


def trace_count() -> int:
    """How many sampler graphs this process has traced (one per shape met, see `traced`)."""
    return _traces


def _log_trace(shape: Shape) -> None:
    """Append `pid shape` to $INITSWEEP_TRACE_LOG, when set (diagnostics, benchmarks)."""
    path = os.environ.get(ENV_TRACE_LOG)
    if path:
        with open(path, "a") as log:
            log.write(f"{os.getpid()} {shape}\n")


def max_groups(config: SimConfig) -> int:
    """Largest Philox steps per trial of any draw of `config` (for the counter range check)."""
    d = rng.draw_dtype(config.dtype)
    sizes = [config.fans(layer)[0] * config.fans(layer)[1] for layer in range(1, config.depth + 1)]
    sizes += [config.batch * config.input_dim, config.batch * config.width, config.width]
    return max(rng.padded_size(m, d)[1] for m in sizes)


def padding_trials(config: SimConfig | Network | Shape) -> int:
    """Trials computed past the sub-batch and discarded, so scalar tails never hit kept trials."""
    smallest = min(config.batch * config.width, config.batch * config.input_dim, config.width) // 2
    return -(-TAIL_GUARD // max(1, smallest))


def sampler_graph(sampler: str) -> SamplerFn:
    """The sampler named `sampler` (`SAMPLER_GRAPHS`)."""
    try:
        return SAMPLER_GRAPHS[sampler]
    except KeyError:
        raise ValueError(
            f"sampler: expected one of dense, conditional. Received: {sampler!r}"
        ) from None


def sub_batch(
    sampler: str,
    net: Network,
    key: tf.Tensor,
    trial_offset: tf.Tensor | int,
    n_trials: tf.Tensor | int,
) -> Observables:
    """Observables of trials [trial_offset, trial_offset + n_trials) of `net`, computed with
    `padding_trials` more; runs eagerly too, with Python ints (`Network.of(config)`)."""
    graph = sampler_graph(sampler)
    act, pre, grad = graph(net, key, trial_offset, n_trials + padding_trials(net))
    return act[:n_trials], pre[:n_trials], grad[:n_trials]


@functools.lru_cache(maxsize=TRACED_SHAPES)
def traced(shape: Shape) -> TracedFn:
    """The compiled sub-batch function of `shape` (module doc): traced on its first call only."""
    sampler_graph(shape.sampler)  # an unknown sampler fails here, not at the first call
    numbers = {name: tf.TensorSpec([], shape.number_dtype(name)) for name in shape.numbers}

    @tf.function(
        input_signature=[
            tf.TensorSpec([1], tf.uint64),
            tf.TensorSpec([], tf.uint64),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32),
            numbers,
        ],
        autograph=False,
    )
    def fn(
        key: tf.Tensor,
        trial_offset: tf.Tensor,
        n_trials: tf.Tensor,
        depth: tf.Tensor,
        numbers: Mapping[str, tf.Tensor],
    ) -> Observables:
        global _traces
        net = Network.build(shape, depth, numbers)
        out = sub_batch(shape.sampler, net, key, trial_offset, n_trials)
        with _traces_lock:  # runs while tracing only: a Python side effect of the trace
            _traces += 1
            _log_trace(shape)
        return out

    return fn


def compiled(config: SimConfig) -> SubBatchFn:
    """The compiled sub-batch function of `config`: its shape's `traced` function with the
    configuration's numbers and depth bound."""
    shape, values = split(config)
    fn = traced(shape)
    numbers = feed(shape, values)
    depth = tf.constant(config.depth, tf.int32)

    def run(key: tf.Tensor, trial_offset: tf.Tensor, n_trials: tf.Tensor) -> Observables:
        return fn(key, trial_offset, n_trials, depth, numbers)

    return run

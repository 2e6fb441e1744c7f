"""Work model of a sweep: a nominal, machine-free cost and a calibrated wall-time estimate.

The nominal model (random numbers, core-seconds, peak memory) is deterministic on purpose:
chunk sizes derive from it, and chunk sizes are part of a run's content address, so it never
times this machine. Per trial of a configuration:

dense sampler (every kernel drawn):
    draws = sum_l fan_in_l * fan_out_l            weights
          + batch * input_dim                     input x ~ N(0, I)
          + batch * width                         gradient probe r ~ N(0, I) (L = <r, h^depth>)
          + depth * width  (normal bias only)     biases
    flops = sum_l 4 * batch * fan_in_l * fan_out_l          forward z = hW, backward g W^T
          + orthogonal: sum_l 4 m n^2 - 4/3 n^3, m >= n      Householder QR and forming Q
conditional sampler (z | h drawn directly; no kernel):
    draws = depth * (batch * width + batch^2 * width) + the input, probe and bias terms
    flops = depth * (4 batch^2 width + 10 batch width)

seconds = (uniform draws + GAUSSIAN_DRAW_COST * Gaussian draws) / DRAWS_PER_SECOND
          + flops / FLOPS_PER_SECOND, doubled for float64.

Every sum over layers is in closed form: layer 1 has fans (input_dim, width), every later layer
(width, width) (`worker.memory.kernel_sizes`). Peak memory is `worker.memory.chunk_bytes` of the
sub-batch.

Calibrated once against `worker.sim` on one CPU core (TF 2.x, float32, 1 thread): stateless
uniforms ~1.5e8/s; normals and Keras truncated normals ~3x slower (Box-Muller); a 512x512 QR
~25 ms. It counts arithmetic only, so it is far below the wall time of small sweeps.

The wall estimate (`wall_estimate`, `WallModel`) is what `validate` prints as "about ... here":
`initsweep run` on `workers` local processes, from the command's start to its exit:

    wall = cli_start + worker_start * ceil(P / C)
         + max((sum_chunks(work) + traces * trace) / min(P, C), longest chunk + its trace)
         + finish + finish_per_config * configurations
    work = n_sub * (call + depth * layer) + n_trials * per_trial + chunk_overhead

with P = min(workers, chunks) processes on C cores; `traces` is one per (graph shape, process
that runs any chunk of that shape), min(chunks of the shape, P) because chunks are dispatched
in order (`graph_shape`: one trace serves every sigma_w, sigma_b, std and depth); n_sub =
sub-batches of the chunk (`worker.memory.sub_batch_size`); per_trial prices the nominal counts at measured rates per
weight family (truncated normals and QR cost more than the nominal ratio) times a per-dtype
factor. `benchmarks/bench_estimate.py --calibrate` measures the constants;
`benchmarks/bench_estimate.py` prints estimate vs actual for every example (within 2x).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from scheduler.bulk import collector_paused
from scheduler.formatting import duration
from scheduler.plan import SweepPlan
from worker.contract import Scheme, SimConfig
from worker.memory import DEFAULT_BUDGET, chunk_bytes, format_bytes, kernel_sizes, sub_batch_size
from worker.schemes import family, is_iid_gaussian

DRAWS_PER_SECOND = 1.5e8  # one core, TF stateless uniforms, float32
GAUSSIAN_DRAW_COST = 3.0  # a normal (or truncated normal) costs ~3 uniforms
FLOPS_PER_SECOND = 1.5e10  # one core, float32 matmul/QR through TF
NORMALS_PER_SECOND = DRAWS_PER_SECOND / GAUSSIAN_DRAW_COST  # nominal Gaussian throughput

_T = TypeVar("_T")


def cost_key(config: SimConfig) -> tuple[object, ...]:
    """Every field the nominal model reads (not the activation, nor the bias' std): a sweep of
    10^5 configurations has few distinct keys."""
    return (
        config.init,
        config.bias.name,
        config.dtype,
        config.width,
        config.input_dim,
        config.depth,
        config.batch,
        config.sampler,
    )


def _by_cost_key(fn: Callable[[SimConfig], _T]) -> Callable[[SimConfig], _T]:
    """`fn`, computed once per `cost_key` (bounded)."""
    cache: dict[tuple[object, ...], _T] = {}

    @functools.wraps(fn)
    def cached(config: SimConfig) -> _T:
        key = cost_key(config)
        try:
            return cache[key]
        except KeyError:
            if len(cache) >= 4096:
                cache.clear()
            value = cache[key] = fn(config)
            return value

    return cached


@_by_cost_key
def random_numbers_per_trial(config: SimConfig) -> int:
    """Random numbers one trial of `config` draws (nominal model, module docstring)."""
    return _kernel_draws(config) + _gaussian_extra_draws(config)


@_by_cost_key
def gaussian_numbers_per_trial(config: SimConfig) -> int:
    """How many of `random_numbers_per_trial` are Gaussian (normal or truncated normal)."""
    kernel = 0 if _uniform_kernels(config) else _kernel_draws(config)
    return kernel + _gaussian_extra_draws(config)


def flops_per_trial(config: SimConfig) -> int:
    """Floating-point operations of one trial of `config` (nominal model)."""
    b, w = config.batch, config.width
    if config.sampler == "conditional":
        return config.depth * (4 * b * b * w + 10 * b * w)
    total, _ = kernel_sizes(config)
    flops = 4 * b * total
    if config.init.name == "orthogonal":  # layer 1, then depth - 1 square (width, width) kernels
        flops += _qr_flops(config.input_dim, w) + (config.depth - 1) * _qr_flops(w, w)
    return flops


def _qr_flops(fan_in: int, fan_out: int) -> int:
    m, n = max(fan_in, fan_out), min(fan_in, fan_out)
    return 4 * m * n * n - (4 * n**3) // 3


@_by_cost_key
def nominal_seconds_per_trial(config: SimConfig) -> float:
    """Core-seconds of one trial of `config` under the nominal model."""
    total = random_numbers_per_trial(config)
    gaussian = gaussian_numbers_per_trial(config)
    draws = (total - gaussian) + GAUSSIAN_DRAW_COST * gaussian
    seconds = draws / DRAWS_PER_SECOND + flops_per_trial(config) / FLOPS_PER_SECOND
    return seconds * (2.0 if config.dtype == "float64" else 1.0)


@dataclass(frozen=True)
class WorkEstimate:
    """Totals of a planned sweep under the nominal model."""

    n_configs: int
    n_chunks: int
    n_trials: int
    random_numbers: int
    est_core_seconds: float
    peak_bytes_per_worker: int
    memory_budget_bytes: int = DEFAULT_BUDGET
    longest_chunk_seconds: float = 0.0
    n_conditional: int = 0
    n_dense_for_range: int = 0  # i.i.d. Gaussian configurations run dense (exactness module)

    def lines(self) -> list[str]:
        """Human-readable summary for `initsweep validate`."""
        cores = self.est_core_seconds
        return [
            f"configurations   {self.n_configs:,}",
            f"chunks           {self.n_chunks:,}",
            f"trials           {self.n_trials:,}",
            f"random numbers   {self.random_numbers:.3g}",
            f"work (nominal)   {duration(cores)} of one core; about "
            f"{duration(cores / 2)} on 2 cores, {duration(cores / 8)} on 8 "
            f"(model: {DRAWS_PER_SECOND:.2g} uniforms or {NORMALS_PER_SECOND:.2g} normals/s "
            "per core)",
            f"longest chunk    {duration(self.longest_chunk_seconds)} (nominal)",
            f"peak memory      {format_bytes(self.peak_bytes_per_worker)} per worker process "
            f"(budget {format_bytes(self.memory_budget_bytes)})",
            f"samplers         {self.n_conditional:,} conditional, "
            f"{self.n_configs - self.n_conditional:,} dense"
            + (
                f" ({self.n_dense_for_range:,} with Gaussian weights: their values can reach "
                "the dtype's flush-to-zero range, which only the dense sampler reproduces)"
                if self.n_dense_for_range
                else ""
            ),
        ]


def estimate(plan: SweepPlan) -> WorkEstimate:
    """Nominal totals of `plan` (raises worker.memory.MemoryBudgetError for an unchecked plan).

    Per configuration, in plan order: seconds += s * trials, longest = max(longest, s * largest
    chunk), peak = max(peak, chunk_bytes(sub-batch of chunk_trials)), with s, the random numbers
    and the peak computed once per (`cost_key`, input geometry, chunk_trials) and the largest
    chunk once per chunk tuple (the sums are the one-at-a-time sums, bit for bit)."""
    normals = 0
    seconds = 0.0
    peak = 0
    longest = 0.0
    budget = plan.memory_budget_bytes
    per_key: dict[tuple[object, ...], tuple[float, int, int]] = {}  # memory reads input_q
    largest: dict[int, tuple[object, int]] = {}  # id(chunks) -> (chunks, largest n_trials)
    for cp in plan.configs:
        config = cp.config
        key = (cost_key(config), config.input_q is not None, cp.chunk_trials)
        known = per_key.get(key)
        if known is None:
            sub = sub_batch_size(config, cp.chunk_trials, budget)
            known = per_key[key] = (
                nominal_seconds_per_trial(config),
                random_numbers_per_trial(config),
                chunk_bytes(config, sub),
            )
        per_trial, numbers, chunk_peak = known
        top = largest.get(id(cp.chunks))
        if top is None:
            top = largest[id(cp.chunks)] = (
                cp.chunks,
                max((c.n_trials for c in cp.chunks), default=0),
            )
        normals += numbers * cp.trials
        seconds += per_trial * cp.trials
        longest = max(longest, per_trial * top[1])
        peak = max(peak, chunk_peak)
    n_conditional, n_dense_for_range = sampler_counts([cp.config for cp in plan.configs])
    return WorkEstimate(
        n_configs=len(plan.configs),
        n_chunks=plan.n_chunks,
        n_trials=plan.n_trials,
        random_numbers=normals,
        est_core_seconds=seconds,
        peak_bytes_per_worker=peak,
        memory_budget_bytes=plan.memory_budget_bytes,
        longest_chunk_seconds=longest,
        n_conditional=n_conditional,
        n_dense_for_range=n_dense_for_range,
    )


def sampler_counts(configs: Sequence[SimConfig]) -> tuple[int, int]:
    """(configurations run conditional, i.i.d. Gaussian ones run dense whose values can reach
    the flush-to-zero range: `exactness.conditional_limit` not None), their limits together."""
    from scheduler.spec.exactness import conditional_limit, conditional_limits  # theory (scipy)

    n_conditional = sum(c.sampler == "conditional" for c in configs)
    gaussian: dict[Scheme, bool] = {}
    dense = []
    for c in configs:
        if c.sampler == "conditional":
            continue
        iid = gaussian.get(c.init)
        if iid is None:
            iid = gaussian[c.init] = is_iid_gaussian(c.init)
        if iid:
            dense.append(c)
    try:
        with collector_paused():  # a limit cached per configuration (`scheduler.bulk`)
            limits = conditional_limits(dense)
    except Exception:  # each fails again, in its place, on its own
        limits = [conditional_limit(c) for c in dense]
    return n_conditional, sum(limit is not None for limit in limits)


def _kernel_draws(config: SimConfig) -> int:
    if config.sampler == "conditional":
        b = config.batch
        return config.depth * (b * config.width + b * b * config.width)
    return kernel_sizes(config)[0]


def _gaussian_extra_draws(config: SimConfig) -> int:
    """Input, gradient probe and (normal) biases: always Gaussian."""
    b, w = config.batch, config.width
    bias = config.depth * w if config.bias.name == "normal" else 0
    return b * config.input_dim + b * w + bias


def _uniform_kernels(config: SimConfig) -> bool:
    if config.sampler == "conditional":
        return False
    return family(config.init) == "uniform"


# --- wall time on this kind of machine --------------------------------------------------------


@dataclass(frozen=True)
class WallModel:
    """Constants of the wall-time model (module docstring), seconds unless stated.

    Measured by `benchmarks/bench_estimate.py --calibrate` on `machine`; per-draw costs price
    `random_numbers_per_trial` by the kernel family (`worker.schemes.family`), Gaussian extras
    (input, probe, biases) at the normal rate, and `flops_per_trial` at `flop_s`.
    """

    machine: str
    cli_start_s: float  # interpreter, imports, plan, record
    worker_start_s: float  # spawn + TensorFlow import + runtime set-up, one process on a core
    trace_s: dict[str, float]  # graph trace, per (graph shape, process), by sampler
    orthogonal_trace_s: float  # extra trace cost of the QR kernels
    call_s: dict[str, float]  # per sub-batch call, by sampler
    layer_s: dict[str, float]  # per layer of a sub-batch call (loop iteration), by sampler
    draw_s: dict[str, float]  # per random number, by kernel family / "conditional"
    flop_s: float
    dtype_factor: dict[str, float]
    chunk_overhead_s: float  # claim, save, aggregate and dispatch of one chunk
    finish_s: float  # pool shutdown and summary
    finish_per_config_s: float  # the sweep's closing pass, per configuration


DEFAULT_WALL_MODEL = WallModel(
    machine="2-core x86-64 VM, TensorFlow 2.21 CPU, one TF thread per process (2026-12)",
    cli_start_s=1.5,
    worker_start_s=8.0,
    trace_s={"dense": 1.1, "conditional": 1.3},
    orthogonal_trace_s=0.0,
    call_s={"dense": 0.003, "conditional": 0.003},
    layer_s={"dense": 0.0004, "conditional": 0.0006},
    draw_s={
        "normal": 2.0e-8,
        "truncated": 3.0e-8,
        "uniform": 1.2e-8,
        "orthogonal": 2.0e-8,
        "conditional": 4.1e-8,
    },
    flop_s=1.4e-10,
    dtype_factor={"float32": 1.0, "float64": 2.5, "float16": 1.0, "bfloat16": 1.0},
    chunk_overhead_s=0.04,
    finish_s=1.0,
    finish_per_config_s=0.03,
)


@dataclass(frozen=True)
class WallEstimate:
    """Predicted wall time of `initsweep run` and its parts (seconds)."""

    seconds: float
    start_s: float
    traces: int
    trace_s: float
    compute_s: float
    workers: int

    def line(self) -> str:
        """The `validate` line."""
        plural = "es" if self.workers != 1 else ""
        return (
            f"wall (estimate)  about {duration(self.seconds)} here with {self.workers} worker "
            f"process{plural}: start-up {duration(self.start_s)}, then core time for "
            f"{self.traces:,} graph traces {duration(self.trace_s)} and trials "
            f"{duration(self.compute_s)}, shared by the processes"
        )


def graph_shape(config: SimConfig) -> tuple[object, ...]:
    """What keys a compiled graph (`worker.sim.network.Shape`, which needs TensorFlow): the
    structure of the network, not its numbers or depth. Approximate: a weight shift of exactly
    0 or a scale of exactly 1 also make their own shape there."""
    return (
        config.sampler,
        config.dtype,
        config.width,
        config.input_dim,
        config.batch,
        config.activation.name,
        family(config.init),
        config.bias.name != "zeros" and config.bias_std > 0.0,
    )


def trial_wall_seconds(config: SimConfig, model: WallModel = DEFAULT_WALL_MODEL) -> float:
    """Measured-rate seconds of the arithmetic of one trial (no per-call or per-layer costs)."""
    extra = _gaussian_extra_draws(config)
    kind = "conditional" if config.sampler == "conditional" else family(config.init)
    kernel = random_numbers_per_trial(config) - extra
    seconds = kernel * model.draw_s[kind] + extra * model.draw_s["normal"]
    seconds += flops_per_trial(config) * model.flop_s
    return seconds * model.dtype_factor.get(config.dtype, 1.0)


def _chunk_costs(
    cfg: SimConfig, trials: int, chunk_trials: int, plan: SweepPlan, model: WallModel
) -> tuple[float, tuple[tuple[int, float], ...]]:
    """(trace seconds, (count, seconds) of its full chunks and of its shorter last one) of a
    configuration of `trials` in chunks of `chunk_trials` (`wall_estimate`'s work terms)."""
    per_sub = model.call_s[cfg.sampler] + cfg.depth * model.layer_s[cfg.sampler]
    per_trial = trial_wall_seconds(cfg, model)
    trace = model.trace_s[cfg.sampler]
    trace += model.orthogonal_trace_s if cfg.init.name == "orthogonal" else 0.0
    trace *= model.dtype_factor.get(cfg.dtype, 1.0) ** 0.5
    parts = []
    full, last = divmod(trials, chunk_trials)
    for n, count in ((chunk_trials, full), (last, 1 if last else 0)):
        if not count:
            continue
        size = sub_batch_size(cfg, n, plan.memory_budget_bytes)
        parts.append((count, -(-n // size) * per_sub + n * per_trial + model.chunk_overhead_s))
    return trace, tuple(parts)


def local_workers(
    work_s: float, *, cores: int | None = None, model: WallModel = DEFAULT_WALL_MODEL
) -> int:
    """Processes `initsweep run` starts when --workers is not given, for `work_s` nominal
    core-seconds of chunks (`chunking.chunk_seconds` summed): one per core, but one per
    `model.worker_start_s` of work at most, and at least one. A process pays that start-up (its
    interpreter and TensorFlow) before its first trial, so one more is started only when there
    is at least its start-up's worth of work for it: a sweep of a few seconds runs on one
    process, as fast, with one TensorFlow in memory instead of one per core."""
    import os

    cores = max(1, cores if cores is not None else os.cpu_count() or 1)
    return max(1, min(cores, math.floor(work_s / model.worker_start_s)))


def wall_estimate(
    plan: SweepPlan,
    *,
    workers: int,
    cores: int | None = None,
    model: WallModel = DEFAULT_WALL_MODEL,
) -> WallEstimate:
    """Wall time of `initsweep run` of `plan` on `workers` local processes (module docstring)."""
    import os

    cores = max(1, cores if cores is not None else os.cpu_count() or 1)
    procs = max(1, min(workers, plan.n_chunks))
    parallel = min(procs, cores)
    start = model.cli_start_s + model.worker_start_s * -(-procs // cores)
    work = trace_total = 0.0
    traces = 0
    longest = 0.0
    shape_chunks: dict[tuple[object, ...], int] = {}  # graph shape -> chunks that need it
    # by (cost_key, input geometry, trials, chunk_trials): the trace and the (count, seconds)
    # of the full and the last chunk
    costs: dict[tuple[object, ...], tuple[float, tuple[tuple[int, float], ...]]] = {}
    for cp in plan.configs:
        cfg = cp.config
        n_chunks = len(cp.chunks)
        if not n_chunks:
            continue
        cost = (cost_key(cfg), cfg.input_q is not None, cp.trials, cp.chunk_trials)
        known = costs.get(cost)
        if known is None:
            known = costs[cost] = _chunk_costs(cfg, cp.trials, cp.chunk_trials, plan, model)
        trace, parts = known
        key = graph_shape(cfg)
        # one trace per (shape, process): a shape's first chunks reach min(P, chunks) processes
        before = min(shape_chunks.get(key, 0), procs)
        shape_chunks[key] = shape_chunks.get(key, 0) + n_chunks
        n_traces = min(shape_chunks[key], procs) - before
        traces += n_traces
        trace_total += n_traces * trace
        for count, chunk in parts:
            work += count * chunk
            longest = max(longest, chunk + trace)
    compute = max((work + trace_total) / parallel, longest)
    return WallEstimate(
        seconds=start + compute + model.finish_s + model.finish_per_config_s * len(plan.configs),
        start_s=start,
        traces=traces,
        trace_s=trace_total,
        compute_s=work,
        workers=procs,
    )

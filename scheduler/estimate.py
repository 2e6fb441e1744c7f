"""Nominal work model of a sweep: random numbers, core-seconds and peak memory, machine-free.

Deterministic on purpose (chunk sizes derive from it, and chunk sizes are part of a run's
content address), so it never times this machine. Per trial of a configuration:

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
~25 ms. Typical error is within 2x (small kernels run slower than the model).
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.formatting import duration
from scheduler.plan import SweepPlan
from scheduler.spec.exactness import conditional_limit
from worker.contract import SimConfig
from worker.memory import DEFAULT_BUDGET, chunk_bytes, format_bytes, kernel_sizes, sub_batch_size
from worker.schemes import family, is_iid_gaussian

DRAWS_PER_SECOND = 1.5e8  # one core, TF stateless uniforms, float32
GAUSSIAN_DRAW_COST = 3.0  # a normal (or truncated normal) costs ~3 uniforms
FLOPS_PER_SECOND = 1.5e10  # one core, float32 matmul/QR through TF
NORMALS_PER_SECOND = DRAWS_PER_SECOND / GAUSSIAN_DRAW_COST  # nominal Gaussian throughput


def random_numbers_per_trial(config: SimConfig) -> int:
    """Random numbers one trial of `config` draws (nominal model, module docstring)."""
    return _kernel_draws(config) + _gaussian_extra_draws(config)


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
    """Nominal totals of `plan` (raises worker.memory.MemoryBudgetError for an unchecked plan)."""
    normals = 0
    seconds = 0.0
    peak = 0
    longest = 0.0
    n_conditional = n_dense_for_range = 0
    for cp in plan.configs:
        if cp.config.sampler == "conditional":
            n_conditional += 1
        elif is_iid_gaussian(cp.config.init) and conditional_limit(cp.config) is not None:
            n_dense_for_range += 1
        per_trial = nominal_seconds_per_trial(cp.config)
        normals += random_numbers_per_trial(cp.config) * cp.trials
        seconds += per_trial * cp.trials
        longest = max(longest, per_trial * max((c.n_trials for c in cp.chunks), default=0))
        sub = sub_batch_size(cp.config, cp.chunk_trials, plan.memory_budget_bytes)
        peak = max(peak, chunk_bytes(cp.config, sub))
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

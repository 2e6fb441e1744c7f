"""Peak-memory model of one trial, and the sub-batch size that keeps a chunk under a budget.

Numpy-free and TF-free so the scheduler can refuse an oversized configuration at validation.
Dense sampler, per trial (bytes; s = itemsize of dtype, d = itemsize of the draw dtype, float32
or float64):
    weights kept for the backward pass   sum_l fan_in_l * fan_out_l * s
    one layer's raw draw and its cast    max_l fan_in_l * fan_out_l * (d + s) * 2
    activations z, h, g per layer        3 * depth * batch * width * s
    float64 observables temporaries      4 * batch * max(width, input_dim) * 8
The conditional sampler keeps no weights: its per-layer cost is O(batch * width + batch^2).
The estimate is deliberately conservative (x1.25) and deterministic, so the sub-batch of a
chunk, hence its bits, never depends on the machine.
"""

from __future__ import annotations

from worker.contract import SimConfig
from worker.errors import MemoryBudgetError

ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
MAX_SUB_BATCH = 4096
DEFAULT_BUDGET = 1 << 30


def draw_itemsize(dtype: str) -> int:
    """Random numbers are drawn in float64 for float64 and float32 otherwise."""
    return 8 if dtype == "float64" else 4


def trial_bytes(config: SimConfig) -> int:
    """Conservative peak bytes of one trial of `config` (see module docstring)."""
    s = ITEMSIZE[config.dtype]
    d = draw_itemsize(config.dtype)
    widest = max(config.width, config.input_dim)
    acts = 3 * config.depth * config.batch * config.width * s + 4 * config.batch * widest * 8
    if config.sampler == "conditional":
        b = config.batch
        per_layer = (b * widest * 6 + b * b * 4) * max(s, d)
        total = acts + 2 * per_layer + config.depth * b * widest * max(s, d)
    else:
        kernels = [config.fans(layer) for layer in range(1, config.depth + 1)]
        weights = sum(fi * fo for fi, fo in kernels) * s
        draw = max(fi * fo for fi, fo in kernels) * (d + s) * 2
        total = weights + draw + acts
    return int(total * 1.25) + 1024


def sub_batch_size(config: SimConfig, n_trials: int, budget_bytes: int = DEFAULT_BUDGET) -> int:
    """Trials per sub-batch: as many as fit the budget, at most `n_trials` and MAX_SUB_BATCH."""
    per_trial = trial_bytes(config)
    if per_trial > budget_bytes:
        raise MemoryBudgetError(
            f"one trial needs about {format_bytes(per_trial)}, over the memory budget of "
            f"{format_bytes(budget_bytes)} (depth={config.depth}, width={config.width}, "
            f"dtype={config.dtype}, sampler={config.sampler}); raise memory_budget or use "
            "sampler: conditional for Gaussian weights"
        )
    return max(1, min(n_trials, MAX_SUB_BATCH, budget_bytes // per_trial))


def format_bytes(n: int) -> str:
    """`1.5 GiB`-style text."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    raise AssertionError("unreachable")

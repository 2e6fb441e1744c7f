"""Peak-memory model of a chunk, and the sub-batch size that keeps it under a budget.

Numpy-free and TF-free so the scheduler can refuse an oversized configuration at validation.
Closed forms throughout (layer 1 has fans (input_dim, width), every later layer (width, width):
`SimConfig.fans`), so the model costs the same at depth 3 or 100,000.

Per trial, the kernels and activations (bytes; s = itemsize of dtype, d = itemsize of the draw
dtype, float32 or float64), `trial_bytes`:
    weights kept for the backward pass   sum_l fan_in_l * fan_out_l * s
    one layer's raw draw and its cast    max_l fan_in_l * fan_out_l * (d + s) * 2
    activations z, h, g per layer        3 * depth * batch * width * s
    float64 observables temporaries      4 * batch * max(width, input_dim) * 8
        (batch >= 2: 8, the pair observables' scaled and normalised copies too)
    an input geometry (input_q)          4 * batch * input_dim * 8 (float64 draw, QR, frame)
The conditional sampler keeps no weights: its per-layer cost is O(batch * width + batch^2).
That estimate is deliberately conservative (x1.25 + 1 KiB) and deterministic, so the sub-batch
of a chunk, hence its bits, never depends on the machine.

Per layer, bookkeeping that the kernels hide at ordinary depths but that dominates a deep, narrow
network (measured with TF 2.x on CPU at depth 10,000, width 8: 590 B a layer and trial and about
24 KiB a layer and chunk, against the 440 B a layer and trial counted above), `chunk_bytes`:
    observables of 3 quantities (5 float64 a layer and trial, 7 for batch >= 2, held about 3
    times over: TensorArray, stacked, numpy)         LAYER_TRIAL_BYTES   a layer and trial
                                                     (PAIR_TRIAL_BYTES for batch >= 2)
    TensorArray elements of the graph loop, the chunk's LayerRecords, their merge, database
    rows and the aggregation reading them back, and the at most 15 trials' observables that
    wait for the next sub-batch to fill a trial block (runner.TRIAL_BLOCK; 1.8 KiB a layer)
                                                     LAYER_CHUNK_BYTES   a layer and chunk
A chunk of sub-batches of n trials peaks at the larger of n * trial_bytes and
n * (raw trial + depth * LAYER_TRIAL_BYTES) + depth * LAYER_CHUNK_BYTES. The first is larger for
every configuration whose kernels dominate (the examples, and every width above a few dozen at
ordinary depths): for those the sub-batch is `budget // trial_bytes` as it always was.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from worker.contract import SimConfig
from worker.errors import MemoryBudgetError

ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
MAX_SUB_BATCH = 4096
DEFAULT_BUDGET = 1 << 30
# 3 quantities x 5 float64 observables, held ~3 times: 5/4 of the 320 counted for 4 (measured
# 238 with 4)
LAYER_TRIAL_BYTES = 400
PAIR_TRIAL_BYTES = 560  # the same for 7 columns (corr and cross, batch >= 2): 7/5 of 400
LAYER_CHUNK_BYTES = 32 << 10  # TF TensorArray elements, records, rows (measured ~24 KiB)
_HINT = "raise memory_budget or use sampler: conditional for Gaussian weights"


def draw_itemsize(dtype: str) -> int:
    """Random numbers are drawn in float64 for float64 and float32 otherwise."""
    return 8 if dtype == "float64" else 4


class _Shape(NamedTuple):
    """All the model reads of a configuration (a sweep has few distinct ones: cached by it)."""

    dtype: str
    width: int
    input_dim: int
    depth: int
    batch: int
    sampler: str
    geometry: bool  # an input geometry is prescribed (input_q set)


def _shape(config: SimConfig) -> _Shape:
    return _Shape(
        config.dtype,
        config.width,
        config.input_dim,
        config.depth,
        config.batch,
        config.sampler,
        config.input_q is not None,
    )


def kernel_sizes(config: SimConfig | _Shape) -> tuple[int, int]:
    """(sum, max) over layers of fan_in * fan_out, in closed form (layers 2.. share fans)."""
    first = config.input_dim * config.width
    deep = config.width * config.width
    total = first + (config.depth - 1) * deep
    return total, max(first, deep) if config.depth > 1 else first


@functools.lru_cache(maxsize=4096)  # a sweep asks for the same shape's size many times
def _raw_trial_bytes(config: _Shape) -> int:
    """The module docstring's per-trial sum, before the x1.25 margin."""
    s = ITEMSIZE[config.dtype]
    d = draw_itemsize(config.dtype)
    widest = max(config.width, config.input_dim)
    copies = 8 if config.batch >= 2 else 4
    acts = 3 * config.depth * config.batch * config.width * s + copies * config.batch * widest * 8
    if config.geometry:
        acts += 4 * config.batch * config.input_dim * 8
    if config.sampler == "conditional":
        b = config.batch
        per_layer = (b * widest * 6 + b * b * 4) * max(s, d)
        return acts + 2 * per_layer + config.depth * b * widest * max(s, d)
    total, largest = kernel_sizes(config)
    return total * s + largest * (d + s) * 2 + acts


def layer_trial_bytes(config: SimConfig | _Shape) -> int:
    """Per-layer bookkeeping bytes of one trial (LAYER_TRIAL_BYTES, or PAIR_TRIAL_BYTES)."""
    return PAIR_TRIAL_BYTES if config.batch >= 2 else LAYER_TRIAL_BYTES


def trial_bytes(config: SimConfig) -> int:
    """Conservative peak bytes of one trial of `config` (see module docstring)."""
    return _trial_bytes(_shape(config))


def _trial_bytes(config: _Shape) -> int:
    return int(_raw_trial_bytes(config) * 1.25) + 1024


def chunk_bytes(config: SimConfig, sub_batch: int) -> int:
    """Conservative peak bytes of a chunk of `config` run in sub-batches of `sub_batch` trials,
    per-layer bookkeeping included (see module docstring)."""
    return _chunk_bytes(_shape(config), sub_batch)


def _chunk_bytes(config: _Shape, sub_batch: int) -> int:
    deep_trial = _raw_trial_bytes(config) + config.depth * layer_trial_bytes(config)
    bookkeeping = config.depth * LAYER_CHUNK_BYTES
    return max(sub_batch * _trial_bytes(config), sub_batch * deep_trial + bookkeeping)


def check_budget(config: SimConfig, budget_bytes: int) -> None:
    """MemoryBudgetError unless a chunk of one-trial sub-batches of `config` fits the budget."""
    _check_budget(_shape(config), budget_bytes)


@functools.lru_cache(maxsize=4096)
def _check_budget(config: _Shape, budget_bytes: int) -> None:
    need = _chunk_bytes(config, 1)
    if need <= budget_bytes:
        return
    bookkeeping = config.depth * LAYER_CHUNK_BYTES
    if bookkeeping * 2 > need:
        hint = (
            f"at depth {config.depth} the per-layer bookkeeping alone needs "
            f"{format_bytes(bookkeeping)} ({format_bytes(LAYER_CHUNK_BYTES)} a layer): raise "
            "memory_budget or reduce depth"
        )
        raise _over_budget(config, need, budget_bytes, hint)
    raise _over_budget(config, need, budget_bytes, _HINT)


def _over_budget(config: _Shape, need: int, budget: int, hint: str) -> MemoryBudgetError:
    return MemoryBudgetError(
        f"one trial needs about {format_bytes(need)}, over the memory budget of "
        f"{format_bytes(budget)} (depth={config.depth}, width={config.width}, "
        f"dtype={config.dtype}, sampler={config.sampler}); {hint}"
    )


def sub_batch_size(config: SimConfig, n_trials: int, budget_bytes: int = DEFAULT_BUDGET) -> int:
    """Trials per sub-batch: as many as fit the budget, at most `n_trials` and MAX_SUB_BATCH.

    Raises MemoryBudgetError when one trial (`trial_bytes`) is over the budget; a deep, narrow
    configuration whose bookkeeping does not fit either gets 1 (`check_budget` refuses it)."""
    return _sub_batch_size(_shape(config), n_trials, budget_bytes)


@functools.lru_cache(maxsize=4096)
def _sub_batch_size(config: _Shape, n_trials: int, budget_bytes: int) -> int:
    per_trial = _trial_bytes(config)
    if per_trial > budget_bytes:
        raise _over_budget(config, per_trial, budget_bytes, _HINT)
    size = max(1, min(n_trials, MAX_SUB_BATCH, budget_bytes // per_trial))
    if size > 1 and _chunk_bytes(config, size) > budget_bytes:
        deep_trial = _raw_trial_bytes(config) + config.depth * layer_trial_bytes(config)
        room = budget_bytes - config.depth * LAYER_CHUNK_BYTES
        size = max(1, min(size, room // deep_trial))
    return size


def format_bytes(n: int) -> str:
    """`1.5 GiB`-style text."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    raise AssertionError("unreachable")

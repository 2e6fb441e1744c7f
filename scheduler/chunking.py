"""Split each configuration's trials into chunks, build the `SweepPlan` of a spec, and group
small chunks into tasks.

A chunk should take seconds, not hours: large enough to amortise a message and a DB write, small
enough to spread a configuration over workers and retry cheaply. Sizes come from the nominal
cost model of `scheduler.estimate` (never from timing this machine), so the same spec gives the
same chunks, hence the same run keys, everywhere.

A configuration too small for a chunk of seconds (100 trials of a width-64 network are a few
milliseconds) still makes a chunk: chunks are its content-addressed rows. What travels is a
task: consecutive chunks (`group_tasks`) whose nominal work, `chunk_seconds` = trials x
`nominal_seconds_per_trial` + `CHUNK_OVERHEAD_SECONDS` (its claim, save and aggregation), reaches
`TASK_SECONDS`; a chunk of `TASK_SECONDS` or more is a task of its own, so a task stays under
2 x TASK_SECONDS unless it is one chunk (itself under MAX_CHUNK_SECONDS). Each chunk of a task
is still claimed, simulated, saved and aggregated on its own (`worker.execute`), so a task that
fails or is delivered twice records every chunk exactly once. Grouping changes no result.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable

from scheduler.bulk import collector_paused
from scheduler.errors import BudgetError, SpecError
from scheduler.estimate import WorkEstimate, cost_key, local_workers, nominal_seconds_per_trial
from scheduler.plan import ChunkPlan, ConfigPlan, SweepPlan
from scheduler.spec.expand import ExpandedConfig, ExpandedSweep
from scheduler.spec.model import MAX_CHUNKS, MAX_SWEEP_TRIALS
from worker.contract import SimConfig
from worker.errors import MemoryBudgetError
from worker.memory import check_budget, sub_batch_size
from worker.seeding import config_seed_keys
from worker.target import Target

TARGET_CHUNK_SECONDS = 10.0  # aim; a chunk lands in about [5, 10] s when trials allow
MIN_CHUNK_TRIALS = 50  # below this the per-chunk overhead dominates
MAX_CHUNK_SECONDS = 300.0  # ...unless 50 trials would exceed this; then fewer
SHARE_FROM_TRIALS = 200  # from this many trials a configuration is split over 2+ chunks
TASK_SECONDS = 1.0  # nominal work a task (a message, a pool submission) carries at least
CHUNK_OVERHEAD_SECONDS = 0.005  # nominal claim + save + aggregation of one chunk


def auto_chunk_trials(config: SimConfig, trials: int) -> int:
    """Trials per chunk for `config`: about TARGET_CHUNK_SECONDS of nominal work; at least
    min(trials, MIN_CHUNK_TRIALS) and at most `trials`; never over MAX_CHUNK_SECONDS (which wins
    over the minimum for very expensive trials); two or more chunks from SHARE_FROM_TRIALS trials;
    chunks of near-equal size."""
    if trials < 1:
        raise ValueError(f"trials: expected a positive integer. Received: {trials}")
    per_trial = max(nominal_seconds_per_trial(config), 1e-12)
    cap = max(1, int(MAX_CHUNK_SECONDS / per_trial))  # hard limit: a chunk stays retryable
    floor = min(trials, MIN_CHUNK_TRIALS, cap)
    target = max(floor, int(TARGET_CHUNK_SECONDS / per_trial))
    n_chunks = math.ceil(trials / target)
    if trials >= SHARE_FROM_TRIALS:
        n_chunks = max(n_chunks, 2)
    n_chunks = max(1, min(n_chunks, trials // floor))
    return min(math.ceil(trials / n_chunks), cap)


def plan_chunk_trials(
    config: SimConfig, trials: int, explicit: int | None, target: Target | None = None
) -> int:
    """Trials per chunk of `trials` trials of `config` (new ones when it grows): `explicit`
    (the spec's chunk_trials) capped at `trials`; else `auto_chunk_trials`, of a targeted
    configuration's `min_trials` when fewer (a target is decided chunk by chunk: chunks sized
    for its minimum, not its maximum, stop it close to where it is met)."""
    if explicit is not None:
        return min(explicit, trials)
    if target is not None:
        return auto_chunk_trials(config, min(trials, target.min_trials))
    return auto_chunk_trials(config, trials)


@functools.lru_cache(maxsize=4096)
def config_seconds_per_trial(config_json: str) -> float:
    """`nominal_seconds_per_trial` of a configuration given as its canonical JSON."""
    return nominal_seconds_per_trial(SimConfig.from_json(json.loads(config_json)))


def chunk_seconds(seconds_per_trial: float, n_trials: int) -> float:
    """Nominal seconds of a chunk of `n_trials` trials, its bookkeeping included."""
    return seconds_per_trial * n_trials + CHUNK_OVERHEAD_SECONDS


def fresh_run_workers(work: WorkEstimate) -> int:
    """The processes `initsweep run` starts by default for a plan of nominal `work`
    (`estimate.local_workers` of what its chunks' `chunk_seconds` sum to: the trials'
    core-seconds and each chunk's overhead), as `scheduler.sweeps.run_here` decides it."""
    return local_workers(work.est_core_seconds + work.n_chunks * CHUNK_OVERHEAD_SECONDS)


def task_units(seconds: float, task_seconds: float = TASK_SECONDS) -> float:
    """The share of a task a chunk of `seconds` is: 1 for a chunk that is a task of its own."""
    return 1.0 if task_seconds <= 0 else min(1.0, seconds / task_seconds)


def max_task_chunks(task_seconds: float = TASK_SECONDS) -> int:
    """The most chunks a task of `task_seconds` can hold (each costs CHUNK_OVERHEAD_SECONDS)."""
    return math.ceil(task_seconds / CHUNK_OVERHEAD_SECONDS) + 1


def spread_task_seconds(total_seconds: float, workers: int) -> float:
    """`TASK_SECONDS`, lowered so that `total_seconds` of work make at least 4 tasks per
    worker (a small sweep is still spread over every process, and its end is balanced)."""
    return min(TASK_SECONDS, total_seconds / (4 * max(1, workers)))


def group_tasks(
    work: Iterable[tuple[int, float]], task_seconds: float = TASK_SECONDS
) -> list[tuple[int, ...]]:
    """Consecutive (chunk id, `chunk_seconds`) grouped into tasks, in order (module doc); a
    `task_seconds` of 0 makes every chunk its own task."""
    tasks: list[tuple[int, ...]] = []
    current: list[int] = []
    total = 0.0
    for chunk_id, seconds in work:
        if seconds >= task_seconds:
            if current:
                tasks.append(tuple(current))
                current, total = [], 0.0
            tasks.append((chunk_id,))
            continue
        current.append(chunk_id)
        total += seconds
        if total >= task_seconds:
            tasks.append(tuple(current))
            current, total = [], 0.0
    if current:
        tasks.append(tuple(current))
    return tasks


@functools.lru_cache(maxsize=1024)  # immutable: configurations of one size share their chunks
def split_trials(
    trials: int, chunk_trials: int, *, start: int = 0, first_index: int = 0
) -> tuple[ChunkPlan, ...]:
    """Consecutive chunks covering [start, trials), indexed from `first_index`; the last may
    be shorter."""
    if trials - start < 1 or chunk_trials < 1:
        raise ValueError(
            f"expected positive trials and chunk_trials. Received: {trials - start}, {chunk_trials}"
        )
    return tuple(
        ChunkPlan(
            chunk_index=first_index + i, trial_start=s, n_trials=min(chunk_trials, trials - s)
        )
        for i, s in enumerate(range(start, trials, chunk_trials))
    )


def plan_sweep(spec: ExpandedSweep) -> SweepPlan:
    """Configurations, seeds and chunks of `spec` (its configurations as parsing expanded them);
    raises BudgetError (located) when one trial of a configuration does not fit
    `spec.memory_budget_bytes`, and SpecError when the sweep has more than MAX_SWEEP_TRIALS
    trials or MAX_CHUNKS chunks (counted before any chunk is built). Chunk sizes and budgets
    read a configuration through `estimate.cost_key` and its input geometry only: each is
    decided once per such key, in order. The cyclic collector is paused meanwhile
    (10^5 plans, no cycles: `scheduler.bulk`)."""
    with collector_paused():
        return _plan_sweep(spec)


def _plan_sweep(spec: ExpandedSweep) -> SweepPlan:
    """`plan_sweep`, the collector running as the caller left it."""
    sizes: list[int] = []
    fitted: dict[tuple[object, ...], int] = {}  # what both read: cost_key and input geometry
    for item in spec.configurations:
        key = (cost_key(item.config), item.config.input_q is not None)
        chunk_trials = fitted.get(key)
        if chunk_trials is None:  # a refused configuration is never cached: each one raises
            chunk_trials = plan_chunk_trials(
                item.config, spec.trials, spec.chunk_trials, spec.target
            )
            _check_budget(item, chunk_trials, spec.memory_budget_bytes)
            fitted[key] = chunk_trials
        sizes.append(chunk_trials)
    _check_size(spec, sizes)
    configs: list[ConfigPlan] = []
    hashes = [item.config.config_hash for item in spec.configurations]
    seed_keys = config_seed_keys(spec.seed, hashes) if hashes else []
    for item, chunk_trials, seed_key in zip(spec.configurations, sizes, seed_keys, strict=True):
        config = item.config
        configs.append(
            ConfigPlan(
                config=config,
                seed=spec.seed,
                seed_key=seed_key,
                trials=spec.trials,
                chunk_trials=chunk_trials,
                chunks=split_trials(spec.trials, chunk_trials),
                queue=spec.queue,
                axes=dict(item.axes),
                target=spec.target,
            )
        )
    return SweepPlan(
        name=spec.name,
        seed=spec.seed,
        spec_yaml=spec.spec_yaml,
        spec_json=spec.to_json(),
        configs=tuple(configs),
        memory_budget_bytes=spec.memory_budget_bytes,
    )


def _check_size(spec: ExpandedSweep, chunk_sizes: list[int]) -> None:
    """Refuse a sweep too large to record, by arithmetic (nothing per chunk is built)."""
    n_configs = len(chunk_sizes)
    configs = f"{n_configs:,} configuration{'' if n_configs == 1 else 's'}"
    total_trials = n_configs * spec.trials
    if total_trials > MAX_SWEEP_TRIALS:
        raise SpecError(
            f"trials: expected at most {MAX_SWEEP_TRIALS:,} trials in a sweep. Received: "
            f"{spec.trials:,} trials x {configs} = {total_trials:,}"
        )
    n_chunks = sum(-(-spec.trials // size) for size in chunk_sizes)
    if n_chunks > MAX_CHUNKS:
        if spec.chunk_trials is not None:
            where, hint = (
                "chunk_trials",
                "raise chunk_trials, or leave it out to size chunks automatically",
            )
        else:
            where, hint = "trials", "lower trials or split the sweep"
        raise SpecError(
            f"{where}: expected at most {MAX_CHUNKS:,} chunks in a sweep (each is a database "
            f"row and a message). Received: {n_chunks:,} chunks ({configs} x {spec.trials:,} "
            f"trials); {hint}"
        )


def _check_budget(item: ExpandedConfig, chunk_trials: int, budget: int) -> None:
    try:
        sub_batch_size(item.config, chunk_trials, budget)
        check_budget(item.config, budget)
    except MemoryBudgetError as e:
        labels = ", ".join(f"{k}={v}" for k, v in item.axes.items())
        where = f"{item.origin} ({labels})" if labels else item.origin
        raise BudgetError(f"{where}: {e}") from e

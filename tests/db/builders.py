"""Hand-built plans and chunk outcomes (numpy only: no TensorFlow, no worker.sim)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np

from scheduler.plan import ChunkPlan, ConfigPlan, SweepPlan
from worker.contract import (
    ACTIVATIONS,
    BIAS_SCHEMES,
    INIT_SCHEMES,
    QUANTITIES,
    ChunkOutcome,
    ChunkTask,
    LayerRecord,
    Provenance,
    Scheme,
    SimConfig,
    TrialDistribution,
    canonical_scheme,
)
from worker.histogram import Histogram, keys
from worker.seeding import config_seed_key
from worker.stats import Moments, Moments4


def sim_config(
    *, init: str = "he_normal", activation: str = "tanh", depth: int = 3, width: int = 8, **kw: Any
) -> SimConfig:
    """A small configuration with canonical schemes."""
    return SimConfig(
        init=canonical_scheme(INIT_SCHEMES, init, {}),
        activation=canonical_scheme(ACTIVATIONS, activation, {}),
        depth=depth,
        width=width,
        input_dim=kw.pop("input_dim", width),
        **kw,
    )


def random_bias_and_inputs(rng: random.Random) -> tuple[Scheme, float | None, float | None]:
    """A bias (zeros, or normal with std 0.05, 0.5 or 1e-30) and an input geometry (input_q None,
    1, 0.3 or 1e-7; input_corr None, 0.6 or -0.25 where input_q is set) drawn by `rng`."""
    std = rng.choice([0.0, 0.05, 0.5, 1e-30])
    bias = canonical_scheme(BIAS_SCHEMES, "normal", {"std": std}) if std else Scheme("zeros")
    input_q = rng.choice([None, None, 1.0, 0.3, 1e-7])
    input_corr = None if input_q is None else rng.choice([None, 0.6, -0.25])
    return bias, input_q, input_corr


def varied_configs(n: int, rng: random.Random) -> list[SimConfig]:
    """`n` configurations drawn by `rng` over every activation, dtype, init family and input
    geometry, then networks that overflow or collapse within their depth in every dtype, then
    the first 8 again at depths 3 and 7 (theory shared by prefix)."""
    inits: list[tuple[str, dict[str, Any]]] = [
        ("variance_scaling", {"scale": 1.0, "distribution": "untruncated_normal"}),
        ("variance_scaling", {"scale": 6.0, "distribution": "untruncated_normal"}),
        ("normal", {"std": 3.0}),  # overflow within the depth
        ("normal", {"std": 0.05}),  # collapse
        ("normal", {"std": 0.1, "mean": 0.1}),  # non-centred
        ("orthogonal", {"gain": 1.0}),
        ("glorot_uniform", {}),
        ("he_normal", {}),
    ]
    out = []
    names = list(ACTIVATIONS)
    for i in range(n):
        name = names[i % len(names)]  # every activation
        params = {"alpha": rng.choice([0.01, 5.0])} if name in ("leaky_relu", "elu") else {}
        init, init_params = rng.choice(inits)
        bias, input_q, input_corr = random_bias_and_inputs(rng)
        out.append(
            SimConfig(
                init=canonical_scheme(INIT_SCHEMES, init, init_params),
                activation=canonical_scheme(ACTIVATIONS, name, params),
                depth=rng.choice([1, 2, 5, 10, 40]),
                width=rng.choice([2, 16, 64]),
                input_dim=rng.choice([2, 16]),
                dtype=rng.choice(["float32", "float64", "float16", "bfloat16"]),
                bias=bias,
                batch=1 if input_corr is None else 2,
                input_q=input_q,
                input_corr=input_corr,
            )
        )
    # overflow and collapse within the depth, in every dtype
    for name, std, dtype in [
        ("linear", 3.0, "float16"),
        ("relu", 4.0, "float32"),
        ("linear", 0.02, "float32"),
        ("tanh", 0.01, "float64"),
        ("selu", 0.01, "bfloat16"),
        ("linear", 40.0, "float64"),
    ]:
        out.append(
            SimConfig(
                init=canonical_scheme(INIT_SCHEMES, "normal", {"std": std}),
                activation=canonical_scheme(ACTIVATIONS, name, {}),
                depth=60,
                width=64,
                input_dim=64,
                dtype=dtype,
            )
        )
    # the same networks at other depths: walks and recursions shared by prefix
    out += [dataclasses.replace(c, depth=d) for c in out[:8] for d in (3, 7)]
    return out


def config_plan(
    config: SimConfig,
    *,
    seed: int = 7,
    trials: int = 40,
    chunk_trials: int = 10,
    queue: str = "cpu",
    axes: dict[str, Any] | None = None,
) -> ConfigPlan:
    """The plan of `config`: `trials` split into chunks of `chunk_trials` (last one shorter)."""
    chunks = tuple(
        ChunkPlan(i, start, min(chunk_trials, trials - start))
        for i, start in enumerate(range(0, trials, chunk_trials))
    )
    return ConfigPlan(
        config=config,
        seed=seed,
        seed_key=config_seed_key(seed, config.config_hash),
        trials=trials,
        chunk_trials=chunk_trials,
        chunks=chunks,
        queue=queue,
        axes=axes if axes is not None else {"width": config.width, "depth": config.depth},
    )


def sweep_plan(
    configs: list[ConfigPlan], *, name: str = "test", seed: int = 7, budget: int = 1 << 30
) -> SweepPlan:
    """A sweep of these configuration plans."""
    return SweepPlan(
        name=name,
        seed=seed,
        spec_yaml=f"name: {name}\nseed: {seed}\n",
        spec_json={
            "name": name,
            "seed": seed,
            "grid": {"width": [c.config.width for c in configs]},
        },
        configs=tuple(configs),
        memory_budget_bytes=budget,
    )


def grid(widths: list[int], **kw: Any) -> list[ConfigPlan]:
    """One configuration plan per width."""
    return [config_plan(sim_config(width=w), **kw) for w in widths]


def layer_records(task: ChunkTask, salt: int = 0) -> tuple[LayerRecord, ...]:
    """Plausible records of a chunk: per-trial observables, some trials overflowing at depth.

    Trial t first becomes non-finite at a random layer (or never); it is finite at layers
    before that. Moments are two-pass over the finite trials, as the core computes them; the
    distribution's histograms count the finite trials' mean, |std| and mean_sq = std^2 (some 0)
    and its log moments those whose mean_sq is not 0. For batch >= 2 the pair observables too:
    cross over the finite trials, corr over those without a zero vector (about 80%).
    """
    rng = np.random.default_rng([task.seed_key, task.chunk_index, salt])
    n, depth = task.n_trials, task.config.depth
    first_bad = np.where(rng.random(n) < 0.3, rng.integers(1, depth + 1, n), depth + 1)
    collapsed = rng.random(n) < 0.1
    records = []
    for layer in range(depth + 1):
        quantities = ("activation",) if layer == 0 else QUANTITIES
        finite = first_bad > layer
        for q in quantities:
            values = rng.normal(loc=layer, scale=1.0 + layer, size=(n, 3)) * np.pi
            moments = [Moments.of(values[finite, j]) for j in range(3)]
            ms = np.where(collapsed, 0.0, values[:, 1] ** 2)[finite]
            dtype = task.config.dtype
            dist = TrialDistribution(
                Moments4.of(np.log(ms[ms > 0.0])),
                Histogram.of_keys(keys(values[finite, 0], dtype)),
                Histogram.of_keys(keys(np.abs(values[finite, 1]), dtype)),
                Histogram.of_keys(keys(ms, dtype)),
            )
            cross = corr = None
            if task.config.batch >= 2:
                pair = rng.normal(size=(n, 2))
                defined = finite & (rng.random(n) < 0.8)
                cross = Moments.of(pair[finite, 0] * 10.0 ** (layer - 1))
                corr = Moments.of(np.tanh(pair[defined, 1]))
            records.append(
                LayerRecord(
                    layer=layer,
                    quantity=q,
                    n_trials=n,
                    n_finite=int(finite.sum()),
                    n_first_nonfinite=int((first_bad == layer).sum()),
                    n_collapsed=int((collapsed & finite).sum()),
                    mean=moments[0],
                    std=moments[1],
                    mean_sq=moments[2],
                    dist=dist,
                    cross=cross,
                    corr=corr,
                )
            )
    return tuple(records)


def outcome_for(task: ChunkTask, salt: int = 0) -> ChunkOutcome:
    """A ChunkOutcome of `task` with hand-built records and provenance."""
    return ChunkOutcome(
        chunk_index=task.chunk_index,
        n_trials=task.n_trials,
        records=layer_records(task, salt),
        provenance=Provenance(
            tf_version="2.99.0-test",
            device="/cpu:0",
            sampler=task.config.sampler,
            dtype=task.config.dtype,
            seed_key=task.seed_key,
            duration_s=0.125,
            sub_batch=task.n_trials,
        ),
    )

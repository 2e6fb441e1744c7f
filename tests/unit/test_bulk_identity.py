"""The bulk paths of validation give what the one-at-a-time definitions give, bit for bit:
seed keys against numpy's SeedSequence, canonical JSON against json.dumps, batched Gaussian
moments and walks against one log q / one configuration at a time, the exactness limits of
a batch against each configuration alone, and the plan's chunk sizes, the estimate and the wall
estimate (decided once per key) against each configuration on its own; the collector they pause
(`scheduler.bulk`) is restored."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import random

import numpy as np
import pytest

from scheduler.analysis.theory import gaussian
from scheduler.analysis.theory.finite_width import forget_walks, norm_walk, norm_walks
from scheduler.bulk import collector_paused
from scheduler.chunking import plan_chunk_trials, plan_sweep
from scheduler.errors import SpecError
from scheduler.estimate import (
    DEFAULT_WALL_MODEL,
    estimate,
    graph_shape,
    nominal_seconds_per_trial,
    random_numbers_per_trial,
    trial_wall_seconds,
    wall_estimate,
)
from scheduler.plan import SweepPlan
from scheduler.spec import exactness, parse_spec
from tests.db.builders import random_bias_and_inputs
from worker.contract import (
    ACTIVATIONS,
    BIAS_SCHEMES,
    INIT_SCHEMES,
    Scheme,
    SimConfig,
    canonical_scheme,
)
from worker.memory import chunk_bytes, sub_batch_size
from worker.schemes import is_iid_gaussian
from worker.seeding import config_seed_key, config_seed_keys


def _reference_key(seed: int, config_hash: str) -> int:
    words = [int(config_hash[i : i + 8], 16) for i in range(0, 32, 8)]
    ss = np.random.SeedSequence(entropy=[seed, *words])
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & ((1 << 63) - 1)


@pytest.mark.parametrize("seed", [0, 1, 3, 2**32 - 1, 2**32, 2**40 + 7, 2**64 - 1, 2**70 + 5])
def test_seed_keys_are_seedsequence_words(seed: int) -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    hashes += ["0" * 64, "f" * 64, "F" * 64]
    expected = [_reference_key(seed, h) for h in hashes]
    assert config_seed_keys(seed, hashes) == expected
    assert config_seed_key(seed, hashes[0]) == expected[0]


def test_seed_keys_refuse_a_negative_seed() -> None:
    with pytest.raises(ValueError, match="seed: expected a non-negative integer"):
        config_seed_keys(-1, ["0" * 64])


def _configs(n: int, rng: random.Random) -> list[SimConfig]:
    out = []
    for _ in range(n):
        name = rng.choice(list(ACTIVATIONS))
        params = {"alpha": rng.choice([0.01, 0.2, 5.0])} if name in ("leaky_relu", "elu") else {}
        init = rng.choice(
            [
                canonical_scheme(
                    INIT_SCHEMES,
                    "variance_scaling",
                    {"scale": rng.uniform(0.01, 9.0), "distribution": "untruncated_normal"},
                ),
                canonical_scheme(INIT_SCHEMES, "normal", {"std": rng.choice([0.0, 0.05, 3.0])}),
                canonical_scheme(INIT_SCHEMES, "normal", {"std": 0.1, "mean": 0.1}),
                canonical_scheme(INIT_SCHEMES, "orthogonal", {"gain": 1.0}),
            ]
        )
        bias, input_q, input_corr = random_bias_and_inputs(rng)
        out.append(
            SimConfig(
                init=init,
                activation=canonical_scheme(ACTIVATIONS, name, params),
                depth=rng.choice([1, 2, 3, 10, 60, 300]),
                width=rng.choice([2, 16, 64]),
                input_dim=rng.choice([2, 16]),
                dtype=rng.choice(["float32", "float64", "float16", "bfloat16"]),
                bias=bias,
                sampler=rng.choice(["dense", "conditional"]),
                batch=1 if input_corr is None else 2,
                input_q=input_q,
                input_corr=input_corr,
            )
        )
    return out


def test_canonical_json_is_json_dumps() -> None:
    for config in _configs(300, random.Random(1)):
        expected = json.dumps(config.to_json(), sort_keys=True, separators=(",", ":"))
        assert config.canonical_json() == expected
    odd = SimConfig(Scheme("normal", (("std", -0.0),)), Scheme('t"x'), 2, 3, 3, dtype="é")
    assert odd.canonical_json() == json.dumps(odd.to_json(), sort_keys=True, separators=(",", ":"))


def _bits(m: gaussian.ActivationMoments) -> tuple[str, ...]:
    return tuple(float(v).hex() for v in dataclasses.astuple(m))


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_batched_moments_are_the_single_ones(name: str) -> None:
    activation = canonical_scheme(ACTIVATIONS, name, {})
    rng = np.random.default_rng(0)
    log_qs = [float(x) for x in rng.uniform(-8.0, 8.0, 40)]
    log_qs += [0.0, math.log(1e150) + 1.0, math.log(1e-150) - 1.0, 300.0, -300.0]
    batch = gaussian.moments_at_log_qs(activation, log_qs)
    for log_q, m in zip(log_qs, batch, strict=True):
        gaussian.forget_moments()
        assert _bits(m) == _bits(gaussian.moments_at_log_q(activation, log_q)), log_q


def test_batched_rules_are_the_single_ones() -> None:
    scales = [1e-9, 0.3, 1.0, 1 / 3, 12.0, 40.0, 1e9, *np.exp(np.linspace(-30, 30, 50))]
    for fine in (1.0, 0.3, 1e-9):
        z, w, bounds = gaussian._gauss_rules(scales, fine)
        for r, s in enumerate(scales):
            gaussian._gauss_rule.cache_clear()
            z1, w1 = gaussian._gauss_rule(float(s), fine)
            row = slice(bounds[r], bounds[r + 1])
            assert z[row].tobytes() == z1.tobytes() and w[row].tobytes() == w1.tobytes()


def test_walks_together_are_walks_alone() -> None:
    configs = _configs(40, random.Random(2))
    walks = norm_walks([(c, c.depth) for c in configs])
    for c, (mu, var, used) in zip(configs, walks, strict=True):
        forget_walks()
        mu1, var1 = norm_walk(c, c.depth)
        assert mu.tobytes() == mu1.tobytes() and var.tobytes() == var1.tobytes()
        assert len(used) == c.depth - 1


def test_limits_together_are_limits_alone() -> None:
    configs = _configs(400, random.Random(3))
    exactness._cache.clear()
    together = exactness.conditional_limits(configs)
    alone = []
    for c in configs:
        exactness._cache.clear()
        alone.append(exactness.conditional_limit(c))
    assert together == alone
    assert any(limit is None for limit in alone) and any(limit is not None for limit in alone)


def test_screened_limits_are_the_exact_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Walks of smooth activations screened on tabulated moments (`exactness._screen`) decide
    as the exact walks do, on a grid whose deep gradients cross the flush range's floor."""
    configs = [
        SimConfig(
            init=canonical_scheme(
                INIT_SCHEMES,
                "variance_scaling",
                {"scale": sw * sw, "distribution": "untruncated_normal"},
            ),
            activation=canonical_scheme(ACTIVATIONS, name, {}),
            depth=depth,
            width=32,
            input_dim=32,
            dtype=dtype,
            bias=canonical_scheme(BIAS_SCHEMES, "normal", {"std": sb}) if sb else Scheme("zeros"),
        )
        for name in ("tanh", "gelu", "sigmoid", "relu", "linear")
        for sw in (0.4, 0.7, 0.9, 1.0, 1.2, 1.6, 2.5, 4.0)
        for sb in (0.0, 0.3, 1.0)
        for depth in (30, 150, 300)
        for dtype in ("float32", "bfloat16", "float64")
    ]
    screened: list[bool] = []
    real_screen = exactness._screen

    def spy(members, kernels):  # type: ignore[no-untyped-def]
        out = real_screen(members, kernels)
        screened.extend(out)
        return out

    monkeypatch.setattr(exactness, "_screen", spy)
    exactness._cache.clear()
    fast = exactness.conditional_limits(configs)
    monkeypatch.setattr(exactness, "_SCREEN_MIN_LAYERS", 10**9)
    exactness._cache.clear()
    exact = exactness.conditional_limits(configs)
    exactness._cache.clear()
    assert fast == exact
    n_cleared = sum(screened[: len(screened) // 2])
    assert n_cleared >= 5, n_cleared  # the screen decided groups itself
    assert sum(limit is not None and limit.quantity == "gradient" for limit in exact) >= 20
    assert sum(limit is None for limit in exact) >= 100


# --- planning and estimates: decided once per key, summed per configuration -------------------

_MIXED_SPEC = """
name: mixed
seed: 5
trials: 230
memory_budget: 256 MiB
grid:
  init: [he_normal, orthogonal, {name: uniform, low: -0.1, high: 0.1}, {name: normal, std: 0.05}]
  activation: [tanh, relu]
  bias: [zeros, {name: normal, std: 0.3}]
  depth: [1, 3, 40]
  dtype: [float32, float64]
  sampler: [auto, dense]
zip:
  width: [8, 512]
  input_dim: [8, 300]
  input_q: [1.0, 0.5]
configs:
  - {init: he_normal, activation: relu, depth: 4, width: 16, batch: 2, input_corr: 0.2}
  - {init: he_normal, activation: relu, depth: 4, width: 16}
"""

# One cost key, with and without an input geometry (which the memory model reads): the second
# configuration's peak is the sweep's.
_GEOMETRY_SPEC = """
name: geometry
seed: 5
trials: 230
configs:
  - {init: he_normal, activation: relu, depth: 3, width: 64}
  - {init: he_normal, activation: relu, depth: 3, width: 64, input_q: 1.0}
"""


def _reference_estimate(plan: SweepPlan) -> dict[str, object]:
    """`estimate`'s per-configuration totals as its definition reads: every configuration on
    its own, in plan order."""
    normals, seconds, peak, longest, n_conditional, n_range = 0, 0.0, 0, 0.0, 0, 0
    for cp in plan.configs:
        c = cp.config
        if c.sampler == "conditional":
            n_conditional += 1
        elif is_iid_gaussian(c.init) and exactness.conditional_limit(c) is not None:
            n_range += 1
        per_trial = nominal_seconds_per_trial(c)
        normals += random_numbers_per_trial(c) * cp.trials
        seconds += per_trial * cp.trials
        longest = max(longest, per_trial * max(ch.n_trials for ch in cp.chunks))
        sub = sub_batch_size(c, cp.chunk_trials, plan.memory_budget_bytes)
        peak = max(peak, chunk_bytes(c, sub))
    totals = (normals, seconds, peak, longest, n_conditional, n_range)
    names = ("random_numbers", "est_core_seconds", "peak_bytes_per_worker")
    names += ("longest_chunk_seconds", "n_conditional", "n_dense_for_range")
    return dict(zip(names, totals, strict=True))


def _reference_wall(plan: SweepPlan, workers: int, cores: int) -> tuple[float | int, ...]:
    """`wall_estimate`'s fields as its definition reads: every configuration and chunk size on
    its own."""
    m = DEFAULT_WALL_MODEL
    procs = max(1, min(workers, plan.n_chunks))
    work = trace_total = longest = 0.0
    traces = 0
    shape_chunks: dict[tuple[object, ...], int] = {}
    for cp in plan.configs:
        c = cp.config
        trace = m.trace_s[c.sampler] + (m.orthogonal_trace_s if c.init.name == "orthogonal" else 0)
        trace *= m.dtype_factor.get(c.dtype, 1.0) ** 0.5
        key = graph_shape(c)
        before = min(shape_chunks.get(key, 0), procs)
        shape_chunks[key] = shape_chunks.get(key, 0) + len(cp.chunks)
        n_traces = min(shape_chunks[key], procs) - before
        traces += n_traces
        trace_total += n_traces * trace
        full, last = divmod(cp.trials, cp.chunk_trials)
        for n, count in ((cp.chunk_trials, full), (last, 1 if last else 0)):
            if count:
                size = sub_batch_size(c, n, plan.memory_budget_bytes)
                per_sub = m.call_s[c.sampler] + c.depth * m.layer_s[c.sampler]
                chunk = -(-n // size) * per_sub + n * trial_wall_seconds(c) + m.chunk_overhead_s
                work += count * chunk
                longest = max(longest, chunk + trace)
    start = m.cli_start_s + m.worker_start_s * -(-procs // cores)
    compute = max((work + trace_total) / min(procs, cores), longest)
    seconds = start + compute + m.finish_s + m.finish_per_config_s * len(plan.configs)
    return (seconds, start, traces, trace_total, work, procs)


@pytest.mark.parametrize("text", [_MIXED_SPEC, _GEOMETRY_SPEC])
def test_plan_and_estimates_are_the_per_configuration_definitions(text: str) -> None:
    """`plan_sweep` decides chunk sizes and budgets once per cost key, `estimate` and
    `wall_estimate` price once per key: the same chunks and the same floats, bit for bit, as
    each configuration on its own, on sweeps mixing every field those keys read."""
    spec = parse_spec(text)
    plan = plan_sweep(spec)
    for cp, item in zip(plan.configs, spec.configurations, strict=True):
        assert cp.chunk_trials == plan_chunk_trials(item.config, spec.trials, None)
    exactness._cache.clear()
    fast = estimate(plan)
    exactness._cache.clear()
    reference = _reference_estimate(plan)
    assert {k: v for k, v in dataclasses.asdict(fast).items() if k in reference} == reference
    if text == _MIXED_SPEC:
        assert len({cp.chunk_trials for cp in plan.configs}) > 1
        assert fast.n_conditional and fast.n_dense_for_range
    for workers, cores in ((1, 1), (2, 2), (8, 3)):
        wall = wall_estimate(plan, workers=workers, cores=cores)
        assert dataclasses.astuple(wall) == _reference_wall(plan, workers, cores)


def test_collector_paused_restores_the_collector_as_it_was() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outermost block restores it
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("inside")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_expansion_and_planning_leave_the_collector_running() -> None:
    plan = plan_sweep(parse_spec(_GEOMETRY_SPEC))
    estimate(plan)
    assert gc.isenabled()
    with pytest.raises(SpecError, match=r"configs\[1\]"):
        parse_spec(_GEOMETRY_SPEC.replace("input_q: 1.0", "input_q: 1.0, sampler: conditional"))
    assert gc.isenabled()

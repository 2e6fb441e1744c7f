"""Chunking, planning and the nominal work estimate."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.chunking import (
    MAX_CHUNK_SECONDS,
    MIN_CHUNK_TRIALS,
    TARGET_CHUNK_SECONDS,
    auto_chunk_trials,
    plan_sweep,
    split_trials,
)
from scheduler.errors import BudgetError, UserError
from scheduler.estimate import (
    GAUSSIAN_DRAW_COST,
    WorkEstimate,
    estimate,
    flops_per_trial,
    gaussian_numbers_per_trial,
    nominal_seconds_per_trial,
    random_numbers_per_trial,
)
from scheduler.spec.expand import expand, expand_located
from scheduler.spec.parse import load_spec, parse_spec
from worker.contract import Scheme, SimConfig
from worker.memory import sub_batch_size, trial_bytes
from worker.seeding import config_seed_key

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def make_config(
    depth: int = 10,
    width: int = 64,
    *,
    batch: int = 1,
    init: str = "he_normal",
    sampler: str = "dense",
    dtype: str = "float32",
    input_dim: int | None = None,
) -> SimConfig:
    return SimConfig(
        init=Scheme(init),
        activation=Scheme("relu"),
        depth=depth,
        width=width,
        input_dim=input_dim or width,
        batch=batch,
        dtype=dtype,
        sampler=sampler,
    )


configs = st.builds(
    make_config,
    depth=st.integers(1, 300),
    width=st.integers(1, 4096),
    batch=st.integers(1, 64),
    init=st.sampled_from(["he_normal", "orthogonal", "normal"]),
    sampler=st.sampled_from(["dense", "conditional"]),
    dtype=st.sampled_from(["float32", "float64"]),
)


# --- auto_chunk_trials -----------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(configs, st.integers(1, 200_000))
def test_auto_chunk_bounds(config: SimConfig, trials: int) -> None:
    chunk = auto_chunk_trials(config, trials)
    assert 1 <= chunk <= trials
    assert chunk == auto_chunk_trials(config, trials)  # deterministic
    per_trial = nominal_seconds_per_trial(config)
    floor = min(trials, MIN_CHUNK_TRIALS)
    assert chunk * per_trial <= MAX_CHUNK_SECONDS or chunk == 1
    if floor * per_trial <= MAX_CHUNK_SECONDS:
        assert chunk >= floor
    if trials >= 200:
        assert math.ceil(trials / chunk) >= 2  # two workers can share the configuration
    n_chunks = math.ceil(trials / chunk)
    # at most ~2x the target (5-20 s), unless the minimum trials per chunk force more
    assert chunk * per_trial <= max(2 * TARGET_CHUNK_SECONDS, 2 * floor * per_trial)
    if chunk * per_trial < MAX_CHUNK_SECONDS / 2:
        # near-equal chunks: the last one is not a sliver
        assert trials - (n_chunks - 1) * chunk > chunk - n_chunks


def test_auto_chunk_aims_at_seconds_of_work() -> None:
    config = make_config(depth=30, width=512, init="glorot_uniform")  # ~0.05 s per trial
    chunk = auto_chunk_trials(config, 100_000)
    assert 5.0 <= chunk * nominal_seconds_per_trial(config) <= 20.0


def test_auto_chunk_small_trials_and_cheap_configs() -> None:
    tiny = make_config(depth=2, width=4)
    assert auto_chunk_trials(tiny, 1) == 1
    assert auto_chunk_trials(tiny, 49) == 49
    assert auto_chunk_trials(tiny, 199) == 199  # below 200: one chunk is fine
    assert auto_chunk_trials(tiny, 200) == 100
    assert auto_chunk_trials(tiny, 1000) == 500
    assert auto_chunk_trials(tiny, 99) == 99  # two chunks would be under 50 trials


def test_auto_chunk_expensive_trials_stay_under_a_few_minutes() -> None:
    huge = make_config(depth=200, width=8192)  # ~90 s per trial under the model
    chunk = auto_chunk_trials(huge, 1000)
    assert chunk * nominal_seconds_per_trial(huge) <= MAX_CHUNK_SECONDS
    assert chunk >= 1


def test_auto_chunk_rejects_no_trials() -> None:
    with pytest.raises(ValueError, match="trials"):
        auto_chunk_trials(make_config(), 0)


# --- split_trials ----------------------------------------------------------------------------


@settings(deadline=None)
@given(st.integers(1, 20_000), st.integers(1, 20_000))
def test_split_covers_trials_exactly(trials: int, chunk_trials: int) -> None:
    chunks = split_trials(trials, chunk_trials)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].trial_start == 0
    for a, b in itertools.pairwise(chunks):
        assert b.trial_start == a.trial_start + a.n_trials
        assert a.n_trials == chunk_trials
    assert chunks[-1].trial_start + chunks[-1].n_trials == trials
    assert 1 <= chunks[-1].n_trials <= chunk_trials
    assert sum(c.n_trials for c in chunks) == trials


def test_split_example() -> None:
    assert [(c.trial_start, c.n_trials) for c in split_trials(1000, 300)] == [
        (0, 300),
        (300, 300),
        (600, 300),
        (900, 100),
    ]


# --- plan_sweep ------------------------------------------------------------------------------

SPEC = """
name: plan
seed: 3
trials: 1000
chunk_trials: 300
queue: gpu
grid:
  init: [he_normal, {name: normal, std: 0.5}]
  activation: [relu, tanh]
fixed: {depth: 3, width: 8}
"""


def test_plan_sweep() -> None:
    spec = parse_spec(SPEC)
    plan = plan_sweep(spec)
    expanded = expand(spec)
    assert plan.name == "plan" and plan.seed == 3
    assert plan.spec_yaml == SPEC
    assert plan.spec_json == spec.to_json()
    assert plan.memory_budget_bytes == 1 << 30
    assert len(plan.configs) == len(expanded) == 4
    for cp, (config, axes) in zip(plan.configs, expanded, strict=True):
        assert cp.config == config and cp.axes == axes
        assert cp.seed == 3 and cp.trials == 1000 and cp.chunk_trials == 300
        assert cp.seed_key == config_seed_key(3, config.config_hash)
        assert cp.queue == "gpu"
        assert [c.n_trials for c in cp.chunks] == [300, 300, 300, 100]
    assert plan.n_chunks == 16 and plan.n_trials == 4000
    assert len({cp.seed_key for cp in plan.configs}) == 4


def test_a_sweep_is_expanded_once_and_planned_from_its_parse() -> None:
    spec = parse_spec(SPEC)
    assert list(spec.configurations) == expand_located(spec)
    plan = plan_sweep(spec)
    for cp, item in zip(plan.configs, spec.configurations, strict=True):
        assert cp.config is item.config  # the parsed expansion itself, not a second one


def test_plan_is_deterministic_and_seed_keys_follow_content_not_order() -> None:
    a = plan_sweep(parse_spec(SPEC))
    b = plan_sweep(parse_spec(SPEC.replace("[relu, tanh]", "[tanh, relu]")))
    assert a == plan_sweep(parse_spec(SPEC))
    keys_a = {cp.config_hash: cp.seed_key for cp in a.configs}
    keys_b = {cp.config_hash: cp.seed_key for cp in b.configs}
    assert keys_a == keys_b


def test_chunk_trials_larger_than_trials_is_one_chunk() -> None:
    plan = plan_sweep(parse_spec(SPEC.replace("chunk_trials: 300", "chunk_trials: 5000")))
    assert all(cp.chunk_trials == 1000 and len(cp.chunks) == 1 for cp in plan.configs)


def test_auto_chunking_in_plan() -> None:
    plan = plan_sweep(parse_spec(SPEC.replace("chunk_trials: 300\n", "")))
    for cp in plan.configs:
        assert cp.chunk_trials == auto_chunk_trials(cp.config, 1000)
        assert sum(c.n_trials for c in cp.chunks) == 1000


def test_run_key_depends_on_neither_trials_nor_chunking() -> None:
    """(config_hash, seed) is the content address: more trials grow a configuration."""
    a = plan_sweep(parse_spec(SPEC)).configs[0]
    b = plan_sweep(parse_spec(SPEC.replace("chunk_trials: 300", "chunk_trials: 250"))).configs[0]
    c = plan_sweep(parse_spec(SPEC.replace("trials: 1000", "trials: 400"))).configs[0]
    assert a.config_hash == b.config_hash == c.config_hash
    assert a.run_key == b.run_key == c.run_key
    d = plan_sweep(parse_spec(SPEC.replace("seed: ", "seed: 1"))).configs[0]
    assert d.run_key != a.run_key


def test_run_key_depends_on_the_target() -> None:
    target = "target: {statistic: std, quantity: activation, se: 0.01, min_trials: 100}\n"
    a = plan_sweep(parse_spec(SPEC)).configs[0]
    b = plan_sweep(parse_spec(target + SPEC)).configs[0]
    c = plan_sweep(parse_spec(target.replace("0.01", "0.02") + SPEC)).configs[0]
    assert len({a.run_key, b.run_key, c.run_key}) == 3
    auto = plan_sweep(parse_spec(target + SPEC.replace("chunk_trials: 300\n", ""))).configs[0]
    assert auto.target is not None and auto.chunk_trials == auto_chunk_trials(auto.config, 100)
    assert sum(c.n_trials for c in auto.chunks) == 1000  # planned up to the maximum


def test_budget_error_is_located() -> None:
    spec = parse_spec(
        "trials: 10\nfixed: {init: he_normal, activation: relu}\nconfigs:\n"
        "  - {depth: 1, width: 8}\n  - {depth: 2, width: 8}\n  - {depth: 3, width: 8}\n"
        "  - {depth: 100, width: 65536}\n"
    )
    with pytest.raises(BudgetError) as info:
        plan_sweep(spec)
    message = str(info.value)
    assert message.startswith("configs[3] (depth=100, width=65536): one trial needs about ")
    assert "over the memory budget of 1.0 GiB" in message
    assert "\n" not in message
    assert isinstance(info.value, UserError)


def test_budget_error_in_grid_names_the_axes() -> None:
    spec = parse_spec(
        "trials: 10\nmemory_budget: 1MiB\ngrid: {init: [he_normal], activation: [relu], "
        "width: [8, 2048]}\nfixed: {depth: 2}\n"
    )
    with pytest.raises(
        BudgetError, match=r"^grid \(init=he_normal, activation=relu, width=2048\): "
    ):
        plan_sweep(spec)


def test_budget_raised_by_memory_budget() -> None:
    text = (
        "trials: 10\nmemory_budget: BUDGET\n"
        "configs: [{init: he_normal, activation: relu, depth: 10, width: 4096}]\n"
    )
    with pytest.raises(BudgetError):
        plan_sweep(parse_spec(text.replace("BUDGET", "64MiB")))
    plan_sweep(parse_spec(text.replace("BUDGET", "4GiB")))


# --- estimate --------------------------------------------------------------------------------


def test_random_numbers_model() -> None:
    dense = make_config(depth=3, width=8, batch=2, input_dim=5)
    # kernels 5x8, 8x8, 8x8; input 2x5; probe 2x8
    assert random_numbers_per_trial(dense) == 40 + 64 + 64 + 10 + 16
    assert flops_per_trial(dense) == 4 * 2 * (40 + 64 + 64)
    cond = make_config(depth=3, width=8, batch=2, input_dim=5, sampler="conditional", init="normal")
    assert random_numbers_per_trial(cond) == 3 * (2 * 8 + 4 * 8) + 10 + 16
    biased = SimConfig(
        init=Scheme("he_normal"),
        activation=Scheme("relu"),
        depth=3,
        width=8,
        input_dim=8,
        bias=Scheme("normal", (("std", 0.1),)),
    )
    assert random_numbers_per_trial(biased) == 3 * 64 + 8 + 8 + 3 * 8
    assert nominal_seconds_per_trial(make_config(dtype="float64")) == pytest.approx(
        2 * nominal_seconds_per_trial(make_config())
    )
    assert flops_per_trial(make_config(init="orthogonal")) > flops_per_trial(make_config())


def test_gaussian_draws_cost_more_than_uniform_ones() -> None:
    uniform = make_config(depth=2, width=8, init="he_uniform")
    gaussian = make_config(depth=2, width=8, init="he_normal")
    assert random_numbers_per_trial(uniform) == random_numbers_per_trial(gaussian) == 128 + 16
    assert gaussian_numbers_per_trial(uniform) == 16  # input and gradient probe only
    assert gaussian_numbers_per_trial(gaussian) == 144
    ratio = nominal_seconds_per_trial(gaussian) / nominal_seconds_per_trial(uniform)
    assert 2.0 < ratio < GAUSSIAN_DRAW_COST + 0.01


def test_estimate_totals() -> None:
    plan = plan_sweep(parse_spec(SPEC))
    est = estimate(plan)
    assert isinstance(est, WorkEstimate)
    assert (est.n_configs, est.n_chunks, est.n_trials) == (4, 16, 4000)
    assert est.random_numbers == sum(
        random_numbers_per_trial(cp.config) * cp.trials for cp in plan.configs
    )
    assert est.est_core_seconds == pytest.approx(
        sum(nominal_seconds_per_trial(cp.config) * cp.trials for cp in plan.configs)
    )
    assert est.peak_bytes_per_worker == max(
        sub_batch_size(cp.config, cp.chunk_trials, plan.memory_budget_bytes)
        * trial_bytes(cp.config)
        for cp in plan.configs
    )
    assert est.peak_bytes_per_worker <= plan.memory_budget_bytes
    lines = est.lines()
    assert lines[0] == "configurations   4"
    assert any(line.startswith("chunks           16") for line in lines)
    assert any(line.startswith("trials           4,000") for line in lines)
    assert any("per worker process" in line for line in lines)
    assert all("\n" not in line for line in lines)


def test_estimate_says_which_gaussian_configurations_run_dense_for_their_range() -> None:
    """Issue 10 item 2: `auto` runs dense where values reach the flush-to-zero range, and
    `validate` says so."""
    spec = parse_spec(
        "name: v\nseed: 1\ntrials: 10\ngrid:\n  init: [{name: normal, std: 0.05}, he_normal]\n"
        "  activation: [linear]\n  depth: [40, 160]\n  width: [100]\n"
    )
    plan = plan_sweep(spec)
    samplers = {(cp.config.init.name, cp.config.depth): cp.config.sampler for cp in plan.configs}
    assert samplers[("normal", 40)] == "conditional" and samplers[("normal", 160)] == "dense"
    est = estimate(plan)
    assert (est.n_conditional, est.n_dense_for_range) == (1, 1)
    (line,) = [x for x in est.lines() if x.startswith("samplers")]
    assert line.startswith("samplers         1 conditional, 3 dense (1 with Gaussian weights")


@pytest.mark.parametrize(
    ("name", "max_core_seconds"),
    [
        ("quick.yaml", 1.0),
        ("seed_notebook.yaml", 120.0),
        ("init_comparison.yaml", 15 * 60.0),
        ("phase_diagram.yaml", 5 * 60.0),
        ("bench_100.yaml", 5 * 60.0),
    ],
)
def test_examples_are_sized_for_a_small_machine(name: str, max_core_seconds: float) -> None:
    plan = plan_sweep(load_spec(EXAMPLES / name))
    est = estimate(plan)
    assert est.est_core_seconds <= max_core_seconds
    assert est.longest_chunk_seconds <= MAX_CHUNK_SECONDS
    for cp in plan.configs:
        assert sum(c.n_trials for c in cp.chunks) == cp.trials

"""The wall-time model behind `validate`'s "about ... here" (its structure, not its constants:
benchmarks/bench_estimate.py compares it with measured runs)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.chunking import (
    CHUNK_OVERHEAD_SECONDS,
    chunk_seconds,
    fresh_run_workers,
    plan_sweep,
)
from scheduler.estimate import (
    DEFAULT_WALL_MODEL,
    WallModel,
    estimate,
    graph_shape,
    local_workers,
    nominal_seconds_per_trial,
    trial_wall_seconds,
    wall_estimate,
)
from scheduler.spec.parse import load_spec, parse_spec
from worker.contract import Scheme, SimConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

SPEC = """
name: wall
seed: 0
trials: 400
chunk_trials: 100
grid:
  sigma_w: [1.0, 1.5, 2.0]
fixed: {depth: 4, width: 16, activation: tanh, sampler: dense}
"""
TWO_SHAPES = """
name: two
seed: 0
trials: 400
chunk_trials: 100
grid:
  sigma_w: [1.0, 1.5]
  activation: [tanh, relu]
fixed: {depth: 4, width: 16, sampler: dense}
"""


def zero_model(**changes: object) -> WallModel:
    """Every constant 0 except the ones given."""
    zero = WallModel(
        machine="test",
        cli_start_s=0.0,
        worker_start_s=0.0,
        trace_s={"dense": 0.0, "conditional": 0.0},
        orthogonal_trace_s=0.0,
        call_s={"dense": 0.0, "conditional": 0.0},
        layer_s={"dense": 0.0, "conditional": 0.0},
        draw_s=dict.fromkeys(DEFAULT_WALL_MODEL.draw_s, 0.0),
        flop_s=0.0,
        dtype_factor={"float32": 1.0, "float64": 2.0},
        chunk_overhead_s=0.0,
        finish_s=0.0,
        finish_per_config_s=0.0,
    )
    return dataclasses.replace(zero, **changes)  # type: ignore[arg-type]


def test_one_trace_per_shape_and_process() -> None:
    plan = plan_sweep(parse_spec(SPEC))
    # three sigma_w, one graph shape (the numbers are fed to the graph), 12 chunks
    assert [len(cp.chunks) for cp in plan.configs] == [4, 4, 4]
    model = zero_model(trace_s={"dense": 1.0, "conditional": 0.0})
    for workers in (1, 2, 3, 8):
        est = wall_estimate(plan, workers=workers, cores=16, model=model)
        assert est.traces == workers
        assert est.seconds == pytest.approx(1.0)
    two = plan_sweep(parse_spec(TWO_SHAPES))  # tanh and relu: two shapes, 8 chunks each
    assert wall_estimate(two, workers=2, cores=16, model=model).traces == 2 * 2


def test_start_up_and_cores() -> None:
    plan = plan_sweep(parse_spec(SPEC))
    model = zero_model(cli_start_s=1.0, worker_start_s=5.0, chunk_overhead_s=1.0)
    two = wall_estimate(plan, workers=2, cores=2, model=model)
    assert two.start_s == 1.0 + 5.0
    assert two.seconds == pytest.approx(6.0 + plan.n_chunks / 2)
    # more processes than cores: start-up queues on the cores, the work does not go faster
    eight = wall_estimate(plan, workers=8, cores=2, model=model)
    assert eight.start_s == 1.0 + 5.0 * 4
    assert eight.seconds - eight.start_s == pytest.approx(two.seconds - two.start_s)
    one = wall_estimate(plan, workers=1, cores=2, model=model)
    assert one.seconds == pytest.approx(6.0 + plan.n_chunks)


def test_the_longest_chunk_bounds_the_wall() -> None:
    plan = plan_sweep(
        parse_spec(
            "name: one\nseed: 0\ntrials: 10\nconfigs: [{depth: 2, width: 8, sigma_w: 1.0, activation: relu}]\n"
        )
    )
    assert plan.n_chunks == 1
    est = wall_estimate(plan, workers=8, cores=8, model=zero_model(chunk_overhead_s=3.0))
    assert est.workers == 1 and est.seconds == pytest.approx(3.0)


def test_sub_batches_and_layers_are_priced() -> None:
    plan = plan_sweep(parse_spec(SPEC))
    model = zero_model(call_s={"dense": 1.0, "conditional": 0.0})
    calls = wall_estimate(plan, workers=1, cores=1, model=model).seconds
    assert calls == plan.n_chunks  # every chunk fits one sub-batch
    layers = zero_model(layer_s={"dense": 1.0, "conditional": 0.0})
    assert wall_estimate(plan, workers=1, cores=1, model=layers).seconds == 4 * plan.n_chunks


def config(init: str = "he_normal", **kw: object) -> SimConfig:
    fields = {"depth": 10, "width": 64, "input_dim": 64, **kw}
    return SimConfig(init=Scheme(init), activation=Scheme("relu"), **fields)  # type: ignore[arg-type]


def test_trial_cost_follows_the_measured_rates() -> None:
    model = DEFAULT_WALL_MODEL
    # measured: truncated normals cost more than normals, which cost more than uniforms
    assert model.draw_s["truncated"] > model.draw_s["normal"] > model.draw_s["uniform"]
    assert trial_wall_seconds(config("he_normal")) > trial_wall_seconds(config("he_uniform"))
    assert trial_wall_seconds(config(dtype="float64")) == pytest.approx(
        model.dtype_factor["float64"] * trial_wall_seconds(config())
    )
    assert trial_wall_seconds(config("orthogonal")) > trial_wall_seconds(config("he_normal"))
    # the nominal model (chunk sizes, content address) is a different, machine-free quantity
    assert nominal_seconds_per_trial(config()) != trial_wall_seconds(config())


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")))
def test_examples_estimate_is_finite_and_above_start_up(name: str) -> None:
    est = wall_estimate(plan_sweep(load_spec(ROOT / "examples" / name)), workers=2, cores=2)
    assert math.isfinite(est.seconds)
    assert est.seconds > DEFAULT_WALL_MODEL.cli_start_s + DEFAULT_WALL_MODEL.worker_start_s
    plan = plan_sweep(load_spec(ROOT / "examples" / name))
    assert (
        len({graph_shape(cp.config) for cp in plan.configs}) <= est.traces <= len(plan.configs) * 2
    )


def test_validate_prints_the_wall_estimate() -> None:
    spec = ROOT / "examples" / "quick.yaml"
    out = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "validate", str(spec), "--workers", "3"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    line = next(line for line in out.splitlines() if "wall (estimate)" in line)
    est = wall_estimate(plan_sweep(load_spec(spec)), workers=3)
    assert f"with {est.workers} worker processes" in line
    assert f"{est.traces:,} graph traces" in line


def test_local_workers_is_one_per_start_up_of_work_and_core() -> None:
    start = DEFAULT_WALL_MODEL.worker_start_s
    assert local_workers(0.0, cores=8) == 1
    assert local_workers(start * 1.99, cores=8) == 1
    assert local_workers(start * 2, cores=8) == 2
    assert local_workers(start * 5.5, cores=8) == 5
    assert local_workers(start * 1e6, cores=8) == 8
    assert local_workers(start * 1e6, cores=1) == 1
    assert local_workers(start * 3, cores=0) == 1  # no core count known: one


def test_fresh_run_workers_sums_what_run_sums() -> None:
    """validate's count comes from the estimate's totals; run's from its chunks' chunk_seconds:
    the same work either way, so the same count."""
    for spec in (SPEC, SPEC.replace("trials: 400", "trials: 4000000")):
        plan = plan_sweep(parse_spec(spec))
        by_chunk = sum(
            chunk_seconds(nominal_seconds_per_trial(cp.config), c.n_trials)
            for cp in plan.configs
            for c in cp.chunks
        )
        work = estimate(plan)
        total = work.est_core_seconds + work.n_chunks * CHUNK_OVERHEAD_SECONDS
        assert math.isclose(total, by_chunk, rel_tol=1e-12)
        assert fresh_run_workers(work) == local_workers(by_chunk)

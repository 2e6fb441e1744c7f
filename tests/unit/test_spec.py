"""Sweep spec parsing: every located error, defaults, YAML details, JSON round trip, examples."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.errors import SpecError, UserError
from scheduler.spec.expand import expand
from scheduler.spec.model import MAX_CONFIGS
from scheduler.spec.parse import load_spec, parse_spec, spec_from_json
from scheduler.spec.values import parse_byte_size
from worker.contract import Scheme

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OK_GRID = "grid: {init: [he_normal], activation: [relu], depth: [2], width: [4]}\n"


def error_of(text: str, source: str = "S.yaml") -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source=source)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- located errors, exact text --------------------------------------------------------------

EXACT = [
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu, rleu], depth: [1], width: [1]}",
        "grid.activation[1]: unknown activation 'rleu'; expected one of linear, tanh, sigmoid, "
        "relu, leaky_relu, elu, selu, gelu, swish, softplus; did you mean 'relu'?",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [1, 2, -4]}",
        "grid.width[2]: expected a positive integer. Received: -4",
    ),
    (
        "trials: many\n" + OK_GRID,
        "trials: expected a positive integer. Received: 'many'",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], foo: [1]}",
        "grid.foo: unknown axis 'foo'; expected one of init, activation, depth, width, "
        "input_dim, batch, dtype, bias, sampler, sigma_w, sigma_b, input_q, input_corr",
    ),
    (
        "trials: 10\ngrdi: {depth: [1]}",
        "unknown key 'grdi' at top level; expected one of name, description, seed, trials, "
        "target, chunk_trials, memory_budget, queue, grid, zip, random, configs, fixed; "
        "did you mean 'grid'?",
    ),
    (
        "trials: 10\nzip: {depth: [10, 20], width: [64, 128, 256]}\n"
        "fixed: {init: he_normal, activation: relu}",
        "zip: lists must have equal lengths. Received: depth has 2, width has 3",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [true], width: [1]}",
        "grid.depth[0]: expected a positive integer. Received: true (a boolean)",
    ),
    (
        "trials: true\n" + OK_GRID,
        "trials: expected a positive integer. Received: true (a boolean)",
    ),
    (
        "trials: 10.5\n" + OK_GRID,
        "trials: expected a positive integer. Received: 10.5",
    ),
    (
        "trials: 0\n" + OK_GRID,
        "trials: expected a positive integer. Received: 0",
    ),
    (
        OK_GRID,
        "trials: missing; expected a positive integer, the trials per configuration",
    ),
    (
        "trials: 10\nseed: -1\n" + OK_GRID,
        "seed: expected a non-negative integer below 2**63. Received: -1",
    ),
    (
        "trials: 10\nchunk_trials: 0\n" + OK_GRID,
        "chunk_trials: expected a positive integer. Received: 0",
    ),
    (
        "trials: 10\nqueue: cpus\n" + OK_GRID,
        "queue: unknown queue 'cpus'; expected one of cpu, gpu; did you mean 'cpu'?",
    ),
    (
        "trials: 10\nmemory_budget: lots\n" + OK_GRID,
        "memory_budget: expected a positive number of bytes, e.g. 1073741824, '512MiB' or "
        "'2GiB'. Received: 'lots'",
    ),
    (
        "trials: 10\nmemory_budget: 2GB0\n" + OK_GRID,
        "memory_budget: expected a positive number of bytes, e.g. 1073741824, '512MiB' or "
        "'2GiB'. Received: '2GB0'",
    ),
    (
        "trials: 10\nname: ''\n" + OK_GRID,
        "name: expected a non-empty string. Received: ''",
    ),
    (
        "trials: 10\ngrid: {init: [{name: normal, stdev: 1}], activation: [relu], depth: [1], "
        "width: [1]}",
        "grid.init[0].stdev: unknown parameter 'stdev' for init 'normal'; expected one of mean, "
        "std; did you mean 'std'?",
    ),
    (
        "trials: 10\ngrid: {init: [he_norml], activation: [relu], depth: [1], width: [1]}",
        "grid.init[0]: unknown init 'he_norml'; expected one of normal, uniform, "
        "truncated_normal, scaled_uniform, variance_scaling, glorot_uniform, glorot_normal, "
        "he_uniform, he_normal, lecun_uniform, lecun_normal, kaiming_normal, xavier_normal, "
        "orthogonal; did you mean 'he_normal'?",
    ),
    (
        "trials: 10\ngrid: {init: [{name: variance_scaling, mode: fan_ni}], activation: [relu], "
        "depth: [1], width: [1]}",
        "grid.init[0].mode: unknown mode 'fan_ni'; expected one of fan_in, fan_out, fan_avg; "
        "did you mean 'fan_in'?",
    ),
    (
        "trials: 10\ngrid: {init: [{name: variance_scaling, distribution: normal}], "
        "activation: [relu], depth: [1], width: [1]}",
        "grid.init[0].distribution: unknown distribution 'normal'; expected one of "
        "truncated_normal, untruncated_normal, uniform; did you mean one of 'truncated_normal', "
        "'untruncated_normal'?",
    ),
    (
        "trials: 10\ngrid: {init: [{name: variance_scaling, scale: 0}], activation: [relu], "
        "depth: [1], width: [1]}",
        "grid.init[0].scale: expected a positive number. Received: 0",
    ),
    (
        "trials: 10\ngrid: {init: [{name: normal, std: '0.1'}], activation: [relu], "
        "depth: [1], width: [1]}",
        "grid.init[0].std: expected a non-negative number. Received: '0.1'",
    ),
    (
        "trials: 10\ngrid: {init: [{name: normal, mean: .nan}], activation: [relu], "
        "depth: [1], width: [1]}",
        "grid.init[0].mean: expected a finite number. Received: nan",
    ),
    (
        "trials: 10\ngrid: {init: [{std: 1}], activation: [relu], depth: [1], width: [1]}",
        "grid.init[0]: expected a mapping with a 'name' key, e.g. {name: normal, std: 0.05}. "
        "Received: {'std': 1}",
    ),
    (
        "trials: 10\ngrid: {init: [3], activation: [relu], depth: [1], width: [1]}",
        "grid.init[0]: expected a init name or a mapping like {name: normal, std: 0.05}. "
        "Received: 3",
    ),
    (
        "trials: 10\ngrid: {init: [{name: uniform, low: 1, high: 0}], activation: [relu], "
        "depth: [1], width: [1]}",
        "grid.init[0]: expected low < high. Received: low=1, high=0",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [{name: relu, alpha: 1}], "
        "depth: [1], width: [1]}",
        "grid.activation[0].alpha: unknown parameter 'alpha' for activation 'relu', which takes "
        "no parameters",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [{name: leaky_relu, alpha: x}], "
        "depth: [1], width: [1]}",
        "grid.activation[0].alpha: expected a finite number. Received: 'x'",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [1], "
        "dtype: [float8]}",
        "grid.dtype[0]: unknown dtype 'float8'; expected one of float32, float64, float16, "
        "bfloat16; did you mean 'float64'?",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [1], "
        "bias: [{name: normal, std: -1}]}",
        "grid.bias[0].std: expected a non-negative number. Received: -1",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [1], "
        "bias: [ones]}",
        "grid.bias[0]: unknown bias 'ones'; expected one of zeros, normal",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [1], "
        "sampler: [fast]}",
        "grid.sampler[0]: unknown sampler 'fast'; expected one of auto, dense, conditional",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [1], "
        "sampler: [conditional]}",
        "grid.sampler[0]: sampler 'conditional' is exact only for i.i.d. Gaussian weights; "
        "init 'he_normal' is a truncated normal. Expected sampler dense or auto, or a Gaussian "
        "init: normal, kaiming_normal, xavier_normal, variance_scaling with distribution "
        "untruncated_normal, or sigma_w",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [1], "
        "sigma_w: [0]}",
        "grid.sigma_w[0]: expected a positive number. Received: 0",
    ),
    (
        "trials: 10\ngrid: {sigma_w: [1.0], sigma_b: [-0.1], activation: [relu], depth: [1], "
        "width: [1]}",
        "grid.sigma_b[0]: expected a non-negative number. Received: -0.1",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], sigma_w: [1.0], activation: [relu], depth: [1], "
        "width: [1]}",
        "grid.sigma_w: sigma_w sets init to variance_scaling(scale=sigma_w**2, mode=fan_in, "
        "untruncated normal), which grid.init also sets; give one of them",
    ),
    (
        "trials: 10\ngrid: {sigma_w: [1.0], sigma_b: [0.1], activation: [relu], depth: [1], "
        "width: [1]}\nfixed: {bias: zeros}",
        "grid.sigma_b: sigma_b sets bias to normal(std=sigma_b), which fixed.bias also sets; "
        "give one of them",
    ),
    (
        "trials: 10\ngrid: {activation: [relu], depth: [1], width: [1]}",
        "grid: missing axis 'init'; every configuration needs init (or sigma_w), activation, "
        "depth and width: add it to grid, zip, random or fixed",
    ),
    (
        "trials: 10\nzip: {init: [he_normal], activation: [relu], depth: [1]}",
        "zip: missing axis 'width'; every configuration needs init (or sigma_w), activation, "
        "depth and width: add it to grid, zip, random or fixed",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1]}\n"
        "fixed: {depth: 3, width: 2}",
        "fixed.depth: axis 'depth' is already set at grid.depth; an axis can be set in only "
        "one of grid, zip, random and fixed",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [2]}\n"
        "zip: {depth: [3]}",
        "zip.depth: axis 'depth' is already set at grid.depth; an axis can be set in only one "
        "of grid, zip, random and fixed",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: 1, width: [1]}",
        "grid.depth: expected a non-empty list of values (a single value belongs in fixed). "
        "Received: 1",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [], width: [1]}",
        "grid.depth: expected a non-empty list of values (a single value belongs in fixed). "
        "Received: []",
    ),
    (
        "trials: 10\ngrid: [1, 2]",
        "grid: expected a non-empty mapping of axis to list of values, e.g. grid: "
        "{depth: [10, 20]}. Received: [1, 2]",
    ),
    (
        "trials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [1], "
        "label: [x]}",
        "grid.label: 'label' names one explicit configuration; expected it only in configs entries",
    ),
    (
        "trials: 10\nconfigs: [{init: he_normal, activation: relu, depth: 1}]",
        "configs[0]: missing axis 'width'; every configuration needs init (or sigma_w), "
        "activation, depth and width: set it in the entry or in fixed",
    ),
    (
        "trials: 10\nconfigs: [{init: he_normal, activation: relu, depth: 1, width: 2, label: 3}]",
        "configs[0].label: expected a non-empty string. Received: 3",
    ),
    (
        "trials: 10\nconfigs: [{init: he_normal, activation: relu, depth: [1, 2], width: 2}]",
        "configs[0].depth: expected one depth value (lists belong in grid or zip). "
        "Received: [1, 2]",
    ),
    (
        "trials: 10\nconfigs:\n  - {init: he_normal, activation: relu, depth: 1, width: 2}\n"
        "  - {init: he_normal, sigma_w: 1.0, activation: relu, depth: 1, width: 2}",
        "configs[1].sigma_w: sigma_w sets init to variance_scaling(scale=sigma_w**2, "
        "mode=fan_in, untruncated normal), which configs[1].init also sets; give one of them",
    ),
    (
        "trials: 10\nconfigs: [3]",
        "configs[0]: expected a non-empty mapping of axis to value. Received: 3",
    ),
    (
        "trials: 10\nconfigs: {init: he_normal}",
        "configs: expected a non-empty list of mappings, e.g. - {init: he_normal, activation: "
        "relu, depth: 5, width: 32}. Received: {'init': 'he_normal'}",
    ),
    (
        "trials: 10\nfixed: {depth: 1}",
        "S.yaml: no configurations; expected at least one of grid, zip, random, configs "
        "(fixed alone is shared by configurations, it does not define one)",
    ),
    (
        "trials: 10\nfixed: {depht: 1}\n" + OK_GRID,
        "fixed.depht: unknown axis 'depht'; expected one of init, activation, depth, width, "
        "input_dim, batch, dtype, bias, sampler, sigma_w, sigma_b, input_q, input_corr; did you mean 'depth'?",
    ),
    (
        "trials: 10\nrandom: {cnt: 3}",
        "random.cnt: unknown key 'cnt'; expected one of count, axes; did you mean 'count'?",
    ),
    (
        "trials: 10\nrandom: {axes: {sigma_w: {distribution: uniform, low: 1, high: 2}}}",
        "random.count: missing; expected a positive integer, the number of draws",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {depth: {distribution: uniform, low: 1, high: 3}}}",
        "random.axes.depth.distribution: uniform draws real numbers; expected int_uniform or "
        "choice for depth. Received: 'uniform'",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {sigma_w: {distribution: int_uniform, low: 1, "
        "high: 3}}}",
        "random.axes.sigma_w.distribution: int_uniform draws integers; expected uniform, "
        "log_uniform or choice for sigma_w. Received: 'int_uniform'",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {init: {distribution: uniform, low: 1, high: 3}}}",
        "random.axes.init.distribution: uniform draws real numbers; expected choice for init. "
        "Received: 'uniform'",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {sigma_w: {distribution: normal}}}",
        "random.axes.sigma_w.distribution: unknown distribution 'normal'; expected one of "
        "uniform, log_uniform, int_uniform, choice",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {sigma_w: {distribution: uniform, low: 2, high: 1}}}",
        "random.axes.sigma_w: expected low < high. Received: low=2.0, high=1.0",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {sigma_b: {distribution: log_uniform, low: 0, "
        "high: 1}}}",
        "random.axes.sigma_b.low: log_uniform needs low > 0. Received: 0.0",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {sigma_w: {distribution: uniform, low: 0, high: 1}}}",
        "random.axes.sigma_w.low: expected a positive number. Received: 0",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {sigma_w: {distribution: uniform, low: 1}}}",
        "random.axes.sigma_w.high: missing; expected a sigma_w value",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {activation: {distribution: choice, "
        "values: [relu, rleu]}}}",
        "random.axes.activation.values[1]: unknown activation 'rleu'; expected one of linear, "
        "tanh, sigmoid, relu, leaky_relu, elu, selu, gelu, swish, softplus; did you mean 'relu'?",
    ),
    (
        "trials: 10\nrandom: {count: 3, axes: {activation: {distribution: choice, values: []}}}",
        "random.axes.activation.values: expected a non-empty list of activation values. "
        "Received: []",
    ),
    (
        "trials: 10\nrandom: {count: 0, axes: {sigma_w: {distribution: uniform, low: 1, high: 2}}}",
        "random.count: expected a positive integer. Received: 0",
    ),
    (
        "trials: 10\nfixed: {input_q: -1}\n" + OK_GRID,
        "fixed.input_q: expected a positive number. Received: -1",
    ),
    (
        "trials: 10\nfixed: {input_corr: 1.5, batch: 2}\n" + OK_GRID,
        "fixed.input_corr: expected a correlation in [-1, 1]. Received: 1.5",
    ),
    (
        "trials: 10\n" + OK_GRID.replace("width: [4]", "width: [4], input_corr: [0.5]"),
        "grid.input_corr[0]: expected batch >= 2 (a correlation between the inputs of a "
        "trial). Received: batch=1",
    ),
    (
        "trials: 10\nfixed: {input_corr: 0.5, batch: 5}\n" + OK_GRID,
        "fixed.input_corr: expected batch <= input_dim (k inputs of a prescribed correlation "
        "span k dimensions). Received: batch=5, input_dim=4",
    ),
    (
        "trials: 10\nfixed: {input_corr: -0.6, batch: 3}\n" + OK_GRID,
        "fixed.input_corr: expected a correlation >= -1/(batch-1) = -0.5 (the Gram matrix of 3 "
        "inputs must be positive semidefinite). Received: -0.6",
    ),
    (
        "trials: 10\nfixed: {input_q: 1e10, dtype: float16}\n" + OK_GRID,
        "fixed.input_q: expected an input_q whose inputs are normal float16 numbers "
        "(sqrt(input_q) >= 6.1e-05 and sqrt(input_q * input_dim) <= 6.55e+04). Received: 1e+10",
    ),
]


@pytest.mark.parametrize(("text", "message"), EXACT, ids=[m.split(":")[0] for _, m in EXACT])
def test_located_error_exact(text: str, message: str) -> None:
    assert error_of(text) == message


def test_spec_error_is_a_user_error() -> None:
    with pytest.raises(UserError):
        parse_spec("trials: x\n" + OK_GRID)


# --- file and YAML level ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match=r"nope\.yaml: no such file$") as info:
        load_spec(path)
    assert str(info.value) == f"{path}: no such file"


def test_directory_is_not_a_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)


def test_load_spec_names_the_sweep_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my-sweep.yaml"
    path.write_text("trials: 10\n" + OK_GRID)
    spec = load_spec(str(path))
    assert spec.name == "my-sweep"
    assert spec.source == str(path)
    assert spec.spec_yaml == "trials: 10\n" + OK_GRID


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: [1, 2\nb: 3\n",
            "S.yaml:2:2: invalid YAML: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence)",
        ),
        ("trials: 1\n  grid: x\n", "S.yaml:2:7: invalid YAML: mapping values are not allowed here"),
        ("trials: 1\ntrials: 2\n", "S.yaml:2:1: invalid YAML: duplicate key 'trials'"),
        ("grid:\n  depth: [1]\n  depth: [2]\n", "S.yaml:3:3: invalid YAML: duplicate key 'depth'"),
        ("a: 1\n---\nb: 2\n", None),
    ],
)
def test_invalid_yaml_is_located(text: str, message: str | None) -> None:
    got = error_of(text)
    if message is None:
        assert got.startswith("S.yaml:") and "invalid YAML" in got
    else:
        assert got == message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_spec(text: str) -> None:
    assert error_of(text) == (
        "S.yaml: the spec is empty; expected a mapping with trials and at least one of grid, "
        "zip, random, configs"
    )


@pytest.mark.parametrize(
    ("text", "received"), [("- 1\n- 2\n", "a list"), ("hello\n", "a string 'hello'"), ("3\n", "3")]
)
def test_top_level_must_be_a_mapping(text: str, received: str) -> None:
    assert error_of(text) == (
        "S.yaml: expected a mapping at top level (name:, trials:, grid:, ...). "
        f"Received: {received}"
    )


def test_exponent_without_dot_is_a_float() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {init: [{name: normal, std: 1e-3}], activation: [relu], depth: [1], "
        "width: [1]}\n"
    )
    assert spec.grid[0][1] == (Scheme("normal", (("std", 0.001),)),)


# --- values and defaults ---------------------------------------------------------------------


def test_defaults() -> None:
    spec = parse_spec("trials: 10\n" + OK_GRID)
    assert spec.name == "sweep"
    assert spec.seed == 0
    assert spec.chunk_trials is None
    assert spec.memory_budget_bytes == 1 << 30
    assert spec.queue == "cpu"
    assert spec.description == ""
    (config, _), *_ = expand(spec)
    assert (config.batch, config.dtype, config.input_dim, config.bias) == (
        1,
        "float32",
        4,
        Scheme("zeros"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, 1024),
        ("512MiB", 512 << 20),
        ("2GiB", 2 << 30),
        ("1.5 GiB", 3 << 29),
        ("2gib", 2 << 30),
        ("100MB", 100_000_000),
        ("4096", 4096),
        ("64 KiB", 64 << 10),
    ],
)
def test_memory_budget_units(value: str | int, expected: int) -> None:
    assert parse_byte_size(value) == expected
    text = f"trials: 1\nmemory_budget: {json.dumps(value)}\n" + OK_GRID
    assert parse_spec(text).memory_budget_bytes == expected


@pytest.mark.parametrize("value", ["0", "0GiB", "-1GiB", "1 parsec", "", "GiB", "1.5", "true"])
def test_memory_budget_rejects(value: str) -> None:
    text = f"trials: 1\nmemory_budget: {value if value == 'true' else json.dumps(value)}\n"
    message = error_of(text + OK_GRID)
    assert message.startswith("memory_budget: expected a positive number of bytes")


def test_memory_budget_rejects_non_positive_int() -> None:
    assert error_of("trials: 1\nmemory_budget: 0\n" + OK_GRID).endswith("Received: 0")


def test_schemes_keep_what_the_user_wrote_as_floats() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {init: [he_normal, {name: normal, std: 1}, {name: variance_scaling, "
        "scale: 2, distribution: untruncated_normal}], activation: [{name: leaky_relu, "
        "alpha: 0.1}], depth: [1], width: [1]}\n"
    )
    inits = spec.grid[0][1]
    assert inits == (
        Scheme("he_normal"),
        Scheme("normal", (("std", 1.0),)),
        Scheme("variance_scaling", (("distribution", "untruncated_normal"), ("scale", 2.0))),
    )
    assert isinstance(inits[1], Scheme) and isinstance(inits[1].get("std"), float)


def test_configs_entry_may_override_fixed_sugar() -> None:
    spec = parse_spec(
        "trials: 1\nfixed: {init: he_normal, activation: relu, depth: 2, width: 4}\n"
        "configs:\n  - {sigma_w: 1.5}\n  - {label: plain}\n"
    )
    (a, axes_a), (b, axes_b) = expand(spec)
    assert a.init.name == "variance_scaling" and axes_a == {"sigma_w": 1.5}
    assert b.init == Scheme("he_normal") and axes_b == {"label": "plain"}


def test_sugar_conflict_in_fixed_is_reported_for_configs() -> None:
    message = error_of(
        "trials: 1\nfixed: {init: he_normal, sigma_w: 1.0, activation: relu, depth: 2, "
        "width: 4}\nconfigs: [{label: x}]\n"
    )
    assert message.startswith("fixed.sigma_w: sigma_w sets init")
    assert "which fixed.init also sets" in message


def test_too_many_configurations() -> None:
    text = (
        "trials: 1\ngrid: {init: [he_normal], activation: [relu], depth: [1], "
        f"width: {list(range(1, 1001))}, batch: {list(range(1, 102))}}}\n"
    )
    assert error_of(text) == (
        f"grid: the sweep expands to 101,000 configurations; expected at most {MAX_CONFIGS:,}"
    )


def test_null_optional_keys_are_absent() -> None:
    spec = parse_spec("trials: 5\nchunk_trials:\nqueue:\nseed:\n" + OK_GRID)
    assert (spec.chunk_trials, spec.queue, spec.seed) == (None, "cpu", 0)


def test_spec_is_frozen_and_hashable() -> None:
    spec = parse_spec("trials: 5\n" + OK_GRID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.trials = 6  # type: ignore[misc]
    assert hash(spec) == hash(parse_spec("trials: 5\n" + OK_GRID))


# --- JSON round trip -------------------------------------------------------------------------

FULL = """
name: full
description: every section
seed: 7
trials: 300
chunk_trials: 100
memory_budget: 256MiB
queue: gpu
grid:
  init: [he_normal, {name: normal, std: 0.05}, {name: scaled_uniform, scale: 3, mode: fan_avg}]
  activation: [relu, {name: elu, alpha: 0.5}]
zip:
  depth: [2, 3]
  width: [4, 8]
random:
  count: 3
  axes:
    sigma_b: {distribution: uniform, low: 0.0, high: 0.5}
    batch: {distribution: int_uniform, low: 1, high: 3}
    dtype: {distribution: choice, values: [float32, float64]}
configs:
  - {label: extra, sigma_w: 1.5, activation: tanh, depth: 5, width: 6, input_dim: 3}
fixed:
  sampler: auto
"""


def test_json_round_trip() -> None:
    spec = parse_spec(FULL)
    data = json.loads(json.dumps(spec.to_json()))
    again = spec_from_json(data)
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert expand(again) == expand(spec)
    assert data["memory_budget"] == 256 << 20
    assert data["grid"]["init"][0] == "he_normal"
    assert data["grid"]["init"][1] == {"name": "normal", "std": 0.05}


def test_json_is_a_valid_yaml_spec() -> None:
    spec = parse_spec(FULL)
    assert parse_spec(json.dumps(spec.to_json())) == spec


# --- robustness: anything that is not a valid spec is a SpecError ----------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["he_normal", "relu", "normal", "float32", "auto", "fan_in", "1GiB", "x"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "std",
                    "init",
                    "depth",
                    "width",
                    "activation",
                    "count",
                    "axes",
                    "distribution",
                    "low",
                    "high",
                    "values",
                    "sigma_w",
                    "label",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "seed",
                "trials",
                "chunk_trials",
                "memory_budget",
                "queue",
                "grid",
                "zip",
                "random",
                "configs",
                "fixed",
                "grdi",
            ]
        ),
        _values,
        max_size=6,
    )
)
def test_arbitrary_input_raises_only_spec_errors(data: dict[str, Any]) -> None:
    try:
        spec = spec_from_json(data)
    except SpecError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert all(math.isfinite(c.depth) for c, _ in expand(spec))


# --- examples --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_parse_and_round_trip(path: Path) -> None:
    spec = load_spec(path)
    assert expand(spec)
    assert spec_from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_expected_examples_exist() -> None:
    names = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert {
        "seed_notebook.yaml",
        "quick.yaml",
        "init_comparison.yaml",
        "phase_diagram.yaml",
        "bench_100.yaml",
    } <= names


def test_seed_notebook_cells() -> None:
    spec = load_spec(EXAMPLES / "seed_notebook.yaml")
    configs = expand(spec)
    assert spec.trials == 1000 and spec.seed == 0
    labels = [axes["label"] for _, axes in configs]
    cells = [label.split(":")[0] for label in labels]
    assert cells == [
        "cell 155/156",
        "cell 157",
        "cell 158",
        "cell 159",
        "cell 160",
        "cell 161",
        "cell 162",
        "cell 163",
    ]
    by_cell = {cell: config for cell, (config, _) in zip(cells, configs, strict=True)}
    assert (by_cell["cell 155/156"].depth, by_cell["cell 155/156"].width) == (100, 100)
    assert by_cell["cell 157"].init.num("std") == 0.05
    assert by_cell["cell 159"].init.num("std") == pytest.approx(math.sqrt(1 / 512), rel=1e-15)
    assert by_cell["cell 160"].activation.name == "tanh"
    # cell 162: U[0,1) * sqrt(6/(m+h)) = U[0,1) * sqrt(scale/fan_avg), fan_avg = (m+h)/2.
    xavier = by_cell["cell 162"]
    fan_in, fan_out = xavier.fans(1)
    assert xavier.init.get("mode") == "fan_avg"
    assert math.sqrt(xavier.init.num("scale") / ((fan_in + fan_out) / 2)) == pytest.approx(
        math.sqrt(6 / (512 + 512)), rel=1e-15
    )
    assert by_cell["cell 163"].init.num("scale") == 2.0
    assert by_cell["cell 163"].activation.name == "relu"
    assert all(c.dtype == "float32" and c.batch == 1 and c.input_dim == c.width for c, _ in configs)
    assert all("label" not in c.to_json() for c, _ in configs)


def test_bench_has_100_configurations() -> None:
    spec = load_spec(EXAMPLES / "bench_100.yaml")
    configs = expand(spec)
    assert len(configs) == 100 and spec.trials == 1000
    assert {(c.depth, c.width) for c, _ in configs} == {(10, 64)}


def test_input_geometry_axes() -> None:
    """Absent geometry keeps the canonical JSON (and hash) as it was; input_corr alone is
    input_q 1; the geometry is in the canonical JSON and survives a round trip."""
    plain = parse_spec("trials: 10\n" + OK_GRID).configurations[0].config
    assert "input_q" not in plain.canonical_json() and "input_corr" not in plain.canonical_json()
    gaussian = "grid: {sigma_w: [1.0], activation: [tanh], depth: [2], width: [4]}\n"
    text = "trials: 10\nfixed: {batch: 3, input_corr: -0.25}\n" + gaussian
    alone = parse_spec(text).configurations[0].config
    both = parse_spec(text.replace("input_corr", "input_q: 1, input_corr")).configurations[0]
    assert (alone.input_q, alone.input_corr) == (1.0, -0.25)
    assert alone.config_hash == both.config.config_hash != plain.config_hash
    assert type(alone).from_json(json.loads(alone.canonical_json())) == alone
    assert alone.sampler == "conditional"  # q0 = 1: the flush-range check applies as before
    far = parse_spec(text.replace("batch: 3", "batch: 3, input_q: 4")).configurations[0]
    assert far.config.sampler == "dense"  # no scale prediction for q0 != 1: auto is dense

"""Extreme spec values: the spec refuses what would make a derived parameter non-finite, and
theory is total on everything it accepts (finite numbers or None, never an exception)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from scheduler.analysis.compare import check, with_theory
from scheduler.analysis.records import config_params
from scheduler.analysis.theory import critical_sigma_w, predict
from scheduler.errors import SpecError
from scheduler.spec.parse import parse_spec
from worker.contract import Scheme, SimConfig

pytestmark = pytest.mark.unit

INITS = [
    "{name: normal, std: 0}",
    "{name: normal, std: 1.0e-150}",
    "{name: normal, std: 1.0e+150}",
    "{name: orthogonal, gain: 0}",
    "{name: orthogonal, gain: 1.0e+150}",
    "{name: xavier_normal, gain: 0}",
    "{name: uniform, low: -1.0e+150, high: 1.0e+150}",
    "{name: normal, mean: 1.0e+150, std: 1}",
    "{name: truncated_normal, std: 1.0e+150}",
    "{name: kaiming_normal, a: 1.0e+150}",
    "{name: variance_scaling, scale: 1.0e+150}",
    "{name: variance_scaling, scale: 1.0e-150}",
    "he_normal",
]
ACTIVATIONS = [
    "linear",
    "tanh",
    "sigmoid",
    "relu",
    "{name: leaky_relu, alpha: 1.0e+150}",
    "{name: leaky_relu, alpha: -1.0e+150}",
    "{name: leaky_relu, alpha: 0}",
    "{name: elu, alpha: 1.0e+150}",
    "selu",
    "gelu",
    "swish",
    "softplus",
]
BIASES = ["zeros", "{name: normal, std: 1.0e+150}", "{name: normal, std: 1.0e-150}"]


def _config(init: str, activation: str, bias: str, dtype: str, depth: int) -> SimConfig:
    spec = (
        f"trials: 4\ngrid:\n  init: [{init}]\n  activation: [{activation}]\n  bias: [{bias}]\n"
        f"  dtype: [{dtype}]\n  depth: [{depth}]\n  width: [8]\n"
    )
    return parse_spec(spec).configurations[0].config


def _numbers(theory: object) -> list[float | None]:
    values = [getattr(theory, k) for k in ("q_star", "chi_1", "overflow_layer", "underflow_layer")]
    for t in theory.layers:  # type: ignore[attr-defined]
        values += [t.mean, t.mean_sq, t.std]
    return values


@pytest.mark.parametrize(("dtype", "depth"), [("float32", 3), ("float16", 3), ("float64", 40)])
def test_theory_is_total_on_every_extreme_value(dtype: str, depth: int) -> None:
    computed = 0
    for init, activation, bias in itertools.product(INITS, ACTIVATIONS, BIASES):
        try:
            config = _config(init, activation, bias, dtype, depth)
        except SpecError:
            continue  # refused at validation (tested below): nothing to predict
        theory = predict(config)
        assert "could not be computed" not in theory.note, (init, activation, bias)
        bad = [v for v in _numbers(theory) if v is not None and not math.isfinite(v)]
        assert not bad, (init, activation, bias, bad)
        computed += 1
    assert computed > 400


@pytest.mark.parametrize(
    ("init", "where"),
    [
        ("{name: normal, std: 0}", None),
        ("{name: orthogonal, gain: 0}", None),
        ("{name: xavier_normal, gain: 0}", None),
    ],
)
def test_zero_weights_collapse_at_layer_one(init: str, where: None) -> None:
    theory = predict(_config(init, "tanh", "zeros", "float32", 5))
    assert theory.underflow_layer == 1.0 and theory.overflow_layer is None
    assert theory.get(1, "preactivation").mean_sq == 0.0
    assert theory.get(3, "activation").mean_sq == 0.0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "sigma_w: [1.0e+200]",
            "grid.sigma_w[0]: expected a positive number of magnitude at most 1e+150",
        ),
        ("sigma_w: [1.0e-200]", "grid.sigma_w[0]: expected 0 or a positive number of magnitude"),
        ("init: [{name: normal, std: 1.0e+308}]", "grid.init[0].std: expected a non-negative"),
        ("activation: [{name: leaky_relu, alpha: 1.0e+308}]", "grid.activation[0].alpha:"),
        ("sigma_b: [1.0e+151]", "grid.sigma_b[0]: expected a non-negative number of magnitude"),
        (
            "init: [{name: scaled_uniform, scale: 1.0e+150, high: 1.0e+150}]",
            "grid.init[0]: expected weights of root mean square at most 1e+150",
        ),
        (
            "init: [{name: normal, mean: 1.0e+150, std: 1.0e+150}]",
            "grid.init[0]: expected weights of root mean square at most 1e+150",
        ),
    ],
)
def test_values_with_non_finite_derived_parameters_are_refused(entry: str, message: str) -> None:
    axes = {"init": "he_normal", "activation": "relu"}
    key = entry.split(":")[0]
    if key == "sigma_w":
        axes.pop("init")
    axes.pop(key, None)
    lines = "".join(f"  {k}: [{v}]\n" for k, v in axes.items())
    spec = f"trials: 4\ngrid:\n  {entry}\n{lines}  depth: [3]\n  width: [8]\n"
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    text = str(info.value)
    assert text.startswith(message) and "Received:" in text and "\n" not in text


def test_uniform_at_the_largest_magnitudes_is_accepted() -> None:
    config = _config(
        "{name: uniform, low: -1.0e+150, high: 1.0e+150}", "relu", "zeros", "float64", 2
    )
    assert predict(config).get(1, "preactivation").mean_sq is not None


def test_a_configuration_theory_cannot_compute_is_no_prediction() -> None:
    """Built by hand past the spec's bounds (std = 1e300: v = inf): no exception, every layer
    None, the reason in the note, and `check` counts it as a configuration without prediction."""
    good = _config("he_normal", "tanh", "zeros", "float32", 3)
    config = dataclasses.replace(good, init=Scheme("normal", (("mean", 0.0), ("std", 1e300))))
    theory = predict(config)
    assert "no prediction: the theory could not be computed" in theory.note
    assert all(t.mean is None and t.mean_sq is None and t.std is None for t in theory.layers)
    head = {"sweep_id": 1, "config_hash": config.config_hash, **config_params(config)}
    rows = [
        {
            **head,
            "layer": 1,
            "quantity": "activation",
            "n_trials": 10,
            "n_finite": 10,
            "n_first_nonfinite": 0,
            "n_collapsed": 0,
            "mean": 0.0,
            "mean_se": 0.1,
            "std": 1.0,
            "std_se": 0.1,
            "mean_sq": 1.0,
            "mean_sq_se": 0.1,
        }
    ]
    report = check(with_theory(rows, {config.config_hash: config}))
    assert len(report.no_prediction) == 1 and report.n_compared == 0


@pytest.mark.parametrize("sigma_b", [0.0, 1e-150, 1e150])
def test_critical_line_at_extreme_bias_is_a_number_or_none(sigma_b: float) -> None:
    for name in ("tanh", "gelu", "swish", "selu", "softplus"):
        sw = critical_sigma_w(sigma_b, Scheme(name))
        assert sw is None or (math.isfinite(sw) and sw > 0.0)

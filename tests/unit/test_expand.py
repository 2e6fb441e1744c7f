"""Expansion: order, labels, canonical schemes, sugar, zip/random/configs, dedup, sampler."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scheduler.errors import SpecError
from scheduler.spec.exactness import conditional_limit
from scheduler.spec.expand import expand, expand_located, random_draws, resolve_sampler
from scheduler.spec.parse import parse_spec
from worker.contract import INIT_SCHEMES, Scheme, SimConfig, canonical_scheme
from worker.schemes import is_iid_gaussian

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_grid_order_is_as_written_last_axis_fastest() -> None:
    spec = parse_spec(
        "trials: 1\ngrid:\n  activation: [relu, tanh]\n  init: [he_normal, glorot_uniform]\n"
        "  depth: [1, 2]\n  width: [4]\n"
    )
    axes = [a for _, a in expand(spec)]
    assert [(a["activation"], a["init"], a["depth"]) for a in axes] == [
        ("relu", "he_normal", 1),
        ("relu", "he_normal", 2),
        ("relu", "glorot_uniform", 1),
        ("relu", "glorot_uniform", 2),
        ("tanh", "he_normal", 1),
        ("tanh", "he_normal", 2),
        ("tanh", "glorot_uniform", 1),
        ("tanh", "glorot_uniform", 2),
    ]
    assert list(axes[0]) == ["activation", "init", "depth", "width"]


def test_canonical_schemes_and_readable_labels() -> None:
    spec = parse_spec(
        "trials: 1\ngrid:\n  init: [he_normal, {name: normal, std: 0.05}]\n"
        "  activation: [{name: leaky_relu, alpha: 0.1}]\n  depth: [3]\n  width: [8]\n"
        "fixed: {input_dim: 5, batch: 2, dtype: float64, bias: {name: normal, std: 0.1}}\n"
    )
    (c1, a1), (c2, a2) = expand(spec)
    assert c1.init == Scheme("he_normal")
    assert c2.init == canonical_scheme(INIT_SCHEMES, "normal", {"std": 0.05})
    assert c2.init.params == (("mean", 0.0), ("std", 0.05))
    assert c1.activation == Scheme("leaky_relu", (("alpha", 0.1),))
    assert c1.bias == Scheme("normal", (("std", 0.1),))
    assert (c1.depth, c1.width, c1.input_dim, c1.batch, c1.dtype) == (3, 8, 5, 2, "float64")
    assert a1 == {
        "init": "he_normal",
        "activation": "leaky_relu(alpha=0.1)",
        "depth": 3,
        "width": 8,
    }
    assert a2["init"] == "normal(std=0.05)"
    assert SimConfig.from_json(c2.to_json()) == c2


def test_sigma_w_and_sigma_b_sugar() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {sigma_w: [1.5], sigma_b: [0.0, 0.3]}\n"
        "fixed: {activation: tanh, depth: 2, width: 4}\n"
    )
    (zero_bias, a0), (with_bias, a1) = expand(spec)
    assert zero_bias.init == canonical_scheme(
        INIT_SCHEMES,
        "variance_scaling",
        {"scale": 2.25, "mode": "fan_in", "distribution": "untruncated_normal"},
    )
    assert zero_bias.bias == Scheme("zeros")  # sigma_b = 0 is the zeros bias
    assert with_bias.bias == Scheme("normal", (("std", 0.3),))
    assert a0 == {"sigma_w": 1.5, "sigma_b": 0.0}
    assert a1 == {"sigma_w": 1.5, "sigma_b": 0.3}
    assert zero_bias.sampler == "conditional"  # auto: i.i.d. Gaussian


def test_zero_std_normal_bias_is_the_zeros_bias() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {bias: [zeros, {name: normal, std: 0}]}\n"
        "fixed: {init: he_normal, activation: tanh, depth: 2, width: 4}\n"
    )
    assert len(expand(spec)) == 1  # same simulation, deduplicated


def test_zip_rows_crossed_with_grid() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {activation: [relu, tanh]}\nzip: {depth: [10, 20], width: [64, 128]}\n"
        "fixed: {init: he_normal}\n"
    )
    got = [(a["activation"], c.depth, c.width) for c, a in expand(spec)]
    assert got == [
        ("relu", 10, 64),
        ("relu", 20, 128),
        ("tanh", 10, 64),
        ("tanh", 20, 128),
    ]


def test_zip_alone_is_a_source() -> None:
    spec = parse_spec(
        "trials: 1\nzip: {depth: [1, 2, 3], width: [4, 5, 6]}\n"
        "fixed: {init: he_normal, activation: relu}\n"
    )
    assert [(c.depth, c.width) for c, _ in expand(spec)] == [(1, 4), (2, 5), (3, 6)]
    assert [e.origin for e in expand_located(spec)] == ["zip"] * 3


RANDOM = (
    "seed: {seed}\ntrials: 1\ngrid: {{activation: [relu, tanh]}}\n"
    "random:\n  count: 20\n  axes:\n"
    "    sigma_w: {{distribution: uniform, low: 0.5, high: 3.0}}\n"
    "    sigma_b: {{distribution: log_uniform, low: 0.01, high: 1.0}}\n"
    "    depth: {{distribution: int_uniform, low: 2, high: 4}}\n"
    "    width: {{distribution: choice, values: [4, 8, 16]}}\n"
)


def test_random_axes_are_deterministic_and_in_range() -> None:
    a = expand(parse_spec(RANDOM.format(seed=0)))
    b = expand(parse_spec(RANDOM.format(seed=0)))
    c = expand(parse_spec(RANDOM.format(seed=1)))
    assert a == b
    assert [x for _, x in a] != [x for _, x in c]
    assert len(a) == 40  # 2 activations x 20 draws (all distinct: real-valued sigma_w)
    for config, axes in a:
        assert 0.5 <= axes["sigma_w"] < 3.0
        assert 0.01 <= axes["sigma_b"] < 1.0
        assert axes["depth"] in (2, 3, 4) and isinstance(axes["depth"], int)
        assert axes["width"] in (4, 8, 16)
        assert config.init.num("scale") == pytest.approx(axes["sigma_w"] ** 2)
        assert config.depth == axes["depth"]
    # crossed with grid: the same 20 draws under each activation
    relu = [(x["sigma_w"], x["depth"]) for _, x in a if x["activation"] == "relu"]
    tanh = [(x["sigma_w"], x["depth"]) for _, x in a if x["activation"] == "tanh"]
    assert relu == tanh
    assert list(a[0][1]) == ["activation", "sigma_w", "sigma_b", "depth", "width"]


def test_random_draws_cover_the_range() -> None:
    spec = parse_spec(
        "trials: 1\nrandom:\n  count: 2000\n  axes:\n"
        "    depth: {distribution: int_uniform, low: 1, high: 5}\n"
        "    sigma_w: {distribution: log_uniform, low: 0.1, high: 10.0}\n"
        "fixed: {activation: relu, width: 2}\n"
    )
    assert spec.random_axes is not None
    draws = random_draws(spec.random_axes, spec.seed)
    depths = [row[0][1] for row in draws]
    assert set(depths) == {1, 2, 3, 4, 5}
    assert all(300 < depths.count(d) < 500 for d in range(1, 6))  # 400 expected each
    logs = [
        math.log10(value) for _, value, _ in (row[1] for row in draws) if isinstance(value, float)
    ]
    assert len(logs) == 2000
    below = sum(x < 0 for x in logs)
    assert 900 < below < 1100  # log-uniform: half below the geometric mid-point 1.0


def test_random_axis_stream_does_not_depend_on_other_axes() -> None:
    one = parse_spec(
        "trials: 1\nrandom: {count: 5, axes: {sigma_w: {distribution: uniform, low: 1, high: 2}}}\n"
        "fixed: {activation: relu, depth: 2, width: 2}\n"
    )
    two = parse_spec(
        "trials: 1\nrandom: {count: 5, axes: {batch: {distribution: int_uniform, low: 1, "
        "high: 9}, sigma_w: {distribution: uniform, low: 1, high: 2}}}\n"
        "fixed: {activation: relu, depth: 2, width: 2}\n"
    )
    assert [a["sigma_w"] for _, a in expand(one)] == [a["sigma_w"] for _, a in expand(two)]


def test_random_choice_records_the_value_location_for_sampler_errors() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(
            "trials: 1\nrandom: {count: 30, axes: {sampler: {distribution: choice, "
            "values: [dense, conditional]}}}\n"
            "fixed: {init: he_uniform, activation: relu, depth: 2, width: 2}\n"
        )
    assert str(info.value).startswith(
        "random.axes.sampler.values[1]: sampler 'conditional' is exact only for i.i.d. Gaussian "
        "weights; init 'he_uniform' is uniform."
    )


def test_configs_appended_merged_over_fixed_with_labels() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {init: [he_normal], activation: [relu]}\n"
        "fixed: {depth: 3, width: 8, dtype: float64}\n"
        "configs:\n"
        "  - {label: small, init: he_normal, activation: relu, depth: 5, width: 32}\n"
        "  - {label: narrow input, init: orthogonal, activation: tanh, input_dim: 2}\n"
    )
    located = expand_located(spec)
    assert [e.origin for e in located] == ["grid", "configs[0]", "configs[1]"]
    _, small, narrow = located
    assert small.axes == {
        "label": "small",
        "init": "he_normal",
        "activation": "relu",
        "depth": 5,
        "width": 32,
    }
    assert (small.config.depth, small.config.width, small.config.dtype) == (5, 32, "float64")
    assert (narrow.config.depth, narrow.config.width, narrow.config.input_dim) == (3, 8, 2)
    assert narrow.axes["label"] == "narrow input"
    assert "label" not in small.config.canonical_json()


def test_duplicates_removed_keeping_the_first() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {init: [he_normal, he_normal, glorot_uniform], activation: [relu]}\n"
        "fixed: {depth: 2, width: 4}\n"
        "configs:\n  - {label: again, init: glorot_uniform, activation: relu}\n"
        "  - {label: new, init: glorot_uniform, activation: relu, depth: 3}\n"
    )
    got = expand(spec)
    assert [a.get("label", a.get("init")) for _, a in got] == ["he_normal", "glorot_uniform", "new"]
    hashes = [c.config_hash for c, _ in got]
    assert len(set(hashes)) == len(hashes)


def test_defaults_filled_and_default_param_equals_explicit() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {init: [normal, {name: normal, std: 1.0}, {name: normal, mean: 0}]}\n"
        "fixed: {activation: linear, depth: 1, width: 3}\n"
    )
    (config, axes), *rest = expand(spec)
    assert rest == []  # all three are N(0, 1)
    assert axes == {"init": "normal"}
    assert config.input_dim == 3 and config.batch == 1 and config.bias == Scheme("zeros")


@pytest.mark.parametrize(
    ("init", "gaussian"),
    [
        (Scheme("normal"), True),
        (Scheme("kaiming_normal"), True),
        (Scheme("xavier_normal"), True),
        (Scheme("variance_scaling", (("distribution", "untruncated_normal"),)), True),
        (Scheme("variance_scaling"), False),
        (Scheme("variance_scaling", (("distribution", "uniform"),)), False),
        (Scheme("he_normal"), False),
        (Scheme("glorot_normal"), False),
        (Scheme("lecun_normal"), False),
        (Scheme("truncated_normal"), False),
        (Scheme("uniform"), False),
        (Scheme("scaled_uniform"), False),
        (Scheme("glorot_uniform"), False),
        (Scheme("orthogonal"), False),
    ],
)
def test_resolve_sampler(init: Scheme, gaussian: bool) -> None:
    assert is_iid_gaussian(init) is gaussian
    cfg = _shallow(init)
    assert resolve_sampler("dense", cfg) == "dense"
    assert resolve_sampler("auto", cfg) == ("conditional" if gaussian else "dense")
    if gaussian:
        assert resolve_sampler("conditional", cfg) == "conditional"
    else:
        with pytest.raises(SpecError, match=r"^sampler 'conditional' is exact only for i\.i\.d\."):
            resolve_sampler("conditional", cfg)


def _shallow(init: Scheme, **kw: Any) -> SimConfig:
    values: dict[str, Any] = {
        "init": init,
        "activation": Scheme("relu"),
        "depth": 4,
        "width": 32,
        "input_dim": 32,
        "sampler": "dense",
    }
    return SimConfig(**{**values, **kw})


def test_resolve_sampler_describes_orthogonal() -> None:
    with pytest.raises(SpecError, match="init 'orthogonal' is orthogonal"):
        resolve_sampler("conditional", _shallow(Scheme("orthogonal")))


@pytest.mark.parametrize(
    ("std", "activation", "depth", "dtype", "limit"),
    [
        # vanishing past collapse (float32 ~125 layers, float64 ~1022): the dense matmul's
        # flush-to-zero of products cannot be reproduced, auto runs dense
        (0.05, "linear", 160, "float32", True),
        (0.05, "linear", 1100, "float64", True),
        (0.05, "linear", 110, "float32", True),  # a 6-SD trial's products near 2^-126 * 2^16
        (0.05, "linear", 60, "float32", False),  # gradients at layer 1 ~ 2^-120: clear
        # exploding and critical: the conditional sampler is exact there
        (1.0, "linear", 60, "float32", False),
        (0.1 * 2**0.5, "relu", 100, "float32", False),
        # float16 forms its products in float32 and rounds each result once, as the
        # conditional sampler does: never refused, past collapse included (~11 layers)
        (0.1 * 2**0.5, "relu", 100, "float16", False),
        (0.05, "linear", 40, "float16", False),
        (0.1 * 2**0.5, "relu", 2, "float16", False),
    ],
)
def test_auto_runs_dense_where_values_reach_the_flush_range(
    std: float, activation: str, depth: int, dtype: str, limit: bool
) -> None:
    cfg = _shallow(
        Scheme("normal", (("mean", 0.0), ("std", std))),
        activation=Scheme(activation),
        depth=depth,
        width=100,
        input_dim=100,
        dtype=dtype,
    )
    assert (conditional_limit(cfg) is not None) is limit
    assert resolve_sampler("auto", cfg) == ("dense" if limit else "conditional")
    if limit:
        with pytest.raises(
            SpecError, match=r"flush-to-zero range, .*Expected sampler dense or auto$"
        ):
            resolve_sampler("conditional", cfg)


def test_sampler_recorded_in_config() -> None:
    spec = parse_spec(
        "trials: 1\ngrid: {init: [he_normal, normal], sampler: [auto, dense]}\n"
        "fixed: {activation: relu, depth: 2, width: 2}\n"
    )
    got = [(a["init"], a["sampler"], c.sampler) for c, a in expand(spec)]
    # he_normal + dense is he_normal + auto (both dense): one configuration, the first kept
    assert got == [
        ("he_normal", "auto", "dense"),
        ("normal", "auto", "conditional"),
        ("normal", "dense", "dense"),
    ]


def test_fixed_sampler_error_is_located_at_fixed() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(
            "trials: 1\ngrid: {init: [normal, he_uniform]}\n"
            "fixed: {activation: relu, depth: 2, width: 2, sampler: conditional}\n"
        )
    assert str(info.value).startswith(
        "fixed.sampler: sampler 'conditional' is exact only for i.i.d. Gaussian weights; "
        "init 'he_uniform' is uniform."
    )


def test_scheduler_modules_do_not_import_tensorflow() -> None:
    code = (
        "import sys, scheduler.spec, scheduler.spec.expand, scheduler.chunking, scheduler.estimate\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'tensorflow' or "
        "m.startswith('worker.sim')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)

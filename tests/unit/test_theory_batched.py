"""Theory computed together is theory computed alone, bit for bit: `predict_many` (shared walks,
lockstep recursions, memoised moments) against `predict` of one configuration with every cache
emptied, and `with_theory`'s batched predictor against one call per configuration, on varied
configurations: every activation, float16/bfloat16/float32/float64, overflow and collapse
regimes, orthogonal and non-centred kernels, batch 2 with input_q/input_corr."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import pytest

from scheduler.analysis.compare import device_predictor, with_theory
from scheduler.analysis.theory import finite_width, gaussian, meanfield
from scheduler.analysis.theory.meanfield import ConfigTheory, predict, predict_many
from tests.db.builders import layer_records, varied_configs
from worker.contract import (
    ACTIVATIONS,
    BIAS_SCHEMES,
    INIT_SCHEMES,
    ChunkTask,
    SimConfig,
    canonical_scheme,
)


def _forget() -> None:
    """Every cache the theory keeps, emptied: the next prediction starts from nothing."""
    gaussian.forget_moments()
    finite_width.forget_walks()
    finite_width.mean_sq_dispersion.cache_clear()
    finite_width.finite_width_note.cache_clear()
    meanfield.fixed_point.cache_clear()


def _bits(value: Any) -> Any:
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_bits(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _bits(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _fields(theory: ConfigTheory) -> dict[str, Any]:
    out = {f.name: _bits(getattr(theory, f.name)) for f in dataclasses.fields(theory)}
    return {k: v for k, v in out.items() if k != "config"}


def test_predict_many_is_predict_alone() -> None:
    configs = varied_configs(48, random.Random(5))
    devices = [None if i % 3 else "/device:GPU:0" for i in range(len(configs))]
    _forget()
    together = predict_many(configs, devices)
    for config, device, theory in zip(configs, devices, together, strict=True):
        _forget()
        alone = predict(config, device=device)
        assert _fields(theory) == _fields(alone), config
    assert sum(t.overflow_layer is not None for t in together) >= 2
    assert sum(t.underflow_layer is not None for t in together) >= 2
    assert any(not t.exact and "not centred" in t.note for t in together)


def _at_depths(configs: list[SimConfig], rng: random.Random) -> list[SimConfig]:
    """Each configuration, and its variants differing in one more field (bias, width, input
    dimension, dtype), at four depths each (shallower and deeper), shuffled."""
    bias = canonical_scheme(BIAS_SCHEMES, "normal", {"std": 0.37})
    out = []
    for config in configs:
        variants = [
            config,
            dataclasses.replace(config, bias=bias),
            dataclasses.replace(config, width=config.width + 3),
            dataclasses.replace(config, input_dim=config.input_dim + 5),
            dataclasses.replace(
                config, dtype="float16" if config.dtype != "float16" else "float32"
            ),
        ]
        depths = {config.depth, 1, config.depth + rng.randint(1, 6), max(1, config.depth - 2)}
        out += [dataclasses.replace(v, depth=d) for v in variants for d in sorted(depths)]
    rng.shuffle(out)
    return out


def test_configurations_differing_only_in_depth_share_their_forward_layers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The preactivation and activation layers and the overflow and collapse laws of a
    shallower configuration are read from the deepest one equal to it but in depth (and
    device): computed once per such group, bit for bit what the configuration gives alone."""
    rng = random.Random(13)
    configs = _at_depths(varied_configs(6, rng), rng)
    built = []
    original = meanfield._forward_part

    def counted(config: SimConfig, forward: Any) -> Any:
        built.append(config.depth)
        return original(config, forward)

    monkeypatch.setattr(meanfield, "_forward_part", counted)
    devices = [None if i % 3 else "/device:GPU:0" for i in range(len(configs))]
    _forget()
    together = predict_many(configs, devices)
    groups = {dataclasses.replace(c, depth=1) for c in configs}
    assert len(built) == len(groups) < len(configs) / 3  # once per group, the deepest's depth
    assert sorted(built) == sorted(
        max(c.depth for c in configs if dataclasses.replace(c, depth=1) == g) for g in groups
    )
    monkeypatch.setattr(meanfield, "_forward_part", original)
    for config, device, theory in zip(configs, devices, together, strict=True):
        _forget()
        assert _fields(theory) == _fields(predict(config, device=device)), config
    assert sum(any(t.mean_sq_bounds for t in theory.layers) for theory in together) > 30
    assert sum(t.overflow_layer is not None for t in together) >= 4
    assert sum(t.underflow_layer is not None for t in together) >= 4


@pytest.mark.parametrize("failing", ["_forward_lockstep", "forward_bounds", "_laws"])
def test_a_deeper_configuration_that_fails_leaves_the_shallower_their_own(
    monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Where the deepest of a group cannot be predicted (an arithmetic failure past some
    layer: in its q recursion, its forward bounds or its laws), the shallower ones are
    predicted from their own recursion, forward layers and laws, as alone."""
    original = getattr(meanfield, failing)

    def fails_deep(config: SimConfig, *args: Any) -> Any:
        if config.depth > 5:
            raise OverflowError("math range error")
        return original(config, *args)

    def recursions_fail_deep(configs: list[SimConfig]) -> list[Any]:
        found = original(configs)
        pairs = zip(configs, found, strict=True)
        return [OverflowError("deep") if c.depth > 5 else f for c, f in pairs]

    lockstep = failing == "_forward_lockstep"
    monkeypatch.setattr(meanfield, failing, recursions_fail_deep if lockstep else fails_deep)
    base = varied_configs(6, random.Random(21))
    configs = [dataclasses.replace(c, depth=d) for c in base for d in (3, 5, 8)]
    _forget()
    together = predict_many(configs)
    for config, theory in zip(configs, together, strict=True):
        _forget()
        assert _fields(theory) == _fields(predict(config)), config
        assert ("no prediction" in theory.note) == (config.depth > 5)


def test_the_maps_are_computed_when_read_and_shared_by_depth() -> None:
    tanh = canonical_scheme(ACTIVATIONS, "tanh", {})
    config = SimConfig(
        init=canonical_scheme(INIT_SCHEMES, "normal", {"std": 0.3}),
        activation=tanh,
        depth=4,
        width=16,
        input_dim=16,
        bias=canonical_scheme(BIAS_SCHEMES, "normal", {"std": 0.1}),
    )
    shallow, deep = predict_many([config, dataclasses.replace(config, depth=9)])
    assert shallow.maps_from == deep.maps_from and shallow.maps is deep.maps
    q_star, chi_1, xi_q, xi_c, phase = meanfield.predict_map(
        math.sqrt(16 * 0.09), 0.1, tanh, q0=16 * 0.09 + 0.01
    )
    assert (shallow.q_star, shallow.chi_1, shallow.xi_q, shallow.xi_c, shallow.phase) == (
        q_star,
        chi_1,
        xi_q,
        xi_c,
        phase,
    )


def _records(configs: list[SimConfig]) -> list[dict[str, Any]]:
    rows = []
    for config in configs:
        task = ChunkTask(config, 7, 0, 0, 6)
        for r in layer_records(task):
            row = {
                "config_hash": config.config_hash,
                "layer": r.layer,
                "quantity": r.quantity,
                "n_trials": r.n_trials,
                "n_finite": r.n_finite,
                "n_first_nonfinite": r.n_first_nonfinite,
                "n_collapsed": r.n_collapsed,
            }
            for stat in ("mean", "std", "mean_sq"):
                moments = getattr(r, stat)
                row[stat], row[f"{stat}_se"] = moments.value, moments.sem
            rows.append(row)
    return rows


def test_with_theory_together_is_one_configuration_at_a_time() -> None:
    configs = [c for c in varied_configs(24, random.Random(8)) if c.batch == 1]
    by_hash = {c.config_hash: c for c in configs}
    records = _records(configs)
    devices = {c.config_hash: "/device:GPU:0" for c in configs[::2]}
    _forget()
    together = with_theory(records, by_hash, predictor=device_predictor(devices))

    def alone(config: SimConfig) -> ConfigTheory:
        _forget()
        return predict(config, device=devices.get(config.config_hash))

    one_by_one = with_theory(records, by_hash, predictor=alone)
    assert sum(r["theory_mean_sq"] is not None for r in together) > 100
    assert sum(r["theory_std_lo"] is not None for r in together) > 100
    assert [_bits(dict(r)) for r in together] == [_bits(dict(r)) for r in one_by_one]


def test_dispersions_from_the_deepest_walk_are_each_layers_own() -> None:
    """`mean_sq_dispersions` (every layer from one walk to the depth, as `layer_bounds` reads
    them) is `mean_sq_dispersion` of each layer, each walked alone, bit for bit."""
    configs = varied_configs(40, random.Random(13))
    walked = 0  # configurations whose dispersion comes from the walk (no closed form)
    for config in configs:
        _forget()
        together = finite_width.mean_sq_dispersions(
            config, [float(v) for v in finite_width.norm_walk(config, config.depth)[1]]
        )
        alone = []
        for layer in range(config.depth + 1):
            _forget()
            alone.append(finite_width.mean_sq_dispersion(config, layer))
        assert _bits(together) == _bits(alone), config
        walked += config.activation.name == "tanh" and together[-1] is not None
    assert walked >= 3

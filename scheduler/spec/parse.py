"""Sweep specs: YAML text → a validated, normalised, expanded sweep, or one located `SpecError`.

The sections and axes are those of `scheduler.spec.model`. Every error names where it is, what was
expected and what was received, on one line: `grid.width[2]: expected a positive integer.
Received: -4`. Checks that need a whole configuration (sampler against init) run while the sweep
is expanded (`scheduler.spec.expand`), once: the result carries its configurations, so a spec that
parses expands; the memory budget is checked by `scheduler.chunking.plan_sweep`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scheduler.errors import SpecError
from scheduler.spec.expand import ExpandedConfig, ExpandedSweep, expand_sweep
from scheduler.spec.model import (
    AXES,
    DISTRIBUTIONS,
    INT_AXES,
    LABEL_KEY,
    MAX_CONFIGS,
    MAX_SEED,
    MAX_TRIALS,
    PARTNER_AXIS,
    REAL_AXES,
    REQUIRED_AXES,
    TOP_KEYS,
    Assignment,
    AxisLists,
    AxisValue,
    RandomAxis,
    RandomSpec,
    SweepSpec,
)
from scheduler.spec.reader import load_yaml, read_spec_text
from scheduler.spec.target import check_target_layer, parse_target
from scheduler.spec.values import (
    axis_value,
    byte_size,
    choice,
    did_you_mean,
    key_text,
    non_empty_text,
    non_negative_int,
    positive_int,
    received,
    show_key,
)
from worker.contract import QUEUES
from worker.memory import DEFAULT_BUDGET


def load_spec(path: str | Path) -> ExpandedSweep:
    """Read, validate and expand the spec file at `path` (at most 10 MiB)."""
    return parse_spec(read_spec_text(path), source=str(path))


def parse_spec(text: str, source: str = "<spec>") -> ExpandedSweep:
    """Validate and expand the YAML spec `text`; `source` names it in YAML-level errors.

    YAML is read by `scheduler.spec.reader`: YAML 1.2 core-schema numbers, no aliases, bounded
    nesting and sizes, duplicate keys refused, every error located."""
    data = load_yaml(text, source)
    if data is None:
        raise SpecError(
            f"{source}: the spec is empty; expected a mapping with trials and at least one of "
            "grid, zip, random, configs"
        )
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{source}: expected a mapping at top level (name:, trials:, grid:, ...). "
            f"Received: {_kind(data)}"
        )
    return _build(data, spec_yaml=text, source=source)


def spec_from_json(
    data: Mapping[str, Any], *, spec_yaml: str = "", source: str = "<json>"
) -> ExpandedSweep:
    """Validate and expand `data`, a parsed spec (e.g. `SweepSpec.to_json()` output)."""
    return _build(data, spec_yaml=spec_yaml, source=source)


# --- building --------------------------------------------------------------------------------


def _build(data: Mapping[str, Any], *, spec_yaml: str, source: str) -> ExpandedSweep:
    for key in data:
        if key not in TOP_KEYS:
            raise SpecError(
                f"unknown key {show_key(key)} at top level; expected one of "
                f"{', '.join(TOP_KEYS)}{did_you_mean(key, TOP_KEYS)}"
            )
    present = {k: v for k, v in data.items() if v is not None}

    if "name" in present:
        name = non_empty_text(present["name"], "name")
    else:
        name = Path(source).stem if source not in ("<spec>", "<json>") else "sweep"
    description = (
        non_empty_text(present["description"], "description") if "description" in present else ""
    )
    seed = non_negative_int(present.get("seed", 0), "seed", maximum=MAX_SEED)
    if "trials" not in present:
        raise SpecError(
            "trials: missing; expected a positive integer, the trials per configuration"
        )
    trials = positive_int(
        present["trials"], "trials", maximum=MAX_TRIALS, unit="trials per configuration"
    )
    target = parse_target(present["target"], trials) if "target" in present else None
    chunk_trials = (
        positive_int(present["chunk_trials"], "chunk_trials") if "chunk_trials" in present else None
    )
    budget = (
        byte_size(present["memory_budget"], "memory_budget")
        if "memory_budget" in present
        else DEFAULT_BUDGET
    )
    queue = choice(present.get("queue", "cpu"), QUEUES, "queue", "queue")

    grid = _axis_lists(present["grid"], "grid") if "grid" in present else ()
    zip_axes = _axis_lists(present["zip"], "zip") if "zip" in present else ()
    if zip_axes:
        lengths = [(axis, len(values)) for axis, values in zip_axes]
        if len({n for _, n in lengths}) > 1:
            counts = ", ".join(f"{axis} has {n}" for axis, n in lengths)
            raise SpecError(f"zip: lists must have equal lengths. Received: {counts}")
    random_axes = _random(present["random"]) if "random" in present else None
    configs = _configs(present["configs"]) if "configs" in present else ()
    fixed = _fixed(present["fixed"]) if "fixed" in present else ()

    spec = SweepSpec(
        name=name,
        seed=seed,
        trials=trials,
        chunk_trials=chunk_trials,
        memory_budget_bytes=budget,
        queue=queue,
        grid=grid,
        zip_axes=zip_axes,
        random_axes=random_axes,
        configs=configs,
        fixed=fixed,
        description=description,
        target=target,
        spec_yaml=spec_yaml,
        source=source,
    )
    _check_sections(spec)
    expanded = expand_sweep(spec)  # value-dependent checks (e.g. sampler against init), located
    if target is not None:
        check_target_layer(target, [(c.config, _where(c)) for c in expanded.configurations])
    return expanded


def _check_sections(spec: SweepSpec) -> None:
    """Each axis set once; sugar not mixed with what it sets; every configuration complete."""
    sections = spec.product_sections
    if not sections and not spec.configs:
        raise SpecError(
            f"{spec.source}: no configurations; expected at least one of grid, zip, random, "
            "configs (fixed alone is shared by configurations, it does not define one)"
        )
    located: dict[str, str] = {}
    placed = [
        *((axis, f"grid.{axis}") for axis, _ in spec.grid),
        *((axis, f"zip.{axis}") for axis, _ in spec.zip_axes),
        *(
            (a.axis, f"random.axes.{a.axis}")
            for a in (spec.random_axes.axes if spec.random_axes else ())
        ),
        *((axis, f"fixed.{axis}") for axis, _ in spec.fixed),
    ]
    for axis, where in placed:
        if axis in located:
            raise SpecError(
                f"{where}: axis {axis!r} is already set at {located[axis]}; an axis can be set "
                "in only one of grid, zip, random and fixed"
            )
        located[axis] = where
    if sections:
        _check_complete(located, sections[0], "add it to grid, zip, random or fixed")
        if spec.n_product > MAX_CONFIGS:
            raise SpecError(
                f"{sections[0]}: the sweep expands to {spec.n_product:,} configurations; "
                f"expected at most {MAX_CONFIGS:,}"
            )
    fixed_located = {axis: f"fixed.{axis}" for axis, _ in spec.fixed}
    for i, entry in enumerate(spec.configs):
        merged = dict(fixed_located)
        keys = {k for k, _ in entry}
        for axis, _ in entry:
            if axis == LABEL_KEY:
                continue
            merged[axis] = f"configs[{i}].{axis}"
            partner = PARTNER_AXIS.get(axis)
            if partner is not None and partner not in keys:
                merged.pop(partner, None)  # the entry overrides fixed, sugar included
        _check_complete(merged, f"configs[{i}]", "set it in the entry or in fixed")
    if len(spec.configs) + spec.n_product > MAX_CONFIGS:
        raise SpecError(
            f"configs: the sweep expands to {len(spec.configs) + spec.n_product:,} "
            f"configurations; expected at most {MAX_CONFIGS:,}"
        )


def _check_complete(located: Mapping[str, str], where: str, hint: str) -> None:
    for sugar, target, means in (
        ("sigma_w", "init", "variance_scaling(scale=sigma_w**2, mode=fan_in, untruncated normal)"),
        ("sigma_b", "bias", "normal(std=sigma_b)"),
    ):
        if sugar in located and target in located:
            raise SpecError(
                f"{located[sugar]}: {sugar} sets {target} to {means}, which {located[target]} "
                "also sets; give one of them"
            )
    for axis in REQUIRED_AXES:
        if axis in located or (axis == "init" and "sigma_w" in located):
            continue
        raise SpecError(
            f"{where}: missing axis {axis!r}; every configuration needs init (or sigma_w), "
            f"activation, depth and width: {hint}"
        )


# --- sections --------------------------------------------------------------------------------


def _axis_lists(data: Any, section: str) -> AxisLists:
    if not isinstance(data, Mapping) or not data:
        raise SpecError(
            f"{section}: expected a non-empty mapping of axis to list of values, e.g. "
            f"{section}: {{depth: [10, 20]}}. Received: {received(data)}"
        )
    out: list[tuple[str, tuple[AxisValue, ...]]] = []
    for axis, values in data.items():
        where = f"{section}.{key_text(axis)}"
        _check_axis_name(axis, where)
        if not isinstance(values, list) or not values:
            hint = " (a single value belongs in fixed)" if section == "grid" else ""
            raise SpecError(
                f"{where}: expected a non-empty list of values{hint}. Received: {received(values)}"
            )
        out.append(
            (axis, tuple(axis_value(axis, v, f"{where}[{i}]") for i, v in enumerate(values)))
        )
    return tuple(out)


def _random(data: Any) -> RandomSpec:
    if not isinstance(data, Mapping):
        raise SpecError(
            "random: expected a mapping with count and axes, e.g. random: {count: 20, axes: "
            f"{{sigma_w: {{distribution: uniform, low: 0.5, high: 3.0}}}}}}. Received: {received(data)}"
        )
    _check_keys(data, ("count", "axes"), "random")
    if data.get("count") is None:
        raise SpecError("random.count: missing; expected a positive integer, the number of draws")
    count = positive_int(data["count"], "random.count")
    axes_data = data.get("axes")
    if not isinstance(axes_data, Mapping) or not axes_data:
        raise SpecError(
            "random.axes: expected a non-empty mapping of axis to distribution, e.g. "
            f"sigma_w: {{distribution: uniform, low: 0.5, high: 3.0}}. Received: {received(axes_data)}"
        )
    axes: list[RandomAxis] = []
    for axis, spec in axes_data.items():
        where = f"random.axes.{key_text(axis)}"
        _check_axis_name(axis, where)
        axes.append(_random_axis(axis, spec, where))
    return RandomSpec(count=count, axes=tuple(axes))


def _random_axis(axis: str, data: Any, where: str) -> RandomAxis:
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{where}: expected a mapping with a distribution, e.g. {{distribution: uniform, "
            f"low: 0.5, high: 3.0}} or {{distribution: choice, values: [...]}}. "
            f"Received: {received(data)}"
        )
    if data.get("distribution") is None:
        raise SpecError(
            f"{where}.distribution: missing; expected one of {', '.join(DISTRIBUTIONS)}"
        )
    dist = choice(data["distribution"], DISTRIBUTIONS, "distribution", f"{where}.distribution")
    if dist == "choice":
        _check_keys(data, ("distribution", "values"), where)
        values = data.get("values")
        if not isinstance(values, list) or not values:
            raise SpecError(
                f"{where}.values: expected a non-empty list of {axis} values. "
                f"Received: {received(values)}"
            )
        return RandomAxis(
            axis,
            dist,
            values=tuple(axis_value(axis, v, f"{where}.values[{i}]") for i, v in enumerate(values)),
        )
    _check_keys(data, ("distribution", "low", "high"), where)
    if dist == "int_uniform" and axis not in INT_AXES:
        raise SpecError(
            f"{where}.distribution: int_uniform draws integers; expected "
            f"{_draws_for(axis)} for {axis}. Received: 'int_uniform'"
        )
    if dist in ("uniform", "log_uniform") and axis not in REAL_AXES:
        raise SpecError(
            f"{where}.distribution: {dist} draws real numbers; expected "
            f"{_draws_for(axis)} for {axis}. Received: {dist!r}"
        )
    bounds: dict[str, float | int] = {}
    for key in ("low", "high"):
        if data.get(key) is None:
            raise SpecError(f"{where}.{key}: missing; expected a {axis} value")
        value = axis_value(axis, data[key], f"{where}.{key}")
        assert isinstance(value, int | float)
        bounds[key] = value
    low, high = bounds["low"], bounds["high"]
    if low > high or (low == high and dist != "int_uniform"):
        relation = "low <= high" if dist == "int_uniform" else "low < high"
        raise SpecError(f"{where}: expected {relation}. Received: low={low}, high={high}")
    if dist == "log_uniform" and low <= 0:
        raise SpecError(f"{where}.low: log_uniform needs low > 0. Received: {low}")
    return RandomAxis(axis, dist, low=low, high=high)


def _draws_for(axis: str) -> str:
    if axis in INT_AXES:
        return "int_uniform or choice"
    if axis in REAL_AXES:
        return "uniform, log_uniform or choice"
    return "choice"


def _configs(data: Any) -> tuple[Assignment, ...]:
    if not isinstance(data, list) or not data:
        raise SpecError(
            "configs: expected a non-empty list of mappings, e.g. - {init: he_normal, "
            f"activation: relu, depth: 5, width: 32}}. Received: {received(data)}"
        )
    if len(data) > MAX_CONFIGS:
        raise SpecError(
            f"configs: expected at most {MAX_CONFIGS:,} configurations. "
            f"Received: {len(data):,} entries"
        )
    out: list[Assignment] = []
    for i, entry in enumerate(data):
        where = f"configs[{i}]"
        if not isinstance(entry, Mapping) or not entry:
            raise SpecError(
                f"{where}: expected a non-empty mapping of axis to value. "
                f"Received: {received(entry)}"
            )
        out.append(_assignment(entry, where, allow_label=True))
    return tuple(out)


def _fixed(data: Any) -> Assignment:
    if not isinstance(data, Mapping) or not data:
        raise SpecError(
            "fixed: expected a non-empty mapping of axis to value, e.g. fixed: {dtype: float32}. "
            f"Received: {received(data)}"
        )
    return _assignment(data, "fixed", allow_label=False)


def _assignment(data: Mapping[Any, Any], where: str, *, allow_label: bool) -> Assignment:
    out: list[tuple[str, AxisValue]] = []
    for axis, value in data.items():
        at = f"{where}.{key_text(axis)}"
        if allow_label and axis == LABEL_KEY:
            out.append((LABEL_KEY, non_empty_text(value, at)))
            continue
        _check_axis_name(axis, at)
        if isinstance(value, list):
            raise SpecError(
                f"{at}: expected one {axis} value (lists belong in grid or zip). "
                f"Received: {received(value)}"
            )
        out.append((axis, axis_value(axis, value, at)))
    return tuple(out)


def _check_axis_name(axis: Any, where: str) -> None:
    if axis in AXES:
        return
    if axis == LABEL_KEY:
        raise SpecError(
            f"{where}: 'label' names one explicit configuration; expected it only in configs "
            "entries"
        )
    raise SpecError(
        f"{where}: unknown axis {show_key(axis)}; expected one of {', '.join(AXES)}"
        f"{did_you_mean(axis, AXES)}"
    )


def _check_keys(data: Mapping[Any, Any], allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise SpecError(
                f"{where}.{key_text(key)}: unknown key {show_key(key)}; expected one of "
                f"{', '.join(allowed)}{did_you_mean(key, allowed)}"
            )


def _where(item: ExpandedConfig) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in item.axes.items())
    return f"{item.origin} ({labels})" if labels else item.origin


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string {received(value)}"
    return received(value)

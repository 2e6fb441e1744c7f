"""Sweep specs: YAML text → a validated, normalised `SweepSpec`, or one located `SpecError`.

A spec names the configurations of a sweep in five optional sections (see examples/):

    grid     axis → list; the cartesian product, in the order written, last axis fastest
    zip      axis → list, all of one length; rows zipped together, crossed with grid
    random   `count` joint draws of the listed axes (deterministic from `seed`), crossed with grid
    configs  explicit list of configurations, each merged over `fixed`, appended after the product
    fixed    axis → value, the same for every configuration

Every error names where it is, what was expected and what was received, on one line:
`grid.width[2]: expected a positive integer. Received: -4`. Checks that need a whole
configuration (sampler against init) run through `scheduler.expand`, so a spec that parses
expands; the memory budget is checked by `scheduler.chunking.plan_sweep`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.errors import SpecError
from scheduler.expand import PARTNER_AXIS, expand_located
from worker.contract import (
    ACTIVATIONS,
    BIAS_SCHEMES,
    DTYPES,
    FAN_MODES,
    INIT_SCHEMES,
    SAMPLERS,
    VS_DISTRIBUTIONS,
    ParamValue,
    Scheme,
)
from worker.memory import DEFAULT_BUDGET

AxisValue = Scheme | int | float | str
"""A validated axis value: a Scheme (init, activation, bias), an int, a float or a str."""
Assignment = tuple[tuple[str, AxisValue], ...]
"""Axis → value pairs in the order written."""
AxisLists = tuple[tuple[str, tuple[AxisValue, ...]], ...]
"""Axis → list of values, in the order written."""

AXES: tuple[str, ...] = (
    "init",
    "activation",
    "depth",
    "width",
    "input_dim",
    "batch",
    "dtype",
    "bias",
    "sampler",
    "sigma_w",
    "sigma_b",
)
REQUIRED_AXES: tuple[str, ...] = ("init", "activation", "depth", "width")
INT_AXES: frozenset[str] = frozenset({"depth", "width", "input_dim", "batch"})
REAL_AXES: frozenset[str] = frozenset({"sigma_w", "sigma_b"})
REQUESTED_SAMPLERS: tuple[str, ...] = ("auto", *SAMPLERS)
QUEUES: tuple[str, ...] = ("cpu", "gpu")
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "log_uniform", "int_uniform", "choice")
TOP_KEYS: tuple[str, ...] = (
    "name",
    "description",
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
)
PRODUCT_SECTIONS: tuple[str, ...] = ("grid", "zip", "random")
MAX_CONFIGS = 100_000
MAX_SEED = (1 << 63) - 1
LABEL_KEY = "label"

_STRING_PARAMS: dict[str, tuple[str, ...]] = {"mode": FAN_MODES, "distribution": VS_DISTRIBUTIONS}
_POSITIVE_PARAMS = frozenset({"scale"})
_NON_NEGATIVE_PARAMS = frozenset({"std"})
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True)
class RandomAxis:
    """One axis of `random`: real (uniform, log_uniform), integer (int_uniform) or `choice`."""

    axis: str
    distribution: str
    low: float | int | None = None
    high: float | int | None = None
    values: tuple[AxisValue, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.distribution == "choice":
            return {"distribution": "choice", "values": [_value_json(v) for v in self.values]}
        return {"distribution": self.distribution, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class RandomSpec:
    """`count` joint draws of `axes`."""

    count: int
    axes: tuple[RandomAxis, ...]

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "axes": {a.axis: a.to_json() for a in self.axes}}


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec. Schemes keep the parameters the user wrote (labels stay short);
    `scheduler.expand` fills defaults. `spec_yaml` and `source` do not take part in equality."""

    name: str
    seed: int
    trials: int
    chunk_trials: int | None = None
    memory_budget_bytes: int = DEFAULT_BUDGET
    queue: str = "cpu"
    grid: AxisLists = ()
    zip_axes: AxisLists = ()
    random_axes: RandomSpec | None = None
    configs: tuple[Assignment, ...] = ()
    fixed: Assignment = ()
    description: str = ""
    spec_yaml: str = field(default="", compare=False)
    source: str = field(default="<spec>", compare=False)

    @property
    def product_sections(self) -> tuple[str, ...]:
        """The sections among grid, zip, random that this spec uses, in that order."""
        present = (bool(self.grid), bool(self.zip_axes), self.random_axes is not None)
        return tuple(s for s, p in zip(PRODUCT_SECTIONS, present, strict=True) if p)

    @property
    def n_product(self) -> int:
        """Configurations of grid x zip x random before deduplication (0 if none is used)."""
        if not self.product_sections:
            return 0
        n = math.prod(len(values) for _, values in self.grid)
        if self.zip_axes:
            n *= len(self.zip_axes[0][1])
        if self.random_axes is not None:
            n *= self.random_axes.count
        return n

    def to_json(self) -> dict[str, Any]:
        """The normalised spec as JSON-safe data; itself a valid spec (`from_json` inverts it)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out.update(
            seed=self.seed,
            trials=self.trials,
            chunk_trials=self.chunk_trials,
            memory_budget=self.memory_budget_bytes,
            queue=self.queue,
        )
        if self.grid:
            out["grid"] = {axis: [_value_json(v) for v in vs] for axis, vs in self.grid}
        if self.zip_axes:
            out["zip"] = {axis: [_value_json(v) for v in vs] for axis, vs in self.zip_axes}
        if self.random_axes is not None:
            out["random"] = self.random_axes.to_json()
        if self.configs:
            out["configs"] = [{k: _value_json(v) for k, v in entry} for entry in self.configs]
        if self.fixed:
            out["fixed"] = {k: _value_json(v) for k, v in self.fixed}
        return out

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, spec_yaml: str = "", source: str = "<json>"
    ) -> SweepSpec:
        """Validate `data` (a parsed spec, e.g. `to_json()` output) into a SweepSpec."""
        return _build(data, spec_yaml=spec_yaml, source=source)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate the spec file at `path`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "<spec>") -> SweepSpec:
    """Validate the YAML spec `text`; `source` names it in YAML-level errors."""
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        reason = e.problem or "malformed"
        if e.context:
            reason = f"{reason} ({e.context})"
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        raise SpecError(f"{where}: invalid YAML: {_one_line(reason)}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{source}: invalid YAML: {_one_line(str(e))}") from None
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


# --- YAML ------------------------------------------------------------------------------------


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads `1e-3` as a float (as YAML 1.2 does)."""


def _construct_mapping(loader: _SpecLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)(?:\.[\d_]*)?[eE][-+]?\d+$"),
    list("-+0123456789"),
)


# --- building --------------------------------------------------------------------------------


def _build(data: Mapping[str, Any], *, spec_yaml: str, source: str) -> SweepSpec:
    for key in data:
        if key not in TOP_KEYS:
            raise SpecError(
                f"unknown key {_show_key(key)} at top level; expected one of "
                f"{', '.join(TOP_KEYS)}{_did_you_mean(key, TOP_KEYS)}"
            )
    present = {k: v for k, v in data.items() if v is not None}

    if "name" in present:
        name = _text(present["name"], "name")
    else:
        name = Path(source).stem if source not in ("<spec>", "<json>") else "sweep"
    description = _text(present["description"], "description") if "description" in present else ""
    seed = _non_negative_int(present.get("seed", 0), "seed", maximum=MAX_SEED)
    if "trials" not in present:
        raise SpecError(
            "trials: missing; expected a positive integer, the trials per configuration"
        )
    trials = _positive_int(present["trials"], "trials")
    chunk_trials = (
        _positive_int(present["chunk_trials"], "chunk_trials")
        if "chunk_trials" in present
        else None
    )
    budget = (
        _byte_size(present["memory_budget"], "memory_budget")
        if "memory_budget" in present
        else DEFAULT_BUDGET
    )
    queue = _choice(present.get("queue", "cpu"), QUEUES, "queue", "queue")

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
        spec_yaml=spec_yaml,
        source=source,
    )
    _check_sections(spec)
    expand_located(spec)  # value-dependent checks (e.g. sampler against init), located
    return spec


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
            f"{section}: {{depth: [10, 20]}}. Received: {_received(data)}"
        )
    out: list[tuple[str, tuple[AxisValue, ...]]] = []
    for axis, values in data.items():
        where = f"{section}.{axis}"
        _check_axis_name(axis, where)
        if not isinstance(values, list) or not values:
            hint = " (a single value belongs in fixed)" if section == "grid" else ""
            raise SpecError(
                f"{where}: expected a non-empty list of values{hint}. Received: {_received(values)}"
            )
        out.append(
            (axis, tuple(axis_value(axis, v, f"{where}[{i}]") for i, v in enumerate(values)))
        )
    return tuple(out)


def _random(data: Any) -> RandomSpec:
    if not isinstance(data, Mapping):
        raise SpecError(
            "random: expected a mapping with count and axes, e.g. random: {count: 20, axes: "
            f"{{sigma_w: {{distribution: uniform, low: 0.5, high: 3.0}}}}}}. Received: {_received(data)}"
        )
    _check_keys(data, ("count", "axes"), "random")
    if data.get("count") is None:
        raise SpecError("random.count: missing; expected a positive integer, the number of draws")
    count = _positive_int(data["count"], "random.count")
    axes_data = data.get("axes")
    if not isinstance(axes_data, Mapping) or not axes_data:
        raise SpecError(
            "random.axes: expected a non-empty mapping of axis to distribution, e.g. "
            f"sigma_w: {{distribution: uniform, low: 0.5, high: 3.0}}. Received: {_received(axes_data)}"
        )
    axes: list[RandomAxis] = []
    for axis, spec in axes_data.items():
        where = f"random.axes.{axis}"
        _check_axis_name(axis, where)
        axes.append(_random_axis(axis, spec, where))
    return RandomSpec(count=count, axes=tuple(axes))


def _random_axis(axis: str, data: Any, where: str) -> RandomAxis:
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{where}: expected a mapping with a distribution, e.g. {{distribution: uniform, "
            f"low: 0.5, high: 3.0}} or {{distribution: choice, values: [...]}}. "
            f"Received: {_received(data)}"
        )
    if data.get("distribution") is None:
        raise SpecError(
            f"{where}.distribution: missing; expected one of {', '.join(DISTRIBUTIONS)}"
        )
    dist = _choice(data["distribution"], DISTRIBUTIONS, "distribution", f"{where}.distribution")
    if dist == "choice":
        _check_keys(data, ("distribution", "values"), where)
        values = data.get("values")
        if not isinstance(values, list) or not values:
            raise SpecError(
                f"{where}.values: expected a non-empty list of {axis} values. "
                f"Received: {_received(values)}"
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
            f"activation: relu, depth: 5, width: 32}}. Received: {_received(data)}"
        )
    out: list[Assignment] = []
    for i, entry in enumerate(data):
        where = f"configs[{i}]"
        if not isinstance(entry, Mapping) or not entry:
            raise SpecError(
                f"{where}: expected a non-empty mapping of axis to value. "
                f"Received: {_received(entry)}"
            )
        out.append(_assignment(entry, where, allow_label=True))
    return tuple(out)


def _fixed(data: Any) -> Assignment:
    if not isinstance(data, Mapping) or not data:
        raise SpecError(
            "fixed: expected a non-empty mapping of axis to value, e.g. fixed: {dtype: float32}. "
            f"Received: {_received(data)}"
        )
    return _assignment(data, "fixed", allow_label=False)


def _assignment(data: Mapping[Any, Any], where: str, *, allow_label: bool) -> Assignment:
    out: list[tuple[str, AxisValue]] = []
    for axis, value in data.items():
        at = f"{where}.{axis}"
        if allow_label and axis == LABEL_KEY:
            out.append((LABEL_KEY, _text(value, at)))
            continue
        _check_axis_name(axis, at)
        if isinstance(value, list):
            raise SpecError(
                f"{at}: expected one {axis} value (lists belong in grid or zip). "
                f"Received: {_received(value)}"
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
        f"{where}: unknown axis {_show_key(axis)}; expected one of {', '.join(AXES)}"
        f"{_did_you_mean(axis, AXES)}"
    )


def _check_keys(data: Mapping[Any, Any], allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise SpecError(
                f"{where}.{key}: unknown key {_show_key(key)}; expected one of "
                f"{', '.join(allowed)}{_did_you_mean(key, allowed)}"
            )


# --- values ----------------------------------------------------------------------------------


def axis_value(axis: str, value: Any, where: str) -> AxisValue:
    """Validate one value of `axis` found at `where` (raises a located SpecError)."""
    if axis == "init":
        return _scheme(value, "init", INIT_SCHEMES, where)
    if axis == "activation":
        return _scheme(value, "activation", ACTIVATIONS, where)
    if axis == "bias":
        return _scheme(value, "bias", BIAS_SCHEMES, where)
    if axis in INT_AXES:
        return _positive_int(value, where)
    if axis == "dtype":
        return _choice(value, DTYPES, "dtype", where)
    if axis == "sampler":
        return _choice(value, REQUESTED_SAMPLERS, "sampler", where)
    if axis == "sigma_w":
        return _number(value, where, positive=True)
    if axis == "sigma_b":
        return _number(value, where, non_negative=True)
    raise SpecError(f"{where}: unknown axis {axis!r}; expected one of {', '.join(AXES)}")


def _scheme(
    value: Any, kind: str, registry: Mapping[str, Mapping[str, ParamValue]], where: str
) -> Scheme:
    example = {"init": "{name: normal, std: 0.05}", "activation": "{name: leaky_relu, alpha: 0.1}"}
    example_text = example.get(kind, "{name: normal, std: 0.1}")
    if isinstance(value, str):
        name, params = value, {}
    elif isinstance(value, Mapping):
        if "name" not in value:
            raise SpecError(
                f"{where}: expected a mapping with a 'name' key, e.g. {example_text}. "
                f"Received: {_received(value)}"
            )
        name = value["name"]
        params = {k: v for k, v in value.items() if k != "name"}
        if not isinstance(name, str):
            raise SpecError(
                f"{where}.name: expected a {kind} name, one of {', '.join(registry)}. "
                f"Received: {_received(name)}"
            )
    else:
        raise SpecError(
            f"{where}: expected a {kind} name or a mapping like {example_text}. "
            f"Received: {_received(value)}"
        )
    if name not in registry:
        raise SpecError(
            f"{where}: unknown {kind} {name!r}; expected one of {', '.join(registry)}"
            f"{_did_you_mean(name, registry)}"
        )
    allowed = registry[name]
    checked: dict[str, ParamValue] = {}
    for key, param in params.items():
        at = f"{where}.{key}"
        if key not in allowed:
            if not allowed:
                raise SpecError(
                    f"{at}: unknown parameter {_show_key(key)} for {kind} {name!r}, which takes "
                    "no parameters"
                )
            raise SpecError(
                f"{at}: unknown parameter {_show_key(key)} for {kind} {name!r}; expected one of "
                f"{', '.join(allowed)}{_did_you_mean(key, allowed)}"
            )
        if isinstance(allowed[key], str):
            checked[key] = _choice(param, _STRING_PARAMS.get(key, ()), key, at)
        else:
            checked[key] = _number(
                param,
                at,
                positive=key in _POSITIVE_PARAMS,
                non_negative=key in _NON_NEGATIVE_PARAMS,
            )
    if "low" in allowed:
        low = checked.get("low", allowed["low"])
        high = checked.get("high", allowed["high"])
        assert isinstance(low, float) and isinstance(high, float)
        if not low < high:
            raise SpecError(f"{where}: expected low < high. Received: low={low:g}, high={high:g}")
    return Scheme(name, tuple(sorted(checked.items())))


def _number(value: Any, where: str, *, positive: bool = False, non_negative: bool = False) -> float:
    if positive:
        what = "a positive number"
    elif non_negative:
        what = "a non-negative number"
    else:
        what = "a finite number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}: expected {what}. Received: {_received(value)}")
    number = float(value)
    if not math.isfinite(number) or (positive and number <= 0) or (non_negative and number < 0):
        raise SpecError(f"{where}: expected {what}. Received: {value!r}")
    return number


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}: expected a positive integer. Received: {_received(value)}")
    return value


def _non_negative_int(value: Any, where: str, *, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise SpecError(
            f"{where}: expected a non-negative integer below 2**63. Received: {_received(value)}"
        )
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: expected a non-empty string. Received: {_received(value)}")
    return value


def _choice(value: Any, options: Sequence[str], what: str, where: str) -> str:
    if not isinstance(value, str):
        raise SpecError(
            f"{where}: expected a {what}, one of {', '.join(options)}. Received: {_received(value)}"
        )
    if value not in options:
        raise SpecError(
            f"{where}: unknown {what} {value!r}; expected one of {', '.join(options)}"
            f"{_did_you_mean(value, options)}"
        )
    return value


def parse_byte_size(text: str | int) -> int:
    """`'512MiB'` → 536870912 (units B, KiB..TiB, KB..TB; plain ints are bytes)."""
    return _byte_size(text, "memory_budget")


def _byte_size(value: Any, where: str) -> int:
    expected = "expected a positive number of bytes, e.g. 1073741824, '512MiB' or '2GiB'"
    if isinstance(value, int) and not isinstance(value, bool):
        if value > 0:
            return value
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            unit = _SIZE_UNITS[match.group(2).lower()]
            number = float(match.group(1)) * unit
            if number >= 1 and (unit > 1 or number == int(number)):  # no fractional bytes
                return int(number)
    raise SpecError(f"{where}: {expected}. Received: {_received(value)}")


# --- wording ---------------------------------------------------------------------------------


def _value_json(value: AxisValue) -> Any:
    if isinstance(value, Scheme):
        return value.to_json() if value.params else value.name
    return value


def _did_you_mean(word: Any, options: Iterable[str]) -> str:
    if not isinstance(word, str) or not word:
        return ""
    choices = list(options)
    containing = [o for o in choices if len(word) >= 3 and word.lower() in o]
    if 1 < len(containing) <= 3:
        return f"; did you mean one of {', '.join(repr(o) for o in containing)}?"
    close = containing or difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


def _show_key(key: Any) -> str:
    return repr(key) if isinstance(key, str) else f"{key!r} ({type(key).__name__})"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string {_received(value)}"
    return _received(value)


def _received(value: Any) -> str:
    if isinstance(value, bool):
        text = f"{str(value).lower()} (a boolean)"
    elif value is None:
        text = "nothing (null)"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())

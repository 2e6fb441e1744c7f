"""The spec vocabulary: axes, sections, limits, and the frozen values a parsed spec is made of.

A spec names the configurations of a sweep in five optional sections (see examples/):

    grid     axis → list; the cartesian product, in the order written, last axis fastest
    zip      axis → list, all of one length; rows zipped together, crossed with grid
    random   `count` joint draws of the listed axes (deterministic from `seed`), crossed with grid
    configs  explicit list of configurations, each merged over `fixed`, appended after the product
    fixed    axis → value, the same for every configuration

Layering of `scheduler.spec`, imports running one way: model <- values <- expand <- parse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from worker.contract import SAMPLERS, Scheme
from worker.memory import DEFAULT_BUDGET
from worker.target import Target

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
    "input_q",
    "input_corr",
)
REQUIRED_AXES: tuple[str, ...] = ("init", "activation", "depth", "width")
INT_AXES: frozenset[str] = frozenset({"depth", "width", "input_dim", "batch"})
REAL_AXES: frozenset[str] = frozenset({"sigma_w", "sigma_b", "input_q", "input_corr"})
REQUESTED_SAMPLERS: tuple[str, ...] = ("auto", *SAMPLERS)
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "log_uniform", "int_uniform", "choice")
TOP_KEYS: tuple[str, ...] = (
    "name",
    "description",
    "seed",
    "trials",
    "target",
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
# Largest values, each refused with its reason: a depth past MAX_DEPTH needs gigabytes of per-layer
# bookkeeping (worker.memory.LAYER_CHUNK_BYTES) and hours of graph-loop steps per trial; widths
# and batches past these have no kernel that fits any memory budget; trials, chunk sizes and
# these axes are stored in 32-bit integer columns.
MAX_DEPTH = 100_000
MAX_WIDTH = 1 << 20
MAX_BATCH = 1 << 16
# Every real number of a spec is 0 or of magnitude in [MIN_MAGNITUDE, MAX_MAGNITUDE]: its square
# (a variance: sigma_w^2, std^2, alpha^2) and that square times any fan or batch (< 2^21) stay
# finite and normal in float64, so no derived parameter of a valid spec is inf or flushed to 0.
MAX_MAGNITUDE = 1e150
MIN_MAGNITUDE = 1e-150
# Largest variance of one weight entry (shift^2 + scale^2 of its law, per kernel): times a fan
# (< 2^21) it stays below float64's largest value.
MAX_WEIGHT_SECOND_MOMENT = 1e300
INT_AXIS_MAX: dict[str, tuple[int, str]] = {
    "depth": (MAX_DEPTH, "layers"),
    "width": (MAX_WIDTH, "units"),
    "input_dim": (MAX_WIDTH, "inputs"),
    "batch": (MAX_BATCH, "inputs per trial"),
}
MAX_TRIALS = 1_000_000_000  # per configuration
MAX_SWEEP_TRIALS = 10**11  # configurations x trials
MAX_CHUNKS = 1_000_000  # chunks of a sweep: each is a database row and a message
MAX_MEMORY_BUDGET = 1 << 50  # 1 PiB
MAX_SEED = (1 << 63) - 1
LABEL_KEY = "label"
# sigma_w is sugar for init and sigma_b for bias: each pair names one field of a configuration.
PARTNER_AXIS: dict[str, str] = {
    "init": "sigma_w",
    "sigma_w": "init",
    "bias": "sigma_b",
    "sigma_b": "bias",
}


def value_json(value: AxisValue) -> Any:
    """An axis value as spec JSON: a bare scheme name when it has no parameters."""
    if isinstance(value, Scheme):
        return value.to_json() if value.params else value.name
    return value


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
            return {"distribution": "choice", "values": [value_json(v) for v in self.values]}
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
    `scheduler.spec.expand` fills defaults. `spec_yaml` and `source` do not take part in
    equality."""

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
    target: Target | None = None
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
        """The normalised spec as JSON-safe data; itself a valid spec
        (`scheduler.spec.parse.spec_from_json` inverts it)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out.update(
            seed=self.seed,
            trials=self.trials,
        )
        if self.target is not None:
            out["target"] = self.target.to_json()
        out.update(
            chunk_trials=self.chunk_trials,
            memory_budget=self.memory_budget_bytes,
            queue=self.queue,
        )
        if self.grid:
            out["grid"] = {axis: [value_json(v) for v in vs] for axis, vs in self.grid}
        if self.zip_axes:
            out["zip"] = {axis: [value_json(v) for v in vs] for axis, vs in self.zip_axes}
        if self.random_axes is not None:
            out["random"] = self.random_axes.to_json()
        if self.configs:
            out["configs"] = [{k: value_json(v) for k, v in entry} for entry in self.configs]
        if self.fixed:
            out["fixed"] = {k: value_json(v) for k, v in self.fixed}
        return out

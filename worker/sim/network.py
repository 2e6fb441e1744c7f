"""A configuration as a compiled graph sees it: the structure that shapes the graph, and the
numbers fed to it.

`split(config) -> (Shape, numbers)` cuts a `SimConfig` in two:

- `Shape` (hashable): what changes the graph's ops: sampler, dtype, width, input_dim, batch,
  the activation's name, the law kind of layer 1 and of layers 2..D (normal, uniform, truncated,
  orthogonal), and which numbers the graph takes at all (`Shape.numbers`);
- numbers (`NUMBERS`, Python floats): the kernel laws W = shift + scale * B of layer 1
  (fans (input_dim, width)) and of layers 2..D (fans (width, width)) from `worker.schemes.law`,
  the bias std, the activation's alpha (leaky_relu, elu), the input geometry's q^0 and c^0
  (`input_q`, `input_corr`: present exactly when the configuration sets them, fed in float64).
  Depth is fed too (the layer loops of `worker.sim.dense` and `worker.sim.conditional` run to
  a tensor bound).

A number is absent from the shape where today's graph skips an op for its value: a shift of 0
(no add; the kernel may be factored), a scale of exactly 1 (no multiply), a zero bias (no draw),
no alpha. So a sweep over sigma_w, sigma_b, std, gain, limits, alpha or depth is one shape.

Bits: a number is handed to the graph already rounded to the dtype it is used in, by numpy
(`feed`), which is exactly how `tf.constant(value, dtype)` rounds it inside a graph
(`tensor_util.make_tensor_proto`), and the graph multiplies or adds the fed scalar where it
multiplied or added the constant. Kernel laws and the bias std are used in the draw dtype
(`rng.draw_dtype`), alpha in the compute dtype.

`Network` is what a sampler builds from: Python ints for the structure, `Scalar`s (a Python
float, or a scalar tensor inside a compiled graph) for the numbers, `None` for an absent one.
`Network.of(config)` holds Python floats (eager use, tests); `Network.build(shape, depth,
numbers)` whatever it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import tensorflow as tf

from worker.contract import ACTIVATIONS, Scheme, SimConfig
from worker.schemes import law
from worker.sim import rng

Scalar: TypeAlias = float | tf.Tensor
Depth: TypeAlias = int | tf.Tensor

# The numbers a graph may take; their dtype is the draw dtype except for alpha (compute dtype).
NUMBERS: tuple[str, ...] = (
    "first_shift",
    "first_scale",
    "deep_shift",
    "deep_scale",
    "bias_std",
    "alpha",
    "input_q",
    "input_corr",
)
GEOMETRY_NUMBERS: tuple[str, ...] = ("input_q", "input_corr")  # used in float64
ALPHA_ACTIVATIONS: tuple[str, ...] = ("leaky_relu", "elu")


def alpha_of(act: Scheme) -> float:
    """The alpha of a leaky_relu or elu scheme, falling back to the registry default."""
    try:
        return act.num("alpha")
    except KeyError:
        return float(ACTIVATIONS[act.name]["alpha"])


def constant(value: Scalar, dtype: tf.DType) -> tf.Tensor:
    """`value` as a scalar of `dtype`: a Python float becomes a constant, a tensor (fed in that
    dtype by `feed`) is used as it is."""
    if isinstance(value, tf.Tensor):
        if value.dtype != dtype:
            raise TypeError(f"number: expected a {dtype.name} scalar. Received: {value.dtype.name}")
        return value
    return tf.constant(value, dtype)


@dataclass(frozen=True)
class KernelLaw:
    """W = shift + scale * B, B of law `kind`; shift None: no shift, scale None: scale 1."""

    kind: str
    shift: Scalar | None = None
    scale: Scalar | None = None


@dataclass(frozen=True)
class Shape:
    """What keys the trace cache: everything that changes a sampler graph's ops (module doc)."""

    sampler: str
    dtype: str
    width: int
    input_dim: int
    batch: int
    activation: str
    first_kind: str
    deep_kind: str
    numbers: tuple[str, ...]

    def number_dtype(self, name: str) -> tf.DType:
        """The dtype number `name` is used (hence fed) in."""
        if name == "alpha":
            return tf.as_dtype(self.dtype)
        if name in GEOMETRY_NUMBERS:
            return tf.float64
        return rng.draw_dtype(self.dtype)


def split(config: SimConfig) -> tuple[Shape, dict[str, float]]:
    """(shape, numbers) of `config`; the numbers are those `shape.numbers` names, as floats."""
    first = law(config.init, *config.fans(1))
    deep = law(config.init, config.width, config.width)
    values: dict[str, float] = {}
    for prefix, lw in (("first", first), ("deep", deep)):
        if lw.shift != 0.0:
            values[f"{prefix}_shift"] = lw.shift
        if lw.scale != 1.0:
            values[f"{prefix}_scale"] = lw.scale
    if config.bias_std != 0.0:
        values["bias_std"] = config.bias_std
    name = config.activation.name
    if name in ALPHA_ACTIVATIONS:
        values["alpha"] = alpha_of(config.activation)
    for key, geometry in (("input_q", config.input_q), ("input_corr", config.input_corr)):
        if geometry is not None:
            values[key] = geometry
    shape = Shape(
        sampler=config.sampler,
        dtype=config.dtype,
        width=config.width,
        input_dim=config.input_dim,
        batch=config.batch,
        activation=name,
        first_kind=first.kind,
        deep_kind=deep.kind,
        numbers=tuple(n for n in NUMBERS if n in values),
    )
    return shape, values


def feed(shape: Shape, values: Mapping[str, float]) -> dict[str, tf.Tensor]:
    """The numbers as scalar tensors in their dtypes, rounded by numpy as a graph constant is."""
    out = {}
    for name in shape.numbers:
        np_dtype = shape.number_dtype(name).as_numpy_dtype
        out[name] = tf.constant(np.asarray(values[name], dtype=np_dtype))
    return out


@dataclass(frozen=True)
class Network:
    """What a sampler builds its graph from (module doc); `depth` may be an int32 tensor."""

    depth: Depth
    width: int
    input_dim: int
    batch: int
    dtype: str
    activation: str
    alpha: Scalar | None
    first: KernelLaw  # layer 1: fans (input_dim, width)
    deep: KernelLaw  # layers 2..depth: fans (width, width)
    bias_std: Scalar | None  # None: zero bias
    input_q: Scalar | None = None  # None: i.i.d. N(0, 1) inputs (worker.contract)
    input_corr: Scalar | None = None  # None: no prescribed correlation

    @property
    def shared_readout(self) -> bool:
        """The inputs share one readout r (`SimConfig.shared_readout`)."""
        return self.input_q is not None

    @classmethod
    def build(cls, shape: Shape, depth: Depth, numbers: Mapping[str, Scalar]) -> Network:
        """The network of `shape` with these numbers (floats or tensors) and depth."""
        return cls(
            depth=depth,
            width=shape.width,
            input_dim=shape.input_dim,
            batch=shape.batch,
            dtype=shape.dtype,
            activation=shape.activation,
            alpha=numbers.get("alpha"),
            first=KernelLaw(
                shape.first_kind, numbers.get("first_shift"), numbers.get("first_scale")
            ),
            deep=KernelLaw(shape.deep_kind, numbers.get("deep_shift"), numbers.get("deep_scale")),
            bias_std=numbers.get("bias_std"),
            input_q=numbers.get("input_q"),
            input_corr=numbers.get("input_corr"),
        )

    @classmethod
    def of(cls, config: SimConfig) -> Network:
        """`config` with Python numbers (what `build` gets from `split`)."""
        shape, values = split(config)
        return cls.build(shape, config.depth, values)

    def fans(self, layer: int) -> tuple[int, int]:
        """(fan_in, fan_out) of the kernel of `layer` (1-based), as `SimConfig.fans`."""
        return (self.input_dim if layer == 1 else self.width, self.width)

    def law(self, layer: int | tf.Tensor) -> KernelLaw:
        """The kernel law of `layer`; a tensor `layer` is one of 2..depth (a loop index)."""
        return self.first if isinstance(layer, int) and layer == 1 else self.deep

"""A validated `SweepSpec` → its configurations (`SimConfig`, canonical) with axis labels.

A parsed spec is expanded once, by `expand_sweep`: the `ExpandedSweep` it returns carries its
configurations to the planner.

Order is deterministic: grid x zip x random (grid axes in the order written, last fastest; then
zip rows; then random draws, innermost), then `configs` entries in order. A configuration whose
`config_hash` was already produced is dropped (the first keeps its labels).

Sugar: `sigma_w: s` is init `variance_scaling(scale=s**2, mode=fan_in,
distribution=untruncated_normal)`, i.e. W ~ N(0, s^2/fan_in); `sigma_b: s` is bias
`normal(std=s)`. A `normal` bias with std 0 is the zeros bias (identical simulation, one hash).
`input_corr` without `input_q` means input_q 1 (one hash for both spellings).

Random axes are drawn from numpy `SeedSequence` words (a documented, version-stable hash, unlike
`Generator` streams), one independent stream per axis name keyed by the sweep seed: u = top 53
bits / 2**53 in [0, 1); uniform low + u (high - low); log_uniform exp of that in log space;
int_uniform low + floor(u (high - low + 1)); choice values[floor(u n)].
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from scheduler.bulk import collector_paused
from scheduler.errors import SpecError
from scheduler.spec.model import (
    MAX_WEIGHT_SECOND_MOMENT,
    PARTNER_AXIS,
    AxisValue,
    RandomSpec,
    SweepSpec,
)
from worker.contract import (
    ACTIVATIONS,
    BIAS_SCHEMES,
    INIT_SCHEMES,
    Scheme,
    SimConfig,
    canonical_scheme,
)
from worker.schemes import describe_law, is_iid_gaussian, law

Located = tuple[str, AxisValue, str]
"""(axis, value, where the value was written in the spec)."""

_RANDOM_DOMAIN = 0x72616E64  # "rand": keeps random-axis streams apart from other seed uses


@dataclass(frozen=True)
class ExpandedConfig:
    """A configuration, its user-facing axis labels, and where it came from (`grid`,
    `configs[3]`) for messages."""

    config: SimConfig
    axes: dict[str, Any]
    origin: str


@dataclass(frozen=True)
class ExpandedSweep(SweepSpec):
    """A validated spec with its distinct configurations, in order (what parsing returns).
    `configurations` does not take part in equality: it is a function of the other fields."""

    configurations: tuple[ExpandedConfig, ...] = field(kw_only=True, compare=False, repr=False)


def expand_sweep(spec: SweepSpec) -> ExpandedSweep:
    """`spec` with its configurations (raises a located SpecError for an inexact sampler)."""
    declared = {f.name: getattr(spec, f.name) for f in fields(SweepSpec)}
    with collector_paused():  # 10^5 configurations, no cycles (`scheduler.bulk`)
        return ExpandedSweep(**declared, configurations=tuple(expand_located(spec)))


def expand(spec: SweepSpec) -> list[tuple[SimConfig, dict[str, Any]]]:
    """The distinct configurations of `spec`, in order, with their varying axis labels."""
    return [(e.config, e.axes) for e in expand_located(spec)]


def expand_located(spec: SweepSpec) -> list[ExpandedConfig]:
    """Like `expand`, keeping each configuration's origin (used in budget errors).

    Two passes with the first error in the same place: every configuration is built up to the
    first that fails, the exactness limits of those that need one are computed together
    (`exactness.conditional_limits`), then each configuration's sampler is resolved, in order."""
    from scheduler.spec.exactness import prefetch_limits  # theory (scipy): when needed only

    memo = _Memo()
    drafts: list[_Draft] = []
    failure: Exception | None = None
    for origin, located, label_keys in _assignments(spec):
        try:
            drafts.append(_draft(located, origin, label_keys, memo))
        except Exception as e:  # raised once the configurations before it are resolved
            failure = e
            break
    prefetch_limits(
        d.config for d in drafts if d.requested != "dense" and is_iid_gaussian(d.config.init)
    )
    out: list[ExpandedConfig] = []
    seen: set[str] = set()
    for d in drafts:
        try:
            sampler = resolve_sampler(d.requested, d.config)
        except SpecError as e:
            raise SpecError(f"{d.where_sampler}: {e}") from None
        config = d.config if sampler == "dense" else d.config.with_sampler(sampler)
        key = config.config_hash
        if key in seen:
            continue
        seen.add(key)
        axes = {k: axis_label(d.values[k]) for k in d.label_keys}
        out.append(ExpandedConfig(config=config, axes=axes, origin=d.origin))
    if failure is not None:
        raise failure
    return out


def resolve_sampler(requested: str, config: SimConfig) -> str:
    """The sampler `config` runs with (its own `sampler` field is ignored): `auto` is
    `conditional` exactly for i.i.d. Gaussian weights (conditionally on the layer input, z = hW
    is then exactly Gaussian and W need not be drawn) whose values stay clear of the dtype's
    flush-to-zero range (`exactness.conditional_limit`), else `dense`. Raises SpecError
    (without location) for an inexact request."""
    if requested == "dense":
        return "dense"
    from scheduler.spec.exactness import conditional_limit, limit_reason

    init = config.init
    gaussian = is_iid_gaussian(init)
    if requested not in ("auto", "conditional"):
        raise SpecError(f"unknown sampler {requested!r}; expected one of auto, dense, conditional")
    if not gaussian:
        if requested == "auto":
            return "dense"
        raise SpecError(
            f"sampler 'conditional' is exact only for i.i.d. Gaussian weights; init {init.name!r} "
            f"is {describe_law(init)}. Expected sampler dense or auto, or a Gaussian init: "
            "normal, kaiming_normal, xavier_normal, variance_scaling with distribution "
            "untruncated_normal, or sigma_w"
        )
    limit = conditional_limit(config)
    if limit is None:
        return "conditional"
    if requested == "auto":
        return "dense"
    raise SpecError(
        f"sampler 'conditional' does not reproduce the dense sampler for this configuration: "
        f"{limit_reason(config, limit)}. Expected sampler dense or auto"
    )


def random_draws(random: RandomSpec, seed: int) -> list[list[Located]]:
    """`random.count` joint draws: per draw, (axis, value, where) for each random axis."""
    columns: list[list[Located]] = []
    for ax in random.axes:
        name_words = [int(w) for w in np.frombuffer(_digest(ax.axis), dtype=">u4")[:4]]
        ss = np.random.SeedSequence(entropy=[seed, _RANDOM_DOMAIN, *name_words])
        words = ss.generate_state(random.count, dtype=np.uint64)
        where = f"random.axes.{ax.axis}"
        column: list[Located] = []
        for word in words.tolist():
            u = (int(word) >> 11) * 2.0**-53
            if ax.distribution == "choice":
                k = min(int(u * len(ax.values)), len(ax.values) - 1)
                column.append((ax.axis, ax.values[k], f"{where}.values[{k}]"))
                continue
            assert ax.low is not None and ax.high is not None
            low, high = ax.low, ax.high
            value: AxisValue
            if ax.distribution == "uniform":
                value = float(low + u * (high - low))
            elif ax.distribution == "log_uniform":
                value = float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
            else:  # int_uniform, inclusive
                value = int(min(int(low) + math.floor(u * (int(high) - int(low) + 1)), int(high)))
            column.append((ax.axis, value, where))
        columns.append(column)
    return [list(row) for row in zip(*columns, strict=True)]


def axis_label(value: Any) -> Any:
    """User-readable label of an axis value: `he_normal`, `normal(std=0.05)`, 10, 1.5."""
    return value.label if isinstance(value, Scheme) else value


# --- internals -------------------------------------------------------------------------------


def _assignments(
    spec: SweepSpec,
) -> list[tuple[str, list[Located], list[str]]]:
    """(origin, located values, keys of axes labels) for every configuration, in order."""
    fixed = [(axis, value, f"fixed.{axis}") for axis, value in spec.fixed]
    out: list[tuple[str, list[Located], list[str]]] = []
    sections = spec.product_sections
    if sections:
        factors: list[list[list[Located]]] = [
            [[(axis, v, f"grid.{axis}[{i}]")] for i, v in enumerate(values)]
            for axis, values in spec.grid
        ]
        label_keys = [axis for axis, _ in spec.grid]
        if spec.zip_axes:
            n_rows = len(spec.zip_axes[0][1])
            factors.append(
                [
                    [(axis, values[r], f"zip.{axis}[{r}]") for axis, values in spec.zip_axes]
                    for r in range(n_rows)
                ]
            )
            label_keys += [axis for axis, _ in spec.zip_axes]
        if spec.random_axes is not None:
            factors.append(random_draws(spec.random_axes, spec.seed))
            label_keys += [a.axis for a in spec.random_axes.axes]
        for combo in itertools.product(*factors):
            located = [item for part in combo for item in part]
            out.append((sections[0], located + fixed, label_keys))
    for i, entry in enumerate(spec.configs):
        own = {axis for axis, _ in entry}
        base = [item for item in fixed if item[0] not in own and _partner(item[0]) not in own]
        located = [(axis, v, f"configs[{i}].{axis}") for axis, v in entry]
        out.append((f"configs[{i}]", base + located, [axis for axis, _ in entry]))
    return out


def _partner(axis: str) -> str:
    return PARTNER_AXIS.get(axis, "")


@dataclass(frozen=True)
class _Draft:
    """A configuration built with the dense sampler, and the sampler its spec asks for."""

    config: SimConfig
    requested: str
    origin: str
    located: list[Located]
    values: dict[str, AxisValue]  # axis -> value (the last written of an axis)
    label_keys: list[str]

    @property
    def where_sampler(self) -> str:
        """Where its sampler was written (its origin when it was not)."""
        return _at(self.located, "sampler", self.origin)


class _Memo:
    """What one expansion derives from each axis value object, derived once: the same value
    object (a grid entry, a fixed value) gives the same scheme, checked once per kernel."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, int], tuple[object, Any]] = {}
        self._rms: dict[tuple[int, int, int], tuple[Scheme, float]] = {}
        self._checked: dict[tuple[int, tuple[tuple[int, int], ...]], Scheme] = {}

    def derive(self, kind: str, value: AxisValue, build: Any) -> Any:
        """`build(value)`, computed once per (kind, value object)."""
        key = (kind, id(value))
        hit = self._values.get(key)
        if hit is not None and hit[0] is value:
            return hit[1]
        result = build(value)
        self._values[key] = (value, result)
        return result

    def weights_passed(self, init: Scheme, kernels: tuple[tuple[int, int], ...]) -> bool:
        """Whether (this scheme object, `kernels`) passed `_check_weight_scale` already."""
        return self._checked.get((id(init), kernels)) is init

    def pass_weights(self, init: Scheme, kernels: tuple[tuple[int, int], ...]) -> None:
        """Record that (this scheme object, `kernels`) passed `_check_weight_scale`."""
        self._checked[(id(init), kernels)] = init

    def weight_rms(self, init: Scheme, fan_in: int, fan_out: int) -> float:
        """`_weight_rms`, once per (scheme object, kernel)."""
        key = (id(init), fan_in, fan_out)
        hit = self._rms.get(key)
        if hit is not None and hit[0] is init:
            return hit[1]
        rms = _weight_rms(init, fan_in, fan_out)
        self._rms[key] = (init, rms)
        return rms


_ZEROS = Scheme("zeros")


def _sigma_w_init(value: AxisValue) -> Scheme:
    s = float(_num(value))
    return canonical_scheme(
        INIT_SCHEMES,
        "variance_scaling",
        {"scale": s * s, "mode": "fan_in", "distribution": "untruncated_normal"},
    )


def _sigma_b_bias(value: AxisValue) -> Scheme:
    return _no_zero_std(canonical_scheme(BIAS_SCHEMES, "normal", {"std": float(_num(value))}))


def _init_scheme(value: AxisValue) -> Scheme:
    return _canonical(INIT_SCHEMES, value)


def _bias_scheme(value: AxisValue) -> Scheme:
    return _no_zero_std(_canonical(BIAS_SCHEMES, value))


def _activation_scheme(value: AxisValue) -> Scheme:
    return _canonical(ACTIVATIONS, value)


def _no_zero_std(bias: Scheme) -> Scheme:
    """A `normal` bias with std 0 is the zeros bias (module doc)."""
    return _ZEROS if bias.name == "normal" and bias.num("std") == 0.0 else bias


def _draft(located: list[Located], origin: str, label_keys: list[str], memo: _Memo) -> _Draft:
    values = {axis: value for axis, value, _ in located}
    for axis in ("activation", "depth", "width"):
        if axis not in values:
            raise SpecError(f"{origin}: missing axis {axis!r}")
    if "sigma_w" in values:
        init = memo.derive("sigma_w", values["sigma_w"], _sigma_w_init)
    elif "init" in values:
        init = memo.derive("init", values["init"], _init_scheme)
    else:
        raise SpecError(f"{origin}: missing axis 'init' (or sigma_w)")
    if "sigma_b" in values:
        bias = memo.derive("sigma_b", values["sigma_b"], _sigma_b_bias)
    elif "bias" in values:
        bias = memo.derive("bias", values["bias"], _bias_scheme)
    else:
        bias = _ZEROS
    requested = str(values.get("sampler", "auto"))
    width = int(_num(values["width"]))
    input_dim = int(_num(values.get("input_dim", width)))
    depth = int(_num(values["depth"]))
    kernels = ((input_dim, width), (width, width)) if depth > 1 else ((input_dim, width),)
    if not memo.weights_passed(init, kernels):
        at = _at(located, "sigma_w", _at(located, "init", origin))
        _check_weight_scale(init, kernels, at, memo)
        memo.pass_weights(init, kernels)
    input_q, input_corr = _geometry(
        values, located, origin, input_dim, str(values.get("dtype", "float32"))
    )
    config = SimConfig(
        init=init,
        activation=memo.derive("activation", values["activation"], _activation_scheme),
        depth=depth,
        width=width,
        input_dim=input_dim,
        batch=int(_num(values.get("batch", 1))),
        dtype=str(values.get("dtype", "float32")),
        bias=bias,
        sampler="dense",
        input_q=input_q,
        input_corr=input_corr,
    )
    return _Draft(config, requested, origin, located, values, label_keys)


def _at(located: list[Located], axis: str, default: str) -> str:
    """Where `axis` was last written among `located` (`default` when it was not)."""
    for name, _, at in reversed(located):
        if name == axis:
            return at
    return default


def _geometry(
    values: dict[str, AxisValue], located: list[Located], origin: str, input_dim: int, dtype: str
) -> tuple[float | None, float | None]:
    """(input_q, input_corr) of a configuration, checked against its batch, input_dim and
    dtype (`worker.sim.observables.input_geometry`); input_corr alone means input_q = 1."""
    if "input_q" not in values and "input_corr" not in values:
        return None, None
    q0 = None if "input_q" not in values else float(_num(values["input_q"]))
    c0 = None if "input_corr" not in values else float(_num(values["input_corr"]))
    batch = int(_num(values.get("batch", 1)))
    if c0 is not None:
        at = _at(located, "input_corr", origin)
        if batch < 2:
            raise SpecError(
                f"{at}: expected batch >= 2 (a correlation between the inputs of a trial). "
                f"Received: batch={batch}"
            )
        if batch > input_dim:
            raise SpecError(
                f"{at}: expected batch <= input_dim (k inputs of a prescribed correlation "
                f"span k dimensions). Received: batch={batch}, input_dim={input_dim}"
            )
        if c0 * (batch - 1) < -1.0:
            raise SpecError(
                f"{at}: expected a correlation >= -1/(batch-1) = {-1.0 / (batch - 1):.6g} "
                f"(the Gram matrix of {batch} inputs must be positive semidefinite). "
                f"Received: {c0:g}"
            )
        q0 = 1.0 if q0 is None else q0
    if q0 is not None:
        from scheduler.analysis.theory.precision import DTYPE_LIMITS

        top, tiny, _ = DTYPE_LIMITS.get(dtype, DTYPE_LIMITS["float32"])
        if not (math.sqrt(q0) >= tiny and math.sqrt(q0) * math.sqrt(input_dim) <= top):
            raise SpecError(
                f"{_at(located, 'input_q', origin)}: expected an input_q whose inputs are normal "
                f"{dtype} numbers (sqrt(input_q) >= {tiny:.3g} and sqrt(input_q * input_dim) "
                f"<= {top:.3g}). Received: {q0:g}"
            )
    return q0, c0


def _check_weight_scale(
    init: Scheme, kernels: tuple[tuple[int, int], ...], where: str, memo: _Memo
) -> None:
    """Refuse weights whose entries' second moment E[W^2] exceeds MAX_WEIGHT_SECOND_MOMENT (times
    a fan it would overflow float64)."""
    limit = math.sqrt(MAX_WEIGHT_SECOND_MOMENT)
    for fan_in, fan_out in kernels:
        rms = memo.weight_rms(init, fan_in, fan_out)
        if not rms <= limit:
            raise SpecError(
                f"{where}: expected weights of root mean square at most {limit:g} (their "
                f"variance times a fan must stay finite in float64). Received: {init.label} "
                f"gives {rms:.3g} for a {fan_in}x{fan_out} kernel"
            )


def _weight_rms(init: Scheme, fan_in: int, fan_out: int) -> float:
    """sqrt(E[W^2]) of one entry of a (fan_in, fan_out) kernel. W = shift + scale B
    (`worker.schemes.law`): E[W^2] is shift^2 + scale^2 E[B^2] + 2 shift scale E[B], computed
    from values scaled to 1 (no square of a spec number overflows here)."""
    entry = law(init, fan_in, fan_out)
    top = max(abs(entry.shift), abs(entry.scale))
    if top == 0.0:
        return 0.0
    a, b = entry.shift / top, entry.scale / top
    # E[B], E[B^2]: uniform U[0, 1); normal and orthogonal entries <= N(0, 1) moments
    e1, e2 = (0.5, 1.0 / 3.0) if entry.kind == "uniform" else (0.0, 1.0)
    return top * math.sqrt(a * a + 2.0 * a * b * e1 + b * b * e2)


def _canonical(registry: dict[str, dict[str, Any]], value: AxisValue) -> Scheme:
    if not isinstance(value, Scheme):
        raise TypeError(f"expected a Scheme, got {value!r}")
    return canonical_scheme(registry, value.name, dict(value.params))


def _num(value: AxisValue) -> float | int:
    if isinstance(value, Scheme | str):
        raise TypeError(f"expected a number, got {value!r}")
    return value


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()

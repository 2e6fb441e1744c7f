"""The wire contract between scheduler, workers and the simulation core (no TensorFlow).

Everything here is JSON-safe and hashable, so a configuration has one canonical text and one
content address, and a chunk travels as a small JSON object (or, over Celery, as an id only).

Vocabulary
----------
configuration (`SimConfig`)
    One point of a sweep: weight scheme, activation, bias, depth, width, batch, dtype, sampler.
chunk (`ChunkTask`)
    `n_trials` consecutive trials of one configuration, trials `[trial_start, trial_start+n)`.
    Its randomness is a pure function of `(seed_key, trial index)`: the result of a trial does
    not depend on which chunk, sub-batch, process or host computes it.
outcome (`ChunkOutcome`)
    Per (layer, quantity) sufficient statistics over the chunk's trials (`LayerRecord`).

Layers are numbered 1..depth; layer 0 is the input and carries only the `activation` quantity
(h^0 = x). `preactivation` z^l = h^{l-1} W^l + b^l, `activation` h^l = phi(z^l), `gradient`
dL/dz^l with L = <r, h^depth>, r ~ N(0, I) drawn fresh per trial.

Per trial the core computes, over all batch x units values of a (layer, quantity), three
observables in float64: `mean`, `std` (ddof=0, like `tf.math.reduce_std`) and `mean_sq`.
With batch k >= 2 it also computes two observables between the k inputs' vectors v_a (units
values each), averaged over the k(k-1)/2 pairs a < b (`PAIR_OBSERVABLES`):
`corr` = <v_a, v_b> / (|v_a| |v_b|) and `cross` = <v_a, v_b> / units (q_ab).

Input geometry. By default x_a ~ N(0, I) independently. `input_q` (q^0) puts every input on
the sphere |x_a|^2 = q^0 input_dim (x_a = sqrt(q^0 n) g_a / |g_a|, the default draw g
normalised); `input_corr` (c^0, needs `input_q`) also fixes every pair's correlation at c^0
exactly (`worker.sim.observables.SubBatch.inputs`). With an input geometry the k inputs share
one readout r (same loss for every input), so the gradients' correlation is that of one error
signal backpropagated from k inputs; without one, r is drawn per input as before.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.histogram import Histogram
from worker.stats import Moments, Moments4

TASK_NAME = "initsweep.run_chunk"
TASKS_NAME = "initsweep.run_chunks"  # several small chunks in one message, each saved on its own
CONTRACT_VERSION = 2  # 2: trial-block merges, scaled moments (issue 10)
QUEUES: tuple[str, ...] = ("cpu", "gpu")  # the Celery queues a chunk can be routed to

QUANTITIES: tuple[str, ...] = ("preactivation", "activation", "gradient")
OBSERVABLES: tuple[str, ...] = ("mean", "std", "mean_sq")
# Between the inputs of a trial (batch >= 2 only): mean over pairs of the correlation and of
# the cross second moment q_ab; no histograms (see `LayerRecord`).
PAIR_OBSERVABLES: tuple[str, ...] = ("corr", "cross")
# The quantiles over trials of each observable that results show (read from its histogram).
QUANTILES: tuple[tuple[str, float], ...] = (("q05", 0.05), ("median", 0.5), ("q95", 0.95))
DTYPES: tuple[str, ...] = ("float32", "float64", "float16", "bfloat16")
SAMPLERS: tuple[str, ...] = ("dense", "conditional")

ParamValue = float | str

# Weight schemes and their parameters with defaults: the names a spec may use, and the defaults
# that fill a configuration's canonical JSON (hence its hash). What each scheme means (fans, Keras
# presets, the law of a kernel entry): `worker.schemes`.
INIT_SCHEMES: dict[str, dict[str, ParamValue]] = {
    "normal": {"mean": 0.0, "std": 1.0},
    "uniform": {"low": -0.05, "high": 0.05},
    "truncated_normal": {"mean": 0.0, "std": 0.05},
    "scaled_uniform": {"low": 0.0, "high": 1.0, "scale": 1.0, "mode": "fan_in"},
    "variance_scaling": {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
    "glorot_uniform": {},
    "glorot_normal": {},
    "he_uniform": {},
    "he_normal": {},
    "lecun_uniform": {},
    "lecun_normal": {},
    "kaiming_normal": {"a": 0.0},
    "xavier_normal": {"gain": 1.0},
    "orthogonal": {"gain": 1.0},
}
FAN_MODES: tuple[str, ...] = ("fan_in", "fan_out", "fan_avg")
VS_DISTRIBUTIONS: tuple[str, ...] = ("truncated_normal", "untruncated_normal", "uniform")

# Activations and their parameters with defaults (Keras definitions; gelu is the exact erf form).
ACTIVATIONS: dict[str, dict[str, ParamValue]] = {
    "linear": {},
    "tanh": {},
    "sigmoid": {},
    "relu": {},
    "leaky_relu": {"alpha": 0.2},
    "elu": {"alpha": 1.0},
    "selu": {},
    "gelu": {},
    "swish": {},
    "softplus": {},
}
BIAS_SCHEMES: dict[str, dict[str, ParamValue]] = {"zeros": {}, "normal": {"std": 0.0}}

# Keras: std of a N(0,1) truncated to [-2, 2] is 0.87962566...; its *_normal schemes divide by it.
TRUNCATED_NORMAL_STD = 0.87962566103423978


@dataclass(frozen=True)
class Scheme:
    """A named function with parameters (a weight scheme or an activation), hashable."""

    name: str
    params: tuple[tuple[str, ParamValue], ...] = ()

    def get(self, key: str) -> ParamValue:
        """Value of parameter `key`."""
        for k, v in self.params:
            if k == key:
                return v
        raise KeyError(f"{self.name} has no parameter {key!r}")

    def num(self, key: str) -> float:
        """Numeric parameter `key`."""
        value = self.get(key)
        if isinstance(value, str):
            raise TypeError(f"{self.name}.{key} is not numeric: {value!r}")
        return float(value)

    def to_json(self) -> dict[str, ParamValue]:
        return {"name": self.name, **dict(self.params)}

    def __hash__(self) -> int:
        """The fields' hash, computed once (left out of `__getstate__`: str hashes differ
        between processes)."""
        try:
            return int(self.__dict__["_field_hash"])
        except KeyError:
            value = hash((self.name, self.params))
            self.__dict__["_field_hash"] = value
            return value

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_field_hash"}

    @functools.cached_property
    def json_text(self) -> str:
        """`to_json()` as canonical JSON text (sorted keys, no spaces; computed once)."""
        return _canonical_dumps(self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Scheme:
        """The scheme of `to_json`'s form; equal ones read again are the same object (a sweep's
        10^5 configurations share a few schemes: dict lookups keyed by them stop at identity)."""
        params: tuple[tuple[str, ParamValue], ...] = ()
        if isinstance(data, str):
            name = data
        else:
            name = str(data["name"])
            params = tuple(sorted((str(k), v) for k, v in data.items() if k != "name"))
        key = (name, tuple((k, type(v), v) for k, v in params))  # 1, 1.0 and True differ
        found = _READ_SCHEMES.get(key)
        if found is None or found.__class__ is not cls:
            if len(_READ_SCHEMES) >= _READ_SCHEMES_MAX:
                _READ_SCHEMES.clear()
            found = _READ_SCHEMES[key] = cls(name, params)
        return found

    @property
    def label(self) -> str:
        """Short human label: `he_normal`, `normal(std=0.05)`."""
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params)
        return f"{self.name}({inner})"


_READ_SCHEMES: dict[tuple[str, tuple[tuple[str, type, ParamValue], ...]], Scheme] = {}
_READ_SCHEMES_MAX = 4096  # distinct schemes kept by `Scheme.from_json` (cleared when full)


def _fmt(value: ParamValue) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def canonical_scheme(
    registry: Mapping[str, Mapping[str, ParamValue]], name: str, params: Mapping[str, Any]
) -> Scheme:
    """The scheme with every parameter present (defaults filled), numbers as floats, sorted."""
    defaults = registry[name]
    merged: dict[str, ParamValue] = dict(defaults)
    for key, value in params.items():
        merged[key] = float(value) if isinstance(value, int | float) else value
    return Scheme(name, tuple(sorted(merged.items())))


@dataclass(frozen=True)
class SimConfig:
    """One configuration: what a trial simulates. `input_dim` defaults to `width`.

    `input_q`, `input_corr`: the input geometry (module doc), None for i.i.d. N(0, 1) inputs;
    absent from the canonical JSON when None, so a configuration without them keeps its hash.
    """

    init: Scheme
    activation: Scheme
    depth: int
    width: int
    input_dim: int
    batch: int = 1
    dtype: str = "float32"
    bias: Scheme = field(default_factory=lambda: Scheme("zeros"))
    sampler: str = "dense"
    input_q: float | None = None
    input_corr: float | None = None

    @property
    def shared_readout(self) -> bool:
        """The inputs share one readout r: exactly when an input geometry is prescribed."""
        return self.input_q is not None

    def fans(self, layer: int) -> tuple[int, int]:
        """(fan_in, fan_out) of the kernel of `layer` (1-based)."""
        return (self.input_dim if layer == 1 else self.width, self.width)

    @property
    def bias_std(self) -> float:
        return self.bias.num("std") if self.bias.name == "normal" else 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": CONTRACT_VERSION,
            "init": self.init.to_json(),
            "activation": self.activation.to_json(),
            "bias": self.bias.to_json(),
            "depth": self.depth,
            "width": self.width,
            "input_dim": self.input_dim,
            "batch": self.batch,
            "dtype": self.dtype,
            "sampler": self.sampler,
        }
        if self.input_q is not None:
            out["input_q"] = self.input_q
        if self.input_corr is not None:
            out["input_corr"] = self.input_corr
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SimConfig:
        return cls(
            init=Scheme.from_json(data["init"]),
            activation=Scheme.from_json(data["activation"]),
            bias=Scheme.from_json(data.get("bias", "zeros")),
            depth=int(data["depth"]),
            width=int(data["width"]),
            input_dim=int(data.get("input_dim") or data["width"]),
            batch=int(data.get("batch", 1)),
            dtype=str(data.get("dtype", "float32")),
            sampler=str(data.get("sampler", "dense")),
            input_q=_optional_float(data.get("input_q")),
            input_corr=_optional_float(data.get("input_corr")),
        )

    def canonical_json(self) -> str:
        """`json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))`, assembled from
        the schemes' cached `json_text` (the same characters; tests/unit/test_bulk_identity.py)."""
        corr = (
            "" if self.input_corr is None else f',"input_corr":{_canonical_dumps(self.input_corr)}'
        )
        q0 = "" if self.input_q is None else f',"input_q":{_canonical_dumps(self.input_q)}'
        return (
            f'{{"activation":{self.activation.json_text},"batch":{_json_value(self.batch)},'
            f'"bias":{self.bias.json_text},"depth":{_json_value(self.depth)},'
            f'"dtype":{_json_value(self.dtype)},"init":{self.init.json_text}{corr},'
            f'"input_dim":{_json_value(self.input_dim)}{q0},"sampler":{_json_value(self.sampler)},'
            f'"v":{_json_value(CONTRACT_VERSION)},"width":{_json_value(self.width)}}}'
        )

    def __hash__(self) -> int:
        """The fields' hash, computed once (sets and dicts of 10^5 configurations ask often)."""
        try:
            return int(self.__dict__["_field_hash"])
        except KeyError:
            value = hash(_sim_config_fields(self))
            self.__dict__["_field_hash"] = value
            return value

    def with_sampler(self, sampler: str) -> SimConfig:
        """This configuration with another sampler (`dataclasses.replace`, without its
        per-field checks: 10^5 of them in an expansion)."""
        fields = {f: self.__dict__[f] for f in _SIM_CONFIG_FIELDS}
        fields["sampler"] = sampler
        new = object.__new__(SimConfig)
        new.__dict__.update(fields)
        return new

    def __getstate__(self) -> dict[str, Any]:
        """The state a copy carries: the fields, not the cached hash (str hashes differ between
        processes)."""
        return {k: v for k, v in self.__dict__.items() if k != "_field_hash"}

    @functools.cached_property
    def config_hash(self) -> str:
        """Content address: sha256 of the canonical JSON (hex, 64 chars; computed once)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


_SIM_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(SimConfig))
_sim_config_fields = operator.attrgetter(*_SIM_CONFIG_FIELDS)  # the fields' values, in order


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _canonical_dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _json_value(value: Any) -> str:
    """The canonical JSON of a scalar field: a plain int or text directly, anything else (a
    bool, a subclass) through json.dumps."""
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is str and value.isascii() and value.isidentifier():
        return f'"{value}"'
    return _canonical_dumps(value)


@dataclass(frozen=True)
class ChunkTask:
    """Trials `[trial_start, trial_start + n_trials)` of `config`, randomness keyed by `seed_key`."""

    config: SimConfig
    seed_key: int
    chunk_index: int
    trial_start: int
    n_trials: int
    memory_budget_bytes: int = 1 << 30

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_json(),
            "seed_key": self.seed_key,
            "chunk_index": self.chunk_index,
            "trial_start": self.trial_start,
            "n_trials": self.n_trials,
            "memory_budget_bytes": self.memory_budget_bytes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChunkTask:
        return cls(
            config=SimConfig.from_json(data["config"]),
            seed_key=int(data["seed_key"]),
            chunk_index=int(data["chunk_index"]),
            trial_start=int(data["trial_start"]),
            n_trials=int(data["n_trials"]),
            memory_budget_bytes=int(data.get("memory_budget_bytes", 1 << 30)),
        )


@dataclass(frozen=True)
class TrialDistribution:
    """The per-trial distribution of one (layer, quantity) over its finite trials.

    `log_mean_sq`: `Moments4` of log(mean_sq) over the finite trials whose mean_sq is not 0
    (its n is n_finite less the trials whose values are all 0, or whose root mean square is
    below float64's range); log |v|^2 = log(batch * units) + log(mean_sq) for the squared norm,
    the same moments shifted. `mean`, `std`, `mean_sq`: fixed log-spaced `Histogram`s of each
    observable over all finite trials (`worker.histogram`; counts sum to n_finite).
    """

    log_mean_sq: Moments4
    mean: Histogram
    std: Histogram
    mean_sq: Histogram

    def merge(self, other: TrialDistribution) -> TrialDistribution:
        """Pool two disjoint sets of trials: Pébay's moments, histograms added exactly."""
        return TrialDistribution(
            self.log_mean_sq.merge(other.log_mean_sq),
            self.mean.merge(other.mean),
            self.std.merge(other.std),
            self.mean_sq.merge(other.mean_sq),
        )

    def histogram(self, name: str) -> Histogram:
        """The histogram of observable `name` (one of OBSERVABLES)."""
        if name not in OBSERVABLES:
            raise KeyError(f"no histogram of {name!r}; expected one of {', '.join(OBSERVABLES)}")
        hist: Histogram = getattr(self, name)
        return hist


@dataclass(frozen=True)
class LayerRecord:
    """Sufficient statistics of one (layer, quantity) over some trials.

    `n_finite` trials had every value (and every observable) finite at this layer; the three
    `Moments` are over exactly those trials. `n_first_nonfinite` trials first became non-finite
    here; `n_collapsed` trials were finite with every value exactly zero. `dist` is their
    per-trial distribution, None where it was not recorded (chunks saved before it existed);
    a merge with None is None, so a distribution is always over all `n_finite` trials.

    `cross` and `corr` (`PAIR_OBSERVABLES`, batch >= 2; None for batch 1 and in chunks saved
    before they existed, and a merge with None is None): `Moments` of the per-trial mean over
    input pairs of q_ab (over the n_finite trials, scaled like mean_sq) and of the
    correlation, over the finite trials where no input's vector is all zero (corr.n <=
    n_finite; the correlation of a zero vector is undefined). No histograms of them.
    """

    layer: int
    quantity: str
    n_trials: int
    n_finite: int
    n_first_nonfinite: int
    n_collapsed: int
    mean: Moments
    std: Moments
    mean_sq: Moments
    dist: TrialDistribution | None = None
    cross: Moments | None = None
    corr: Moments | None = None

    def merge(self, other: LayerRecord) -> LayerRecord:
        """Pool two disjoint sets of trials (Chan et al.; associative)."""
        if (self.layer, self.quantity) != (other.layer, other.quantity):
            raise ValueError("cannot merge records of different (layer, quantity)")
        return LayerRecord(
            layer=self.layer,
            quantity=self.quantity,
            n_trials=self.n_trials + other.n_trials,
            n_finite=self.n_finite + other.n_finite,
            n_first_nonfinite=self.n_first_nonfinite + other.n_first_nonfinite,
            n_collapsed=self.n_collapsed + other.n_collapsed,
            mean=self.mean.merge(other.mean),
            std=self.std.merge(other.std),
            mean_sq=self.mean_sq.merge(other.mean_sq),
            dist=None if self.dist is None or other.dist is None else self.dist.merge(other.dist),
            cross=_merge_optional(self.cross, other.cross),
            corr=_merge_optional(self.corr, other.corr),
        )

    @property
    def key(self) -> tuple[int, str]:
        return (self.layer, self.quantity)


def _merge_optional(a: Moments | None, b: Moments | None) -> Moments | None:
    return None if a is None or b is None else a.merge(b)


@dataclass(frozen=True)
class Provenance:
    """Where and how a chunk was computed."""

    tf_version: str
    device: str
    sampler: str
    dtype: str
    seed_key: int
    duration_s: float
    sub_batch: int


@dataclass(frozen=True)
class ChunkOutcome:
    """What the core returns for a chunk: records sorted by (layer, quantity order)."""

    chunk_index: int
    n_trials: int
    records: tuple[LayerRecord, ...]
    provenance: Provenance


def merge_records(
    groups: list[tuple[LayerRecord, ...]] | list[list[LayerRecord]],
) -> list[LayerRecord]:
    """Merge per-chunk record lists in the given order into one list (deterministic)."""
    merged: dict[tuple[int, str], LayerRecord] = {}
    for records in groups:
        for record in records:
            prev = merged.get(record.key)
            merged[record.key] = record if prev is None else prev.merge(record)
    order = {q: i for i, q in enumerate(QUANTITIES)}
    return sorted(merged.values(), key=lambda r: (r.layer, order[r.quantity]))

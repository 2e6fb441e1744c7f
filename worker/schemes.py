"""What a spec's weight-scheme names mean: fans, Keras presets, and the law of each kernel entry.

Pure Python (no numpy, no TensorFlow): the one home of the law of a weight scheme, shared by the
simulator (`worker.sim.initializers` turns a `Law` into samples, `worker.sim.conditional` needs
i.i.d. Gaussian laws), the sampler choice (`is_iid_gaussian`) and the work model
(`scheduler.estimate`). The names and their parameter defaults are the registry
`worker.contract.INIT_SCHEMES` (part of a configuration's canonical JSON, hence of its hash).
`scheduler.analysis.theory.weight_moments` derives the moments independently, as a check on this module
(pinned together by tests/unit/test_schemes.py).

Keras semantics per 2-D kernel of shape (fan_in, fan_out) = (rows, cols) (references:
keras/src/initializers/random_initializers.py: RandomNormal, RandomUniform, TruncatedNormal,
VarianceScaling and its Glorot/He/LeCun presets, Orthogonal; torch.nn.init: kaiming_normal_,
xavier_normal_). Every kernel is

    W = shift + scale * B

with B a standard draw of one of four laws (`Law.kind`): "normal" N(0, 1); "uniform" U[0, 1);
"truncated" N(0, 1) truncated to [-2, 2] (std 0.87962566, `TRUNCATED_NORMAL_STD`);
"orthogonal" Haar-orthogonal (Keras Orthogonal). With fan = fan_in, fan_out or
(fan_in + fan_out) / 2 by `mode`, floored at 1 like Keras (`fan`):

    normal(mean, std)                    shift = mean, scale = std, B ~ N(0, 1)
    uniform(low, high)                   shift = low, scale = high - low, B ~ U[0, 1)
    truncated_normal(mean, std)          shift = mean, scale = std, B ~ TN(-2, 2)  (not rescaled)
    scaled_uniform(low, high, s, mode)   c = sqrt(s / fan): shift = c low, scale = c (high - low);
                                         the notebook's `tf.random.uniform(shape) * np.sqrt(k / n)`,
                                         not centred
    variance_scaling(s, mode, dist)      truncated_normal: scale = sqrt(s / fan) / 0.87962566
                                         untruncated_normal: scale = sqrt(s / fan)
                                         uniform: limit = sqrt(3 s / fan), shift = -limit,
                                         scale = 2 limit
    glorot_* / he_* / lecun_*            variance_scaling(1 fan_avg | 2 fan_in | 1 fan_in, ...);
                                         *_normal = truncated_normal, *_uniform = uniform
                                         (`KERAS_PRESETS`)
    kaiming_normal(a)                    scale = sqrt(2 / ((1 + a^2) fan_in)), B ~ N(0, 1)
    xavier_normal(gain)                  scale = gain sqrt(2 / (fan_in + fan_out)), B ~ N(0, 1)
    orthogonal(gain)                     scale = gain, B = Q sign(diag R), A = QR with
                                         A ~ N(0, 1)^(max(r, c) x min(r, c)), transposed if r < c

0.87962566 is the std of N(0, 1) truncated to [-2, 2], so Keras' *_normal have variance s / fan.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from worker.contract import INIT_SCHEMES, TRUNCATED_NORMAL_STD, ParamValue, Scheme

# Keras' VarianceScaling presets: name -> (scale, mode, distribution).
KERAS_PRESETS: dict[str, tuple[float, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}

# Law.kind of each scheme whose family does not depend on a parameter.
_FIXED_KINDS: dict[str, str] = {
    "normal": "normal",
    "uniform": "uniform",
    "truncated_normal": "truncated",
    "scaled_uniform": "uniform",
    "kaiming_normal": "normal",
    "xavier_normal": "normal",
    "orthogonal": "orthogonal",
}
# Law.kind of each variance_scaling distribution.
_VS_KINDS: dict[str, str] = {
    "truncated_normal": "truncated",
    "untruncated_normal": "normal",
    "uniform": "uniform",
}
# How `describe_law` words each kind that is not i.i.d. Gaussian (for spec errors).
_KIND_WORDS: dict[str, str] = {
    "normal": "an i.i.d. Gaussian",
    "uniform": "uniform",
    "truncated": "a truncated normal",
    "orthogonal": "orthogonal (its entries are not independent)",
}


@dataclass(frozen=True)
class Law:
    """W = shift + scale * B with B of law `kind`: normal, uniform, truncated or orthogonal."""

    kind: str
    shift: float
    scale: float


def _param(init: Scheme, key: str) -> ParamValue:
    """Parameter `key` of `init`, falling back to the registry default."""
    try:
        return init.get(key)
    except KeyError:
        return INIT_SCHEMES[init.name][key]


def _num(init: Scheme, key: str) -> float:
    value = _param(init, key)
    if isinstance(value, str):
        raise ValueError(f"init.{init.name}.{key}: expected a number. Received: {value!r}")
    return float(value)


def fan(mode: str, fan_in: int, fan_out: int) -> float:
    """Keras `compute_fans` + mode selection, floored at 1 like VarianceScaling."""
    if mode == "fan_in":
        n = float(fan_in)
    elif mode == "fan_out":
        n = float(fan_out)
    elif mode == "fan_avg":
        n = (fan_in + fan_out) / 2.0
    else:
        raise ValueError(f"mode: expected one of fan_in, fan_out, fan_avg. Received: {mode!r}")
    return max(1.0, n)


def variance_scaling_args(init: Scheme) -> tuple[float, str, str]:
    """(scale, mode, distribution) of a variance_scaling scheme or one of `KERAS_PRESETS`."""
    if init.name in KERAS_PRESETS:
        return KERAS_PRESETS[init.name]
    return _num(init, "scale"), str(_param(init, "mode")), str(_param(init, "distribution"))


@functools.lru_cache(maxsize=4096)  # a sweep asks for the same few schemes 10^5 times
def family(init: Scheme) -> str:
    """`Law.kind` of every kernel of `init` (it does not depend on the fans)."""
    name = init.name
    if name not in INIT_SCHEMES:
        raise ValueError(f"init: expected one of {sorted(INIT_SCHEMES)}. Received: {name!r}")
    if name in _FIXED_KINDS:
        return _FIXED_KINDS[name]
    dist = KERAS_PRESETS[name][2] if name in KERAS_PRESETS else str(_param(init, "distribution"))
    if dist not in _VS_KINDS:
        raise ValueError(
            f"init.{name}.distribution: expected one of truncated_normal, untruncated_normal, "
            f"uniform. Received: {dist!r}"
        )
    return _VS_KINDS[dist]


def law(init: Scheme, fan_in: int, fan_out: int) -> Law:
    """The affine law of the weights of `init` for one (fan_in, fan_out) kernel (module doc)."""
    kind = family(init)
    name = init.name
    if name in ("normal", "truncated_normal"):
        return Law(kind, _num(init, "mean"), _num(init, "std"))
    if name == "uniform":
        low, high = _num(init, "low"), _num(init, "high")
        return Law(kind, low, high - low)
    if name == "scaled_uniform":
        c = math.sqrt(_num(init, "scale") / fan(str(_param(init, "mode")), fan_in, fan_out))
        low, high = _num(init, "low"), _num(init, "high")
        return Law(kind, c * low, c * (high - low))
    if name == "kaiming_normal":
        a = _num(init, "a")
        return Law(kind, 0.0, math.sqrt(2.0 / ((1.0 + a * a) * max(1, fan_in))))
    if name == "xavier_normal":
        return Law(kind, 0.0, _num(init, "gain") * math.sqrt(2.0 / max(1, fan_in + fan_out)))
    if name == "orthogonal":
        return Law(kind, 0.0, _num(init, "gain"))
    scale, mode, _ = variance_scaling_args(init)
    var = scale / fan(mode, fan_in, fan_out)
    if kind == "truncated":
        return Law(kind, 0.0, math.sqrt(var) / TRUNCATED_NORMAL_STD)
    if kind == "normal":
        return Law(kind, 0.0, math.sqrt(var))
    limit = math.sqrt(3.0 * var)
    return Law(kind, -limit, 2.0 * limit)


def is_iid_gaussian(init: Scheme) -> bool:
    """Whether `init` draws every weight i.i.d. from a normal distribution (untruncated)."""
    return init.name in INIT_SCHEMES and family(init) == "normal"


def describe_law(init: Scheme) -> str:
    """The family of `init` in words: `a truncated normal`, `uniform`, `orthogonal (...)`."""
    return _KIND_WORDS[family(init)]

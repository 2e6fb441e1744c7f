"""Moments of one kernel entry of a weight scheme: theory's own derivation of the init law.

The simulator draws weights by the law of `worker.sim.initializers` (Keras' definitions). This
module derives the mean and variance of one kernel entry again, from the published definitions
(Keras `VarianceScaling` and its presets, PyTorch's kaiming/xavier), on purpose: theory is the
independent check the simulator is compared against, so it shares no code with the simulator's
law (a shared bug would agree with itself).
"""

from __future__ import annotations

import math
from functools import lru_cache

from worker.contract import INIT_SCHEMES, TRUNCATED_NORMAL_STD, ParamValue, Scheme, SimConfig
from worker.schemes import KERAS_PRESETS

__all__ = [
    "TRUNCATED_VARIANCE_FACTOR",
    "is_centred",
    "scheme_number",
    "scheme_param",
    "weight_moments",
]

# Variance of N(0, 1) truncated to [-2, 2]: 1 - 2 * 2 phi(2) / (Phi(2) - Phi(-2)) = 0.77374...
TRUNCATED_VARIANCE_FACTOR = 1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(
    2.0 / math.sqrt(2.0)
)


def scheme_param(
    scheme: Scheme, registry: dict[str, dict[str, ParamValue]], key: str
) -> ParamValue:
    """Parameter `key` of `scheme`, or the contract's default when the scheme omits it."""
    try:
        return scheme.get(key)
    except KeyError:
        defaults = registry.get(scheme.name, {})
        if key not in defaults:
            raise
        return defaults[key]


def scheme_number(scheme: Scheme, registry: dict[str, dict[str, ParamValue]], key: str) -> float:
    """Numeric parameter `key` of `scheme` (its default when omitted); TypeError for text."""
    value = scheme_param(scheme, registry, key)
    if isinstance(value, str):
        raise TypeError(f"{scheme.name}.{key}: expected a number. Received: {value!r}")
    return float(value)


def _fan(mode: str, fan_in: int, fan_out: int) -> float:
    if mode == "fan_in":
        return float(fan_in)
    if mode == "fan_out":
        return float(fan_out)
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2.0
    raise ValueError(f"mode: expected one of fan_in, fan_out, fan_avg. Received: {mode!r}")


def _variance_scaling(scale: float, mode: str, fan_in: int, fan_out: int) -> float:
    # Keras: scale /= max(1, fan); every distribution then has variance scale (the truncated
    # normal draws std sqrt(scale)/0.8796 so that its truncated variance is scale).
    return scale / max(1.0, _fan(mode, fan_in, fan_out))


# Derived here independently of `worker.schemes.law` (the law the simulator samples) on purpose:
# theory is the check against the simulator. tests/unit/test_schemes.py pins the two together.
@lru_cache(maxsize=1 << 18)  # pure; a phase diagram asks for each kernel several times
def weight_moments(init: Scheme, fan_in: int, fan_out: int) -> tuple[float, float]:
    """(mean, variance) of one kernel entry of `init` for a (fan_in, fan_out) kernel.

    normal(mean, std): (mean, std^2); uniform(low, high): ((low+high)/2, (high-low)^2/12);
    truncated_normal(mean, std), cut at mean +- 2 std, not rescaled: (mean, std^2 * 0.77374...);
    scaled_uniform(low, high, scale, mode): c = sqrt(scale/fan), (c (low+high)/2,
    c^2 (high-low)^2/12); variance_scaling(scale, mode, distribution): (0, scale/fan) for every
    distribution (Keras' truncated normal divides its std by 0.87962566 = sqrt of the truncation
    factor); glorot_*: 2/(fan_in+fan_out); he_*: 2/fan_in; lecun_*: 1/fan_in; kaiming_normal(a):
    2/((1+a^2) fan_in); xavier_normal(gain): 2 gain^2/(fan_in+fan_out); orthogonal(gain):
    gain^2/max(fan_in, fan_out) (rows or columns orthonormal; not i.i.d.).
    """
    name = init.name

    def num(key: str) -> float:
        return scheme_number(init, INIT_SCHEMES, key)

    def text(key: str) -> str:
        return str(scheme_param(init, INIT_SCHEMES, key))

    if name == "normal":
        return num("mean"), num("std") ** 2
    if name == "uniform":
        low, high = num("low"), num("high")
        return (low + high) / 2.0, (high - low) ** 2 / 12.0
    if name == "truncated_normal":
        return num("mean"), num("std") ** 2 * TRUNCATED_VARIANCE_FACTOR
    if name == "scaled_uniform":
        low, high = num("low"), num("high")
        c2 = num("scale") / _fan(text("mode"), fan_in, fan_out)
        return math.sqrt(c2) * (low + high) / 2.0, c2 * (high - low) ** 2 / 12.0
    if name == "variance_scaling":
        scale = _variance_scaling(num("scale"), text("mode"), fan_in, fan_out)
        distribution = text("distribution")
        if distribution == "truncated_normal":
            std = math.sqrt(scale) / TRUNCATED_NORMAL_STD
            return 0.0, std**2 * TRUNCATED_VARIANCE_FACTOR
        if distribution in ("untruncated_normal", "uniform"):
            return 0.0, scale
        raise ValueError(
            "variance_scaling.distribution: expected one of truncated_normal, "
            f"untruncated_normal, uniform. Received: {distribution!r}"
        )
    if name in KERAS_PRESETS:  # the presets are Keras' definitions, not a derivation: shared
        scale, mode, distribution = KERAS_PRESETS[name]
        vs = Scheme(
            "variance_scaling",
            (("distribution", distribution), ("mode", mode), ("scale", scale)),
        )
        return weight_moments(vs, fan_in, fan_out)
    if name == "kaiming_normal":
        return 0.0, 2.0 / ((1.0 + num("a") ** 2) * fan_in)
    if name == "xavier_normal":
        return 0.0, num("gain") ** 2 * 2.0 / (fan_in + fan_out)
    if name == "orthogonal":
        return 0.0, num("gain") ** 2 / max(fan_in, fan_out)
    raise ValueError(f"init: unknown weight scheme. Received: {name!r}")


@lru_cache(maxsize=16384)
def is_centred(config: SimConfig) -> bool:
    """Every kernel of `config` has mean-zero entries (the first, and the square ones above it)."""
    n0, n = config.input_dim, config.width
    return weight_moments(config.init, n0, n)[0] == 0.0 and (
        config.depth < 2 or weight_moments(config.init, n, n)[0] == 0.0
    )

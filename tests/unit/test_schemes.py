"""The theory's own weight moments agree with the law the simulator samples (`worker.schemes`).

`scheduler.analysis.theory.weight_moments` derives (mean, variance) of a kernel entry independently of
`worker.schemes.law`; here the law's (kind, shift, scale) is turned into moments with the
standard laws' own moments (N(0, 1): 0, 1; U[0, 1): 1/2, 1/12; N(0, 1) cut at +-2: 0,
0.87962566^2; a Haar-orthogonal (r, c) matrix: 0, 1/max(r, c)) and the two must agree.
"""

from __future__ import annotations

import json
import math

import pytest

from scheduler.analysis.theory import weight_moments
from worker.contract import (
    FAN_MODES,
    INIT_SCHEMES,
    TRUNCATED_NORMAL_STD,
    VS_DISTRIBUTIONS,
    Scheme,
    SimConfig,
    canonical_scheme,
)
from worker.schemes import law

SHAPES = [(5, 12), (12, 5), (784, 100)]

# Every registered scheme at its defaults, then parameter variants, every mode and distribution.
SCHEMES: list[Scheme] = [canonical_scheme(INIT_SCHEMES, name, {}) for name in INIT_SCHEMES]
SCHEMES += [
    canonical_scheme(INIT_SCHEMES, "normal", {"mean": 0.3, "std": 1.7}),
    canonical_scheme(INIT_SCHEMES, "uniform", {"low": -0.2, "high": 0.5}),
    canonical_scheme(INIT_SCHEMES, "truncated_normal", {"mean": -0.1, "std": 0.8}),
    canonical_scheme(INIT_SCHEMES, "kaiming_normal", {"a": 0.2}),
    canonical_scheme(INIT_SCHEMES, "xavier_normal", {"gain": 5.0 / 3.0}),
    canonical_scheme(INIT_SCHEMES, "orthogonal", {"gain": 1.3}),
]
SCHEMES += [
    canonical_scheme(
        INIT_SCHEMES, "scaled_uniform", {"low": low, "high": 1.0, "scale": 3.0, "mode": mode}
    )
    for mode in FAN_MODES
    for low in (0.0, -1.0)
]
SCHEMES += [
    canonical_scheme(
        INIT_SCHEMES, "variance_scaling", {"scale": 2.25, "mode": mode, "distribution": dist}
    )
    for mode in FAN_MODES
    for dist in VS_DISTRIBUTIONS
]


def law_moments(init: Scheme, fan_in: int, fan_out: int) -> tuple[float, float]:
    """(mean, variance) of one entry of shift + scale * B, B of the law's standard kind."""
    lw = law(init, fan_in, fan_out)
    standard = {
        "normal": (0.0, 1.0),
        "uniform": (0.5, 1.0 / 12.0),
        "truncated": (0.0, TRUNCATED_NORMAL_STD**2),
        "orthogonal": (0.0, 1.0 / max(fan_in, fan_out)),
    }
    mean, var = standard[lw.kind]
    return lw.shift + lw.scale * mean, lw.scale**2 * var


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("init", SCHEMES, ids=lambda s: s.label)
def test_theory_weight_moments_match_the_sampled_law(init: Scheme, shape: tuple[int, int]) -> None:
    mean, var = law_moments(init, *shape)
    t_mean, t_var = weight_moments(init, *shape)
    assert math.isclose(t_mean, mean, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(t_var, var, rel_tol=1e-12)


def test_schemes_read_again_are_the_same_object_and_keep_their_types() -> None:
    """`Scheme.from_json` hands back the scheme it read before for the same JSON (identity),
    and never one whose parameters differ only in type (1, 1.0 and True are different JSON)."""
    first = Scheme.from_json({"name": "normal", "std": 0.5, "mean": 0.0})
    again = Scheme.from_json(json.loads(json.dumps(first.to_json())))
    assert again is first and again.json_text == first.json_text
    assert Scheme.from_json("zeros") is Scheme.from_json("zeros")
    read = [Scheme.from_json({"name": "x", "k": v}) for v in (1, 1.0, True)]
    assert [type(s.get("k")) for s in read] == [int, float, bool]
    assert len({s.json_text for s in read}) == 3
    config = SimConfig.from_json(
        {"init": first.to_json(), "activation": "tanh", "depth": 2, "width": 4}
    )
    assert SimConfig.from_json(config.to_json()).init is first

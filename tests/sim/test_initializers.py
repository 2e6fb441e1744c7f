"""Every weight scheme's draws match its definition, on non-square kernels, within 4 SE.

The expected laws are written here from the definitions (Keras' random_initializers.py,
torch.nn.init), not from worker.schemes.law. For n iid weights the SE of the sample mean
is sqrt(var / n) and the SE of the sample variance sqrt((mu4 - var^2) / n) (mu4 the 4th central
moment of the law).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from worker.contract import INIT_SCHEMES, canonical_scheme
from worker.sim import rng
from worker.sim.initializers import draw_kernels, sample_kernels

pytestmark = pytest.mark.sim

KEY = rng.key_tensor(20240611)
T = 64
SHAPES = [(48, 80), (80, 48)]
TN = stats.truncnorm(-2.0, 2.0)  # N(0, 1) truncated to [-2, 2]


@dataclass(frozen=True)
class Expected:
    mean: float
    var: float
    mu4: float
    support: tuple[float, float] = (-math.inf, math.inf)


def normal(mean: float, std: float) -> Expected:
    return Expected(mean, std**2, 3 * std**4)


def uniform(low: float, high: float) -> Expected:
    w = high - low
    return Expected((low + high) / 2, w**2 / 12, w**4 / 80, (low, high))


def truncated(mean: float, s: float) -> Expected:
    """mean + s * TN(-2, 2): Keras TruncatedNormal(mean, s); variance s^2 * 0.7737."""
    return Expected(mean, s**2 * TN.var(), s**4 * TN.moment(4), (mean - 2 * s, mean + 2 * s))


def vs(scale: float, n: float, dist: str) -> Expected:
    """Keras VarianceScaling: variance scale / n for every distribution."""
    var = scale / n
    if dist == "uniform":
        lim = math.sqrt(3 * var)
        return uniform(-lim, lim)
    if dist == "untruncated_normal":
        return normal(0.0, math.sqrt(var))
    return truncated(0.0, math.sqrt(var) / TN.std())


def expected(name: str, params: dict[str, object], fi: int, fo: int) -> Expected:
    avg = (fi + fo) / 2
    n_of = {"fan_in": fi, "fan_out": fo, "fan_avg": avg}
    p: dict[str, object] = {**INIT_SCHEMES[name], **params}

    def f(k: str) -> float:
        return float(p[k])  # type: ignore[arg-type]

    if name == "normal":
        return normal(f("mean"), f("std"))
    if name == "uniform":
        return uniform(f("low"), f("high"))
    if name == "truncated_normal":
        return truncated(f("mean"), f("std"))
    if name == "scaled_uniform":
        c = math.sqrt(f("scale") / n_of[str(p["mode"])])
        return uniform(c * f("low"), c * f("high"))
    if name == "variance_scaling":
        return vs(f("scale"), n_of[str(p["mode"])], str(p["distribution"]))
    if name == "kaiming_normal":
        return normal(0.0, math.sqrt(2 / ((1 + f("a") ** 2) * fi)))
    if name == "xavier_normal":
        return normal(0.0, f("gain") * math.sqrt(2 / (fi + fo)))
    presets = {
        "glorot_uniform": (1, avg, "uniform"),
        "glorot_normal": (1, avg, "truncated_normal"),
        "he_uniform": (2, fi, "uniform"),
        "he_normal": (2, fi, "truncated_normal"),
        "lecun_uniform": (1, fi, "uniform"),
        "lecun_normal": (1, fi, "truncated_normal"),
    }
    scale, n, dist = presets[name]
    return vs(scale, n, dist)


CASES: list[tuple[str, dict[str, object]]] = [
    ("normal", {"mean": 0.3, "std": 2.0}),
    ("normal", {}),
    ("uniform", {"low": -0.2, "high": 0.5}),
    ("truncated_normal", {"mean": 0.1, "std": 0.5}),
    ("scaled_uniform", {}),
    ("scaled_uniform", {"low": -1.0, "high": 1.0, "scale": 6.0, "mode": "fan_avg"}),
    ("scaled_uniform", {"scale": 2.0, "mode": "fan_out"}),
    ("variance_scaling", {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}),
    ("variance_scaling", {"scale": 0.5, "mode": "fan_avg", "distribution": "untruncated_normal"}),
    ("variance_scaling", {"scale": 3.0, "mode": "fan_in", "distribution": "uniform"}),
    ("glorot_uniform", {}),
    ("glorot_normal", {}),
    ("he_uniform", {}),
    ("he_normal", {}),
    ("lecun_uniform", {}),
    ("lecun_normal", {}),
    ("kaiming_normal", {"a": 0.5}),
    ("xavier_normal", {"gain": 1.5}),
]


def test_every_scheme_has_a_case() -> None:
    covered = {name for name, _ in CASES} | {"orthogonal"}
    assert covered == set(INIT_SCHEMES)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    ("name", "params"),
    CASES,
    ids=[n + "".join(f"-{k}={v}" for k, v in p.items()) for n, p in CASES],
)
def test_moments_match_definition(
    name: str, params: dict[str, object], shape: tuple[int, int]
) -> None:
    fi, fo = shape
    init = canonical_scheme(INIT_SCHEMES, name, params)
    w = draw_kernels(init, fi, fo, T, key=KEY, stream=5, trial_offset=100, dtype="float64").numpy()
    assert w.shape == (T, fi, fo)
    e = expected(name, params, fi, fo)
    x = w.ravel()
    n = x.size
    se_mean = math.sqrt(e.var / n)
    se_var = math.sqrt((e.mu4 - e.var**2) / n)
    assert abs(x.mean() - e.mean) < 4 * se_mean, (x.mean(), e.mean, se_mean)
    assert abs(x.var() - e.var) < 4 * se_var, (x.var(), e.var, se_var)
    lo, hi = e.support
    tol = 1e-12 * max(1.0, abs(lo), abs(hi)) if math.isfinite(lo) else 0.0
    assert x.min() >= lo - tol and x.max() <= hi + tol


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_orthogonal_is_keras_orthogonal(shape: tuple[int, int]) -> None:
    """gain * Q sign(diag R) of the QR of the trial's own Gaussian draw, transposed if r < c."""
    fi, fo = shape
    gain = 1.3
    init = canonical_scheme(INIT_SCHEMES, "orthogonal", {"gain": gain})
    w = draw_kernels(init, fi, fo, T, key=KEY, stream=9, trial_offset=0, dtype="float64").numpy()
    assert w.shape == (T, fi, fo)
    small, big = min(fi, fo), max(fi, fo)
    q = (
        w / gain if fi >= fo else np.swapaxes(w, 1, 2) / gain
    )  # (T, big, small), orthonormal columns
    np.testing.assert_allclose(
        q.transpose(0, 2, 1) @ q, np.broadcast_to(np.eye(small), (T, small, small)), atol=1e-12
    )
    # Entries have mean square gain^2 / max(r, c) exactly (sum of squares = gain^2 * min(r, c)).
    np.testing.assert_allclose((w**2).mean(axis=(1, 2)), gain**2 / big, rtol=1e-12)
    # Keras' sign fix: Q^T A = sign(d) R is upper triangular with a positive diagonal.
    a = rng.draw("normal", fi * fo, T, key=KEY, stream=9, trial_offset=0, dtype=tf.float64).numpy()
    r = q.transpose(0, 2, 1) @ a.reshape(T, big, small)
    assert np.all(np.diagonal(r, axis1=1, axis2=2) > 0)
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-10)
    # Haar: an entry has mean 0 and variance gain^2/max(r, c) (4 SE over trials).
    e00 = w[:, 0, 0]
    assert abs(e00.mean()) < 4 * gain / math.sqrt(big * T)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_low_precision_kernels_are_the_rounded_law(dtype: str) -> None:
    """float32 and half kernels are the float32 draw (scaled, shifted) rounded once."""
    init = canonical_scheme(INIT_SCHEMES, "uniform", {"low": -0.2, "high": 0.5})
    w = draw_kernels(init, 48, 80, 4, key=KEY, stream=3, trial_offset=7, dtype=dtype)
    assert w.dtype == tf.as_dtype(dtype)
    u = rng.draw("uniform", 48 * 80, 4, key=KEY, stream=3, trial_offset=7, dtype=tf.float32)
    want = tf.cast(u * tf.constant(0.7, tf.float32) + tf.constant(-0.2, tf.float32), dtype)
    np.testing.assert_array_equal(
        tf.cast(w, tf.float32).numpy().ravel(), tf.cast(want, tf.float32).numpy().ravel()
    )


def test_factored_draw_is_scale_times_standard() -> None:
    init = canonical_scheme(INIT_SCHEMES, "he_normal", {})
    k = sample_kernels(
        init, 48, 80, 3, key=KEY, stream=2, trial_offset=0, dtype="float32", factored=True
    )
    assert k.scale == pytest.approx(math.sqrt(2 / 48) / 0.87962566103423978)
    w = draw_kernels(init, 48, 80, 3, key=KEY, stream=2, trial_offset=0, dtype="float32")
    np.testing.assert_allclose(k.materialize().numpy(), w.numpy(), rtol=1e-6)
    assert float(tf.reduce_max(tf.abs(k.base))) <= 2.0


def test_kernels_depend_only_on_trial_index() -> None:
    init = canonical_scheme(INIT_SCHEMES, "orthogonal", {})
    whole = draw_kernels(
        init, 12, 20, 6, key=KEY, stream=16, trial_offset=10, dtype="float32"
    ).numpy()
    part = draw_kernels(
        init, 12, 20, 2, key=KEY, stream=16, trial_offset=13, dtype="float32"
    ).numpy()
    np.testing.assert_array_equal(whole[3:5], part)


def test_unknown_scheme_is_refused() -> None:
    from worker.contract import Scheme

    with pytest.raises(ValueError, match="init: expected one of"):
        draw_kernels(Scheme("bogus"), 2, 2, 1, key=KEY, stream=0, trial_offset=0, dtype="float32")


KERAS = [
    ("he_normal", "HeNormal", {}),
    ("glorot_uniform", "GlorotUniform", {}),
    ("lecun_normal", "LecunNormal", {}),
    ("truncated_normal", "TruncatedNormal", {"mean": 0.0, "std": 0.5}),
    (
        "variance_scaling",
        "VarianceScaling",
        {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
    ),
]


@pytest.mark.parametrize(("name", "cls", "params"), KERAS, ids=[k[0] for k in KERAS])
def test_variance_matches_keras(name: str, cls: str, params: dict[str, object]) -> None:
    """Our draws and Keras' own initializer (on 2-D kernels) have the same variance, 4 SE."""
    keras = pytest.importorskip("keras")
    fi, fo = 48, 80
    kparams: dict[str, object] = dict(params)
    if name == "truncated_normal":
        kparams = {"mean": params["mean"], "stddev": params["std"]}
    ours = (
        draw_kernels(
            canonical_scheme(INIT_SCHEMES, name, params),
            fi,
            fo,
            32,
            key=KEY,
            stream=1,
            trial_offset=0,
            dtype="float64",
        )
        .numpy()
        .ravel()
    )
    theirs = np.concatenate(
        [
            np.asarray(
                getattr(keras.initializers, cls)(seed=s, **kparams)(shape=(fi, fo), dtype="float64")
            ).ravel()
            for s in range(32)
        ]
    )

    def var_se(x: np.ndarray) -> float:
        d = x - x.mean()
        return math.sqrt(((d**4).mean() - x.var() ** 2) / x.size)

    se = math.hypot(var_se(ours), var_se(theirs))
    assert abs(ours.var() - theirs.var()) < 4 * se
    assert abs(ours.max() - theirs.max()) < 0.05 * theirs.max() or name == "variance_scaling"

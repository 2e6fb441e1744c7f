"""The seed notebook's cells (../shared/seed/notebook.txt), re-run by the core, against theory or
an independent numpy oracle. Tolerances are 4 standard errors (combined SE for two samples).

Each cell is one configuration at batch 1, float32. The notebook prints one run (or a 100- or
1000-trial average); we compare our many-trial means with exact values or an oracle, and keep
the notebook's printed numbers in comments only.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from worker.contract import (
    ACTIVATIONS,
    INIT_SCHEMES,
    ChunkTask,
    LayerRecord,
    SimConfig,
    canonical_scheme,
)
from worker.sim import simulate_chunk

pytestmark = pytest.mark.sim


def run(
    init: str, params: dict[str, object], act: str, depth: int, width: int, n: int, seed: int = 7
):
    cfg = SimConfig(
        init=canonical_scheme(INIT_SCHEMES, init, params),
        activation=canonical_scheme(ACTIVATIONS, act, {}),
        depth=depth,
        width=width,
        input_dim=width,
    )
    return simulate_chunk(ChunkTask(cfg, seed_key=seed, chunk_index=0, trial_start=0, n_trials=n))


def rec(outcome, layer: int, quantity: str = "activation") -> LayerRecord:  # type: ignore[no-untyped-def]
    return next(r for r in outcome.records if r.layer == layer and r.quantity == quantity)


def test_explosion_first_nonfinite_layer_is_38() -> None:
    """Cell 156: 100 layers of N(0, 1) 100x100 weights; the notebook's loop broke at i = 37.

    The activation std grows x10 (sqrt(fan_in)) per layer, so float32 (max 3.4e38) overflows
    near layer 38-39: the first non-finite layer concentrates at 38 +- 1 (1-based).
    """
    out = run("normal", {"std": 1.0}, "linear", depth=100, width=100, n=100)
    first = np.array([rec(out, layer).n_first_nonfinite for layer in range(0, 101)])
    assert first.sum() == 100  # every trial overflowed (cell 155 printed nan)
    assert rec(out, 100).n_finite == 0
    layers = np.repeat(np.arange(0, 101), first)
    median = int(np.median(layers))
    mode = int(np.argmax(first))
    assert median in (37, 38, 39) and mode in (37, 38, 39), (median, mode, first[30:45])
    assert layers.min() >= 35 and layers.max() <= 41
    # Growth per layer: E[std^l] ~ 10^l; at layer 10, log10 of the mean std is ~ 10.
    assert 9.7 < math.log10(rec(out, 10).std.mean) < 10.3
    # The backward pass of a linear net ignores the forward overflow: g^l = r W^T...W^T grows
    # x10 per layer from the top, so the gradient's first non-finite layer (in propagation
    # order, from depth down) is ~ 100 - 38.
    gfirst = np.array([rec(out, layer, "gradient").n_first_nonfinite for layer in range(1, 101)])
    glayers = np.repeat(np.arange(1, 101), gfirst)
    assert gfirst.sum() == 100 and 60 <= int(np.median(glayers)) <= 64


def test_vanishing_std_is_tiny_but_not_zero() -> None:
    """Cell 157: N(0, 1) * 0.05 weights, 100 layers: std ~ (0.05 * 10)^100 = 7.9e-31.

    The notebook printed std 0.0 because reduce_std squares in float32 (1e-60 underflows);
    the float32 activations themselves are ~1e-30, representable, and the core's float64
    observables see them. No trial has collapsed to exact zero.
    """
    out = run("normal", {"std": 0.05}, "linear", depth=100, width=100, n=40)
    r = rec(out, 100)
    assert r.n_finite == 40 and r.n_collapsed == 0
    assert 1e-32 < r.std.mean < 1e-28
    assert rec(out, 100, "preactivation").n_collapsed == 0


def test_vanishing_underflows_to_zero_at_depth_250() -> None:
    """At 0.5^l per layer, activations pass float32's smallest normal (1.2e-38) near layer 127
    and are flushed to exact zero: at layer 250 every trial has collapsed (finite, all zero)."""
    out = run("normal", {"std": 0.05}, "linear", depth=250, width=100, n=10)
    assert rec(out, 250).n_collapsed == 10 and rec(out, 250).n_finite == 10
    assert rec(out, 100).n_collapsed == 0
    collapsed = [rec(out, layer).n_collapsed for layer in range(100, 251)]
    assert all(b >= a for a, b in itertools.pairwise(collapsed))  # zero stays zero
    # The gradient of a linear net with r ~ N(0, 1) shrinks by 0.5 per layer going down too.
    assert rec(out, 1, "gradient").n_collapsed == 10


def test_single_layer_std_is_sqrt_fan_in() -> None:
    """Cell 158: y = x W, x ~ N(0, I_512), W ~ N(0, 1): notebook 22.6248 over 1000 trials.

    Exactly: given x, y_j ~ iid N(0, |x|^2), so std_ddof0(y) = |x| sqrt(chi2_511 / 512) and
    E[std] = E[chi_512] E[chi_511] / sqrt(512) = 2 Gamma(256.5) / Gamma(255.5) / sqrt(512)
    = 511 / sqrt(512) = 22.5834 (slightly below sqrt(512) = 22.6274).
    """
    out = run("normal", {"std": 1.0}, "linear", depth=1, width=512, n=1000)
    r = rec(out, 1)
    assert abs(r.std.mean - 511 / math.sqrt(512)) < 4 * r.std.sem
    assert abs(r.mean.mean) < 4 * r.mean.sem
    _notebook_agrees(r, 22.624842472076416, 1000)


def test_single_layer_scaled_std_is_one() -> None:
    """Cell 159: W ~ N(0, 1) * sqrt(1/512): notebook 0.99763; exactly E[std] = 511/512."""
    out = run("normal", {"std": math.sqrt(1 / 512)}, "linear", depth=1, width=512, n=400)
    r = rec(out, 1)
    assert abs(r.std.mean - 511 / 512) < 4 * r.std.sem
    _notebook_agrees(r, 0.9976319864988327, 1000)


def _oracle(n: int, seed: int, weights, act) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Per-trial std of act(x W) with numpy's own generator: x ~ N(0, I_512) float32."""
    gen = np.random.default_rng(seed)
    out = []
    for start in range(0, n, 100):
        m = min(100, n - start)
        x = gen.standard_normal((m, 1, 512), dtype=np.float32)
        w = weights(gen, m)
        out.append(act(x @ w).astype(np.float64).std(axis=(1, 2)))
    return np.concatenate(out)


def _notebook_agrees(r: LayerRecord, printed: float, n_notebook: int) -> None:
    """The notebook's average over `n_notebook` trials is one draw of a mean whose SE we know
    from our per-trial spread: it must lie within 4 combined SE of ours."""
    se = math.hypot(r.std.sem, r.std.std / math.sqrt(n_notebook))
    assert abs(r.std.mean - printed) < 4 * se, (r.std.mean, printed, se)


def _check_against(r: LayerRecord, oracle: np.ndarray) -> None:
    se = math.hypot(r.std.sem, oracle.std(ddof=1) / math.sqrt(oracle.size))
    assert abs(r.std.mean - oracle.mean()) < 4 * se, (r.std.mean, oracle.mean(), se)


def test_single_layer_tanh() -> None:
    """Cell 160: tanh(x W), W ~ N(0, 1/512): notebook 0.62706. Oracle: given x, the
    pre-activations are iid N(0, |x|^2/512), sampled directly (exact in law)."""
    out = run("normal", {"std": math.sqrt(1 / 512)}, "tanh", depth=1, width=512, n=400)
    gen = np.random.default_rng(11)
    x = gen.standard_normal((20000, 512))
    y = (
        np.linalg.norm(x, axis=1, keepdims=True)
        / math.sqrt(512)
        * gen.standard_normal((20000, 512))
    )
    _check_against(rec(out, 1), np.tanh(y).std(axis=1))
    _notebook_agrees(rec(out, 1), 0.627060652911663, 1000)


UNIFORM_CELLS = [
    # (scale, mode, activation, notebook's printed std, what the notebook did)
    (1.0, "fan_in", "tanh", 0.23150178030133248, "cell 161: uniform(512x512) * sqrt(1/512)"),
    # The notebook's xavier(m, h) divides by m + h = 2 fan_avg: scale 6 over fan_avg is a
    # different (wider) law, std ~0.36, not the notebook's 0.308.
    (6.0, "fan_avg", "tanh", None, "Keras fan_avg reading of cell 162: U * sqrt(6/512)"),
    (3.0, "fan_avg", "tanh", 0.30846175507642326, "cell 162 exactly: U * sqrt(6/(512+512))"),
    (2.0, "fan_in", "relu", 0.1972163485432975, "cell 163: relu(x U sqrt(2/512))"),
]


@pytest.mark.parametrize(
    ("scale", "mode", "act", "notebook", "what"),
    UNIFORM_CELLS,
    ids=[c[4].split(":")[0] + f"-{c[0]:g}" for c in UNIFORM_CELLS],
)
def test_single_layer_scaled_uniform(
    scale: float, mode: str, act: str, notebook: float | None, what: str
) -> None:
    """Non-centred U[0, 1) * sqrt(scale / fan) weights against a numpy oracle (same law)."""
    params = {"low": 0.0, "high": 1.0, "scale": scale, "mode": mode}
    out = run("scaled_uniform", params, act, depth=1, width=512, n=400)
    c = math.sqrt(scale / 512)  # fan_in = fan_avg = 512 for a square kernel

    def weights(gen: np.random.Generator, m: int) -> np.ndarray:
        return gen.random((m, 512, 512), dtype=np.float32) * np.float32(c)

    phi = np.tanh if act == "tanh" else (lambda v: np.maximum(v, 0))
    _check_against(rec(out, 1), _oracle(600, 3, weights, phi))
    if notebook is not None:
        _notebook_agrees(rec(out, 1), notebook, 100)

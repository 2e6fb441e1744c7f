"""The conditional sampler's forward pass matches the dense one in the exploding regime (issue 10, item 1): scaled norms and QR, so nothing overflows at half the dynamic range.

Two-sample KS tests on the per-trial first non-finite layer of the pre-activations, dense vs conditional, 200 trials each, at a false-alarm
rate of 1e-3 per test (p > 1e-3 passes). Before the fix, float32 linear width 100 overflowed at
layer 20 under conditional vs 39 under dense: p ~ 1e-90.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from worker.contract import ChunkTask, Scheme, SimConfig
from worker.sim.runner import simulate_chunk

ALPHA = 1e-3
N = 200


def _first_layers(cfg: SimConfig, *, collapse: bool) -> np.ndarray:
    out = simulate_chunk(ChunkTask(cfg, seed_key=11, chunk_index=0, trial_start=0, n_trials=N))
    pre = sorted((r for r in out.records if r.quantity == "preactivation"), key=lambda r: r.layer)
    if not collapse:
        layers = [r.layer for r in pre for _ in range(r.n_first_nonfinite)]
    else:  # collapse is absorbing for linear/relu: newly collapsed trials per layer
        prev = 0
        layers = []
        for r in pre:
            layers += [r.layer] * (r.n_collapsed - prev)
            prev = r.n_collapsed
    assert len(layers) == N, "every trial must reach the event within the depth"
    return np.asarray(layers, dtype=float)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("batch", [1, 3])
# Vanishing (N(0, 0.05^2), collapse) is not here: the dense matmul flushes each subnormal product
# h_i W_ij before the sum, the conditional sampler only its result, so dense collapses ~1 layer
# earlier (float32 width 16: median 53 vs 54, p ~ 2e-17). Open: issue 10 item 1.
@pytest.mark.parametrize(("std", "collapse"), [(1.0, False)])
def test_conditional_matches_dense_at_the_range_limits(
    dtype: str, activation: str, batch: int, std: float, collapse: bool
) -> None:
    if activation == "relu" and dtype == "float64":
        pytest.skip("relu float64 overflows past depth 700 at width 16: not sized yet")
    width = 16
    # exploding: log|z| drifts by ~ln(16)/2 per layer: float32 overflows at ~66, float64 ~525
    depth = {("float32", False): 120, ("float32", True): 160}.get(
        (dtype, collapse), 700 if not collapse else 1400
    )
    gain = 2.0 if activation == "relu" else 1.0
    samples = []
    for sampler in ("dense", "conditional"):
        cfg = SimConfig(
            init=Scheme("normal", (("mean", 0.0), ("std", std * gain**0.5))),
            activation=Scheme(activation),
            depth=depth,
            width=width,
            input_dim=width,
            batch=batch,
            dtype=dtype,
            sampler=sampler,
        )
        samples.append(_first_layers(cfg, collapse=collapse))
    p = stats.ks_2samp(*samples).pvalue
    assert p > ALPHA, (np.median(samples[0]), np.median(samples[1]), p)

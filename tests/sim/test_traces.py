"""One trace per shape: a configuration's numbers are inputs of its shape's compiled graph.

Trace reuse is compared bit for bit against fresh traces and against the graph with the
numbers as constants (the graph before numbers became inputs), and a sigma_w x sigma_b x depth
grid is counted: one trace per shape per process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from worker.contract import (
    ACTIVATIONS,
    INIT_SCHEMES,
    ChunkTask,
    Scheme,
    SimConfig,
    canonical_scheme,
)
from worker.sim import rng, simulate_chunk
from worker.sim.graph import sub_batch, trace_count, traced
from worker.sim.network import Network, feed, split

pytestmark = pytest.mark.sim

ROOT = Path(__file__).resolve().parents[2]
KEY = 0x5EED_0F_7A1C


def config(
    sigma_w: float = 1.3,
    sigma_b: float = 0.2,
    *,
    act: str = "tanh",
    alpha: float | None = None,
    init: str = "variance_scaling",
    iparams: dict[str, object] | None = None,
    **kw: object,
) -> SimConfig:
    """A small configuration; by default W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2)."""
    if iparams is None and init == "variance_scaling":
        iparams = {"scale": sigma_w**2, "distribution": "untruncated_normal"}
    base = SimConfig(
        init=canonical_scheme(INIT_SCHEMES, init, iparams or {}),
        activation=canonical_scheme(ACTIVATIONS, act, {} if alpha is None else {"alpha": alpha}),
        bias=canonical_scheme({"normal": {"std": 0.0}}, "normal", {"std": sigma_b})
        if sigma_b
        else Scheme("zeros"),
        depth=3,
        width=11,
        input_dim=7,
        batch=2,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def per_trial(fn, n: int = 9, start: int = 40) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    out = fn(rng.key_tensor(KEY), tf.constant(start, tf.uint64), tf.constant(n, tf.int32))
    return [a.numpy() for a in out]


def with_constants(cfg: SimConfig):  # type: ignore[no-untyped-def]
    """The sub-batch graph of `cfg` with its numbers and depth as graph constants."""
    shape, _ = split(cfg)
    net = Network.of(cfg)

    @tf.function(autograph=False)
    def fn(key: tf.Tensor, trial_offset: tf.Tensor, n_trials: tf.Tensor):  # type: ignore[no-untyped-def]
        return sub_batch(shape.sampler, net, key, trial_offset, n_trials)

    return fn


def fresh(cfg: SimConfig):  # type: ignore[no-untyped-def]
    """A newly traced function of `cfg`'s shape (not the cached one), numbers bound."""
    shape, values = split(cfg)
    fn = traced.__wrapped__(shape)
    numbers = feed(shape, values)
    depth = tf.constant(cfg.depth, tf.int32)
    return lambda key, t0, n: fn(key, t0, n, depth, numbers)


def assert_bitwise(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        np.testing.assert_array_equal(x.view(np.uint64), y.view(np.uint64))


# Shapes with every kind of number: shifted and unit-scale laws, biases of std 1, alphas in
# every dtype (float16/bfloat16 round alpha in the compute dtype), both samplers, depth 1.
CASES = {
    "tanh-vs-bias": config(),
    "depth1": config(depth=1),
    "leaky-bfloat16": config(act="leaky_relu", alpha=0.07, dtype="bfloat16"),
    "elu-float16": config(act="elu", alpha=0.6, dtype="float16", sigma_b=1.0),
    "elu-float64": config(act="elu", alpha=0.3, dtype="float64"),
    "normal-shifted": config(init="normal", iparams={"mean": 0.03, "std": 0.4}, act="gelu"),
    "uniform-float16": config(init="uniform", iparams={"low": -0.3, "high": 0.4}, dtype="float16"),
    "scaled-uniform": config(init="scaled_uniform", iparams={"scale": 3.0}, act="relu"),
    "truncated": config(init="he_normal", act="swish"),
    "orthogonal": config(init="orthogonal", iparams={"gain": 1.2}, act="linear"),
    "cond-shifted": config(
        init="normal", iparams={"mean": 0.1, "std": 0.5}, sampler="conditional", batch=3
    ),
    "cond-float64": config(sigma_b=1.0, sampler="conditional", dtype="float64", depth=4),
}


def other_numbers(cfg: SimConfig) -> SimConfig:
    """A configuration of the same shape with every number and the depth changed."""
    shape, values = split(cfg)
    alpha = {"alpha": 0.11} if "alpha" in values else {}
    out = dataclasses.replace(
        cfg,
        activation=canonical_scheme(ACTIVATIONS, cfg.activation.name, alpha),
        depth=cfg.depth + 2,
    )
    if cfg.bias.name == "normal":
        out = dataclasses.replace(out, bias=Scheme("normal", (("std", 0.77),)))
    params = dict(cfg.init.params)
    for k, v in params.items():
        if isinstance(v, float) and v != 0.0:
            params[k] = v * 1.25
    out = dataclasses.replace(out, init=Scheme(cfg.init.name, tuple(sorted(params.items()))))
    other_shape, other_values = split(out)
    assert other_shape == shape and other_values != values
    return out


@pytest.mark.parametrize("cfg", list(CASES.values()), ids=list(CASES))
def test_fed_numbers_and_reused_traces_give_the_bits_of_constants(cfg: SimConfig) -> None:
    """Numbers fed to a fresh trace of the shape == the same numbers as graph constants, and ==
    a trace first traced and run for other numbers and another depth, bit for bit."""
    shape, _ = split(cfg)
    fed = per_trial(fresh(cfg))
    assert_bitwise(fed, per_trial(with_constants(cfg)))
    reused = traced.__wrapped__(shape)
    before = trace_count()
    for c in (other_numbers(cfg), cfg):
        _, v = split(c)
        depth = tf.constant(c.depth, tf.int32)
        got = per_trial(lambda k, t, n: reused(k, t, n, depth, feed(shape, v)))  # noqa: B023
    assert trace_count() == before + 1
    assert_bitwise(got, fed)


def test_a_sigma_grid_traces_once_per_shape() -> None:
    """A sigma_w x sigma_b x depth grid of one shape: one trace, whatever the numbers."""
    grid = [
        config(sigma_w, sigma_b, depth=depth, width=13)
        for sigma_w in (0.5, 1.0, 1.5, 2.5)
        for sigma_b in (0.05, 0.3, 1.0)
        for depth in (1, 2, 5)
    ]
    shapes = {split(c)[0] for c in grid}
    assert len(shapes) == 1
    before = trace_count()
    for c in grid:
        simulate_chunk(ChunkTask(c, seed_key=3, chunk_index=0, trial_start=0, n_trials=4))
    assert trace_count() - before == 1
    # A second sampler is a second shape, traced once for its own grid.
    cond = [dataclasses.replace(c, sampler="conditional") for c in grid[::5]]
    for c in cond:
        simulate_chunk(ChunkTask(c, seed_key=3, chunk_index=0, trial_start=0, n_trials=4))
    assert trace_count() - before == 2


def test_what_keys_the_shape() -> None:
    base, _ = split(config())
    assert split(config(sigma_w=0.1, sigma_b=3.0, depth=30))[0] == base
    assert split(config(act="leaky_relu", alpha=0.3))[0] == split(config(act="leaky_relu"))[0]
    for changed in (
        config(sigma_b=0.0),  # no bias: no draw
        config(width=12),
        config(batch=1),
        config(dtype="float64"),
        config(sampler="conditional"),
        config(act="relu"),
        config(init="he_uniform"),  # another law kind
        config(init="normal", iparams={"std": 1.0}),  # unit scale: no multiply
        config(init="normal", iparams={"mean": 0.1, "std": 0.5}),  # a shift
    ):
        assert split(changed)[0] != base


def test_numbers_are_fed_rounded_like_graph_constants() -> None:
    """numpy's rounding of a float to float16/bfloat16/float32 is the graph constant's."""
    for dtype in (tf.float16, tf.bfloat16, tf.float32):
        for value in (0.07, 0.6, 1.0 / 3.0, 0.2, 1.7e-5):
            fed = np.asarray(value, dtype=dtype.as_numpy_dtype)

            @tf.function(autograph=False)
            def const() -> tf.Tensor:
                return tf.constant(value, dtype)  # noqa: B023

            assert np.asarray(const().numpy()).tobytes() == fed.tobytes(), (dtype, value)


def test_records_of_a_reused_trace_match_a_fresh_process() -> None:
    """Records of a configuration met after others of its shape == its records in a process
    where it is the first (bit-identical JSON)."""
    grid = [config(sigma_w, 0.4, width=9, depth=2) for sigma_w in (0.8, 1.9)]
    target = config(1.4, 0.7, width=9, depth=4)
    for c in grid:
        simulate_chunk(ChunkTask(c, seed_key=8, chunk_index=0, trial_start=0, n_trials=30))
    t = ChunkTask(target, seed_key=8, chunk_index=1, trial_start=30, n_trials=30)
    here = json.dumps([dataclasses.asdict(r) for r in simulate_chunk(t, sub_batch=11).records])
    code = (
        "import dataclasses, json, sys\n"
        "from worker.contract import ChunkTask\n"
        "from worker.sim import simulate_chunk\n"
        "t = ChunkTask.from_json(json.loads(sys.stdin.read()))\n"
        "out = simulate_chunk(t, sub_batch=11)\n"
        "print(json.dumps([dataclasses.asdict(r) for r in out.records]))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(t.to_json()),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == here

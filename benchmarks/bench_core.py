"""Throughput of the core against the notebook's eager loop and the machine's bare RNG.

    python benchmarks/bench_core.py [--quick] [--threads N] [--repeats R]

One process, one thread setting for everything (`configure_runtime`). Two shapes:

  (a) 1 layer 512x512, batch 1 (notebook cells 158-163)
  (b) 100 layers 100x100, batch 1, statistics at every layer (cells 155-157)

and four ways to run them, timed interleaved R times:

  notebook   the notebook's own eager loop, per trial: tf.random.normal weights and input,
             tf.matmul, reduce_mean / reduce_std .numpy() (per layer for (b))
  bare-op    a tf.function that only draws the same weights in the same batched shapes and
             sub-batches with TF's StatelessRandomNormalV2 (scalar Box-Muller kernel)
  bare-core  the same with the core's generator (Philox uniforms + vectorised Box-Muller,
             worker.sim.rng.draw): the floor for the core, which must draw these numbers too
  core       worker.sim.simulate_chunk: forward + manual backward, float64 observables of
             preactivation, activation and gradient at every layer, moment bookkeeping

Rates are trials per second from the best repeat, by wall clock and by process CPU time (on a
shared machine the CPU time is the steadier of the two). Targets: core >= 0.85 x bare-core on
both shapes, core >= 5 x notebook on (b).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from worker.contract import ACTIVATIONS, INIT_SCHEMES, ChunkTask, SimConfig, canonical_scheme
from worker.memory import sub_batch_size
from worker.sim import configure_runtime, simulate_chunk
from worker.sim.runtime import device_name

Runner = Callable[[int, int], None]


def shape_config(depth: int, width: int, std: float) -> SimConfig:
    return SimConfig(
        init=canonical_scheme(INIT_SCHEMES, "normal", {"std": std}),
        activation=canonical_scheme(ACTIVATIONS, "linear", {}),
        depth=depth,
        width=width,
        input_dim=width,
    )


def notebook_loop(config: SimConfig) -> Runner:
    """The notebook's eager loop for `config` (depth 1: cell 158; deep: cells 155-157 + stats)."""
    import tensorflow as tf

    width, depth = config.width, config.depth
    std = config.init.num("std")

    def run(start: int, n: int) -> None:
        for _ in range(n):
            x = tf.random.normal((1, width), mean=0, stddev=1)
            for _layer in range(depth):
                w = tf.random.normal((width, width), mean=0, stddev=std)
                x = tf.matmul(x, w)
                tf.reduce_mean(x).numpy()
                tf.math.reduce_std(x).numpy()

    return run


def bare_rng(config: SimConfig, size: int, generator: str) -> Runner:
    """Draw only the weights of `config`, in the core's sub-batches and batched shapes."""
    import tensorflow as tf

    from worker.sim import rng

    key = rng.key_tensor(12345)
    fans = [config.fans(layer) for layer in range(1, config.depth + 1)]

    @tf.function(
        input_signature=[tf.TensorSpec([], tf.uint64), tf.TensorSpec([], tf.int32)], autograph=False
    )
    def draw_all(t0: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
        acc = tf.constant(0.0)
        for layer, (fan_in, fan_out) in enumerate(fans, start=1):
            stream = rng.stream_id(layer, rng.Purpose.WEIGHTS)
            if generator == "op":
                m_pad, groups = rng.padded_size(fan_in * fan_out, tf.float32)
                low = t0 * tf.constant(groups, tf.uint64)
                w = tf.raw_ops.StatelessRandomNormalV2(
                    shape=tf.stack([n, m_pad]),
                    key=key,
                    counter=tf.stack([low, tf.constant(stream, tf.uint64)]),
                    alg=rng.PHILOX,
                    dtype=tf.float32,
                )
            else:
                w = rng.draw(
                    "normal",
                    fan_in * fan_out,
                    n,
                    key=key,
                    stream=stream,
                    trial_offset=t0,
                    dtype=tf.float32,
                )
            acc += w[0, 0]  # keeps the draw alive without another pass over it
        return acc

    def run(start: int, n_trials: int) -> None:
        for t0 in range(start, start + n_trials, size):
            n = min(size, start + n_trials - t0)
            draw_all(tf.constant(t0, tf.uint64), tf.constant(n, tf.int32)).numpy()

    return run


def core(config: SimConfig) -> Runner:
    def run(start: int, n: int) -> None:
        simulate_chunk(
            ChunkTask(config, seed_key=12345, chunk_index=0, trial_start=start, n_trials=n)
        )

    return run


def bench_shape(
    label: str, config: SimConfig, n_core: int, n_notebook: int, repeats: int
) -> dict[str, float]:
    """Time the four methods on one shape; print and return CPU-time rates (trials/s)."""
    size = sub_batch_size(config, n_core)
    methods: dict[str, tuple[Runner, int]] = {
        "notebook": (notebook_loop(config), n_notebook),
        "bare-op": (bare_rng(config, size, "op"), n_core),
        "bare-core": (bare_rng(config, size, "core"), n_core),
        "core": (core(config), n_core),
    }
    t = time.perf_counter()
    methods["core"][0](0, 2)  # first call of a configuration: trace + graph optimisation
    compile_s = time.perf_counter() - t
    for name, (fn, _) in methods.items():
        if name != "core":
            fn(0, 2)
    wall: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    for rep in range(repeats):
        for name, (fn, n) in methods.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn(10_000 * (rep + 1), n)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    print(
        f"\n{label}: sub-batch {size} trials; core's first call (trace + optimise) {compile_s:.2f} s"
    )
    rates_wall = {name: n / min(wall[name]) for name, (_, n) in methods.items()}
    rates_cpu = {name: n / min(cpu[name]) for name, (_, n) in methods.items()}
    for name, (_, n) in methods.items():
        print(
            f"  {name:10s} {n:5d} trials   {rates_wall[name]:8.1f} trials/s wall   "
            f"{rates_cpu[name]:8.1f} trials/s cpu"
        )
    for kind, rates in (("wall", rates_wall), ("cpu ", rates_cpu)):
        print(
            f"  [{kind}] core/bare-core = {rates['core'] / rates['bare-core']:.2f}   "
            f"core/bare-op = {rates['core'] / rates['bare-op']:.2f}   "
            f"core/notebook = {rates['core'] / rates['notebook']:.1f}x"
        )
    return rates_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and one repeat")
    parser.add_argument(
        "--threads", type=int, default=None, help="TF threads (default: INITSWEEP_TF_THREADS or 1)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per method (default 3, quick 1)"
    )
    args = parser.parse_args(argv)

    threads = configure_runtime(args.threads)
    import tensorflow as tf

    repeats = args.repeats or (1 if args.quick else 3)
    print(
        f"TensorFlow {tf.__version__} on {device_name()}; intra/inter-op threads = {threads}; repeats = {repeats}"
    )
    quick = args.quick
    a = bench_shape(
        "(a) 1 x 512x512",
        shape_config(1, 512, 1.0),
        200 if quick else 1000,
        50 if quick else 200,
        repeats,
    )
    # std 0.1 = 1/sqrt(100) keeps the 100-layer values finite (NaN arithmetic would flatter nobody).
    b = bench_shape(
        "(b) 100 x 100x100",
        shape_config(100, 100, 0.1),
        100 if quick else 300,
        20 if quick else 100,
        repeats,
    )
    ok = (
        a["core"] >= 0.85 * a["bare-core"]
        and b["core"] >= 0.85 * b["bare-core"]
        and b["core"] >= 5 * b["notebook"]
    )
    verdict = "met" if ok else "NOT met"
    if quick:
        verdict += " (--quick: one repeat, small sub-batches; judge the targets on a full run)"
    print(
        f"\ntargets (cpu rates): core >= 0.85 x bare-core on (a) and (b), >= 5 x notebook on (b): {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

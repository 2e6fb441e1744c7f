"""Throughput of the core against the notebook's eager loop and the machine's bare RNG.

    python benchmarks/bench_core.py [--quick] [--threads N] [--repeats R]

One process, one thread setting for everything (`configure_runtime`). Two shapes:

  (a) 1 layer 512x512, batch 1 (notebook cells 158-163)
  (b) 100 layers 100x100, batch 1, statistics at every layer (cells 155-157)

and four ways to run them, timed interleaved R times (best and median reported):

  notebook   the notebook's own eager loop, per trial: tf.random.normal weights and input,
             tf.matmul, reduce_mean / reduce_std .numpy() (per layer for (b))
  bare-op    a tf.function that only draws the same weights in the same batched shapes and
             sub-batches with TF's StatelessRandomNormalV2 (scalar Box-Muller kernel)
  bare-core  the same, with the core's generator (Philox uniforms + vectorised Box-Muller,
             worker.sim.rng.draw): the floor for the core, which must also draw these numbers
  core       worker.sim.simulate_chunk: forward + manual backward, float64 observables for
             preactivation, activation and gradient at every layer, moment bookkeeping

Targets: core >= 0.85 x bare-core on both shapes, core >= 5 x notebook on (b).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from worker.contract import ACTIVATIONS, INIT_SCHEMES, ChunkTask, SimConfig, canonical_scheme  # noqa: E402
from worker.memory import sub_batch_size  # noqa: E402


def shape_config(depth: int, width: int, std: float) -> SimConfig:
    return SimConfig(
        init=canonical_scheme(INIT_SCHEMES, "normal", {"std": std}),
        activation=canonical_scheme(ACTIVATIONS, "linear", {}),
        depth=depth,
        width=width,
        input_dim=width,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and one repeat")
    parser.add_argument("--threads", type=int, default=None, help="TF threads (default: INITSWEEP_TF_THREADS or 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per method (default 3, quick 1)")
    args = parser.parse_args(argv)

    from worker.sim import configure_runtime, simulate_chunk

    threads = configure_runtime(args.threads)
    import tensorflow as tf

    from worker.sim import rng
    from worker.sim.runtime import device_name

    repeats = args.repeats or (1 if args.quick else 3)
    print(f"TensorFlow {tf.__version__} on {device_name()}; intra/inter-op threads = {threads}; repeats = {repeats}")

    # (name, config, core/bare trials, notebook trials, notebook loop)
    def nb_single(n: int) -> None:
        for _ in range(n):
            w = tf.random.normal((512, 512), mean=0, stddev=1)
            x = tf.random.normal((1, 512), mean=0, stddev=1)
            y = tf.matmul(x, w)
            tf.reduce_mean(y).numpy()
            tf.math.reduce_std(y).numpy()

    def nb_deep(n: int) -> None:
        # stddev 0.1 = 1/sqrt(100) keeps values finite (inf/NaN arithmetic would flatter nobody).
        for _ in range(n):
            x = tf.random.normal((1, 100), mean=0, stddev=1)
            for _layer in range(100):
                w = tf.random.normal((100, 100), mean=0, stddev=0.1)
                x = tf.matmul(x, w)
                tf.reduce_mean(x).numpy()
                tf.math.reduce_std(x).numpy()

    quick = args.quick
    shapes = [
        ("(a) 1 x 512x512", shape_config(1, 512, 1.0), 200 if quick else 1000, 50 if quick else 200, nb_single),
        ("(b) 100 x 100x100", shape_config(100, 100, 0.1), 100 if quick else 300, 20 if quick else 100, nb_deep),
    ]

    key = rng.key_tensor(12345)
    results: dict[str, dict[str, float]] = {}
    for label, config, n_core, n_nb, nb_loop in shapes:
        size = sub_batch_size(config, n_core)
        fans = [config.fans(layer) for layer in range(1, config.depth + 1)]

        def bare(op: str) -> Callable[[int, int], None]:
            @tf.function(
                input_signature=[tf.TensorSpec([], tf.uint64), tf.TensorSpec([], tf.int32)], autograph=False
            )
            def draw_all(t0: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
                acc = tf.constant(0.0)
                for layer, (fi, fo) in enumerate(fans, start=1):
                    stream = rng.stream_id(layer, rng.Purpose.WEIGHTS)
                    if op == "op":
                        m_pad, groups = rng.padded_size(fi * fo, tf.float32)
                        counter = tf.stack([t0 * tf.constant(groups, tf.uint64), tf.constant(stream, tf.uint64)])
                        w = tf.raw_ops.StatelessRandomNormalV2(
                            shape=tf.stack([n, m_pad]), key=key, counter=counter, alg=rng.PHILOX, dtype=tf.float32
                        )
                    else:
                        w = rng.draw("normal", fi * fo, n, key=key, stream=stream, trial_offset=t0, dtype=tf.float32)
                    acc += w[0, 0]  # keeps the draw alive without touching the rest of it
                return acc

            def run(start: int, n_trials: int) -> None:
                for t0 in range(start, start + n_trials, size):
                    n = min(size, start + n_trials - t0)
                    draw_all(tf.constant(t0, tf.uint64), tf.constant(n, tf.int32)).numpy()

            return run

        def core(start: int, n_trials: int) -> None:
            simulate_chunk(ChunkTask(config, seed_key=12345, chunk_index=0, trial_start=start, n_trials=n_trials))

        methods: dict[str, tuple[Callable[[int, int], None], int]] = {
            "notebook": (lambda start, n: nb_loop(n), n_nb),
            "bare-op": (bare("op"), n_core),
            "bare-core": (bare("core"), n_core),
            "core": (core, n_core),
        }
        # Warm-up: traces (the core's first call of a configuration traces and optimises its graph).
        t = time.perf_counter()
        core(0, 2)
        compile_s = time.perf_counter() - t
        for name, (fn, _) in methods.items():
            if name != "core":
                fn(0, 2)
        times: dict[str, list[float]] = {name: [] for name in methods}
        for rep in range(repeats):
            for name, (fn, n) in methods.items():
                t = time.perf_counter()
                fn(10_000 * (rep + 1), n)
                times[name].append(time.perf_counter() - t)
        print(f"\n{label}: sub-batch {size} trials; core first call (trace + optimise) {compile_s:.2f} s")
        rates: dict[str, float] = {}
        for name, (_, n) in methods.items():
            best, med = min(times[name]), statistics.median(times[name])
            rates[name] = n / best
            print(f"  {name:10s} {n:5d} trials   best {n / best:9.1f} trials/s   median {n / med:9.1f} trials/s")
        print(
            f"  core / bare-core = {rates['core'] / rates['bare-core']:.2f}   "
            f"core / bare-op = {rates['core'] / rates['bare-op']:.2f}   "
            f"core / notebook = {rates['core'] / rates['notebook']:.1f}x"
        )
        results[label] = rates
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

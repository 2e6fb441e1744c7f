"""GPU check, run by benchmarks/device_check.sh on a machine with an NVIDIA GPU (< 5 minutes).

1. The core on the GPU against the GPU's own bare stateless-RNG throughput (bench_core's
   shapes, `--quick`): trials/s of `simulate_chunk` and of a kernel that only draws the same
   weights with the core's generator.
2. Determinism on the GPU: one chunk run twice, and again in other sub-batch sizes, gives the
   same bits (op determinism is on: `worker.sim.runtime`).
3. GPU against CPU: the same chunk computed by a CPU-only subprocess (CUDA_VISIBLE_DEVICES="");
   every per-layer mean, std and mean_sq agrees within 4 standard errors (printed: the largest
   |z| and the largest relative difference; both runs use the same random numbers, so the
   differences are the devices' arithmetic, far below one SE).

Exit 0 when 2 and 3 hold, 1 otherwise, 2 when no GPU is visible.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scheduler.analysis.records import record_row  # noqa: E402
from worker.contract import INIT_SCHEMES, ChunkTask, Scheme, SimConfig, canonical_scheme  # noqa: E402

STATS = ("mean", "std", "mean_sq")


def check_config() -> SimConfig:
    """relu, He Gaussian, width 256, depth 20, batch 2: dense, every kernel drawn."""
    init = canonical_scheme(
        INIT_SCHEMES,
        "variance_scaling",
        {"scale": 2.0, "mode": "fan_in", "distribution": "untruncated_normal"},
    )
    return SimConfig(
        init=init, activation=Scheme("relu"), depth=20, width=256, input_dim=256, batch=2,
        sampler="dense",
    )  # fmt: skip


def chunk_rows(n_trials: int, sub_batch: int | None = None) -> list[dict[str, Any]]:
    """The per-(layer, quantity) rows of one chunk of `check_config()`."""
    from worker.sim import simulate_chunk

    task = ChunkTask(
        config=check_config(), seed_key=2026, chunk_index=0, trial_start=0, n_trials=n_trials
    )
    return [record_row(r) for r in simulate_chunk(task, sub_batch=sub_batch).records]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--rows-json", help=argparse.SUPPRESS)  # the CPU subprocess's output
    parser.add_argument(
        "--dry-run-on-cpu",
        action="store_true",
        help="run checks 2 and 3 without a GPU (tests the script itself; 1 is skipped)",
    )
    args = parser.parse_args()

    from worker.sim import configure_runtime
    from worker.sim.runtime import device_name

    configure_runtime()
    if args.rows_json:  # CPU side of check 3
        Path(args.rows_json).write_text(json.dumps(chunk_rows(args.trials)))
        return 0
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU") and not args.dry_run_on_cpu:
        print("device_check: no GPU is visible to TensorFlow (is the `gpu` extra installed?)")
        return 2
    print(f"TensorFlow {tf.__version__} on {device_name()}")

    if not args.dry_run_on_cpu:
        import bench_core

        print("\n1. core vs bare RNG on the GPU (bench_core --quick shapes)")
        shape_a = bench_core.shape_config(1, 512, 1.0)
        shape_b = bench_core.shape_config(100, 100, 0.1)
        bench_core.bench_shape("(a) 1 x 512x512", shape_a, 2000, 20, 1)
        bench_core.bench_shape("(b) 100 x 100x100", shape_b, 1000, 5, 1)

    print(f"\n2. determinism on the GPU ({args.trials} trials, sub-batches whole, 37, 128)")
    first = chunk_rows(args.trials)
    same = [chunk_rows(args.trials) == first]
    same += [chunk_rows(args.trials, sub_batch=s) == first for s in (37, 128)]
    print(f"  bit-identical: {same}")

    print("\n3. GPU vs CPU (same chunk, CPU-only subprocess)")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"initsweep-device-check-{os.getpid()}.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, __file__, "--trials", str(args.trials), "--rows-json", str(out)],
        check=True,
        env=env,
    )
    cpu = json.loads(out.read_text())
    out.unlink()
    worst_z = worst_rel = 0.0
    compared = 0
    for g, c in zip(first, cpu, strict=True):
        assert (g["layer"], g["quantity"]) == (c["layer"], c["quantity"])
        for s in STATS:
            gv, cv, gse, cse = g[s], c[s], g[f"{s}_se"], c[f"{s}_se"]
            if None in (gv, cv, gse, cse) or not (gse or cse):
                continue
            compared += 1
            worst_z = max(worst_z, abs(gv - cv) / math.hypot(gse, cse))
            worst_rel = max(worst_rel, abs(gv - cv) / max(abs(cv), 1e-300))
    agree = compared > 0 and worst_z <= 4.0
    print(f"  {compared} statistics; largest |z| {worst_z:.3g}, largest relative difference "
          f"{worst_rel:.3g}: {'within 4 SE' if agree else 'NOT within 4 SE'}")  # fmt: skip
    ok = all(same) and agree
    print(f"\ndevice check: {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

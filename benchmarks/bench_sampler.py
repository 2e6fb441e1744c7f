"""Conditional (O(width)) against dense (O(width^2)) sampler: trials/s at widths 512, 2048, 8192.

Depth 20, batch 1, relu with Gaussian He weights (variance_scaling(2, fan_in,
untruncated_normal)), the core's `simulate_chunk` on one TF thread for both samplers, in one
process and one run. Each measurement is preceded by a warm-up call (graph trace) and repeated
until it has run for at least `--seconds`. Dense is skipped, with the reason printed, where one
trial does not fit the memory budget (1 GiB).

    python benchmarks/bench_sampler.py            # ~1 minute
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.contract import INIT_SCHEMES, ChunkTask, Scheme, SimConfig, canonical_scheme
from worker.errors import MemoryBudgetError
from worker.memory import DEFAULT_BUDGET, format_bytes, trial_bytes

DEPTH = 20
WIDTHS = (512, 2048, 8192)


def config(width: int, sampler: str) -> SimConfig:
    init = canonical_scheme(
        INIT_SCHEMES,
        "variance_scaling",
        {"scale": 2.0, "mode": "fan_in", "distribution": "untruncated_normal"},
    )
    return SimConfig(
        init=init, activation=Scheme("relu"), depth=DEPTH, width=width, input_dim=width,
        sampler=sampler,
    )  # fmt: skip


def rate(cfg: SimConfig, trials: int, seconds: float) -> float:
    """Trials per second of simulate_chunk on chunks of `trials` trials."""
    from worker.sim import simulate_chunk

    start_index = 0

    def chunk() -> None:
        nonlocal start_index
        simulate_chunk(
            ChunkTask(config=cfg, seed_key=7, chunk_index=0, trial_start=start_index,
                      n_trials=trials)
        )  # fmt: skip
        start_index += trials

    chunk()  # trace
    done, start = 0, time.perf_counter()
    while True:
        chunk()
        done += trials
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="minimum time per measurement")
    args = parser.parse_args()
    from worker.sim import configure_runtime

    configure_runtime(1)
    print(f"depth {DEPTH}, batch 1, relu, He Gaussian weights; 1 TF thread; trials/s")
    print(f"{'width':>6} {'dense':>10} {'conditional':>12} {'ratio':>8}")
    for width in WIDTHS:
        dense_cfg = config(width, "dense")
        need = trial_bytes(dense_cfg)
        dense: float | None = None
        note = ""
        if need > DEFAULT_BUDGET:
            note = f"dense skipped: one trial needs {format_bytes(need)} > budget 1.0 GiB"
        else:
            try:
                dense = rate(dense_cfg, max(1, min(50, DEFAULT_BUDGET // need // 2)), args.seconds)
            except MemoryBudgetError as exc:
                note = f"dense skipped: {exc}"
        cond = rate(config(width, "conditional"), 500, args.seconds)
        ratio = f"{cond / dense:>7.0f}x" if dense else "      —"
        dense_text = f"{dense:>10.2f}" if dense else f"{'—':>10}"
        print(f"{width:>6} {dense_text} {cond:>12.1f} {ratio}  {note}")


if __name__ == "__main__":
    main()

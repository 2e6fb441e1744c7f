"""`validate`'s wall-time estimate against the actual wall time of `initsweep run`, per example.

For every spec in examples/ (or the ones named): the estimate `initsweep validate` prints for
this machine's worker count, then the wall time of `initsweep run SPEC --db FRESH --quiet` in a
fresh process (start-up, TensorFlow import, graph traces, simulation, saves and aggregation all
included), and their ratio. Exits 1 when a ratio is outside [1/2, 2].

`--calibrate` instead measures the constants of `scheduler.estimate.WallModel` on this machine
(worker start-up, graph traces per sampler, per-call and per-layer costs, draw and matmul
rates per weight family) in one warm process, and prints them as Python to paste into the
model. Run it on an otherwise idle machine.

    python benchmarks/bench_estimate.py                 # every example: ~6 minutes on 2 cores
    python benchmarks/bench_estimate.py examples/quick.yaml
    python benchmarks/bench_estimate.py --calibrate     # ~1 minute
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scheduler.estimate import DEFAULT_WALL_MODEL, wall_estimate  # noqa: E402
from scheduler.sweeps import plan_spec  # noqa: E402
from worker.contract import INIT_SCHEMES, ChunkTask, Scheme, SimConfig, canonical_scheme  # noqa: E402
from worker.pool import default_workers  # noqa: E402

CLI = [sys.executable, "-m", "scheduler.cli"]


def actual_wall(spec: Path, workers: int) -> float:
    """Seconds of `initsweep run SPEC` into a fresh SQLite file, from process start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")
        start = time.perf_counter()
        subprocess.run(
            [*CLI, "run", str(spec), "--db", db, "--quiet", "--workers", str(workers)],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
        return time.perf_counter() - start


def compare(specs: list[Path], workers: int) -> int:
    """Print estimate vs actual per spec; 1 if any ratio is outside [1/2, 2]."""
    print(f"{'spec':<28} {'estimate':>9} {'actual':>9} {'actual/estimate':>16}")
    worst = 1.0
    for spec in specs:
        est = wall_estimate(plan_spec(str(spec)), workers=workers).seconds
        act = actual_wall(spec, workers)
        ratio = act / est
        worst = max(worst, ratio, 1 / ratio)
        print(f"{spec.name:<28} {est:>8.1f}s {act:>8.1f}s {ratio:>16.2f}", flush=True)
    print(f"worst factor {worst:.2f} (target: within 2x), {workers} worker processes")
    return 0 if worst <= 2.0 else 1


# --- calibration -----------------------------------------------------------------------------


def _scheme(name: str, **params: float | str) -> Scheme:
    return canonical_scheme(INIT_SCHEMES, name, params)


def _config(
    init: Scheme, *, depth: int, width: int, sampler: str = "dense", dtype: str = "float32"
) -> SimConfig:
    return SimConfig(
        init=init, activation=Scheme("tanh"), depth=depth, width=width, input_dim=width,
        sampler=sampler, dtype=dtype,
    )  # fmt: skip


class _Chunks:
    """Fresh trial ranges of one configuration, run through `simulate_chunk`."""

    def __init__(self, config: SimConfig) -> None:
        self.config, self.next_trial = config, 0

    def run(self, n_trials: int) -> float:
        from worker.sim import simulate_chunk

        start = time.perf_counter()
        simulate_chunk(
            ChunkTask(config=self.config, seed_key=11, chunk_index=0,
                      trial_start=self.next_trial, n_trials=n_trials)
        )  # fmt: skip
        self.next_trial += n_trials
        return time.perf_counter() - start


def _median(fn: Callable[[], float], repeats: int = 5) -> float:
    return statistics.median(fn() for _ in range(repeats))


def _steady(chunks: _Chunks, n_trials: int, repeats: int = 5) -> float:
    """Median seconds of a traced configuration's chunk of `n_trials`."""
    return statistics.median(chunks.run(n_trials) for _ in range(repeats))


def _startup(workers: int) -> float:
    """Wall seconds for `workers` processes that each import the core and configure TF."""
    code = "import worker.sim.runtime as r; r.configure_runtime(); import worker.sim"
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT) for _ in range(workers)]
    for p in procs:
        p.wait()
    return time.perf_counter() - start


def calibrate() -> None:
    """Measure the WallModel constants on this machine and print them."""
    from scheduler.estimate import flops_per_trial, random_numbers_per_trial

    out: dict[str, float] = {}
    out["worker_start_s"] = _median(lambda: _startup(1), 3)
    out["cli_start_s"] = _median(lambda: _cli_start(), 3)
    normal = _scheme("normal", std=0.1)
    for sampler in ("dense", "conditional"):
        traces = []
        for width in (8, 64):
            chunks = _Chunks(_config(normal, depth=3, width=width, sampler=sampler))
            first = chunks.run(4)
            traces.append(first - _steady(chunks, 4))
        out[f"trace_s[{sampler}]"] = statistics.mean(traces)
        shallow = _Chunks(_config(normal, depth=1, width=8, sampler=sampler))
        deep = _Chunks(_config(normal, depth=65, width=8, sampler=sampler))
        shallow.run(1), deep.run(1)
        t1, t65 = _steady(shallow, 1), _steady(deep, 1)
        out[f"layer_s[{sampler}]"] = (t65 - t1) / 64
        out[f"call_s[{sampler}]"] = max(t1 - out[f"layer_s[{sampler}]"], 0.0)
    ortho = _Chunks(_config(_scheme("orthogonal"), depth=3, width=8))
    out["trace_s[orthogonal]"] = ortho.run(4) - _steady(ortho, 4)
    for family, scheme in (
        ("normal", normal),
        ("truncated", _scheme("glorot_normal")),
        ("uniform", _scheme("glorot_uniform")),
        ("orthogonal", _scheme("orthogonal")),
    ):
        cfg = _config(scheme, depth=9, width=256)
        chunks = _Chunks(cfg)
        chunks.run(2)
        per_trial = (_steady(chunks, 8, 3) - out["layer_s[dense]"] * cfg.depth) / 8
        if family == "orthogonal":  # the kernel draws are normals; the rest is QR
            qr = per_trial - random_numbers_per_trial(cfg) * out["draw_s[normal]"]
            out["flop_s"] = qr / flops_per_trial(cfg)
        else:
            out[f"draw_s[{family}]"] = per_trial / random_numbers_per_trial(cfg)
    cond = _Chunks(_config(normal, depth=9, width=4096, sampler="conditional"))
    cond.run(2)
    per_trial = _steady(cond, 64, 3) / 64
    out["draw_s[conditional]"] = per_trial / random_numbers_per_trial(cond.config)
    for dtype in ("float64", "float16", "bfloat16"):
        base = _Chunks(_config(normal, depth=9, width=128))
        other = _Chunks(_config(normal, depth=9, width=128, dtype=dtype))
        base.run(2), other.run(2)
        out[f"dtype_factor[{dtype}]"] = _steady(other, 8, 3) / _steady(base, 8, 3)
    for key, value in out.items():
        print(f"{key:<36} {value:.4g}")


def _cli_start() -> float:
    start = time.perf_counter()
    subprocess.run([*CLI, "--version"], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", type=Path, help="specs (default: examples/*.yaml)")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--calibrate", action="store_true", help="measure the model's constants")
    args = parser.parse_args()
    if args.calibrate:
        calibrate()
        return 0
    print(f"model: {DEFAULT_WALL_MODEL.machine}")
    return compare(args.specs or sorted((ROOT / "examples").glob("*.yaml")), args.workers)


if __name__ == "__main__":
    sys.exit(main())

"""Many small configurations: `initsweep run` against the marginal compute of the same trials.

A phase-diagram sweep (tanh and relu, a sigma_w x sigma_b grid, several depths, width 64,
W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2), dense sampler) is

  run       recorded and run end to end by `initsweep run SPEC -w WORKERS` in a fresh process
            (spawn, TensorFlow import, traces, claims, saves, aggregation, all timed by wall
            clock), every process appending its graph traces to $INITSWEEP_TRACE_LOG;
  marginal  computed again, chunk by chunk (`simulate_chunk` of the same plan's chunks), in this
            one process after one chunk of each graph shape has warmed it up: the compute a
            warm process spends on these trials and nothing else.

Printed: both times, their ratio (target: run on 2 processes within 1.3 x the marginal compute
of one), the core time the run recorded (`sum(chunks.duration_s)`), the chunks and tasks
(`scheduler.chunking.group_tasks`), and the graph traces per process (target: at most one per
shape and process).

    python benchmarks/bench_many.py                                  # 50 x 20 x 5 x 2 = 10,000
    python benchmarks/bench_many.py --sigma-w 10 --sigma-b 5         # 500 configurations

`--bulk N` measures the bookkeeping of a sweep of N configurations instead (`benchmarks/bulk.py`:
validate, record, a reconciler pass, one configuration's results, full exports; on SQLite and
on a throwaway PostgreSQL cluster), with synthetic statistics in place of the compute:

    python benchmarks/bench_many.py --bulk 100000
"""

from __future__ import annotations

import argparse
import collections
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from scheduler.chunking import (  # noqa: E402
    chunk_seconds,
    group_tasks,
    plan_sweep,
    spread_task_seconds,
)
from scheduler.estimate import nominal_seconds_per_trial  # noqa: E402
from scheduler.spec import load_spec  # noqa: E402
from worker.contract import ChunkTask  # noqa: E402


def spec_text(n_w: int, n_b: int, depths: list[int], width: int, trials: int) -> str:
    """The sweep: sigma_w in [0.5, 3.0], sigma_b in [0.05, 1.0], evenly spaced."""
    sigma_w = [round(0.5 + 2.5 * i / max(1, n_w - 1), 6) for i in range(n_w)]
    sigma_b = [round(0.05 + 0.95 * i / max(1, n_b - 1), 6) for i in range(n_b)]
    return (
        "name: bench-many\n"
        "seed: 3\n"
        f"trials: {trials}\n"
        "grid:\n"
        "  activation: [tanh, relu]\n"
        f"  sigma_w: {sigma_w}\n"
        f"  sigma_b: {sigma_b}\n"
        f"  depth: {depths}\n"
        "fixed:\n"
        f"  width: {width}\n"
        "  sampler: dense\n"
    )


def run_cli(spec: Path, db: Path, workers: int, trace_log: Path) -> float:
    """Wall seconds of `initsweep run SPEC` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INITSWEEP_TRACE_LOG": str(trace_log)}
    started = time.perf_counter()
    command = ["run", str(spec), "--db", str(db), "-w", str(workers), "-q"]
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"initsweep run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def marginal(spec: Path) -> tuple[float, int, int]:
    """(seconds, traces, shapes) of the plan's chunks in this process, warmed up per shape."""
    from worker.sim import configure_runtime, simulate_chunk
    from worker.sim.graph import trace_count
    from worker.sim.network import split

    configure_runtime(1)  # as a pool process
    plan = plan_sweep(load_spec(str(spec)))
    tasks = [
        ChunkTask(cp.config, cp.seed_key, c.chunk_index, c.trial_start, c.n_trials)
        for cp in plan.configs
        for c in cp.chunks
    ]
    start = trace_count()
    warm: dict[object, ChunkTask] = {}
    for task in tasks:
        warm.setdefault(split(task.config)[0], task)
    for task in warm.values():
        simulate_chunk(task)
    started = time.perf_counter()
    for task in tasks:
        simulate_chunk(task)
    seconds = time.perf_counter() - started
    return seconds, trace_count() - start, len(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sigma-w", type=int, default=50, help="grid points of sigma_w")
    parser.add_argument("--sigma-b", type=int, default=20, help="grid points of sigma_b")
    parser.add_argument("--depths", default="2,4,6,8,10", help="comma-separated depths")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--bulk", type=int, metavar="N", help="the bookkeeping of N configurations instead"
    )
    parser.add_argument("--skip-validate", action="store_true", help="--bulk: no validate phase")
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="--bulk: comma-separated databases"
    )
    args = parser.parse_args()
    if args.bulk:
        from benchmarks.bulk import bulk

        bulk(args.bulk, validate=not args.skip_validate, backends=args.backends.split(","))
        return
    depths = [int(d) for d in args.depths.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench_many_") as tmp:
        spec = Path(tmp) / "sweep.yaml"
        spec.write_text(spec_text(args.sigma_w, args.sigma_b, depths, args.width, args.trials))
        plan = plan_sweep(load_spec(str(spec)))
        work = [
            (i, chunk_seconds(nominal_seconds_per_trial(cp.config), c.n_trials))
            for i, (cp, c) in enumerate((cp, c) for cp in plan.configs for c in cp.chunks)
        ]
        n_tasks = len(group_tasks(work, spread_task_seconds(sum(s for _, s in work), args.workers)))
        print(
            f"sweep: {len(plan.configs):,} configurations (tanh, relu x {args.sigma_w} sigma_w x "
            f"{args.sigma_b} sigma_b x depths {depths}), width {args.width}, {args.trials} "
            f"trials; {plan.n_chunks:,} chunks in {n_tasks:,} tasks"
        )
        db, trace_log = Path(tmp) / "run.db", Path(tmp) / "traces.log"
        wall = run_cli(spec, db, args.workers, trace_log)
        with sqlite3.connect(db) as conn:
            core = conn.execute("SELECT sum(duration_s) FROM chunks").fetchone()[0] or 0.0
        per_process = collections.Counter(
            line.split(" ", 1)[0] for line in trace_log.read_text().splitlines()
        )
        seconds, traces, shapes = marginal(spec)

    print(
        f"initsweep run, {args.workers} processes: {wall:.1f} s wall "
        f"({plan.n_trials / wall:,.0f} trials/s); core time recorded {core:.1f} s"
    )
    print(
        f"marginal compute, 1 warm process:  {seconds:.1f} s "
        f"({plan.n_trials / seconds:,.0f} trials/s)"
    )
    print(f"ratio run / marginal: {wall / seconds:.2f} (target <= 1.3)")
    print(
        f"graph traces: {shapes} shapes; run: {sum(per_process.values())} in "
        f"{len(per_process)} processes ({', '.join(map(str, sorted(per_process.values())))}); "
        f"marginal process: {traces}"
    )


if __name__ == "__main__":
    main()

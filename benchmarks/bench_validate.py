"""`initsweep validate` of a large phase-diagram spec: seconds, per phase, in fresh processes.

The spec is `bench_many.spec_text` (tanh and relu x sigma_w x sigma_b x depths, width 16,
sampler dense by default; `--sampler auto` lets exactness pick it), written to a temporary
file. Each checkout (this one, and every `--against DIR`, e.g. an older commit unpacked with
`git archive REV | tar -x -C DIR`) runs, in a fresh interpreter each: the `initsweep validate`
command end to end (wall clock), then the same steps timed one by one (imports, parse and
expansion, plan, estimate, wall estimate). The printed summary lines of the checkouts are
compared: they must be the same text.

    python benchmarks/bench_validate.py                              # 2 x 50 x 100 x 10 = 100,000
    python benchmarks/bench_validate.py --sigma-b 10 --against /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_many import spec_text  # noqa: E402

PHASES = """
import json, sys, time
t0 = time.perf_counter()
from scheduler.chunking import plan_sweep
from scheduler.estimate import estimate, wall_estimate
from scheduler.spec import load_spec
t = [time.perf_counter()]
spec = load_spec(sys.argv[1]); t.append(time.perf_counter())
plan = plan_sweep(spec); t.append(time.perf_counter())
estimate(plan); t.append(time.perf_counter())
wall_estimate(plan, workers=2); t.append(time.perf_counter())
names = ["imports", "parse+expand", "plan", "estimate", "wall"]
print(json.dumps(dict(zip(names, [t[0] - t0] + [b - a for a, b in zip(t, t[1:])]))))
"""


def timed(root: Path, spec: Path) -> tuple[float, str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "validate", str(spec), "-w", "2"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    phases = subprocess.run(
        [sys.executable, "-c", PHASES, str(spec)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return wall, proc.stdout, json.loads(phases.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma-w", type=int, default=50)
    parser.add_argument("--sigma-b", type=int, default=100)
    parser.add_argument("--depths", default="2,4,6,8,10,12,14,16,18,20")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--sampler", default="dense", help="the spec's fixed sampler")
    parser.add_argument("--against", action="append", default=[], help="another checkout")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    text = spec_text(args.sigma_w, args.sigma_b, depths, args.width, 100)
    text = text.replace("  sampler: dense\n", f"  sampler: {args.sampler}\n")
    n = 2 * args.sigma_w * args.sigma_b * len(depths)
    with tempfile.TemporaryDirectory(prefix="bench_validate_") as tmp:
        spec = Path(tmp) / "sweep.yaml"
        spec.write_text(text)
        print(f"spec: {n:,} configurations, sampler {args.sampler}")
        outputs = {}
        for root in [ROOT, *map(Path, args.against)]:
            wall, out, phases = timed(root, spec)
            outputs[str(root)] = out.replace(str(spec), "SPEC")
            parts = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            print(f"{root}: initsweep validate {wall:.1f} s ({parts} s)")
        same = len(set(outputs.values())) == 1
        print("validate output identical across checkouts" if same else "OUTPUTS DIFFER")
        print(next(iter(outputs.values())).rstrip())


if __name__ == "__main__":
    main()

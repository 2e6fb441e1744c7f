"""`initsweep results --theory` on a large finished sweep: configurations/s, end to end.

The sweep is `benchmarks/bench_many.py`'s (tanh and relu x sigma_w x sigma_b x depths, width
64, batch 1, dense; by default 50 x 20 x 5 x 2 = 10,000 configurations), expanded from its spec
by `scheduler.spec` and `scheduler.chunking.plan_sweep` and recorded by
`scheduler.store.create_sweep`; its aggregated rows are synthetic (`tests.db.builders.
layer_records`, a few record sets per depth, stored through `worker.persist.record_values`, as
`benchmarks/bench_export.py` does), every chunk and configuration marked done. Theory reads
only the configurations, so synthetic statistics cost it what real ones would.

Then, each in a fresh process (imports before the clock):

  results   `initsweep results SWEEP --format F -o FILE` without theory (the read and write);
  theory    the same with `--theory`: the figure the issue's target (< 10 s at 10,000) is for;
  step      the theory step alone: `scheduler.analysis.compare.with_theory` on the batches
            of records `scheduler.query.result_stream` reads (with the devices' predictor),
            as the streamed CLI calls it.

    python benchmarks/bench_theory.py                          # 10,000 configurations
    python benchmarks/bench_theory.py --sigma-w 5 --sigma-b 4  # 200 (a slow theory's scale)
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sqlalchemy as sa  # noqa: E402
from bench_many import spec_text  # noqa: E402

from models import Chunk, Configuration, LayerStat, utcnow  # noqa: E402
from models.db import make_engine, make_session_factory, session_scope, upgrade  # noqa: E402
from scheduler.chunking import plan_sweep  # noqa: E402
from scheduler.spec import load_spec  # noqa: E402
from scheduler.store import create_sweep, set_sweep_status, sweep_config_refs  # noqa: E402
from tests.db.builders import layer_records  # noqa: E402
from worker.contract import ChunkTask  # noqa: E402
from worker.persist import quantile_values, record_values  # noqa: E402
from worker.stat_columns import write_packs  # noqa: E402

TEMPLATES = 4  # synthetic record sets per depth, cycled over the configurations
INSERT_BATCH = 20_000  # layer_stats rows per INSERT


def build(url: str, spec: Path) -> tuple[int, int, int]:
    """Record the finished sweep of `spec` in `url`: (sweep id, configurations, rows)."""
    plan = plan_sweep(load_spec(str(spec)))
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        sweep_id = create_sweep(session=session, plan=plan)
    templates: dict[int, list[list[dict[str, object]]]] = {}
    for cp in plan.configs:
        depth = cp.config.depth
        if depth not in templates:
            c = cp.chunks[0]
            task = ChunkTask(cp.config, cp.seed_key, c.chunk_index, c.trial_start, c.n_trials)
            templates[depth] = [
                [{**record_values(r), **quantile_values(r)} for r in layer_records(task, salt)]
                for salt in range(TEMPLATES)
            ]
    with session_scope(factory) as session:
        refs = sweep_config_refs(session=session, sweep_id=sweep_id)
    depth_of = {cp.config.config_hash: cp.config.depth for cp in plan.configs}
    n_rows = 0

    def rows() -> object:
        nonlocal n_rows
        for i, ref in enumerate(refs):
            for values in templates[depth_of[ref.config_hash]][i % TEMPLATES]:
                n_rows += 1
                yield {"configuration_id": ref.id, **values}

    stream = iter(rows())  # type: ignore[call-overload]
    with session_scope(factory) as session:
        while batch := list(itertools.islice(stream, INSERT_BATCH)):
            session.execute(sa.insert(LayerStat), batch)
        write_packs(session=session, configuration_ids=[ref.id for ref in refs])  # as aggregation
        session.execute(sa.update(Chunk).values(status="done"))  # a fresh database: all ours
        session.execute(sa.update(Configuration).values(status="done", aggregated_at=utcnow()))
        set_sweep_status(session=session, sweep_id=sweep_id, status="done")
    engine.dispose()
    return sweep_id, len(refs), n_rows


def existing(url: str) -> tuple[int, int, int]:
    """(sweep id, configurations, rows) of the one sweep `build` left in `url` (`--keep`)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        n_configs = conn.execute(sa.select(sa.func.count()).select_from(Configuration)).scalar()
        n_rows = conn.execute(sa.select(sa.func.count()).select_from(LayerStat)).scalar()
    engine.dispose()
    return 1, int(n_configs or 0), int(n_rows or 0)


def results_here(db: str, sweep_id: int, fmt: str, out: str, theory: bool) -> None:
    """In this (fresh) process: the CLI's `results` (after its imports), its seconds as JSON."""
    import pyarrow.parquet  # noqa: F401  (the command's own imports, before the clock)

    import scheduler.analysis.compare
    import scheduler.export
    import scheduler.query  # noqa: F401
    from scheduler.cli.results import results

    argv = [str(sweep_id), "--db", db, "--format", fmt, "-o", out] + (["--theory"] * theory)
    start, cpu = time.perf_counter(), time.process_time()
    results.main(argv, standalone_mode=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu}))


def step_here(db: str, sweep_id: int) -> None:
    """In this (fresh) process: read the records in the CLI's batches (`result_stream`), then
    time `with_theory` alone on each batch, as the streamed `results --theory` calls it."""
    from models.db import session_scope as scope
    from scheduler.activity import config_devices
    from scheduler.analysis.compare import device_predictor, with_theory
    from scheduler.database import open_database
    from scheduler.query import result_stream

    with open_database(db, read_only=True) as factory, scope(factory) as session:
        start = time.perf_counter()
        batches = list(result_stream(session=session, sweep_id=sweep_id))
        devices = config_devices(session=session, sweep_id=sweep_id)
        read = time.perf_counter() - start
    predictor = device_predictor(devices)
    start, cpu = time.perf_counter(), time.process_time()
    rows = sum(len(with_theory(batch, predictor=predictor)) for batch in batches)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "read": read, "rows": rows}))


def fresh(*args: str) -> dict[str, float]:
    """One of the `--here` modes in a fresh process: its JSON line."""
    proc = subprocess.run(
        [sys.executable, __file__, "--here", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma-w", type=int, default=50, help="grid points of sigma_w")
    parser.add_argument("--sigma-b", type=int, default=20, help="grid points of sigma_b")
    parser.add_argument("--depths", default="2,4,6,8,10", help="comma-separated depths")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--format", default="parquet", help="parquet, jsonl, csv or json")
    parser.add_argument("--skip", default="", help="comma-separated: results, theory, step")
    parser.add_argument(
        "--keep", type=Path, default=None, help="build the sweep in this file, or reuse it there"
    )
    parser.add_argument("--here", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.here:
        mode, db, sweep, *rest = args.here
        if mode == "step":
            step_here(db, int(sweep))
        else:
            results_here(db, int(sweep), rest[0], rest[1], theory=mode == "theory")
        return

    depths = [int(d) for d in args.depths.split(",")]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    with tempfile.TemporaryDirectory(prefix="bench-theory-") as tmp:
        spec = Path(tmp) / "sweep.yaml"
        spec.write_text(spec_text(args.sigma_w, args.sigma_b, depths, args.width, 100))
        path = args.keep if args.keep is not None else Path(tmp) / "sweep.db"
        url = f"sqlite:///{path}"
        start = time.perf_counter()
        if path.exists():
            sweep_id, n_configs, n_rows = existing(url)
            verb = "reused"
        else:
            upgrade(url)
            sweep_id, n_configs, n_rows = build(url, spec)
            verb = "built"
        print(
            f"{verb} sweep {sweep_id}: {n_configs:,} configurations (tanh, relu x "
            f"{args.sigma_w} sigma_w x {args.sigma_b} sigma_b x depths {depths}, width "
            f"{args.width}, batch 1), {n_rows:,} rows in {time.perf_counter() - start:.1f} s"
        )
        out = str(Path(tmp) / f"out.{args.format}")
        for mode in ("results", "theory"):
            if mode in skip:
                continue
            figures = fresh(mode, str(path), str(sweep_id), args.format, out)
            seconds = figures["seconds"]
            label = "results" if mode == "results" else "results --theory"
            print(
                f"{label:>17} ({args.format}): {seconds:7.2f} s = "
                f"{n_configs / seconds:9,.0f} configurations/s "
                f"({seconds / n_configs * 1e3:.3f} ms each; CPU {figures['cpu']:.2f} s)"
            )
        if "step" not in skip:
            figures = fresh("step", str(path), str(sweep_id))
            seconds = figures["seconds"]
            print(
                f"{'with_theory alone':>17}: {seconds:7.2f} s = "
                f"{n_configs / seconds:9,.0f} configurations/s "
                f"({seconds / n_configs * 1e3:.3f} ms each; CPU {figures['cpu']:.2f} s; "
                f"{figures['rows']:,} records, "
                f"read in {figures['read']:.2f} s)"
            )


if __name__ == "__main__":
    main()

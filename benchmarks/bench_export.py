"""Full export of a large sweep: rows/s and peak memory of `results --format parquet` (and jsonl).

Builds a finished phase-diagram-like sweep (tanh and relu, a sigma_w x sigma_b grid, one depth):
the sweep, configurations and chunks through `scheduler.store.create_sweep`, the aggregated
rows from the synthetic records of the database tests (`tests.db.builders.layer_records`, no
TensorFlow) through `worker.persist.record_values`, and their packs (`worker.stat_columns
.write_packs`, as aggregation writes them). Then each export runs in a fresh process:
the `initsweep results SWEEP --format F -o FILE` command, called there after its imports, so
the export's own seconds and the process's peak RSS (`peak_rss`: VmHWM on Linux, else
`resource.getrusage`; the imports' share printed beside it) are measured. On SQLite, and with `--postgresql` on a
throwaway PostgreSQL cluster. `--formats parquet,jsonl,json` adds the streamed JSON lines and
the unstreamed `--format json` for contrast (its memory grows with the sweep).

    python benchmarks/bench_export.py                      # 4,000 configurations x 91 rows
    python benchmarks/bench_export.py --configs 20000 --postgresql --formats parquet,jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from models import Chunk, Configuration, LayerStat, utcnow  # noqa: E402
from models.db import make_engine, make_session_factory, session_scope, upgrade  # noqa: E402
from scheduler.store import (  # noqa: E402
    chunk_ids,
    create_sweep,
    set_sweep_status,
    sweep_config_refs,
)
from tests.db.builders import config_plan, layer_records, sweep_plan  # noqa: E402
from tests.pg import find_bindir, postgres_cluster  # noqa: E402
from worker.contract import (  # noqa: E402
    ACTIVATIONS,
    BIAS_SCHEMES,
    INIT_SCHEMES,
    SimConfig,
    canonical_scheme,
)
from worker.persist import load_task, quantile_values, record_values  # noqa: E402
from worker.stat_columns import write_packs  # noqa: E402

TEMPLATES = 16  # distinct synthetic record sets, cycled over the configurations
INSERT_BATCH = 20_000  # layer_stats rows per INSERT


def build(url: str, n_configs: int, depth: int, width: int, trials: int) -> int:
    """A finished sweep of `n_configs` configurations of `1 + 3 * depth` rows each.

    The sweep, its configurations and chunks are recorded by `scheduler.store.create_sweep`;
    each configuration's aggregated rows are one of `TEMPLATES` synthetic record sets
    (`tests.db.builders.layer_records`, stored through `worker.persist.record_values`, the one
    LayerRecord -> row mapping, with the quantiles aggregation stores), written in bulk, and every chunk and configuration is marked
    done, as a finished sweep leaves them (running 10^4 chunks through `save_outcome` and
    `aggregate_sweep` would take minutes here, and is not what is measured).
    """
    n_b = max(1, round(math.sqrt(n_configs / 2 / 2.5)))
    n_w = math.ceil(n_configs / 2 / n_b)
    plans = []
    for i in range(n_configs):
        activation, k = ("tanh", "relu")[i % 2], i // 2
        sigma_w, sigma_b = 0.5 + 2.5 * (k // n_b) / n_w, 0.5 * (k % n_b) / n_b
        config = SimConfig(
            init=canonical_scheme(
                INIT_SCHEMES,
                "variance_scaling",
                {"scale": sigma_w**2, "distribution": "untruncated_normal"},
            ),
            activation=canonical_scheme(ACTIVATIONS, activation, {}),
            bias=canonical_scheme(BIAS_SCHEMES, "normal", {"std": sigma_b})
            if sigma_b
            else canonical_scheme(BIAS_SCHEMES, "zeros", {}),
            depth=depth,
            width=width,
            input_dim=width,
        )
        axes = {"activation": activation, "sigma_w": sigma_w, "sigma_b": sigma_b}
        plans.append(config_plan(config, trials=trials, chunk_trials=trials, axes=axes))
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans, name="bench-export"))
    with session_scope(factory) as session:
        task = load_task(session=session, chunk_id=chunk_ids(session=session, sweep_id=sweep_id)[0])
        config_ids = [info.id for info in sweep_config_refs(session=session, sweep_id=sweep_id)]
    templates = [
        [{**record_values(r), **quantile_values(r)} for r in layer_records(task, salt)]
        for salt in range(TEMPLATES)
    ]
    rows = (
        {"configuration_id": cid, **values}
        for i, cid in enumerate(config_ids)
        for values in templates[i % TEMPLATES]
    )
    with session_scope(factory) as session:
        while batch := list(itertools.islice(rows, INSERT_BATCH)):
            session.execute(sa.insert(LayerStat), batch)
        write_packs(session=session, configuration_ids=config_ids)  # as aggregation does
        session.execute(sa.update(Chunk).values(status="done"))  # a fresh database: all ours
        session.execute(sa.update(Configuration).values(status="done", aggregated_at=utcnow()))
        set_sweep_status(session=session, sweep_id=sweep_id, status="done")
    if engine.dialect.name == "postgresql":  # autovacuum's analyze, which a real run triggers
        with engine.connect() as connection:
            connection.execute(sa.text("ANALYZE"))
            connection.commit()
    engine.dispose()
    return sweep_id


def peak_rss() -> int:
    """This process's peak resident set size in bytes: VmHWM where Linux has it, else
    `getrusage`. (On Linux `ru_maxrss` survives fork and exec: a child of this large builder
    would report the builder's peak; VmHWM belongs to the new address space.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def export_here(db: str, sweep_id: int, fmt: str, out: str) -> None:
    """In this (fresh) process: the CLI's export, then its figures as one JSON line."""
    import pyarrow.parquet  # noqa: F401  (the command's own imports, before the clock)

    import scheduler.export
    import scheduler.query  # noqa: F401
    from scheduler.cli.results import results

    before = peak_rss()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        results.main([str(sweep_id), "--db", db, "--format", fmt, "-o", out], standalone_mode=False)
    finally:
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        json.dumps(
            {"seconds": seconds, "cpu_seconds": cpu, "peak_rss": peak_rss(), "imports_rss": before}
        )
    )


def export(db: str, sweep_id: int, fmt: str, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--export-only", db, str(sweep_id), fmt, str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["bytes"] = out.stat().st_size
    return figures


def count_rows(fmt: str, out: Path) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(out).metadata.num_rows)
    if fmt == "json":
        return len(json.loads(out.read_text()))
    with out.open() as f:
        return sum(1 for _ in f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=4000)
    parser.add_argument("--depth", type=int, default=30, help="rows per config: 1 + 3 * depth")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--trials", type=int, default=8, help="synthetic trials per config")
    parser.add_argument(
        "--formats", default="parquet", help="comma-separated: parquet, jsonl, json"
    )
    parser.add_argument(
        "--postgresql", action="store_true", help="also on a throwaway PostgreSQL cluster"
    )
    parser.add_argument("--export-only", nargs=4, metavar=("DB", "SWEEP", "FORMAT", "OUT"))
    args = parser.parse_args()
    if args.export_only:
        db, sweep, fmt, out = args.export_only
        export_here(db, int(sweep), fmt, out)
        return

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        sqlite = Path(tmp) / "sweep.db"
        run(f"sqlite:///{sqlite}", str(sqlite), Path(tmp), args)
        if args.postgresql:
            bindir = find_bindir()
            if bindir is None:
                raise SystemExit("--postgresql: no PostgreSQL server binaries found")
            with postgres_cluster(bindir) as url:
                run(url, url, Path(tmp), args)


def run(url: str, db: str, tmp: Path, args: argparse.Namespace) -> None:
    """Build the sweep in the database `url` (`db`: what --db gets), then time each export."""
    upgrade(url)
    start = time.perf_counter()
    sweep_id = build(url, args.configs, args.depth, args.width, args.trials)
    built = time.perf_counter() - start
    n_rows = args.configs * (1 + 3 * args.depth)
    backend = url.split(":", 1)[0].split("+", 1)[0]
    print(
        f"{backend}: built sweep {sweep_id}: {args.configs:,} configurations x "
        f"{1 + 3 * args.depth} rows = {n_rows:,} rows in {built:.1f} s"
    )
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    for fmt in formats:
        out = tmp / f"out.{fmt}"
        figures = export(db, sweep_id, fmt, out)
        rows = count_rows(fmt, out)
        assert rows == n_rows, (fmt, rows, n_rows)
        print(
            f"{fmt:>8}: {rows:,} rows in {figures['seconds']:.2f} s = "
            f"{rows / figures['seconds']:,.0f} rows/s ({figures['cpu_seconds']:.2f} s of this "
            "process's CPU), peak RSS "
            f"{figures['peak_rss'] / 2**20:.0f} MiB ({figures['imports_rss'] / 2**20:.0f} MiB "
            f"after imports), file {figures['bytes'] / 2**20:.1f} MiB"
        )
        out.unlink()


if __name__ == "__main__":
    main()

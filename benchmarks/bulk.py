"""The bookkeeping of a very large sweep (`bench_many.py --bulk N`), on SQLite and PostgreSQL.

A sweep of N configurations (tanh and relu x a sigma_w x sigma_b grid x depths 1 and 2, width
16, 2 trials: one chunk each) is

  validate   `initsweep validate SPEC` in a fresh process (target < 10 s; `--skip-validate`);
  plan       `load_spec` + `plan_sweep` in this process (not a target: `record`'s input);
  record     `scheduler.sweeps.record`: the sweep, configurations, links and chunks in one
             transaction, then the aggregation of reused configurations (target < 60 s);
  complete   NOT COMPUTED: the chunks of the first 10%, then 90%, of the configurations (in
             position order) are completed with synthetic statistics (the records of the
             database tests, `tests.db.builders.layer_records`, 16 sets per depth, cycled)
             written in bulk through the persistence mapping (`worker.persist.record_values`
             and `quantile_values`), their chunk_stats and layer_stats rows (with their packs,
             `worker.stat_columns.write_packs`), chunks done (with provenance) and
             configurations aggregated, as workers would leave them; the next 32 chunks are
             marked running with a fresh heartbeat. Running 10^5 chunks for real
             costs about 60 ms each here (a measured 2,000-configuration run of this grid took
             122 s on 2 processes), well over an hour, and is not what is measured.
             On PostgreSQL the step ends with `ANALYZE`, standing in for autovacuum: over the
             hour those chunks would take, its analyze runs after every 10% of the rows
             change, while this step changes them all within seconds (a planner left with
             the statistics of a sweep 10% done walks all 10^5 links where the status index
             finds the few pending chunks: 0.65 s a steady pass at 90% instead of 0.16 s);
  reconcile  `scheduler.reconcile.reconcile_once` over every active sweep with a sender that only
             counts, once with 10% and once with 90% of the chunks done (target < 1 s, and no
             growth with the chunks done);
  one config `scheduler.query.results` of one configuration (`configs=[hash]`, target
             < 50 ms) and of one `where` filter naming one configuration (not a target: its
             terms are matched against every configuration's reference), in this process,
             engine included, and `initsweep results --where ... --format json` in a fresh
             process (interpreter start-up and imports included);
  export     `initsweep results --format parquet` (and jsonl) of the whole sweep, each in a
             fresh process (`bench_export.export`): rows/s and peak RSS (Parquet: target
             >= 200,000 rows/s and peak < 1 GiB; JSON lines: peak < 1 GiB).
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from benchmarks.bench_export import count_rows, export
from models import Chunk, ChunkStat, Configuration, LayerStat, SweepConfiguration, utcnow
from models.db import make_engine, make_session_factory, session_scope, upgrade
from scheduler.chunking import plan_sweep
from scheduler.plan import SweepPlan
from scheduler.reconcile import ReconcilePolicy, reconcile_once
from scheduler.spec import load_spec
from scheduler.sweeps import record
from tests.db.builders import layer_records
from tests.pg import find_bindir, postgres_cluster
from worker.contract import ChunkTask
from worker.persist import quantile_values, record_values
from worker.stat_columns import write_packs

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = 16
INSERT_BATCH = 20_000
IN_BATCH = 500
RUNNING = 32  # chunks left running (fresh heartbeat) after each completion step
DEPTHS = (1, 2)
WIDTH, TRIALS = 16, 2


def grid(n: int) -> tuple[int, int]:
    """(sigma_w points, sigma_b points) whose product is n / 4 (2 activations x 2 depths)."""
    cells = max(1, n // (2 * len(DEPTHS)))
    n_w = max(d for d in range(1, math.isqrt(cells) + 1) if cells % d == 0)
    return cells // n_w, n_w


def spec_text(n_w: int, n_b: int) -> str:
    """The sweep: sigma_w in [0.5, 3.0], sigma_b in [0.05, 1.0], evenly spaced."""
    sigma_w = [round(0.5 + 2.5 * i / max(1, n_w - 1), 6) for i in range(n_w)]
    sigma_b = [round(0.05 + 0.95 * i / max(1, n_b - 1), 6) for i in range(n_b)]
    return (
        f"name: bench-bulk\nseed: 3\ntrials: {TRIALS}\ngrid:\n  activation: [tanh, relu]\n"
        f"  sigma_w: {sigma_w}\n  sigma_b: {sigma_b}\n  depth: {list(DEPTHS)}\n"
        f"fixed:\n  width: {WIDTH}\n  sampler: dense\n"
    )


def cli(*args: str) -> tuple[float, str]:
    """(wall seconds, stdout) of `initsweep ARGS` in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"initsweep {args[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, proc.stdout


@contextmanager
def timed(label: str, target: str = "") -> Iterator[list[float]]:
    """Print `label: S s` (and the target) once the block ends; the seconds land in the list."""
    out: list[float] = []
    start = time.perf_counter()
    yield out
    out.append(time.perf_counter() - start)
    print(f"  {label}: {out[0]:.2f} s" + (f" ({target})" if target else ""), flush=True)


def templates(plan: SweepPlan) -> dict[int, list[list[dict[str, Any]]]]:
    """depth -> TEMPLATES synthetic record sets, each as (chunk row values, quantile values)."""
    out: dict[int, list[list[dict[str, Any]]]] = {}
    for cp in plan.configs:
        depth = cp.config.depth
        if depth in out:
            continue
        c = cp.chunks[0]
        task = ChunkTask(cp.config, cp.seed_key, c.chunk_index, c.trial_start, c.n_trials)
        out[depth] = [
            [{**record_values(r), **quantile_values(r)} for r in layer_records(task, salt)]
            for salt in range(TEMPLATES)
        ]
    return out


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def complete(
    factory: Callable[[], Session],
    sweep_id: int,
    fraction: float,
    sets: dict[int, list[list[dict[str, Any]]]],
) -> int:
    """Complete the sweep's chunks up to `fraction` of them, in position order (module doc)."""
    quantiles = {
        k for k in next(iter(sets.values()))[0][0] if k.endswith(("_q05", "_median", "_q95"))
    }
    now = utcnow()
    with session_scope(factory) as session:
        rows = session.execute(
            sa.select(Chunk.id, Chunk.configuration_id, Configuration.depth, Chunk.status)
            .join(Configuration, Configuration.id == Chunk.configuration_id)
            .join(SweepConfiguration, SweepConfiguration.configuration_id == Chunk.configuration_id)
            .where(SweepConfiguration.sweep_id == sweep_id)
            .order_by(SweepConfiguration.position, Chunk.chunk_index)
        ).all()
        assert len({r.configuration_id for r in rows}) == len(rows), "one chunk per configuration"
        n_done = sum(r.status == "done" for r in rows)
        todo = [r for r in rows if r.status != "done"][: max(0, int(fraction * len(rows)) - n_done)]
        chunk_rows = (
            {"chunk_id": r.id, **{k: v for k, v in values.items() if k not in quantiles}}
            for i, r in enumerate(todo)
            for values in sets[r.depth][i % TEMPLATES]
        )
        layer_rows = (
            {"configuration_id": r.configuration_id, **values}
            for i, r in enumerate(todo)
            for values in sets[r.depth][i % TEMPLATES]
        )
        for table, source in ((ChunkStat, chunk_rows), (LayerStat, layer_rows)):
            batch: list[dict[str, Any]] = []
            for row in source:
                batch.append(row)
                if len(batch) == INSERT_BATCH:
                    session.execute(sa.insert(table), batch)
                    batch = []
            if batch:
                session.execute(sa.insert(table), batch)
        write_packs(session=session, configuration_ids=[r.configuration_id for r in todo])
        for part in _batches(todo, IN_BATCH):
            session.execute(
                sa.update(Chunk)
                .where(Chunk.id.in_([r.id for r in part]))
                .values(
                    status="done",
                    attempts=1,
                    worker="bench-bulk",
                    tf_version="synthetic",
                    device="/cpu:0",
                    sampler="dense",
                    dtype="float32",
                    started_at=now,
                    finished_at=now,
                    heartbeat_at=now,
                    duration_s=0.03,
                )
                .execution_options(synchronize_session=False)
            )
            session.execute(
                sa.update(Configuration)
                .where(Configuration.id.in_([r.configuration_id for r in part]))
                .values(status="done", aggregated_at=now)
                .execution_options(synchronize_session=False)
            )
        left = [r for r in rows if r.status != "done"][len(todo) : len(todo) + RUNNING]
        session.execute(
            sa.update(Chunk)
            .where(Chunk.id.in_([r.id for r in left]))
            .values(
                status="running", attempts=1, worker="bench-bulk", started_at=now, heartbeat_at=now
            )
            .execution_options(synchronize_session=False)
        )
    return n_done + len(todo)


def reconcile(factory: Callable[[], Session], label: str) -> None:
    """Two passes of the reconciler (the first after a change of state, then a steady one)."""
    sent: list[int] = []

    def send(chunk_ids: Sequence[int], queue: str) -> None:
        sent.extend(chunk_ids)

    for attempt in ("first", "second"):
        with timed(f"reconcile pass, {label}, {attempt}", "target < 1 s") as t:
            report = reconcile_once(factory, send, ReconcilePolicy())
        del t
        print(
            f"    sent {report.sent:,} chunks in {report.tasks} tasks, stale {report.stale}, "
            f"aggregated {report.aggregated}"
        )


def one_config(url: str, sweep_id: int, factory: Callable[[], Session]) -> None:
    """Results of one configuration: by hash, by a where filter, and by the CLI."""
    import pandas  # noqa: F401  (what results() imports, before the clock)

    from scheduler.query import results

    with session_scope(factory) as session:
        n = session.scalar(sa.select(sa.func.count()).select_from(SweepConfiguration)) or 0
        config_hash, axes = session.execute(
            sa.select(Configuration.config_hash, SweepConfiguration.axes_json)
            .join(SweepConfiguration, SweepConfiguration.configuration_id == Configuration.id)
            .where(SweepConfiguration.sweep_id == sweep_id, SweepConfiguration.position == n // 3)
        ).one()
    import json

    ax = json.loads(axes)
    where = " ".join(f"{k}={ax[k]}" for k in ("activation", "sigma_w", "sigma_b", "depth"))
    for label, kwargs, target in (
        ("configs=[hash]", {"configs": [config_hash]}, "target < 50 ms"),
        (f"where={where!r}", {"where": where}, "not a target: the terms read every reference"),
    ):
        seconds = []
        for _ in range(5):
            start = time.perf_counter()
            frame = results(sweep_id, db=url, **kwargs)
            seconds.append(time.perf_counter() - start)
        print(
            f"  results({label}): {len(frame)} rows, first {seconds[0] * 1e3:.0f} ms, median "
            f"{statistics.median(seconds) * 1e3:.0f} ms ({target})"
        )
    wall, out = cli("results", str(sweep_id), "--db", url, "--where", where, "--format", "json")
    print(
        f"  initsweep results --where ... --format json, fresh process: {wall:.2f} s, "
        f"{len(json.loads(out))} rows (interpreter and imports included)"
    )


def on_backend(url: str, db: str, plan: SweepPlan, tmp: Path) -> None:
    """Every phase after `plan` on the database at `url` (`db`: what --db gets)."""
    backend = url.split(":", 1)[0].split("+", 1)[0]
    print(f"{backend}:", flush=True)
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with timed("record", "target < 60 s"):
        sweep_id = record(factory, plan)
    sets = templates(plan)
    for fraction in (0.1, 0.9):
        with timed(f"complete {fraction:.0%} of the chunks (synthetic, bulk; not a target)"):
            done = complete(factory, sweep_id, fraction, sets)
        if backend == "postgresql":  # autovacuum's analyze, which real completions trigger
            with engine.connect() as connection:
                connection.execute(sa.text("ANALYZE"))
                connection.commit()
        reconcile(factory, f"{done:,} of {plan.n_chunks:,} chunks done")
    one_config(url, sweep_id, factory)
    with session_scope(factory) as session:
        n_rows = session.scalar(sa.select(sa.func.count()).select_from(LayerStat)) or 0
    for fmt, target in (
        ("parquet", "target >= 200,000 rows/s, < 1024 MiB"),
        ("jsonl", "target < 1024 MiB; not a rate target"),
    ):
        out = tmp / f"out.{fmt}"
        figures = export(db, sweep_id, fmt, out)
        rows = count_rows(fmt, out)
        print(
            f"  export {fmt}: {rows:,} rows ({n_rows:,} aggregated) in {figures['seconds']:.2f} s "
            f"= {rows / figures['seconds']:,.0f} rows/s, peak RSS "
            f"{figures['peak_rss'] / 2**20:.0f} MiB ({figures['imports_rss'] / 2**20:.0f} MiB "
            f"after imports) ({target})",
            flush=True,
        )
        out.unlink()
    engine.dispose()


def bulk(n: int, *, validate: bool, backends: Sequence[str]) -> None:
    """Every phase (module doc) for a sweep of about `n` configurations."""
    n_b, n_w = grid(n)
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp_name:
        tmp = Path(tmp_name)
        spec = tmp / "sweep.yaml"
        spec.write_text(spec_text(n_w, n_b))
        if validate:
            wall, _ = cli("validate", str(spec))
            print(f"validate (fresh process): {wall:.1f} s (target < 10 s)", flush=True)
        start = time.perf_counter()
        plan = plan_sweep(load_spec(str(spec)))
        print(
            f"sweep: {len(plan.configs):,} configurations (tanh, relu x {n_w} sigma_w x {n_b} "
            f"sigma_b x depths {list(DEPTHS)}), width {WIDTH}, {TRIALS} trials, "
            f"{plan.n_chunks:,} chunks; planned in {time.perf_counter() - start:.1f} s here",
            flush=True,
        )
        for backend in backends:
            if backend == "sqlite":
                path = tmp / "bulk.db"
                on_backend(f"sqlite:///{path}", str(path), plan, tmp)
            elif backend == "postgresql":
                bindir = find_bindir()
                if bindir is None:
                    raise SystemExit("postgresql: no PostgreSQL server binaries found")
                with postgres_cluster(bindir) as url:
                    on_backend(url, url, plan, tmp)
            else:
                raise SystemExit(f"--backends: expected sqlite or postgresql. Received: {backend}")

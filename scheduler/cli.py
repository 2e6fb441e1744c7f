"""`initsweep` command line. Errors are translated here, once: one stderr line and an exit code.

Heavy modules (SQLAlchemy, pandas, Celery, matplotlib) are imported inside the commands that need
them and TensorFlow never is, so `initsweep --help` and `initsweep validate` start at once.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from scheduler.errors import DatabaseUnavailableError, InitsweepError, UserError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from scheduler.plan import SweepPlan

DB_OPTION = click.option(
    "--db",
    "db",
    default=None,
    metavar="URL",
    help="SQLAlchemy URL or SQLite file (default: $INITSWEEP_DATABASE_URL or ./initsweep.db).",
)


def _err(message: str) -> None:
    click.echo(f"initsweep: error: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to exit codes (user error 2, failure 1)."""
    try:
        cli.main(args=argv, prog_name="initsweep", standalone_mode=False)
    except InitsweepError as exc:
        _err(str(exc))
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        _err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        _err(exc.format_message())
        sys.exit(2 if isinstance(exc, click.UsageError) else 1)
    except KeyboardInterrupt:
        _err("interrupted; the database holds every chunk saved so far (`initsweep resume`)")
        sys.exit(130)
    sys.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="initsweep")
def cli() -> None:
    """Monte Carlo sweeps of signal and gradient propagation at initialization."""


# --------------------------------------------------------------------------- database edge


@contextmanager
def _database(db: str | None, *, create: bool = True) -> Iterator[sessionmaker[Session]]:
    """A session factory for `db`, schema at head; connection failures become one clear error."""
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import ensure_schema, make_engine, make_session_factory, resolve_url
    from models.errors import StoreError

    url = resolve_url(db)
    try:
        engine = make_engine(url)
        if create:
            ensure_schema(engine)
        else:
            with engine.connect():
                pass
    except (SQLAlchemyError, StoreError, OSError) as exc:
        raise DatabaseUnavailableError(
            f"cannot open database {_redact(url)}: {_first_line(exc)}"
        ) from exc
    try:
        yield make_session_factory(engine)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError(
            f"database {_redact(url)} failed: {_first_line(exc)}"
        ) from exc
    finally:
        engine.dispose()


def _redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- spec commands


def _plan(spec_path: str) -> SweepPlan:
    from scheduler.chunking import plan_sweep
    from scheduler.spec import load_spec

    return plan_sweep(load_spec(spec_path))


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
def validate(spec: str) -> None:
    """Check SPEC and print what it expands to, without touching a database."""
    from scheduler.estimate import estimate

    plan = _plan(spec)
    click.echo(f"{spec}: valid sweep {plan.name!r}")
    for line in estimate(plan).lines():
        click.echo(f"  {line}")


def _record_sweep(db: str | None, plan: SweepPlan) -> tuple[int, str]:
    from models.db import resolve_url, session_scope
    from scheduler.store import create_sweep, set_sweep_status
    from worker.aggregate import aggregate_sweep

    with _database(db) as factory:
        with session_scope(factory) as session:
            sweep_id = create_sweep(session=session, plan=plan)
            set_sweep_status(session=session, sweep_id=sweep_id, status="running")
        with session_scope(factory) as session:
            aggregate_sweep(
                session=session, sweep_id=sweep_id
            )  # configurations reused from earlier sweeps
    return sweep_id, resolve_url(db)


def _run_local(sweep_id: int, db: str | None, workers: int, quiet: bool) -> None:
    from models.db import resolve_url, session_scope
    from scheduler.store import chunk_ids, refresh_sweep_status, reset_chunks
    from worker.pool import run_chunks

    url = resolve_url(db)
    with _database(db) as factory:
        with session_scope(factory) as session:
            reset_chunks(session=session, sweep_id=sweep_id)
            ids = chunk_ids(session=session, sweep_id=sweep_id, statuses=("pending",))
            trials_left = _trials_of(session, ids)
        try:
            if quiet or not ids:
                report = run_chunks(url, ids, workers=workers)
            else:
                report = _run_with_progress(url, ids, workers, trials_left)
        finally:
            with session_scope(factory) as session:
                status = refresh_sweep_status(session=session, sweep_id=sweep_id)
    if quiet:
        click.echo(sweep_id)
        return
    _print_summary(db, sweep_id)
    line = f"sweep {sweep_id}: {status}"
    if report.trials:
        line += (
            f" · {report.saved} chunks, {report.trials} trials in {report.wall_seconds:.1f} s "
            f"({report.trials / max(report.wall_seconds, 1e-9):.0f} trials/s)"
        )
    click.echo(line)
    for cid, error in report.failed.items():
        click.echo(f"  chunk {cid} failed: {error}", err=True)
    if report.failed:
        raise click.exceptions.Exit(1)


def _trials_of(session: Session, ids: list[int]) -> int:
    from sqlalchemy import func, select

    from models.chunk import Chunk

    if not ids:
        return 0
    total = session.scalar(select(func.sum(Chunk.n_trials)).where(Chunk.id.in_(ids)))
    return int(total or 0)


def _run_with_progress(url: str, ids: list[int], workers: int, trials: int) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from worker.pool import run_chunks

    columns = (
        TextColumn("[bold]chunks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("· {task.fields[trials]} trials · {task.fields[rate]} trials/s · ETA"),
        TimeRemainingColumn(),
        TextColumn("· elapsed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("run", total=len(ids), trials=f"0/{trials}", rate="-")
        start = time.perf_counter()
        done_trials = 0

        def on_done(_chunk: int, n: int) -> None:
            nonlocal done_trials
            done_trials += n
            rate = done_trials / max(time.perf_counter() - start, 1e-9)
            progress.update(task, advance=1, trials=f"{done_trials}/{trials}", rate=f"{rate:,.0f}")

        return run_chunks(url, ids, workers=workers, on_done=on_done)


WORKERS_OPTION = click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    default=None,
    help="Local worker processes (default: one per core).",
)
QUIET_OPTION = click.option("-q", "--quiet", is_flag=True, help="Print only the sweep id.")


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@DB_OPTION
@WORKERS_OPTION
@QUIET_OPTION
def run(spec: str, db: str | None, workers: int | None, quiet: bool) -> None:
    """Record SPEC as a sweep and run it here, in local worker processes."""
    from worker.pool import default_workers

    plan = _plan(spec)
    sweep_id, _ = _record_sweep(db, plan)
    if not quiet:
        click.echo(
            f"sweep {sweep_id}: {plan.name!r} · {len(plan.configs)} configurations · "
            f"{plan.n_chunks} chunks · {plan.n_trials} trials"
        )
    _run_local(sweep_id, db, workers or default_workers(), quiet)


@cli.command()
@click.argument("sweep_id", type=int)
@DB_OPTION
@WORKERS_OPTION
@QUIET_OPTION
@click.option(
    "--distributed",
    is_flag=True,
    help="Re-enqueue the missing chunks for Celery workers instead of running them here.",
)
def resume(
    sweep_id: int, db: str | None, workers: int | None, quiet: bool, distributed: bool
) -> None:
    """Run the chunks of SWEEP_ID that are missing (interrupted, failed)."""
    from models.db import session_scope
    from scheduler.store import get_sweep, reset_chunks, set_sweep_status
    from worker.pool import default_workers

    with _database(db) as factory, session_scope(factory) as session:
        get_sweep(session=session, sweep_id=sweep_id)
        if distributed:
            n = reset_chunks(session=session, sweep_id=sweep_id, statuses=("failed",))
            set_sweep_status(session=session, sweep_id=sweep_id, status="running")
    if not distributed:
        _run_local(sweep_id, db, workers or default_workers(), quiet)
        return
    report = _reconcile_pass(db, [sweep_id], _policy(60.0, 900.0, 64))
    click.echo(
        sweep_id if quiet else f"sweep {sweep_id}: {n} failed chunks reset, {report.sent} enqueued"
    )


# --------------------------------------------------------------------------- queries


@cli.command()
@DB_OPTION
def sweeps(db: str | None) -> None:
    """List sweeps."""
    from rich.console import Console
    from rich.table import Table

    from models.db import session_scope
    from scheduler.store import list_sweeps

    with _database(db) as factory, session_scope(factory) as session:
        rows = list_sweeps(session=session)
    table = Table("id", "name", "status", "configs", "chunks done", "trials", "created")
    for s in rows:
        done = s.chunk_counts.get("done", 0)
        table.add_row(
            str(s.id),
            s.name,
            s.status,
            str(s.n_configs),
            f"{done}/{sum(s.chunk_counts.values())}",
            f"{s.trials_done}/{s.trials_total}",
            s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    Console().print(table)


@cli.command()
@click.argument("sweep_id", type=int, required=False)
@DB_OPTION
@click.option("--watch", is_flag=True, help="Refresh every 2 s until the sweep ends.")
def status(sweep_id: int | None, db: str | None, watch: bool) -> None:
    """Progress of SWEEP_ID (or of every sweep) from the database."""
    from rich.console import Console

    from scheduler.progress import status_table

    console = Console()
    with _database(db) as factory:
        while True:
            table, finished = status_table(factory, sweep_id)
            if watch:
                console.clear()
            console.print(table)
            if not watch or finished:
                return
            time.sleep(2.0)


def _parse_where(items: tuple[str, ...]) -> dict[str, str]:
    where: dict[str, str] = {}
    for i, item in enumerate(items):
        if "=" not in item:
            raise UserError(f"--where[{i}]: expected KEY=VALUE. Received: {item!r}")
        key, value = item.split("=", 1)
        where[key.strip()] = value.strip()
    return where


@cli.command()
@click.argument("sweep_id", type=int)
@DB_OPTION
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE", help="Filter rows.")
@click.option("--quantity", type=click.Choice(["preactivation", "activation", "gradient"]))
@click.option("--layer", type=int, default=None, help="Only this layer.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None)
@click.option("--theory", is_flag=True, help="Add mean-field predictions and z-scores.")
def results(
    sweep_id: int,
    db: str | None,
    where: tuple[str, ...],
    quantity: str | None,
    layer: int | None,
    fmt: str,
    output: str | None,
    theory: bool,
) -> None:
    """Aggregated per-layer statistics of SWEEP_ID as a table, CSV or JSON."""
    from models.db import session_scope
    from scheduler.query import render_csv, render_table, result_records

    with _database(db) as factory, session_scope(factory) as session:
        filters: dict[str, Any] = {
            "where": _parse_where(where),
            "quantity": quantity,
            "layer": layer,
        }
        if theory:
            from scheduler.query import theory_records

            records = theory_records(session=session, sweep_id=sweep_id, **filters)
        else:
            records = result_records(session=session, sweep_id=sweep_id, **filters)
    if fmt == "json":
        text = json.dumps(records, indent=1, allow_nan=False) + "\n"
    elif fmt == "csv":
        text = render_csv(records)
    else:
        if output:
            raise UserError("--output: the table format prints to the terminal; use csv or json")
        render_table(records)
        return
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


def _print_summary(db: str | None, sweep_id: int) -> None:
    from models.db import session_scope
    from scheduler.query import render_summary, result_records

    with _database(db) as factory, session_scope(factory) as session:
        records = result_records(session=session, sweep_id=sweep_id)
    render_summary(records)


# --------------------------------------------------------------------------- theory and report


@cli.command()
@click.argument("sweep_id", type=int)
@DB_OPTION
@click.option("--threshold", type=float, default=4.0, show_default=True, help="|z| limit.")
def check(sweep_id: int, db: str | None, threshold: float) -> None:
    """Compare SWEEP_ID with mean-field theory; exit 1 on an unexplained |z| > threshold."""
    from models.db import session_scope
    from scheduler.analysis.compare import check
    from scheduler.query import render_check, theory_records

    with _database(db) as factory, session_scope(factory) as session:
        records = theory_records(session=session, sweep_id=sweep_id)
    report = check(records, threshold)
    render_check(report)
    if not report.ok:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("sweep_id", type=int)
@DB_OPTION
@click.option(
    "--kind",
    type=click.Choice(["layers", "explosion", "phase"]),
    default="layers",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def plot(sweep_id: int, db: str | None, kind: str, output: str) -> None:
    """Plot SWEEP_ID: per-layer std with theory, explosion heatmap or phase diagram."""
    from models.db import session_scope
    from scheduler.analysis.plots import plot as draw
    from scheduler.query import theory_records

    with _database(db) as factory, session_scope(factory) as session:
        records = theory_records(session=session, sweep_id=sweep_id)
    click.echo(str(draw(kind, records, Path(output))))


@cli.command()
@click.argument("sweep_id", type=int)
@DB_OPTION
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default="report.html", show_default=True
)
def report(sweep_id: int, db: str | None, output: str) -> None:
    """Write a self-contained HTML report of SWEEP_ID (spec, provenance, plots, theory)."""
    from models.db import session_scope
    from scheduler.analysis.report import render_report
    from scheduler.query import report_input

    with _database(db) as factory, session_scope(factory) as session:
        data = report_input(session=session, sweep_id=sweep_id)
    html = render_report(data)
    Path(output).write_text(html)
    click.echo(output)


# --------------------------------------------------------------------------- distributed


def _policy(stale_after: float, requeue_after: float, max_in_flight: int) -> Any:
    from scheduler.reconcile import ReconcilePolicy

    return ReconcilePolicy(
        stale_after_s=stale_after, requeue_after_s=requeue_after, max_in_flight=max_in_flight
    )


POLICY_OPTIONS = [
    click.option(
        "--stale-after",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds without heartbeat before a running chunk is presumed lost.",
    ),
    click.option(
        "--requeue-after",
        type=float,
        default=900.0,
        show_default=True,
        help="Seconds before an enqueued, unclaimed chunk is sent again.",
    ),
    click.option(
        "--max-in-flight",
        type=click.IntRange(min=1),
        default=64,
        show_default=True,
        help="Chunks kept enqueued or running at once (bounds the broker queue).",
    ),
]


def _with_policy(f: Any) -> Any:
    for option in reversed(POLICY_OPTIONS):
        f = option(f)
    return f


def _reconcile_pass(db: str | None, sweep_ids: list[int] | None, policy: Any) -> Any:
    from scheduler.reconcile import celery_sender, reconcile_once

    with _database(db) as factory:
        try:
            return reconcile_once(factory, celery_sender(), policy, sweep_ids=sweep_ids)
        except Exception as exc:
            from kombu.exceptions import OperationalError

            if isinstance(exc, OperationalError):
                from worker.celery_app import broker_url

                raise DatabaseUnavailableError(
                    f"cannot reach the broker {_redact(broker_url())}: {_first_line(exc)}"
                ) from exc
            raise


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@DB_OPTION
@QUIET_OPTION
@_with_policy
def submit(
    spec: str,
    db: str | None,
    quiet: bool,
    stale_after: float,
    requeue_after: float,
    max_in_flight: int,
) -> None:
    """Record SPEC and enqueue its first chunks for Celery workers; returns at once.

    `initsweep scheduler` keeps the sweep moving (bounded queue, retries, aggregation).
    """
    plan = _plan(spec)
    sweep_id, _ = _record_sweep(db, plan)
    report = _reconcile_pass(db, [sweep_id], _policy(stale_after, requeue_after, max_in_flight))
    if quiet:
        click.echo(sweep_id)
    else:
        click.echo(
            f"sweep {sweep_id}: {plan.name!r} · {len(plan.configs)} configurations · "
            f"{plan.n_chunks} chunks · {report.sent} enqueued; "
            "run `initsweep scheduler` to keep it moving"
        )


@cli.command("scheduler")
@DB_OPTION
@click.option("--interval", type=float, default=2.0, show_default=True)
@click.option("--sweep", "sweeps_", type=int, multiple=True, help="Only these sweeps.")
@click.option("--until-finished", is_flag=True, help="Exit once the given sweeps have ended.")
@_with_policy
def scheduler_cmd(
    db: str | None,
    interval: float,
    sweeps_: tuple[int, ...],
    until_finished: bool,
    stale_after: float,
    requeue_after: float,
    max_in_flight: int,
) -> None:
    """Long-running reconciler: enqueue, re-enqueue lost or stale chunks, aggregate."""
    import logging

    from scheduler.reconcile import celery_sender, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    log = logging.getLogger("initsweep.scheduler")
    if until_finished and not sweeps_:
        raise UserError("--until-finished: name the sweeps with --sweep ID")

    def on_pass(report: Any) -> None:
        if report.sent or report.stale or report.requeued or report.aggregated:
            log.info(
                "sent %d · stale %d · requeued %d · aggregated %d",
                report.sent,
                report.stale,
                report.requeued,
                report.aggregated,
            )

    with _database(db) as factory:
        serve(
            factory,
            celery_sender(),
            _policy(stale_after, requeue_after, max_in_flight),
            interval_s=interval,
            sweep_ids=list(sweeps_) or None,
            until_finished=until_finished,
            on_pass=on_pass,
        )


@cli.command()
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: one per core; 1 with --gpu).",
)
@click.option(
    "--queues", "-Q", default=None, help="Comma-separated queues (default cpu; gpu with --gpu)."
)
@click.option("--gpu", type=int, default=None, metavar="I", help="Pin this worker to GPU I.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--hostname", "-n", default=None, help="Celery node name.")
def worker(
    concurrency: int | None,
    queues: str | None,
    gpu: int | None,
    loglevel: str,
    hostname: str | None,
) -> None:
    """Start a Celery worker (prefork) that runs chunks from the broker into the database."""
    import os

    from worker.pool import default_workers

    os.environ.setdefault("INITSWEEP_TF_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    from worker.celery_app import app

    argv = [
        "worker",
        f"--concurrency={concurrency or (1 if gpu is not None else default_workers())}",
        f"--queues={queues or ('gpu' if gpu is not None else 'cpu')}",
        f"--loglevel={loglevel}",
        "--pool=prefork",
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


@cli.command()
@click.argument("sweep_id", type=int)
@DB_OPTION
def cancel(sweep_id: int, db: str | None) -> None:
    """Stop scheduling SWEEP_ID; chunks already running finish and are kept."""
    from models.db import session_scope
    from scheduler.store import get_sweep, set_sweep_status

    with _database(db) as factory, session_scope(factory) as session:
        get_sweep(session=session, sweep_id=sweep_id)
        set_sweep_status(session=session, sweep_id=sweep_id, status="cancelled")
    click.echo(f"sweep {sweep_id}: cancelled")


# --------------------------------------------------------------------------- database admin


@cli.group("db")
def db_group() -> None:
    """Database schema (alembic migrations)."""


def _migrate(db: str | None, action: Any, revision: str) -> None:
    """Run an alembic `action` (upgrade or downgrade) to `revision`, errors made readable."""
    from models.db import resolve_url

    url = resolve_url(db)
    try:
        action(url, revision)
    except Exception as exc:
        raise DatabaseUnavailableError(
            f"cannot migrate {_redact(url)}: {_first_line(exc)}"
        ) from exc
    click.echo(f"{_redact(url)}: at {revision}")


@db_group.command("upgrade")
@DB_OPTION
@click.option("--revision", default="head", show_default=True)
def db_upgrade(db: str | None, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from models.db import upgrade

    _migrate(db, upgrade, revision)


@db_group.command("downgrade")
@DB_OPTION
@click.argument("revision")
def db_downgrade(db: str | None, revision: str) -> None:
    """Revert migrations down to REVISION (`base` for an empty database)."""
    from models.db import downgrade

    _migrate(db, downgrade, revision)


@db_group.command("current")
@DB_OPTION
def db_current(db: str | None) -> None:
    """Print the database's migration revision."""
    from models.db import current_revision, make_engine, resolve_url

    url = resolve_url(db)
    try:
        rev = current_revision(make_engine(url))
    except Exception as exc:
        raise DatabaseUnavailableError(f"cannot open {_redact(url)}: {_first_line(exc)}") from exc
    click.echo(rev or "<empty>")


if __name__ == "__main__":
    main()

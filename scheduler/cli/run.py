"""Sweeps run here: validate, run, resume, cancel."""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING, Any

import click

from scheduler.cli.options import DB_OPTION, QUIET_OPTION, SWEEP_ID, WORKERS_OPTION, policy
from scheduler.database import open_database
from scheduler.errors import InterruptedRun

if TYPE_CHECKING:
    from scheduler.sweeps import LocalRun


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@WORKERS_OPTION
def validate(spec: str, workers: int | None) -> None:
    """Check SPEC and print what it expands to, without touching a database.

    The wall estimate is for `initsweep run SPEC` with --workers processes on this machine."""
    from scheduler.estimate import estimate, wall_estimate
    from scheduler.sweeps import plan_spec
    from worker.pool import default_workers

    plan = plan_spec(spec)
    click.echo(f"{spec}: valid sweep {plan.name!r}")
    for line in estimate(plan).lines():
        click.echo(f"  {line}")
    wall = wall_estimate(plan, workers=workers or default_workers())
    click.echo(f"  {wall.line()}")


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@DB_OPTION
@WORKERS_OPTION
@QUIET_OPTION
def run(spec: str, db: str | None, workers: int | None, quiet: bool) -> None:
    """Record SPEC as a sweep and run it here, in local worker processes."""
    from scheduler.sweeps import plan_spec, record, require_compute

    plan = plan_spec(spec)
    require_compute("run")  # before anything is recorded
    with open_database(db) as factory:
        sweep_id = record(factory, plan)
    if not quiet:
        click.echo(
            f"sweep {sweep_id}: {plan.name!r} · {len(plan.configs)} configurations · "
            f"{plan.n_chunks} chunks · {plan.n_trials} trials"
        )
    run_local(sweep_id, db, workers, quiet)


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
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
    from scheduler.sweeps import checked_broker_url, reconcile_pass, require_sweep, reset_failed

    if distributed:
        checked_broker_url()  # before anything is written
    with open_database(db) as factory:
        if not distributed:
            require_sweep(factory, sweep_id)
        else:
            n = reset_failed(factory, sweep_id)
            report = reconcile_pass(factory, [sweep_id], policy(60.0, 900.0, 64))
    if not distributed:
        run_local(sweep_id, db, workers, quiet)
        return
    click.echo(
        sweep_id if quiet else f"sweep {sweep_id}: {n} failed chunks reset, {report.sent} enqueued"
    )


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
def cancel(sweep_id: int, db: str | None) -> None:
    """Stop scheduling SWEEP_ID; chunks already running finish and are kept."""
    from scheduler.sweeps import cancel as cancel_sweep

    with open_database(db) as factory:
        changed = cancel_sweep(factory, sweep_id)
    click.echo(f"sweep {sweep_id}: cancelled" + ("" if changed else " already"))


def run_local(sweep_id: int, db: str | None, workers: int | None, quiet: bool) -> None:
    """Run the sweep's missing chunks here with a progress bar, then print its summary."""
    from models.db import resolve_url
    from scheduler.sweeps import run_here
    from worker.pool import default_workers

    n = workers or default_workers()
    try:
        with open_database(db) as factory:
            if quiet:
                outcome = run_here(factory, resolve_url(db), sweep_id, workers=n)
            else:
                outcome = _with_progress(factory, resolve_url(db), sweep_id, n)
    except InterruptedRun as exc:
        where = f" --db {shlex.quote(db)}" if db else ""
        raise InterruptedRun(f"{exc}; resume with: initsweep resume {sweep_id}{where}") from None
    if outcome.reset_failed:
        click.echo(
            f"sweep {sweep_id}: {outcome.reset_failed} failed chunks reset for another try",
            err=True,
        )
    report = outcome.report
    if quiet:
        click.echo(sweep_id)
    else:
        from scheduler.cli.results import print_summary

        print_summary(db, sweep_id)
        line = f"sweep {sweep_id}: {outcome.status}"
        if report.trials:
            line += (
                f" · {report.saved} chunks, {report.trials} trials in {report.wall_seconds:.1f} s "
                f"({report.trials / max(report.wall_seconds, 1e-9):.0f} trials/s)"
            )
        click.echo(line)
    for cid, error in report.failed.items():
        click.echo(f"  chunk {cid} failed: {error}", err=True)
    if outcome.failed_left:
        click.echo(f"sweep {sweep_id}: {outcome.failed_left} chunks failed", err=True)
    if report.failed or outcome.failed_left:
        raise click.exceptions.Exit(1)


def _with_progress(factory: Any, url: str, sweep_id: int, workers: int) -> LocalRun:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from scheduler.sweeps import run_here

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
        state: dict[str, Any] = {"done": 0, "start": time.perf_counter()}

        def on_start(chunks: int, trials: int) -> None:
            state["task"] = progress.add_task("run", total=chunks, trials=f"0/{trials}", rate="-")
            state["trials"] = trials
            state["start"] = time.perf_counter()

        def on_done(_chunk: int, n: int) -> None:
            state["done"] += n
            rate = state["done"] / max(time.perf_counter() - state["start"], 1e-9)
            progress.update(
                state["task"],
                advance=1,
                trials=f"{state['done']}/{state['trials']}",
                rate=f"{rate:,.0f}",
            )

        return run_here(factory, url, sweep_id, workers=workers, on_start=on_start, on_done=on_done)

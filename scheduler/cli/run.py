"""Sweeps run here: validate, run, resume, cancel."""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING, Any

import click

from scheduler.cli.options import (
    DB_OPTION,
    FORMAT_OPTION,
    QUIET_OPTION,
    SWEEP_ID,
    WORKERS_OPTION,
    policy,
    sweep_id_of,
)
from scheduler.database import open_database
from scheduler.errors import InterruptedRun

if TYPE_CHECKING:
    from scheduler.sweeps import LocalRun


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@FORMAT_OPTION
@WORKERS_OPTION
def validate(spec: str, fmt: str, workers: int | None) -> None:
    """Check SPEC and print what it expands to, without touching a database.

    The wall estimate is for `initsweep run SPEC` with --workers processes on this machine (by
    default as many as `run` would start). An invalid spec is one located line on stderr and
    exit 2 (with either format)."""
    import dataclasses
    import json

    from scheduler.chunking import fresh_run_workers
    from scheduler.estimate import estimate, wall_estimate
    from scheduler.sweeps import plan_spec

    plan = plan_spec(spec)
    work = estimate(plan)
    wall = wall_estimate(plan, workers=workers or fresh_run_workers(work))
    if fmt == "json":
        record = {
            "spec": spec,
            "valid": True,
            "name": plan.name,
            **dataclasses.asdict(work),
            "wall": dataclasses.asdict(wall),
        }
        click.echo(json.dumps(record, indent=1, allow_nan=False))
        return
    click.echo(f"{spec}: valid sweep {plan.name!r}")
    for line in work.lines():
        click.echo(f"  {line}")
    click.echo(f"  {wall.line()}")


PROGRESS_ENV = "INITSWEEP_PROGRESS_EVERY"
PROGRESS_OPTION = click.option(
    "--progress-every",
    "progress_every",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    envvar=PROGRESS_ENV,
    metavar="SECONDS",
    help=f"When stderr is not a terminal (a log, a pipe): a progress line every SECONDS instead "
    f"of a bar (also ${PROGRESS_ENV}).",
)


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@DB_OPTION
@WORKERS_OPTION
@QUIET_OPTION
@PROGRESS_OPTION
def run(spec: str, db: str | None, workers: int | None, quiet: bool, progress_every: float) -> None:
    """Record SPEC as a sweep and run it here, in local worker processes.

    stdout gets the sweep id only; the plan, the progress (a bar on a terminal, else a line
    every --progress-every seconds) and the summary go to stderr, so a batch job's log holds
    them while its output stays data. -q keeps stderr for errors."""
    from models.db import session_scope
    from scheduler.store import get_sweep
    from scheduler.sweeps import plan_spec, record, require_compute

    plan = plan_spec(spec)
    require_compute("run")  # before anything is recorded
    with open_database(db) as factory:
        sweep_id = record(factory, plan)
        with session_scope(factory) as session:
            info = get_sweep(session=session, sweep_id=sweep_id)
    if not quiet:
        to_run = info.trials_total - info.trials_done
        reused = f" ({to_run} new, {info.trials_done} reused)" if info.trials_done else ""
        upto = " at most (it stops at its target)" if plan.target is not None else ""
        click.echo(
            f"sweep {sweep_id}: {plan.name!r} · {len(plan.configs)} configurations · "
            f"{info.n_wanted} chunks · {info.trials_total} trials{upto}{reused}",
            err=True,
        )
    run_local(sweep_id, db, workers, quiet, progress_every)


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
@WORKERS_OPTION
@QUIET_OPTION
@PROGRESS_OPTION
@click.option(
    "--distributed",
    is_flag=True,
    help="Re-enqueue the missing chunks for Celery workers instead of running them here.",
)
def resume(
    sweep_id: int | str,
    db: str | None,
    workers: int | None,
    quiet: bool,
    progress_every: float,
    distributed: bool,
) -> None:
    """Run the chunks of SWEEP_ID that are missing (interrupted, failed)."""
    from scheduler.sweeps import checked_broker_url, reconcile_pass, require_sweep, reset_failed

    sweep_id = sweep_id_of(db, sweep_id)
    if distributed:
        checked_broker_url()  # before anything is written
    with open_database(db) as factory:
        if not distributed:
            require_sweep(factory, sweep_id)
        else:
            n = reset_failed(factory, sweep_id)
            report = reconcile_pass(factory, [sweep_id], policy(60.0, 900.0, 64))
    if not distributed:
        run_local(sweep_id, db, workers, quiet, progress_every)
        return
    click.echo(
        sweep_id if quiet else f"sweep {sweep_id}: {n} failed chunks reset, {report.sent} enqueued"
    )


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
def cancel(sweep_id: int | str, db: str | None) -> None:
    """Stop scheduling SWEEP_ID; chunks already running finish and are kept."""
    from scheduler.sweeps import cancel as cancel_sweep

    sweep_id = sweep_id_of(db, sweep_id)
    with open_database(db) as factory:
        changed = cancel_sweep(factory, sweep_id)
    click.echo(f"sweep {sweep_id}: cancelled" + ("" if changed else " already"))


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (needed off a terminal).")
@DB_OPTION
def delete(sweep_id: int | str, yes: bool, db: str | None) -> None:
    """Delete SWEEP_ID and the results only it holds; configurations another sweep links to
    are kept whole. Asks first unless --yes."""
    import sys

    from scheduler.errors import UserError
    from scheduler.formatting import printable
    from scheduler.store import get_sweep
    from scheduler.sweeps import delete as delete_sweep
    from scheduler.sweeps import footprint

    sweep_id = sweep_id_of(db, sweep_id)
    with open_database(db) as factory:
        plan = footprint(factory, sweep_id)
        if not yes:
            if not sys.stdin.isatty():
                raise UserError(
                    f"sweep {sweep_id}: not deleted: confirm with --yes (stdin is not a terminal)"
                )
            from models.db import session_scope

            with session_scope(factory) as session:
                name = printable(get_sweep(session=session, sweep_id=sweep_id).name)
            shared = f"; {plan.kept} shared with other sweeps stay" if plan.kept else ""
            question = (
                f"Delete sweep {sweep_id} ({name}): {plan.configurations} configurations and "
                f"{plan.chunks} chunks with their results{shared}?"
            )
            if not click.confirm(question, default=False, err=True):
                click.echo(f"sweep {sweep_id}: not deleted", err=True)
                raise click.exceptions.Exit(1)
        done = delete_sweep(factory, sweep_id)
    kept = f"; {done.kept} configurations kept (linked to other sweeps)" if done.kept else ""
    click.echo(
        f"sweep {sweep_id}: deleted with {done.configurations} configurations and "
        f"{done.chunks} chunks{kept}"
    )


def run_local(
    sweep_id: int, db: str | None, workers: int | None, quiet: bool, progress_every: float = 30.0
) -> None:
    """Run the sweep's missing chunks here, then print its id on stdout; unless `quiet`, with
    progress (`_with_progress`) and the summary on stderr."""
    from models.db import resolve_url
    from scheduler.sweeps import run_here

    try:
        with open_database(db) as factory:
            if quiet:
                outcome = run_here(factory, resolve_url(db), sweep_id, workers=workers)
            else:
                outcome = _with_progress(
                    factory, resolve_url(db), sweep_id, workers, progress_every
                )
    except InterruptedRun as exc:
        where = f" --db {shlex.quote(db)}" if db else ""
        raise InterruptedRun(f"{exc}; resume with: initsweep resume {sweep_id}{where}") from None
    if outcome.reset_failed:
        click.echo(
            f"sweep {sweep_id}: {outcome.reset_failed} failed chunks reset for another try",
            err=True,
        )
    report = outcome.report
    if not quiet:
        from scheduler.cli.results import print_summary

        print_summary(db, sweep_id, stderr=True)
        line = f"sweep {sweep_id}: {outcome.status}"
        if report.trials:
            line += (
                f" · {report.saved} chunks, {report.trials} trials in {report.wall_seconds:.1f} s "
                f"({report.trials / max(report.wall_seconds, 1e-9):.0f} trials/s) on "
                f"{report.processes} process{'es' if report.processes != 1 else ''}"
            )
        click.echo(line, err=True)
    click.echo(sweep_id)
    for cid, error in report.failed.items():
        click.echo(f"  chunk {cid} failed: {error}", err=True)
    if outcome.failed_left:
        click.echo(f"sweep {sweep_id}: {outcome.failed_left} chunks failed", err=True)
    if report.failed or outcome.failed_left:
        raise click.exceptions.Exit(1)


def _with_progress(
    factory: Any, url: str, sweep_id: int, workers: int | None, every_s: float
) -> LocalRun:
    """`run_here` with progress on stderr: a bar on a terminal, else `RunProgress` lines."""
    import sys

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from scheduler.progress import RunProgress
    from scheduler.sweeps import run_here

    if not sys.stderr.isatty():
        lines = RunProgress(sweep_id, every_s, lambda line: click.echo(line, err=True))
        try:
            return run_here(
                factory, url, sweep_id, workers=workers, on_start=lines.start, on_done=lines.done
            )
        finally:
            lines.stop()
    columns = (
        TextColumn("[bold]chunks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("· {task.fields[trials]} trials · {task.fields[rate]} trials/s · ETA"),
        TimeRemainingColumn(),
        TextColumn("· elapsed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False, console=Console(stderr=True)) as progress:
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

"""Reading the database: sweeps, status, results."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from scheduler.cli.options import (
    DB_OPTION,
    FORMAT_OPTION,
    LAYER,
    OUTPUT_FILE,
    SWEEP_ID,
    sweep_id_of,
    write_output,
)
from scheduler.database import open_database
from scheduler.errors import UserError


def _iso(t: Any) -> str | None:
    return None if t is None else t.isoformat()


@click.command()
@DB_OPTION
@FORMAT_OPTION
def sweeps(db: str | None, fmt: str) -> None:
    """List sweeps: id, name, status, configurations, chunks done, trials, creation time."""
    from rich.table import Table
    from rich.text import Text

    from models.db import session_scope
    from scheduler.formatting import printable
    from scheduler.query import table_console
    from scheduler.store import list_sweeps

    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        rows = list_sweeps(session=session)
    if fmt == "json":
        _echo_json(
            [
                {
                    "id": s.id,
                    "name": s.name,
                    "status": s.status,
                    "seed": s.seed,
                    "configs": s.n_configs,
                    "chunks": s.chunk_counts,
                    "trials_done": s.trials_done,
                    "trials_total": s.trials_total,
                    "created_at": _iso(s.created_at),
                    "finished_at": _iso(s.finished_at),
                }
                for s in rows
            ]
        )
        return
    table = Table("id", "name", "status", "configs", "chunks done", "trials", "created")
    for s in rows:
        done = s.chunk_counts.get("done", 0)
        table.add_row(
            str(s.id),
            Text(printable(s.name)),  # never markup, never raw control characters
            s.status,
            str(s.n_configs),
            f"{done}/{s.n_wanted}",  # skipped chunks (past a met target) left out
            f"{s.trials_done}/{s.trials_total}",
            s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    table_console().print(table)  # a pipe: full width, never cut


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=1, allow_nan=False))


@click.command()
@click.argument("sweep_id", type=SWEEP_ID, required=False)
@DB_OPTION
@click.option("--watch", is_flag=True, help="Refresh every 2 s until the sweep ends.")
@FORMAT_OPTION
def status(sweep_id: int | str | None, db: str | None, watch: bool, fmt: str) -> None:
    """Progress of SWEEP_ID (an id or a name; default: every sweep) from the database.

    With --format json, a list of one object per sweep (with --watch: one such list per line,
    every 2 s).
    """
    from scheduler.progress import status_notes, status_records, status_table
    from scheduler.query import table_console

    if sweep_id is not None:
        sweep_id = sweep_id_of(db, sweep_id)
    out = table_console()
    with open_database(db, read_only=True) as factory:
        while True:
            records, finished = status_records(factory, sweep_id)
            if fmt == "json":
                click.echo(json.dumps(records, indent=None if watch else 1, allow_nan=False))
            else:
                if watch and sys.stdout.isatty():
                    out.clear()
                out.print(status_table(records))
                for line in status_notes(records):
                    click.echo(line)
            if not watch or finished:
                return
            time.sleep(2.0)


def _completeness_note(
    sweep_id: int, n_with_trials: int, n_complete: int, n_configs: int, n_rows: int, chosen: str
) -> None:
    """On stderr: no results yet, a filter (`chosen`) that matched nothing, or how partial the
    results are."""
    if n_with_trials == 0:
        click.echo(f"sweep {sweep_id}: no results yet (no chunk is done)", err=True)
        return
    if n_rows == 0 and chosen:
        click.echo(f"sweep {sweep_id}: no row matches {chosen}", err=True)
    elif n_complete != n_configs:
        click.echo(
            f"sweep {sweep_id}: partial results: {n_complete} of {n_configs} "
            "configurations complete; the others hold the trials done so far (complete=false)",
            err=True,
        )


FORMATS = ["table", "csv", "json", "jsonl", "parquet"]


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="COLUMN OP VALUE",
    help="Keep rows where this holds; repeat to AND. OP: = != < <= > >= ~ (contains); "
    "lists with commas (activation=relu,tanh); values as in the spec (init=normal, "
    "sigma_w=1.5); layer=last.",
)
@click.option(
    "--quantity",
    type=click.Choice(["preactivation", "activation", "gradient"]),
    help="Only this quantity (default: all three).",
)
@click.option("--layer", type=LAYER, default=None, help="Only this layer (default: every layer).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="jsonl and parquet stream in batches (bounded memory); parquet needs -o or a pipe.",
)
@click.option(
    "-o", "--output", type=OUTPUT_FILE, default=None, help="Write to FILE (default: stdout)."
)
@click.option("--theory", is_flag=True, help="Add mean-field predictions and z-scores.")
def results(
    sweep_id: int | str,
    db: str | None,
    where: tuple[str, ...],
    quantity: str | None,
    layer: int | None,
    fmt: str,
    output: Path | None,
    theory: bool,
) -> None:
    """Per-layer statistics of SWEEP_ID (an id or a name) as a table, CSV, JSON, JSON lines or
    Parquet (partial while it runs). Notes (partial results, a filter that matched nothing) go
    to stderr; stdout holds only the data.
    """
    from models.db import session_scope
    from scheduler.query import render_csv, render_table, result_set
    from scheduler.targets import target_states
    from scheduler.where import describe, where_terms

    terms = where_terms(list(where), "--where")
    sweep_id = sweep_id_of(db, sweep_id)
    filters = {"where": terms, "quantity": quantity, "layer": layer}
    chosen = " ".join(
        [describe(terms)]
        + ([f"--quantity {quantity}"] if quantity else [])
        + ([f"--layer {layer}"] if layer is not None else [])
    ).strip()
    if fmt in ("jsonl", "parquet"):
        _stream(sweep_id, db, fmt, output, theory, filters, chosen)
        return
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        found = result_set(session=session, sweep_id=sweep_id, theory=theory, **filters)
        states = target_states(session=session, sweep_id=sweep_id)
    records = found.records
    _completeness_note(
        sweep_id, found.n_with_trials, found.n_complete, found.n_configs, len(records), chosen
    )
    _target_notes(sweep_id, states)
    if fmt == "json":
        text = json.dumps(records, indent=1, allow_nan=False) + "\n"
    elif fmt == "csv":
        text = render_csv(records, found.columns)
    else:
        if output:
            raise UserError("--output: the table format prints to the terminal; use csv or json")
        render_table(records)
        return
    if output:
        write_output(output, text)
    else:
        click.echo(text, nl=False)


def _stream(
    sweep_id: int,
    db: str | None,
    fmt: str,
    output: Path | None,
    theory: bool,
    filters: dict[str, Any],
    chosen: str,
) -> None:
    """`results --format jsonl|parquet`: read and write one batch of configurations at a time."""
    from models.db import session_scope
    from scheduler.export import write_jsonl, write_parquet
    from scheduler.query import result_stream
    from scheduler.targets import target_states

    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise UserError("--format parquet: binary output, not for a terminal; give -o FILE.parquet")
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, theory=theory, **filters)
        if fmt == "parquet":
            n_rows = write_parquet(stream, output if output else sys.stdout.buffer)
        else:
            n_rows = write_jsonl(stream, output if output else sys.stdout)
        states = target_states(session=session, sweep_id=sweep_id)
    _completeness_note(
        sweep_id, stream.n_with_trials, stream.n_complete, stream.n_configs, n_rows, chosen
    )
    _target_notes(sweep_id, states)


def _target_notes(sweep_id: int, states: list[Any]) -> None:
    """On stderr: each targeted configuration's SE beside its target (`scheduler.targets`)."""
    from scheduler.formatting import printable

    for state in states:
        click.echo(f"sweep {sweep_id}: {printable(state.line())}", err=True)


def print_summary(db: str | None, sweep_id: int, *, stderr: bool = False) -> None:
    """The readable summary table of a sweep's results (on stdout, or stderr), then where its
    targeted configurations stand (on stderr)."""
    from models.db import session_scope
    from scheduler.query import render_summary, result_records, table_console
    from scheduler.targets import target_states

    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        records = result_records(session=session, sweep_id=sweep_id)
        states = target_states(session=session, sweep_id=sweep_id)
    render_summary(records, table_console(stderr=stderr))
    _target_notes(sweep_id, states)

"""Reading the database: sweeps, status, results."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from scheduler.cli.options import DB_OPTION, LAYER, OUTPUT_FILE, SWEEP_ID, write_output
from scheduler.database import open_database
from scheduler.errors import UserError


@click.command()
@DB_OPTION
def sweeps(db: str | None) -> None:
    """List sweeps."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from models.db import session_scope
    from scheduler.formatting import printable
    from scheduler.store import list_sweeps

    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        rows = list_sweeps(session=session)
    table = Table("id", "name", "status", "configs", "chunks done", "trials", "created")
    for s in rows:
        done = s.chunk_counts.get("done", 0)
        table.add_row(
            str(s.id),
            Text(printable(s.name)),  # never markup, never raw control characters
            s.status,
            str(s.n_configs),
            f"{done}/{sum(s.chunk_counts.values())}",
            f"{s.trials_done}/{s.trials_total}",
            s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # pipes: never cut


@click.command()
@click.argument("sweep_id", type=SWEEP_ID, required=False)
@DB_OPTION
@click.option("--watch", is_flag=True, help="Refresh every 2 s until the sweep ends.")
def status(sweep_id: int | None, db: str | None, watch: bool) -> None:
    """Progress of SWEEP_ID (or of every sweep) from the database."""
    from rich.console import Console

    from scheduler.progress import status_table

    console = Console(width=None if sys.stdout.isatty() else 200)
    with open_database(db, read_only=True) as factory:
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


parse_where = _parse_where  # `plot --where` reads its filters the same way


def _completeness_note(sweep_id: int, n_with_trials: int, n_complete: int, n_configs: int) -> None:
    if n_with_trials == 0:
        click.echo(f"sweep {sweep_id}: no results yet (no chunk is done)", err=True)
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
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE", help="Filter rows.")
@click.option("--quantity", type=click.Choice(["preactivation", "activation", "gradient"]))
@click.option("--layer", type=LAYER, default=None, help="Only this layer.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    help="jsonl and parquet stream in batches (bounded memory); parquet needs -o or a pipe.",
)
@click.option("-o", "--output", type=OUTPUT_FILE, default=None)
@click.option("--theory", is_flag=True, help="Add mean-field predictions and z-scores.")
def results(
    sweep_id: int,
    db: str | None,
    where: tuple[str, ...],
    quantity: str | None,
    layer: int | None,
    fmt: str,
    output: Path | None,
    theory: bool,
) -> None:
    """Per-layer statistics of SWEEP_ID as a table, CSV, JSON, JSON lines or Parquet (partial
    while it runs)."""
    from models.db import session_scope
    from scheduler.query import render_csv, render_table, result_set

    filters = {"where": _parse_where(where), "quantity": quantity, "layer": layer}
    if fmt in ("jsonl", "parquet"):
        _stream(sweep_id, db, fmt, output, theory, filters)
        return
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        found = result_set(session=session, sweep_id=sweep_id, theory=theory, **filters)
    records = found.records
    _completeness_note(sweep_id, found.n_with_trials, found.n_complete, found.n_configs)
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
) -> None:
    """`results --format jsonl|parquet`: read and write one batch of configurations at a time."""
    from models.db import session_scope
    from scheduler.export import write_jsonl, write_parquet
    from scheduler.query import result_stream

    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise UserError("--format parquet: binary output, not for a terminal; give -o FILE.parquet")
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        stream = result_stream(session=session, sweep_id=sweep_id, theory=theory, **filters)
        if fmt == "parquet":
            write_parquet(stream, output if output else sys.stdout.buffer)
        else:
            write_jsonl(stream, output if output else sys.stdout)
    _completeness_note(sweep_id, stream.n_with_trials, stream.n_complete, stream.n_configs)


def print_summary(db: str | None, sweep_id: int) -> None:
    """The readable summary table of a sweep's results."""
    from models.db import session_scope
    from scheduler.query import render_summary, result_records

    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        records = result_records(session=session, sweep_id=sweep_id)
    render_summary(records)

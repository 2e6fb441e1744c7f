"""What results mean: check, plot, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from scheduler.cli.options import (
    DB_OPTION,
    FORMAT_OPTION,
    OUTPUT_FILE,
    SWEEP_ID,
    sweep_id_of,
    write_output,
)
from scheduler.database import open_database
from scheduler.errors import OptionError


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
@click.option("--threshold", type=float, default=4.0, show_default=True, help="|z| limit.")
@FORMAT_OPTION
@click.option("--strict", is_flag=True, help="No excuses: only the family-wise chance bound.")
@click.option(
    "--allow-partial", is_flag=True, help="Judge an incomplete sweep on the trials done so far."
)
def check(
    sweep_id: int | str,
    db: str | None,
    threshold: float,
    strict: bool,
    allow_partial: bool,
    fmt: str,
) -> None:
    """Compare SWEEP_ID (an id or a name) with mean-field theory.

    Exit 1 on an unexplained |z| > threshold, when nothing could be compared, or when the sweep
    is incomplete (unless --allow-partial); --format json prints the same verdict, counts and
    deviations as one object (and exits the same way).
    """
    from models.db import session_scope
    from scheduler.analysis.compare import check as check_records
    from scheduler.query import render_check, result_set

    sweep_id = sweep_id_of(db, sweep_id)
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        found = result_set(session=session, sweep_id=sweep_id, theory=True)
    report = check_records(
        found.records,
        threshold,
        strict=strict,
        allow_partial=allow_partial,
        incomplete=found.incomplete,
    )
    if fmt == "json":
        click.echo(json.dumps(check_record(report), indent=1, allow_nan=False))
    else:
        render_check(report)
    if not report.passed:
        raise click.exceptions.Exit(1)


def check_record(report: Any) -> dict[str, Any]:
    """A CheckReport as plain values (`check --format json`)."""
    import dataclasses

    return {
        "verdict": report.verdict(),
        "passed": report.passed,
        "summary": report.summary(),
        "threshold": report.threshold,
        "strict": report.strict,
        "n_compared": report.n_compared,
        "n_censored": report.n_censored,
        "n_configs": report.n_configs,
        "excused": report.excused,
        "no_prediction": list(report.no_prediction),
        "incomplete": list(report.incomplete),
        "deviations": [
            {**dataclasses.asdict(d), "explained": d.explained} for d in report.deviations
        ],
    }


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
@click.option(
    "--kind",
    type=click.Choice(["layers", "explosion", "phase", "quantiles"]),
    default="layers",
    show_default=True,
)
@click.option("-o", "--output", type=OUTPUT_FILE, required=True)
def plot(sweep_id: int | str, db: str | None, kind: str, output: Path) -> None:
    """Plot SWEEP_ID: per-layer std with theory, explosion heatmap, phase diagram or the
    per-trial quantile bands of mean_sq against its mean."""
    from models.db import session_scope
    from scheduler.analysis.plots import plot as draw
    from scheduler.query import theory_records

    sweep_id = sweep_id_of(db, sweep_id)
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        records = theory_records(session=session, sweep_id=sweep_id)
    try:
        written = draw(kind, records, output)
    except OSError as exc:  # the directory was checked; the write itself can still fail
        raise OptionError(f"--output: cannot write {str(output)!r}: {exc.strerror or exc}") from exc
    click.echo(str(written))


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
@click.option("-o", "--output", type=OUTPUT_FILE, default="report.html", show_default=True)
def report(sweep_id: int | str, db: str | None, output: Path) -> None:
    """Write a self-contained HTML report of SWEEP_ID (spec, provenance, plots, theory)."""
    from models.db import session_scope
    from scheduler.analysis.report import render_report
    from scheduler.query import report_input

    sweep_id = sweep_id_of(db, sweep_id)
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        data = report_input(session=session, sweep_id=sweep_id)
    html = render_report(data)
    write_output(output, html)
    click.echo(str(output))


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
def reproduction(sweep_id: int | str, db: str | None) -> None:
    """The seed notebook's printed numbers beside SWEEP_ID's, as a Markdown table."""
    from models.db import session_scope
    from scheduler.analysis.reproduction import reproduction_markdown
    from scheduler.query import theory_records

    sweep_id = sweep_id_of(db, sweep_id)
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        records = theory_records(session=session, sweep_id=sweep_id)
    click.echo(reproduction_markdown(records), nl=False)

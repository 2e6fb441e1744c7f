"""What results mean: check, plot, report."""

from __future__ import annotations

import json
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


# scheduler.analysis.plots.KINDS (the CLI does not import matplotlib to list them)
PLOT_KINDS = ("layers", "summary", "explosion", "phase", "quantiles")
PLOT_STATS = ("std", "mean_sq", "mean")  # scheduler.analysis.figures.STATS
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")  # scheduler.analysis.figures.FIGURE_FORMATS


def _figure_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """The figure's format follows its extension: refuse any other before reading anything."""
    if value is not None and value.suffix.lower() not in FIGURE_SUFFIXES:
        what = f"unknown extension {value.suffix!r}" if value.suffix else "no extension"
        raise click.BadParameter(
            f"{click.format_filename(value)!r}: {what}; expected a name ending in "
            f"{', '.join(FIGURE_SUFFIXES)} (the format follows the extension)",
            ctx,
            param,
        )
    return value


@click.command()
@click.argument("sweep_id", type=SWEEP_ID)
@DB_OPTION
@click.option(
    "--kind",
    type=click.Choice(PLOT_KINDS),
    default="layers",
    show_default=True,
    help="layers: a statistic against the layer; summary: a statistic at one layer against "
    "an axis; explosion: overflow/collapse by layer; phase: (sigma_w, sigma_b) map; quantiles: "
    "per-trial median and 5-95% band of mean_sq against its mean.",
)
@click.option(
    "-o",
    "--output",
    type=OUTPUT_FILE,
    required=True,
    callback=_figure_file,
    help="The figure file: .png (200 dpi), .pdf or .svg, by its extension.",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only the configurations matching, as `results --where` (repeat: all must match).",
)
@click.option(
    "--stat",
    type=click.Choice(PLOT_STATS),
    default=None,
    help="layers, summary: the statistic over units, averaged over trials [default: std for "
    "layers; mean_sq for summary, the one theory predicts exactly for linear and relu].",
)
@click.option(
    "--quantity",
    type=click.Choice(["preactivation", "activation", "gradient"]),
    multiple=True,
    help="layers, summary: one column of panels each (repeatable) [default: activation and "
    "gradient for layers, activation for summary].",
)
@click.option(
    "--layer",
    type=LAYER,
    default=None,
    help="summary: the layer [default: the last the signal reaches: D, or 1 for gradients].",
)
@click.option(
    "--x",
    "x",
    metavar="AXIS",
    default=None,
    help="summary: the numeric axis on x (width, depth, sigma_w, ...) [default: the one with "
    "the most values].",
)
@click.option(
    "--color",
    metavar="AXIS",
    default=None,
    help="layers, summary: the axis drawn by colour [default: the numeric axis with the most "
    "values; a colourbar when numeric].",
)
@click.option(
    "--style",
    metavar="AXIS",
    default=None,
    help="layers, summary: the axis drawn by line style [default: the one with the fewest "
    "values, at most 4]. Other varying axes split the panels into rows.",
)
def plot(
    sweep_id: int | str,
    db: str | None,
    kind: str,
    output: Path,
    where: tuple[str, ...],
    stat: str | None,
    quantity: tuple[str, ...],
    layer: int | None,
    x: str | None,
    color: str | None,
    style: str | None,
) -> None:
    """Plot SWEEP_ID as a figure for a paper (PNG, PDF or SVG by the file's extension)."""
    from models.db import session_scope
    from scheduler.analysis.plots import plot as draw
    from scheduler.query import theory_records

    sweep_id = sweep_id_of(db, sweep_id)
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        records = theory_records(session=session, sweep_id=sweep_id, pairs=False, where=list(where))
    if where and not records:
        raise UserError(f"--where {' '.join(where)}: no record of sweep {sweep_id} matches")
    options = {"stat": stat, "quantity": quantity, "layer": layer, "x": x}
    written = draw(kind, records, output, **options, color=color, style=style)
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

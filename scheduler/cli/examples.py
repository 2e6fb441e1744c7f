"""Examples at the end of every command's --help: one home, attached by `attach_examples`."""

from __future__ import annotations

import click

EXAMPLES: dict[str, tuple[str, ...]] = {
    "validate": (
        "initsweep validate examples/phase_diagram.yaml",
        "initsweep validate sweep.yaml --workers 8      # wall estimate for 8 processes",
        "initsweep validate sweep.yaml --format json",
    ),
    "run": (
        "initsweep run examples/quick.yaml",
        "initsweep run sweep.yaml --db runs.db -w 4",
        "initsweep run sweep.yaml > sweep.id 2> run.log   # a batch job: progress lines in run.log",
    ),
    "resume": ("initsweep resume 3", "initsweep resume 3 --distributed"),
    "cancel": ("initsweep cancel 3",),
    "delete": ("initsweep delete 3", "initsweep delete old-baseline --yes   # a sweep by name"),
    "sweeps": ("initsweep sweeps", "initsweep sweeps --db postgresql+psycopg://u:PW@host/db"),
    "status": ("initsweep status", "initsweep status 3 --watch"),
    "results": (
        "initsweep results 3",
        "initsweep results 3 --quantity activation --where activation=relu --format csv",
        "initsweep results 3 --theory --format json",
        "initsweep results 3 --format parquet -o results.parquet",
    ),
    "check": (
        "initsweep check 3",
        "initsweep check 3 --strict",
        "initsweep check 3 --allow-partial",
    ),
    "plot": (
        "initsweep plot 3 -o layers.pdf                 # std per layer, every configuration",
        "initsweep plot 3 -o grad.svg --stat mean_sq --quantity gradient --where activation=relu",
        "initsweep plot 3 -o width.pdf --kind summary --x width  # E[mean_sq] at the last layer",
        "initsweep plot 3 -o depth.png --kind summary --x depth --quantity gradient --stat std",
        "initsweep plot 3 -o layers.png --color width --style init",
        "initsweep plot 3 --kind phase -o phase.svg",
    ),
    "report": ("initsweep report 3 -o report.html",),
    "reproduction": ("initsweep reproduction 1 > reproduction.md",),
    "submit": (
        "export INITSWEEP_BROKER_URL=redis://:PW@broker:6379/0",
        "initsweep submit examples/init_comparison.yaml",
    ),
    "scheduler": ("initsweep scheduler", "initsweep scheduler --sweep 3 --until-finished"),
    "worker": ("initsweep worker --concurrency 8", "initsweep worker --gpu 0"),
    "ui": (
        "initsweep ui                         # ./initsweep.db at http://127.0.0.1:8765/",
        "initsweep ui --db runs.db --port 9000",
        "initsweep ui --db postgresql://user@db-host/initsweep",
    ),
    "db": ("initsweep db upgrade --db results.db", "initsweep db current"),
}


def attach_examples(group: click.Group) -> None:
    """Append an Examples section (kept verbatim, `\\b`) to the help of `group`'s commands."""
    for name, command in group.commands.items():
        lines = EXAMPLES.get(name)
        if not lines:
            continue
        block = "\n".join(f"  {line}" for line in lines)
        command.epilog = f"\b\nExamples:\n{block}"

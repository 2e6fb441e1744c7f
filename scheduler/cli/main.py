"""The `initsweep` group and `main()`: every error family becomes one stderr line and an exit code."""

from __future__ import annotations

import sys

import click

from scheduler.cli import analysis, db, distributed, results, run, ui
from scheduler.cli.examples import attach_examples
from scheduler.cli.options import echo_error
from scheduler.database import first_line
from scheduler.errors import InitsweepError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="initsweep")
def cli() -> None:
    """Monte Carlo sweeps of signal and gradient propagation at initialization."""


for command in (
    run.validate,
    run.run,
    run.resume,
    results.sweeps,
    results.status,
    results.results,
    analysis.check,
    analysis.plot,
    analysis.report,
    analysis.reproduction,
    distributed.submit,
    distributed.scheduler_cmd,
    distributed.worker,
    run.cancel,
    run.delete,
    db.db_group,
    ui.ui,
):
    cli.add_command(command)
attach_examples(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to exit codes (user error 2, failure 1)."""
    from models.errors import StoreError
    from worker.errors import MemoryBudgetError

    try:
        # Outside standalone mode click returns the code of a `click.exceptions.Exit`.
        code = cli.main(args=argv, prog_name="initsweep", standalone_mode=False)
    except InitsweepError as exc:
        echo_error(str(exc))
        sys.exit(exc.exit_code)
    except MemoryBudgetError as exc:  # the input asks for more memory than it allows
        echo_error(str(exc))
        sys.exit(2)
    except StoreError as exc:  # translated once at the models boundary; one line here
        echo_error(f"database: {first_line(exc)}")
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        echo_error("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        echo_error(exc.format_message())
        sys.exit(2 if isinstance(exc, click.UsageError) else 1)
    except KeyboardInterrupt:
        echo_error("interrupted; the database holds every chunk saved so far (`initsweep resume`)")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

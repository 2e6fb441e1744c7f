"""`initsweep` command line, one module per command group (in the shape of Celery's `celery/bin`).

`main()` (in `scheduler.cli.main`) is the one place where errors become one stderr line and an
exit code. Heavy modules (SQLAlchemy, pandas, Celery, matplotlib) are imported inside the commands
that need them and TensorFlow never is, so `initsweep --help` and `initsweep validate` start at once.
"""

from __future__ import annotations

from scheduler.cli.main import cli, main

__all__ = ["cli", "main"]

"""initsweep for notebooks and scripts: `validate`, `run`, `submit`, `sweep`, `sweeps`,
`compare` and the `Sweep` handle (`initsweep.api`). The CLI is `initsweep --help`."""

from __future__ import annotations

from initsweep.api import Plan, Sweep, compare, run, submit, sweep, sweeps, validate
from scheduler.errors import (
    DatabaseUnavailableError,
    InitsweepError,
    InterruptedRun,
    SpecError,
    UnknownSweepError,
    UserError,
)

__all__ = [
    "DatabaseUnavailableError",
    "InitsweepError",
    "InterruptedRun",
    "Plan",
    "SpecError",
    "Sweep",
    "UnknownSweepError",
    "UserError",
    "compare",
    "run",
    "submit",
    "sweep",
    "sweeps",
    "validate",
]

"""Errors the user sees. The CLI maps each to one stderr line and an exit code, once.

InitsweepError                      base; exit 1
├── InterruptedRun                  Ctrl-C of a local run: state saved, resumable; exit 130
├── UserError                       bad input; exit 2
│   ├── SpecError                   a sweep spec is invalid (message starts with its location)
│   ├── UnknownSweepError           no sweep with that id
│   ├── BudgetError                 a configuration does not fit the memory budget
│   └── OptionError                 an option or setting is malformed (a database or broker URL,
│                                   an output file in a missing directory)
└── RuntimeFailure                  the environment failed; exit 1
    ├── DatabaseUnavailableError    the database cannot be reached or opened
    └── BrokerUnavailableError      the Celery broker cannot be reached
"""

from __future__ import annotations


class InitsweepError(Exception):
    """Base of every error initsweep reports to a user."""

    exit_code = 1


class UserError(InitsweepError):
    """The input is wrong; nothing was written."""

    exit_code = 2


class SpecError(UserError):
    """A sweep spec is invalid: `grid.width[2]: expected a positive integer. Received: -4`."""


class UnknownSweepError(UserError):
    """No sweep has that id."""


class BudgetError(UserError):
    """A configuration's single trial exceeds the memory budget."""


class InterruptedRun(InitsweepError):
    """A local run was interrupted; chunks in flight went back to pending."""

    exit_code = 130


class RuntimeFailure(InitsweepError):
    """Something outside the input failed."""


class DatabaseUnavailableError(RuntimeFailure):
    """The database cannot be reached, opened or migrated."""


class BrokerUnavailableError(RuntimeFailure):
    """The Celery broker cannot be reached."""


class OptionError(UserError):
    """An option or environment setting is malformed: `--db: expected ... Received: ...`."""

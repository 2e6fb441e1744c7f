"""Errors of the worker side: one tree.

WorkerError
├── SimulationError      the core failed on a chunk (a poison chunk): retried a bounded
│                        number of times, then the chunk is marked failed with this message
├── ChunkNotFoundError   the chunk id names no chunk (stale message): dropped
└── MemoryBudgetError    one trial of a configuration does not fit the memory budget (also a
                         ValueError: the input, not the machine, is at fault)
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of worker-side errors."""


class SimulationError(WorkerError):
    """The simulation core raised on a chunk."""


class ChunkNotFoundError(WorkerError):
    """A message names a chunk that is not in the database."""


class MemoryBudgetError(WorkerError, ValueError):
    """A single trial of a configuration does not fit the memory budget."""

"""Errors of the worker side.

WorkerError
├── SimulationError      the core failed on a chunk (a poison chunk): retried a bounded
│                        number of times, then the chunk is marked failed with this message
└── ChunkNotFoundError   the chunk id names no chunk (stale message): dropped
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base of worker-side errors."""


class SimulationError(WorkerError):
    """The simulation core raised on a chunk."""


class ChunkNotFoundError(WorkerError):
    """A message names a chunk that is not in the database."""

"""Storage errors, translated once from SQLAlchemy/driver errors at the models boundary.

StoreError                  base
├── TransientStoreError     connection lost, database restarting, lock timeout: retry
└── SchemaError             the database is not at the migration head
"""

from __future__ import annotations


class StoreError(Exception):
    """A storage operation failed."""


class TransientStoreError(StoreError):
    """A storage operation failed for a reason that a retry can cure."""


class SchemaError(StoreError):
    """The database schema is missing or not at the expected migration."""

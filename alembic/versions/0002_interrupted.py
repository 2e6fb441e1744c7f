"""Sweeps can be `interrupted` (Ctrl-C of a local run: chunks back to pending, resumable).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when the models do.
BEFORE = ("pending", "running", "done", "partial", "failed", "cancelled")
AFTER = (*BEFORE, "interrupted")


def _check(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def _replace(statuses: tuple[str, ...]) -> None:
    with op.batch_alter_table("sweeps", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_sweeps_status"), type_="check")
        batch.create_check_constraint("status", _check(statuses))


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    op.execute("UPDATE sweeps SET status = 'pending' WHERE status = 'interrupted'")
    _replace(BEFORE)

"""Moments in scaled form: `<observable>_exp2` on chunk_stats and layer_stats (issue 10).

A statistic's mean is `<o>_mean * 2^<o>_exp2` and its M2 `<o>_m2 * 4^<o>_exp2`, so samples beyond
float64's range (mean_sq of float64 values below ~1e-154 or above ~1e154) are stored exactly.
Existing rows get 0: the plain float64 moments they always were.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when the models do.
TABLES = ("chunk_stats", "layer_stats")
COLUMNS = ("mean_exp2", "std_exp2", "mean_sq_exp2")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in COLUMNS:
                batch.add_column(
                    sa.Column(column, sa.Integer(), nullable=False, server_default="0")
                )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in COLUMNS:
                batch.drop_column(column)

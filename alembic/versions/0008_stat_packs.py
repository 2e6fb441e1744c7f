"""Each aggregated configuration's layer_stats rows packed into one blob (issue 12).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

- layer_stat_packs (configuration_id, layout, n_rows, data): written by aggregation beside the
  rows, read by columnar exports in place of them (one value per configuration instead of one
  Python object per statistic). Configurations aggregated before this revision have none and
  are read row by row, with the same values; aggregating them again writes theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "layer_stat_packs",
        sa.Column("configuration_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("layout", sa.Integer(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["configurations.id"],
            name="fk_layer_stat_packs_configuration_id_configurations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("configuration_id", name="pk_layer_stat_packs"),
    )


def downgrade() -> None:
    op.drop_table("layer_stat_packs")

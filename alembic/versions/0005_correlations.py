"""Pair observables between a trial's inputs: cross (q_ab) and corr on chunk_stats and
layer_stats (issue 13).

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-10

Nullable columns: NULL for batch-1 configurations (no pair) and in rows saved before this
revision; a configuration merging such a chunk has none (never a merge of part of its trials).
`cross_mean`, `cross_m2`, `cross_exp2`: the scaled Moments of the per-trial mean over pairs of
<v_a, v_b> / units, over the n_finite trials; `corr_n`, `corr_mean`, `corr_m2`: the Moments of
the per-trial mean pair correlation over the finite trials without an all-zero input vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when the models do.
TABLES = ("chunk_stats", "layer_stats")
COLUMNS: tuple[tuple[str, type[sa.types.TypeEngine[object]]], ...] = (
    ("cross_mean", sa.Double),
    ("cross_m2", sa.Double),
    ("cross_exp2", sa.Integer),
    ("corr_n", sa.Integer),
    ("corr_mean", sa.Double),
    ("corr_m2", sa.Double),
)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for name, kind in COLUMNS:
                batch.add_column(sa.Column(name, kind(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for name, _ in COLUMNS:
                batch.drop_column(name)

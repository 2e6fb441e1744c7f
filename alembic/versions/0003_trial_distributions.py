"""Per-trial distributions: log(mean_sq) moments and histograms on chunk_stats and layer_stats,
and the quantiles of the aggregated histograms on layer_stats.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Nullable columns: rows saved before this revision hold NULL (their distribution was not
recorded), and a configuration merging such a chunk has no distribution (never a partial one).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when the models do.
TABLES = ("chunk_stats", "layer_stats")
LOG_MOMENTS = ("log_mean_sq_mean", "log_mean_sq_m2", "log_mean_sq_m3", "log_mean_sq_m4")
HISTOGRAMS = ("mean_hist", "std_hist", "mean_sq_hist")
QUANTILES = tuple(f"{o}_{q}" for o in ("mean", "std", "mean_sq") for q in ("q05", "median", "q95"))


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("log_mean_sq_n", sa.Integer(), nullable=True))
            for name in LOG_MOMENTS:
                batch.add_column(sa.Column(name, sa.Double(), nullable=True))
            for name in HISTOGRAMS:
                batch.add_column(sa.Column(name, sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("layer_stats") as batch:
        for name in QUANTILES:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("layer_stats") as batch:
        for name in QUANTILES:
            batch.drop_column(name)
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for name in ("log_mean_sq_n", *LOG_MOMENTS, *HISTOGRAMS):
                batch.drop_column(name)

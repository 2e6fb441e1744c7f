"""Initial schema: sweeps, configurations, sweep_configurations, chunks, chunk_stats, layer_stats.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when the models do.
UTC_TIMESTAMP = sa.DateTime(timezone=True)
CONFIG_AXES = (
    "init_name",
    "init_label",
    "activation_name",
    "activation_label",
    "depth",
    "width",
    "input_dim",
    "batch",
    "dtype",
    "bias_std",
    "sampler",
)


def _stat_columns() -> list[sa.Column[object]]:
    counts = ["n_trials", "n_finite", "n_first_nonfinite", "n_collapsed"]
    moments = [f"{o}_{m}" for o in ("mean", "std", "mean_sq") for m in ("mean", "m2")]
    return [
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.String(length=32), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in counts),
        *(sa.Column(name, sa.Double(), nullable=False) for name in moments),
    ]


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("spec_yaml", sa.Text(), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("memory_budget_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("finished_at", UTC_TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'partial', 'failed', 'cancelled')",
            name=op.f("ck_sweeps_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    op.create_table(
        "configurations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("seed_key", sa.BigInteger(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("chunk_trials", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("init_name", sa.String(length=64), nullable=False),
        sa.Column("init_label", sa.String(length=255), nullable=False),
        sa.Column("activation_name", sa.String(length=64), nullable=False),
        sa.Column("activation_label", sa.String(length=255), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("input_dim", sa.Integer(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("bias_std", sa.Double(), nullable=False),
        sa.Column("sampler", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("aggregated_at", UTC_TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'partial')", name=op.f("ck_configurations_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_configurations")),
        sa.UniqueConstraint("run_key", name=op.f("uq_configurations_run_key")),
    )
    op.create_index(op.f("ix_configurations_config_hash"), "configurations", ["config_hash"])
    for axis in CONFIG_AXES:
        op.create_index(op.f(f"ix_configurations_{axis}"), "configurations", [axis])

    op.create_table(
        "sweep_configurations",
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("axes_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweeps.id"],
            name=op.f("fk_sweep_configurations_sweep_id_sweeps"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["configurations.id"],
            name=op.f("fk_sweep_configurations_configuration_id_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "sweep_id", "configuration_id", name=op.f("pk_sweep_configurations")
        ),
    )
    op.create_index(
        op.f("ix_sweep_configurations_configuration_id"),
        "sweep_configurations",
        ["configuration_id"],
    )

    op.create_table(
        "chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("trial_start", sa.Integer(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("tf_version", sa.String(length=64), nullable=True),
        sa.Column("device", sa.String(length=255), nullable=True),
        sa.Column("sampler", sa.String(length=16), nullable=True),
        sa.Column("dtype", sa.String(length=16), nullable=True),
        sa.Column("seed_key", sa.BigInteger(), nullable=False),
        sa.Column("enqueued_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("started_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("finished_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("heartbeat_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_chunks_status")
        ),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["configurations.id"],
            name=op.f("fk_chunks_configuration_id_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chunks")),
        sa.UniqueConstraint(
            "configuration_id", "chunk_index", name=op.f("uq_chunks_configuration_id_chunk_index")
        ),
    )
    op.create_index(op.f("ix_chunks_status"), "chunks", ["status"])

    op.create_table(
        "chunk_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chunk_id", sa.Integer(), nullable=False),
        *_stat_columns(),
        sa.ForeignKeyConstraint(
            ["chunk_id"],
            ["chunks.id"],
            name=op.f("fk_chunk_stats_chunk_id_chunks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chunk_stats")),
        sa.UniqueConstraint(
            "chunk_id", "layer", "quantity", name=op.f("uq_chunk_stats_chunk_id_layer_quantity")
        ),
    )
    op.create_table(
        "layer_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        *_stat_columns(),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["configurations.id"],
            name=op.f("fk_layer_stats_configuration_id_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_layer_stats")),
        sa.UniqueConstraint(
            "configuration_id",
            "layer",
            "quantity",
            name=op.f("uq_layer_stats_configuration_id_layer_quantity"),
        ),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it, on every backend.
    for table in (
        "layer_stats",
        "chunk_stats",
        "chunks",
        "sweep_configurations",
        "configurations",
        "sweeps",
    ):
        op.drop_table(table)

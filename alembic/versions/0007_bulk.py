"""Indexes for sweeps of 10^5 configurations, and the input geometry as typed columns (issue 12).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

- configurations.status indexed: the reconciler finds the configurations left to aggregate
  from it, whatever the number already aggregated.
- chunks (status, enqueued_at): the chunks in flight (running, or pending and enqueued) and
  those to send (pending, never enqueued) are found without scanning the others.
- sweep_configurations (sweep_id, position): a sweep's configurations read in position order
  without a sort.
- configurations.input_q, input_corr (nullable doubles, NULL for i.i.d. N(0, 1) inputs), filled
  from config_json: with the other typed parameter columns, a streamed export builds each
  configuration's columns without parsing its JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when the models do.
INDEXES = (
    ("ix_configurations_status", "configurations", ["status"]),
    ("ix_chunks_status_enqueued_at", "chunks", ["status", "enqueued_at"]),
    ("ix_sweep_configurations_sweep_id_position", "sweep_configurations", ["sweep_id", "position"]),
)
COLUMNS = ("input_q", "input_corr")
BATCH = 1000


def _fill() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, config_json FROM configurations")).all()
    updates = []
    for id_, text in rows:
        data = json.loads(text)
        if any(data.get(c) is not None for c in COLUMNS):
            updates.append({"id": id_, **{c: data.get(c) for c in COLUMNS}})
    for i in range(0, len(updates), BATCH):
        conn.execute(
            sa.text(
                "UPDATE configurations SET input_q = :input_q, input_corr = :input_corr "
                "WHERE id = :id"
            ),
            updates[i : i + BATCH],
        )


def upgrade() -> None:
    with op.batch_alter_table("configurations") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
    _fill()
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("configurations") as batch:
        for name in COLUMNS:
            batch.drop_column(name)

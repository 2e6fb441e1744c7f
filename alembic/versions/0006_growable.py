"""Growable and precision-targeted configurations (issue 13).

- The run key no longer depends on trials or chunking: it is sha256("v2:<config_hash>:<seed>")
  (a targeted configuration appends ":target=<canonical target JSON>"). An existing row is given
  the new key when it is the one with the most trials of its (config_hash, seed) (ties: the
  lowest id), so later sweeps reuse it and grow it; the others keep their old keys (still
  readable, never reused). Old and new keys cannot collide: their texts differ in form.
- configurations: target_json, stop_chunk, frontier (null for untargeted ones).
- chunks: status `skipped` (past the chunk at which the target was met).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when the models do.
BEFORE = ("pending", "running", "done", "failed")
AFTER = (*BEFORE, "skipped")
COLUMNS = (("target_json", sa.Text()), ("stop_chunk", sa.Integer()), ("frontier", sa.Integer()))


def _check(statuses: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def _replace(statuses: tuple[str, ...]) -> None:
    with op.batch_alter_table("chunks", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_chunks_status"), type_="check")
        batch.create_check_constraint("status", _check(statuses))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rekey(new: bool) -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, config_hash, seed, trials, chunk_trials, run_key FROM configurations "
            "ORDER BY id"
        )
    ).all()
    keys: dict[int, str] = {}
    if new:
        best: dict[tuple[str, int], tuple[int, int]] = {}  # (hash, seed) -> (trials, id)
        for id_, config_hash, seed, trials, _, _ in rows:
            group = (config_hash, int(seed))
            if group not in best or trials > best[group][0]:
                best[group] = (int(trials), int(id_))
        for (config_hash, seed), (_, id_) in best.items():
            keys[id_] = _sha(f"v2:{config_hash}:{seed}")
    else:
        taken = {run_key for *_, run_key in rows}
        for id_, config_hash, seed, trials, chunk_trials, run_key in rows:
            if run_key == _sha(f"v2:{config_hash}:{seed}"):
                old = _sha(f"{config_hash}:{seed}:{trials}:{chunk_trials}")
                if old not in taken:  # a grown row may now match an older one's key: keep it
                    keys[int(id_)] = old
                    taken.add(old)
    for id_, key in keys.items():
        conn.execute(
            sa.text("UPDATE configurations SET run_key = :key WHERE id = :id"),
            {"key": key, "id": id_},
        )


def upgrade() -> None:
    with op.batch_alter_table("configurations") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    _replace(AFTER)
    _rekey(new=True)


def downgrade() -> None:
    op.execute("UPDATE chunks SET status = 'pending' WHERE status = 'skipped'")
    _replace(BEFORE)
    # targeted configurations lose their target: their keys stay distinct from any other
    _rekey(new=False)
    with op.batch_alter_table("configurations") as batch:
        for name, _ in COLUMNS:
            batch.drop_column(name)

"""Configurations: content-addressed (`run_key`) and shared by every sweep that names them.

The run key is (config_hash, seed), and the precision target when there is one: never the
trial count, so a sweep asking more trials of a configuration appends chunks to it
(`scheduler.growth`). `trials` is the most trials it has chunks for; `chunk_trials` the chunk
size of its first plan. A targeted configuration keeps its target (`target_json`), the chunk
index its target was met at (`stop_chunk`, null until then or when it never is) and the last
chunk index worth computing now (`frontier`, null: every chunk).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, status_check

CONFIG_STATUSES: tuple[str, ...] = ("pending", "done", "partial")


class Configuration(Base):
    """One configuration under a seed (and a target), with typed axis columns to filter on."""

    __tablename__ = "configurations"
    __table_args__ = (
        CheckConstraint(status_check(CONFIG_STATUSES), name="status"),
        Index("ix_configurations_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_key: Mapped[str] = mapped_column(String(64), unique=True)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    config_json: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    seed_key: Mapped[int] = mapped_column(BigInteger)
    trials: Mapped[int]
    chunk_trials: Mapped[int]
    queue: Mapped[str] = mapped_column(String(64))
    target_json: Mapped[str | None] = mapped_column(Text)
    stop_chunk: Mapped[int | None]
    frontier: Mapped[int | None]

    init_name: Mapped[str] = mapped_column(String(64), index=True)
    init_label: Mapped[str] = mapped_column(String(255), index=True)
    activation_name: Mapped[str] = mapped_column(String(64), index=True)
    activation_label: Mapped[str] = mapped_column(String(255), index=True)
    depth: Mapped[int] = mapped_column(index=True)
    width: Mapped[int] = mapped_column(index=True)
    input_dim: Mapped[int] = mapped_column(index=True)
    batch: Mapped[int] = mapped_column(index=True)
    dtype: Mapped[str] = mapped_column(String(16), index=True)
    bias_std: Mapped[float] = mapped_column(index=True)
    sampler: Mapped[str] = mapped_column(String(16), index=True)
    input_q: Mapped[float | None]  # NULL: i.i.d. N(0, 1) inputs (migration 0007)
    input_corr: Mapped[float | None]

    status: Mapped[str] = mapped_column(String(16), default="pending")
    aggregated_at: Mapped[datetime | None]

"""Chunks: a run of consecutive trials of a configuration, the unit of work and of retry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, status_check

# skipped: past the chunk at which its configuration's precision target was met (never merged)
CHUNK_STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed", "skipped")


class Chunk(Base):
    """Trials `[trial_start, trial_start + n_trials)` of a configuration, with its provenance."""

    __tablename__ = "chunks"
    # The unique key leads with configuration_id, so it also serves as that column's index.
    __table_args__ = (
        UniqueConstraint("configuration_id", "chunk_index"),
        CheckConstraint(status_check(CHUNK_STATUSES), name="status"),
        # the chunks in flight or to send, found without scanning the done ones (0007)
        Index("ix_chunks_status_enqueued_at", "status", "enqueued_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    configuration_id: Mapped[int] = mapped_column(
        ForeignKey("configurations.id", ondelete="CASCADE")
    )
    chunk_index: Mapped[int]
    trial_start: Mapped[int]
    n_trials: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    queue: Mapped[str] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(255))
    tf_version: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(255))
    sampler: Mapped[str | None] = mapped_column(String(16))
    dtype: Mapped[str | None] = mapped_column(String(16))
    seed_key: Mapped[int] = mapped_column(BigInteger)
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    duration_s: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)

"""Sweeps: one submitted spec, and its link to the configurations it expands to."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, status_check, utcnow

if TYPE_CHECKING:
    from models.configuration import Configuration

SWEEP_STATUSES: tuple[str, ...] = (
    "pending",
    "running",
    "done",
    "partial",
    "failed",
    "cancelled",
    "interrupted",  # a local run was stopped (Ctrl-C): resumable, nothing running
)
SWEEP_FINISHED: tuple[str, ...] = ("done", "partial", "failed", "cancelled")


class Sweep(Base):
    """A submitted sweep: the spec as written and as normalised, its seed and its status."""

    __tablename__ = "sweeps"
    __table_args__ = (CheckConstraint(status_check(SWEEP_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    seed: Mapped[int] = mapped_column(BigInteger)
    spec_yaml: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    memory_budget_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]

    links: Mapped[list[SweepConfiguration]] = relationship(
        back_populates="sweep", cascade="all, delete-orphan", passive_deletes=True
    )


class SweepConfiguration(Base):
    """A configuration's place in a sweep: its position and the user's axis values."""

    __tablename__ = "sweep_configurations"
    __table_args__ = (Index("ix_sweep_configurations_sweep_id_position", "sweep_id", "position"),)

    sweep_id: Mapped[int] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    configuration_id: Mapped[int] = mapped_column(
        ForeignKey("configurations.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int]
    axes_json: Mapped[str] = mapped_column(Text)

    sweep: Mapped[Sweep] = relationship(back_populates="links")
    configuration: Mapped[Configuration] = relationship()

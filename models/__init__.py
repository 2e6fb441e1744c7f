"""ORM models of initsweep (SQLAlchemy and stdlib only) and the engine/session/migration glue."""

from __future__ import annotations

from models.base import Base, utcnow
from models.chunk import CHUNK_STATUSES, Chunk
from models.configuration import CONFIG_STATUSES, Configuration
from models.stats import OBSERVABLES, ChunkStat, LayerStat, LayerStatPack, StatColumns
from models.sweep import SWEEP_FINISHED, SWEEP_STATUSES, Sweep, SweepConfiguration

__all__ = [
    "CHUNK_STATUSES",
    "CONFIG_STATUSES",
    "OBSERVABLES",
    "SWEEP_FINISHED",
    "SWEEP_STATUSES",
    "Base",
    "Chunk",
    "ChunkStat",
    "Configuration",
    "LayerStat",
    "LayerStatPack",
    "StatColumns",
    "Sweep",
    "SweepConfiguration",
    "utcnow",
]

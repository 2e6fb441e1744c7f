"""Per-chunk (`chunk_stats`) and per-configuration (`layer_stats`) sufficient statistics.

Each row is one (layer, quantity): trial counts and, for each observable o of
`worker.contract.OBSERVABLES`, the mean and M2 of o over the `n_finite` finite trials in the
scaled form of `worker.stats.Moments`: the mean is `o_mean * 2^o_exp2`, M2 `o_m2 * 4^o_exp2`
(`o_exp2` is 0 for every sample inside float64's ordinary range; migration 0004). Values are IEEE
doubles stored exactly; an empty sample stores 0.0, never NaN or inf. The per-trial distribution
(migration 0003): n, mean and central sums m2..m4 of log(mean_sq), and each observable's fixed
log-spaced histogram as bytes (`worker.histogram`: LEB128 gaps and counts of the occupied bins,
~2 bytes per bin); all NULL in rows saved before it was recorded. The pair observables between
a trial's inputs (migration 0005, `worker.contract.PAIR_OBSERVABLES`): `cross_*` (over the
n_finite trials, scaled like mean_sq) and `corr_*` (over `corr_n` trials), NULL for batch 1
and in rows saved before they were recorded.

`layer_stat_packs` (migration 0008) holds, per aggregated configuration, its `layer_stats` rows
as the database returns them, packed into one blob for columnar reads (`worker.aggregate`
writes it with the rows and owns its layout); a configuration without one is read row by row.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

# Mirrors worker.contract.OBSERVABLES (models imports no numpy); a test checks they agree.
OBSERVABLES: tuple[str, ...] = ("mean", "std", "mean_sq")


class StatColumns:
    """The columns shared by chunk and configuration statistics."""

    layer: Mapped[int]
    quantity: Mapped[str] = mapped_column(String(32))
    n_trials: Mapped[int]
    n_finite: Mapped[int]
    n_first_nonfinite: Mapped[int]
    n_collapsed: Mapped[int]
    mean_mean: Mapped[float]
    mean_m2: Mapped[float]
    std_mean: Mapped[float]
    std_m2: Mapped[float]
    mean_sq_mean: Mapped[float]
    mean_sq_m2: Mapped[float]
    mean_exp2: Mapped[int] = mapped_column(default=0, server_default="0")
    std_exp2: Mapped[int] = mapped_column(default=0, server_default="0")
    mean_sq_exp2: Mapped[int] = mapped_column(default=0, server_default="0")
    log_mean_sq_n: Mapped[int | None]
    log_mean_sq_mean: Mapped[float | None]
    log_mean_sq_m2: Mapped[float | None]
    log_mean_sq_m3: Mapped[float | None]
    log_mean_sq_m4: Mapped[float | None]
    mean_hist: Mapped[bytes | None] = mapped_column(LargeBinary)
    std_hist: Mapped[bytes | None] = mapped_column(LargeBinary)
    mean_sq_hist: Mapped[bytes | None] = mapped_column(LargeBinary)
    cross_mean: Mapped[float | None]
    cross_m2: Mapped[float | None]
    cross_exp2: Mapped[int | None]
    corr_n: Mapped[int | None]
    corr_mean: Mapped[float | None]
    corr_m2: Mapped[float | None]


class ChunkStat(StatColumns, Base):
    """Statistics of one (layer, quantity) over one chunk's trials."""

    __tablename__ = "chunk_stats"
    __table_args__ = (UniqueConstraint("chunk_id", "layer", "quantity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chunk_id: Mapped[int] = mapped_column(ForeignKey("chunks.id", ondelete="CASCADE"))


class LayerStat(StatColumns, Base):
    """Statistics of one (layer, quantity) over all trials of a configuration (merged chunks),
    with the quantiles its histograms give (computed once, when it is aggregated, so a
    columnar read never decodes a histogram; NULL where there is none or it is beyond float64)."""

    __tablename__ = "layer_stats"
    __table_args__ = (UniqueConstraint("configuration_id", "layer", "quantity"),)

    mean_q05: Mapped[float | None]
    mean_median: Mapped[float | None]
    mean_q95: Mapped[float | None]
    std_q05: Mapped[float | None]
    std_median: Mapped[float | None]
    std_q95: Mapped[float | None]
    mean_sq_q05: Mapped[float | None]
    mean_sq_median: Mapped[float | None]
    mean_sq_q95: Mapped[float | None]

    id: Mapped[int] = mapped_column(primary_key=True)
    configuration_id: Mapped[int] = mapped_column(
        ForeignKey("configurations.id", ondelete="CASCADE")
    )


class LayerStatPack(Base):
    """A configuration's `layer_stats` rows in one blob of fixed-size little-endian records
    (`worker.aggregate.pack_layout`: `layout` names the record's columns, `n_rows` the records),
    written in the transaction that writes the rows, from the rows read back, so a columnar read
    of the blob gives bit for bit what reading the rows gives."""

    __tablename__ = "layer_stat_packs"

    configuration_id: Mapped[int] = mapped_column(
        ForeignKey("configurations.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    layout: Mapped[int]
    n_rows: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)

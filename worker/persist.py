"""A chunk's rows: claim, heartbeat, load its task, save (idempotent), fail. Never commits.

`save_outcome` writes the chunk's statistics and marks it done in one SAVEPOINT inside the
caller's transaction, so a duplicate run (redelivered message, two workers racing) records
nothing and leaves the caller's transaction usable: on PostgreSQL the chunk row is locked
(SELECT ... FOR UPDATE) so the second saver waits and then sees `done`; on SQLite writers are
serialised by BEGIN IMMEDIATE; and the unique key (chunk_id, layer, quantity) backs both.
The mapping LayerRecord <-> chunk_stats/layer_stats columns lives here, once.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Chunk, ChunkStat, Configuration, StatColumns, Sweep, SweepConfiguration, utcnow
from worker.contract import (
    OBSERVABLES,
    QUANTILES,
    QUANTITIES,
    ChunkOutcome,
    ChunkTask,
    LayerRecord,
    SimConfig,
    TrialDistribution,
)
from worker.errors import ChunkNotFoundError
from worker.histogram import Histogram, decode_many, many_quantiles
from worker.memory import DEFAULT_BUDGET
from worker.stats import Moments, Moments4


def claim_chunk(
    *, session: Session, chunk_id: int, worker: str, max_claims: int
) -> ChunkTask | None:
    """Mark the chunk running for `worker` and return its task.

    None when the chunk is done or failed (a stale or duplicate message), or when it has been
    claimed `max_claims` times already, in which case it is marked failed: a chunk whose worker
    keeps dying (out of memory, a crash in native code) must not be redelivered forever.
    None, too, when no sweep wants the chunk any more (every sweep linked to its configuration
    is cancelled or finished: configurations are shared by sweeps): it stays pending, untouched,
    so a message still in the broker after `cancel` runs nothing.
    """
    if not _wanted(session, chunk_id):
        if session.scalar(select(Chunk.id).where(Chunk.id == chunk_id)) is None:
            raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
        return None
    now = utcnow()
    result = session.execute(
        update(Chunk)
        .where(
            Chunk.id == chunk_id,
            Chunk.status.in_(("pending", "running")),
            Chunk.attempts < max_claims,
        )
        .values(
            status="running",
            attempts=Chunk.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
        )
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount == 0:
        row = session.execute(
            select(Chunk.status, Chunk.attempts).where(Chunk.id == chunk_id)
        ).one_or_none()
        if row is None:
            raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
        if row.status in ("pending", "running"):
            mark_failed(
                session=session,
                chunk_id=chunk_id,
                error=f"abandoned after {row.attempts} attempts whose worker was lost",
                final=True,
            )
        return None
    return load_task(session=session, chunk_id=chunk_id)


SWEEPS_WANTING_WORK = ("pending", "running")


def _wanted(session: Session, chunk_id: int) -> bool:
    """Some sweep that still wants work is linked to the chunk's configuration."""
    return bool(
        session.scalar(
            select(Chunk.id)
            .join(
                SweepConfiguration,
                SweepConfiguration.configuration_id == Chunk.configuration_id,
            )
            .join(Sweep, Sweep.id == SweepConfiguration.sweep_id)
            .where(Chunk.id == chunk_id, Sweep.status.in_(SWEEPS_WANTING_WORK))
            .limit(1)
        )
    )


def heartbeat(*, session: Session, chunk_id: int) -> None:
    """Touch heartbeat_at of a running chunk (long chunks, for the stale-chunk reconciler)."""
    session.execute(
        update(Chunk)
        .where(Chunk.id == chunk_id, Chunk.status == "running")
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def save_outcome(*, session: Session, chunk_id: int, outcome: ChunkOutcome, worker: str) -> bool:
    """Insert the chunk's stats and mark it done; False (nothing written) if already saved or
    skipped."""
    try:
        with session.begin_nested():
            chunk = session.scalars(
                select(Chunk)
                .where(Chunk.id == chunk_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).one_or_none()
            if chunk is None:
                raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
            if chunk.status in ("done", "skipped"):  # skipped: past its met target, not wanted
                return False
            _check_outcome(chunk, outcome)
            rows = [{"chunk_id": chunk_id, **record_values(r)} for r in outcome.records]
            if rows:
                session.execute(insert(ChunkStat), rows)
            provenance = outcome.provenance
            chunk.status = "done"
            chunk.worker = worker
            chunk.tf_version = provenance.tf_version
            chunk.device = provenance.device
            chunk.sampler = provenance.sampler
            chunk.dtype = provenance.dtype
            chunk.duration_s = float(provenance.duration_s)
            chunk.finished_at = utcnow()
            chunk.error = None
            session.flush()
    except IntegrityError:  # the unique key: another worker recorded this chunk first
        return False
    return True


def _check_outcome(chunk: Chunk, outcome: ChunkOutcome) -> None:
    where = f"chunk {chunk.id}"
    if (outcome.chunk_index, outcome.n_trials) != (chunk.chunk_index, chunk.n_trials):
        raise ValueError(
            f"{where}: expected an outcome of chunk_index={chunk.chunk_index} with "
            f"n_trials={chunk.n_trials}. Received: chunk_index={outcome.chunk_index}, "
            f"n_trials={outcome.n_trials}"
        )
    if outcome.provenance.seed_key != chunk.seed_key:
        raise ValueError(
            f"{where}: expected seed_key={chunk.seed_key}. Received: {outcome.provenance.seed_key}"
        )
    keys = [r.key for r in outcome.records]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{where}: expected one record per (layer, quantity). Received: {keys}")


def mark_failed(*, session: Session, chunk_id: int, error: str, final: bool) -> None:
    """Record a failed attempt: final → failed; otherwise back to pending. A done or skipped
    chunk stays."""
    if session.scalar(select(Chunk.id).where(Chunk.id == chunk_id)) is None:
        raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
    session.execute(
        update(Chunk)
        .where(Chunk.id == chunk_id, Chunk.status.not_in(("done", "skipped")))
        .values(
            status="failed" if final else "pending",
            error=error,
            finished_at=utcnow() if final else None,
        )
        .execution_options(synchronize_session=False)
    )


def load_task(*, session: Session, chunk_id: int) -> ChunkTask:
    """The ChunkTask of chunk `chunk_id` (budget of the newest sweep naming its configuration)."""
    row = session.execute(
        select(Chunk, Configuration)
        .join(Configuration, Configuration.id == Chunk.configuration_id)
        .where(Chunk.id == chunk_id)
    ).one_or_none()
    if row is None:
        raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
    chunk, configuration = row
    budget = session.scalar(
        select(Sweep.memory_budget_bytes)
        .join(SweepConfiguration, SweepConfiguration.sweep_id == Sweep.id)
        .where(SweepConfiguration.configuration_id == configuration.id)
        .order_by(Sweep.id.desc())
        .limit(1)
    )
    return ChunkTask(
        config=SimConfig.from_json(json.loads(configuration.config_json)),
        seed_key=chunk.seed_key,
        chunk_index=chunk.chunk_index,
        trial_start=chunk.trial_start,
        n_trials=chunk.n_trials,
        memory_budget_bytes=DEFAULT_BUDGET if budget is None else budget,
    )


def chunk_configuration_id(*, session: Session, chunk_id: int) -> int:
    """The id of the configuration chunk `chunk_id` belongs to."""
    config_id = session.scalar(select(Chunk.configuration_id).where(Chunk.id == chunk_id))
    if config_id is None:
        raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
    return config_id


def saved_chunks(*, session: Session, chunk_ids: Sequence[int]) -> dict[int, tuple[int, float]]:
    """{chunk id: (n_trials, duration_s)} of those of `chunk_ids` that are saved (done)."""
    rows = session.execute(
        select(Chunk.id, Chunk.n_trials, Chunk.duration_s).where(
            Chunk.id.in_(list(chunk_ids)), Chunk.status == "done"
        )
    )
    return {cid: (int(n), float(seconds or 0.0)) for cid, n, seconds in rows}


def chunk_attempts(*, session: Session, chunk_id: int) -> int:
    """How many times the chunk has been claimed."""
    attempts = session.scalar(select(Chunk.attempts).where(Chunk.id == chunk_id))
    if attempts is None:
        raise ChunkNotFoundError(f"chunk {chunk_id}: no such chunk")
    return int(attempts)


# --- LayerRecord <-> chunk_stats / layer_stats columns: the one place that maps them ---


# Moments are stored in the scaled form of `worker.stats.Moments` (`<o>_mean`, `<o>_m2`,
# `<o>_exp2`), so a sample beyond float64's range (mean_sq of float64 values below ~1e-154 or
# above ~1e154) is stored exactly. A moment that is still not finite (only a hand-made record can
# carry one) is data, not an error: it is stored capped at +-CAP, the largest float64, which is
# the flag "exceeds float64" (no finite merge of finite trials' statistics reaches CAP exactly),
# and read back as +-inf, which readers show as "no value" (None). NaN is stored as +CAP.
# docs/core.md, "Observables and records".
CAP = sys.float_info.max


def _capped(x: float) -> float:
    if math.isnan(x):
        return CAP
    return x if math.isfinite(x) else math.copysign(CAP, x)


def _uncapped(x: float) -> float:
    return math.copysign(math.inf, x) if abs(x) == CAP else x


def record_values(record: LayerRecord) -> dict[str, Any]:
    """Column values of a record (moments beyond float64 capped, see CAP); refuses moments whose
    n is not n_finite."""
    where = f"layer {record.layer} {record.quantity}"
    if record.quantity not in QUANTITIES:
        raise ValueError(
            f"{where}: expected a quantity in {', '.join(QUANTITIES)}. "
            f"Received: {record.quantity!r}"
        )
    counts = (record.n_finite, record.n_first_nonfinite, record.n_collapsed)
    if min(counts) < 0 or max(counts) > record.n_trials:
        raise ValueError(
            f"{where}: expected counts in [0, n_trials={record.n_trials}]. Received: "
            f"n_finite={record.n_finite}, n_first_nonfinite={record.n_first_nonfinite}, "
            f"n_collapsed={record.n_collapsed}"
        )
    values: dict[str, Any] = {
        "layer": int(record.layer),
        "quantity": record.quantity,
        "n_trials": int(record.n_trials),
        "n_finite": int(record.n_finite),
        "n_first_nonfinite": int(record.n_first_nonfinite),
        "n_collapsed": int(record.n_collapsed),
    }
    for name in OBSERVABLES:
        moments: Moments = getattr(record, name)
        if moments.n != record.n_finite:
            raise ValueError(
                f"{where}: expected {name}.n == n_finite == {record.n_finite}. "
                f"Received: {moments.n}"
            )
        mean, m2 = (float(moments.mean), float(moments.m2)) if moments.n else (0.0, 0.0)
        values[f"{name}_mean"] = _capped(mean)
        values[f"{name}_m2"] = _capped(m2)
        values[f"{name}_exp2"] = int(moments.exp2) if moments.n else 0
    values.update(distribution_values(record))
    values.update(pair_values(record))
    return values


# The pair observables' columns (nullable: NULL for batch 1 and in rows saved before migration
# 0005): cross in the scaled form of the observables (its n is n_finite), corr with its own n.
PAIR_FIELDS: tuple[str, ...] = (
    "cross_mean",
    "cross_m2",
    "cross_exp2",
    "corr_n",
    "corr_mean",
    "corr_m2",
)


def pair_values(record: LayerRecord) -> dict[str, Any]:
    """The `PAIR_FIELDS` columns of a record (all None without pair observables); refuses
    cross moments not over n_finite trials, corr moments over more, or only one of the two."""
    cross, corr = record.cross, record.corr
    if cross is None and corr is None:
        return dict.fromkeys(PAIR_FIELDS)
    where = f"layer {record.layer} {record.quantity}"
    if cross is None or corr is None:
        raise ValueError(f"{where}: expected both cross and corr, or neither. Received: one")
    if cross.n != record.n_finite:
        raise ValueError(
            f"{where}: expected cross.n == n_finite == {record.n_finite}. Received: {cross.n}"
        )
    if not 0 <= corr.n <= record.n_finite:
        raise ValueError(
            f"{where}: expected corr.n in [0, n_finite={record.n_finite}]. Received: {corr.n}"
        )
    if corr.exp2 != 0 or not (math.isfinite(corr.mean) and math.isfinite(corr.m2)):
        raise ValueError(f"{where}: expected corr moments of finite correlations. Received: {corr}")
    has_cross, has_corr = bool(cross.n), bool(corr.n)
    return {
        "cross_mean": _capped(float(cross.mean)) if has_cross else 0.0,
        "cross_m2": _capped(float(cross.m2)) if has_cross else 0.0,
        "cross_exp2": int(cross.exp2) if has_cross else 0,
        "corr_n": int(corr.n),
        "corr_mean": float(corr.mean) if has_corr else 0.0,
        "corr_m2": float(corr.m2) if has_corr else 0.0,
    }


def pairs_from_values(
    n_finite: int, values: Sequence[Any]
) -> tuple[Moments | None, Moments | None]:
    """(cross, corr) of the `PAIR_FIELDS` values, in that order (None, None: not recorded)."""
    cross_mean, cross_m2, cross_exp2, corr_n, corr_mean, corr_m2 = values
    if cross_mean is None:
        return None, None
    cross = Moments(n_finite, _uncapped(cross_mean), _uncapped(cross_m2), int(cross_exp2))
    return cross, Moments(int(corr_n), float(corr_mean), float(corr_m2))


# The per-trial distribution's columns (nullable: NULL where it was not recorded, in rows
# saved before migration 0003): log(mean_sq)'s Moments4, then each observable's histogram bytes.
LOG_FIELDS: tuple[str, ...] = tuple(f"log_mean_sq_{p}" for p in ("n", "mean", "m2", "m3", "m4"))
DIST_FIELDS: tuple[str, ...] = (*LOG_FIELDS, *(f"{name}_hist" for name in OBSERVABLES))


def distribution_values(record: LayerRecord) -> dict[str, Any]:
    """The `DIST_FIELDS` columns of a record (all None without a distribution); refuses a
    distribution that is not over the record's n_finite trials."""
    dist = record.dist
    if dist is None:
        return dict.fromkeys(DIST_FIELDS)
    where = f"layer {record.layer} {record.quantity}"
    log = dist.log_mean_sq
    if not 0 <= log.n <= record.n_finite:
        raise ValueError(
            f"{where}: expected log_mean_sq.n in [0, n_finite={record.n_finite}]. Received: {log.n}"
        )
    values: dict[str, Any] = {"log_mean_sq_n": int(log.n)}
    for part in ("mean", "m2", "m3", "m4"):
        x = float(getattr(log, part)) if log.n else 0.0
        if not math.isfinite(x):
            raise ValueError(f"{where}: expected a finite log_mean_sq.{part}. Received: {x}")
        values[f"log_mean_sq_{part}"] = x
    for name in OBSERVABLES:
        hist = dist.histogram(name)
        if hist.n != record.n_finite:
            raise ValueError(
                f"{where}: expected the {name} histogram to count n_finite={record.n_finite} "
                f"trials. Received: {hist.n}"
            )
        values[f"{name}_hist"] = hist.encode()
    return values


# layer_stats only: the quantiles of each histogram (`QUANTILES`), computed when aggregated.
QUANTILE_FIELDS: tuple[str, ...] = tuple(
    f"{name}_{suffix}" for name in OBSERVABLES for suffix, _ in QUANTILES
)


def quantile_values(record: LayerRecord) -> dict[str, float | None]:
    """The `QUANTILE_FIELDS` of an aggregated record: `Histogram.quantiles` of each observable
    (None without a distribution, for an empty one, or beyond float64)."""
    return quantile_rows([record])[0]


def quantile_rows(records: Sequence[LayerRecord]) -> list[dict[str, float | None]]:
    """`quantile_values` of each record, read in one vectorised pass (`many_quantiles`)."""
    ps = [p for _, p in QUANTILES]
    with_dist = [r for r in records if r.dist is not None]
    found = many_quantiles(
        [r.dist.histogram(name) for r in with_dist if r.dist for name in OBSERVABLES], ps
    ).reshape(len(with_dist), len(OBSERVABLES) * len(ps))
    rows = iter(found.tolist())
    out: list[dict[str, float | None]] = []
    for record in records:
        values: dict[str, float | None] = dict.fromkeys(QUANTILE_FIELDS)
        if record.dist is not None:
            for field, x in zip(QUANTILE_FIELDS, next(rows), strict=True):
                values[field] = x if math.isfinite(x) else None
        out.append(values)
    return out


def distribution_from_values(
    values: Sequence[Any], hists: Sequence[Histogram] | None = None
) -> TrialDistribution | None:
    """The TrialDistribution of the `DIST_FIELDS` values, in that order (None: not recorded);
    `hists`: its three histograms, already decoded from values[5:8]."""
    if values[0] is None:
        return None
    n, mean, m2, m3, m4 = values[:5]
    if hists is None:
        hists = [Histogram.decode(bytes(blob)) for blob in values[5:8]]
    return TrialDistribution(Moments4(int(n), mean, m2, m3, m4), *hists)


# The statistic columns of a chunk_stats or layer_stats row, in the order `record_from_values`
# reads them (a bulk read selects these columns and gets plain tuples: no ORM objects).
STAT_FIELDS: tuple[str, ...] = (
    "layer",
    "quantity",
    "n_trials",
    "n_finite",
    "n_first_nonfinite",
    "n_collapsed",
    *(f"{name}_{part}" for name in OBSERVABLES for part in ("mean", "m2")),
    *(f"{name}_exp2" for name in OBSERVABLES),
    *DIST_FIELDS,
    *PAIR_FIELDS,
)
_N_BASE = 6 + 3 * len(OBSERVABLES)  # STAT_FIELDS before DIST_FIELDS
_N_DIST = _N_BASE + len(DIST_FIELDS)  # STAT_FIELDS before PAIR_FIELDS


def records_from_values(rows: Sequence[Sequence[Any]]) -> list[LayerRecord]:
    """`record_from_values` of each row, every histogram decoded in one pass (`decode_many`)."""
    blobs = [
        bytes(blob)
        for values in rows
        if values[_N_BASE] is not None
        for blob in values[_N_BASE + 5 : _N_DIST]
    ]
    hists = iter(decode_many(blobs))
    out = []
    for values in rows:
        if values[_N_BASE] is None:
            out.append(record_from_values(values))
        else:
            out.append(record_from_values(values, [next(hists), next(hists), next(hists)]))
    return out


def record_from_values(
    values: Sequence[Any], hists: Sequence[Histogram] | None = None
) -> LayerRecord:
    """`record_from_row` of the values of `STAT_FIELDS`, in that order (`hists`: its
    distribution's histograms, already decoded)."""
    layer, quantity, n_trials, n_finite, n_first_nonfinite, n_collapsed = values[:6]
    moments = {
        name: Moments(
            n_finite,
            _uncapped(values[6 + 2 * i]),
            _uncapped(values[7 + 2 * i]),
            int(values[6 + 2 * len(OBSERVABLES) + i]),
        )
        for i, name in enumerate(OBSERVABLES)
    }
    cross, corr = pairs_from_values(n_finite, values[_N_DIST : _N_DIST + len(PAIR_FIELDS)])
    return LayerRecord(
        layer=layer,
        quantity=quantity,
        n_trials=n_trials,
        n_finite=n_finite,
        n_first_nonfinite=n_first_nonfinite,
        n_collapsed=n_collapsed,
        mean=moments["mean"],
        std=moments["std"],
        mean_sq=moments["mean_sq"],
        dist=distribution_from_values(values[_N_BASE:_N_DIST], hists),
        cross=cross,
        corr=corr,
    )


def record_from_row(row: StatColumns) -> LayerRecord:
    """The LayerRecord of a chunk_stats or layer_stats row (moments' n is n_finite)."""
    moments = {
        name: Moments(
            row.n_finite,
            _uncapped(getattr(row, f"{name}_mean")),
            _uncapped(getattr(row, f"{name}_m2")),
            int(getattr(row, f"{name}_exp2")),
        )
        for name in OBSERVABLES
    }
    cross, corr = pairs_from_values(row.n_finite, [getattr(row, name) for name in PAIR_FIELDS])
    return LayerRecord(
        layer=row.layer,
        quantity=row.quantity,
        n_trials=row.n_trials,
        n_finite=row.n_finite,
        n_first_nonfinite=row.n_first_nonfinite,
        n_collapsed=row.n_collapsed,
        mean=moments["mean"],
        std=moments["std"],
        mean_sq=moments["mean_sq"],
        dist=distribution_from_values([getattr(row, name) for name in DIST_FIELDS]),
        cross=cross,
        corr=corr,
    )


def record_order(record: LayerRecord) -> tuple[int, int]:
    """Sort key of records: layer, then the contract's quantity order."""
    return (record.layer, QUANTITIES.index(record.quantity))

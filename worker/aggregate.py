"""Per-configuration layer statistics: chunk statistics merged in chunk-index order.

The merge is Chan et al.'s pairwise update (`worker.stats.Moments.merge`), applied chunk by chunk
in ascending `chunk_index` whatever order the chunks finished in, so a configuration's aggregate
is bit-identical however its chunks were scheduled, and re-running it rewrites identical rows.

A configuration with a precision target (`worker.target`) is decided on the prefix of its done
chunks: once chunks 0..k* meet it, the chunks after k* not done are `skipped`, and the aggregate
is the merge of chunks 0..k* exactly (chunks after k* that happened to finish are never merged);
until then each save moves its frontier (the chunks worth sending now).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, exists, insert, null, or_, select, update
from sqlalchemy.orm import Session

from models import Chunk, ChunkStat, Configuration, LayerStat, SweepConfiguration, utcnow
from worker.contract import OBSERVABLES, QUANTILES, LayerRecord, merge_records
from worker.histogram import batch_quantiles
from worker.persist import (
    QUANTILE_FIELDS,
    STAT_FIELDS,
    quantile_rows,
    record_from_row,
    record_order,
    record_values,
    records_from_values,
)
from worker.stat_columns import write_packs
from worker.target import Target, frontier, stop_index

_IN_BATCH = 500  # bound IN (...) lists (SQLite's variable limit)
# a `layer_stat_rows` tuple
STAT_ROW: tuple[str, ...] = ("configuration_id", *STAT_FIELDS, *QUANTILE_FIELDS)
_HISTOGRAMS = frozenset(f for f in STAT_FIELDS if f.endswith("_hist"))


def chunk_records(*, session: Session, chunk_id: int) -> list[LayerRecord]:
    """The saved records of one chunk, in (layer, quantity) order."""
    rows = session.scalars(select(ChunkStat).where(ChunkStat.chunk_id == chunk_id))
    return sorted((record_from_row(r) for r in rows), key=record_order)


def aggregate_config(*, session: Session, configuration_id: int) -> bool:
    """Merge a finished configuration's chunks into layer_stats; False (no change) if unfinished.

    Targeted: merge chunks 0..k* once k* is known (module doc), or every chunk once all are done
    and none met the target; otherwise only its frontier moves (False)."""
    # Lock the configuration (PostgreSQL) so two aggregators do not interleave delete + insert.
    configuration = session.scalars(
        select(Configuration)
        .where(Configuration.id == configuration_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if configuration is None:
        return False
    chunks = session.execute(
        select(Chunk.id, Chunk.status, Chunk.n_trials)
        .where(Chunk.configuration_id == configuration_id)
        .order_by(Chunk.chunk_index)
    ).all()
    if configuration.target_json is not None:
        stop = _decide(session, configuration, chunks)
        if stop is None:
            return False
        chunks = chunks[: stop + 1]
    if any(status != "done" for _, status, _ in chunks):
        return False
    session.execute(delete(LayerStat).where(LayerStat.configuration_id == configuration_id))
    if len(chunks) == 1:
        rows = _single_chunk_rows(session, configuration_id, chunks[0][0])
    else:
        rows = _merged_rows(session, configuration_id, [chunk_id for chunk_id, _, _ in chunks])
    if rows:
        session.execute(insert(LayerStat), rows)
    write_packs(session=session, configuration_ids=[configuration_id])
    configuration.status = "done"
    configuration.aggregated_at = utcnow()
    session.flush()
    return True


def _merged_rows(
    session: Session, configuration_id: int, chunk_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """layer_stats rows: the chunks' records merged in the order of `chunk_ids`."""
    groups: dict[int, list[LayerRecord]] = {chunk_id: [] for chunk_id in chunk_ids}
    for row in session.scalars(
        select(ChunkStat)
        .join(Chunk, Chunk.id == ChunkStat.chunk_id)
        .where(Chunk.configuration_id == configuration_id)
        .where(Chunk.id.in_(list(groups)))
    ):
        groups[row.chunk_id].append(record_from_row(row))
    # dicts keep insertion order: groups are in chunk-index order, as merge_records requires
    merged = merge_records([sorted(g, key=record_order) for g in groups.values()])
    return [
        {"configuration_id": configuration_id, **record_values(r), **q}
        for r, q in zip(merged, quantile_rows(merged), strict=True)
    ]


def _single_chunk_rows(
    session: Session, configuration_id: int, chunk_id: int
) -> list[dict[str, Any]]:
    """layer_stats rows of a one-chunk configuration: its chunk's stored columns as they are
    (the merge of one group is that group, and the stored values are `record_values`' own),
    with the quantiles read from the stored histograms in one vectorised pass, bit for bit
    `quantile_values` (`worker.histogram.batch_quantiles`)."""
    stored = session.connection().execute(
        select(*(getattr(ChunkStat, name) for name in STAT_FIELDS)).where(
            ChunkStat.chunk_id == chunk_id
        )
    )
    rows = [{"configuration_id": configuration_id, **row._asdict()} for row in stored]
    ps = [p for _, p in QUANTILES]
    for name in OBSERVABLES:
        values, valid = batch_quantiles([row[f"{name}_hist"] for row in rows], ps)
        for row, found, ok in zip(rows, values.tolist(), valid.tolist(), strict=True):
            for (suffix, _), x, good in zip(QUANTILES, found, ok, strict=True):
                row[f"{name}_{suffix}"] = x if good else None
    return rows


def _decide(session: Session, configuration: Configuration, chunks: Sequence[Any]) -> int | None:
    """The last chunk index a targeted configuration merges (k*, or its last chunk when every
    chunk is done and none met the target), its later unfinished chunks skipped; None while
    undecided, its frontier moved on. `chunks`: (id, status, n_trials) in index order."""
    target = Target.from_json(json.loads(configuration.target_json or "{}"))
    n_prefix = next((k for k, (_, status, _) in enumerate(chunks) if status != "done"), len(chunks))
    prefix_ids = [chunk_id for chunk_id, _, _ in chunks[:n_prefix]]
    found = {
        row.chunk_id: record_from_row(row)
        for row in session.scalars(
            select(ChunkStat).where(
                ChunkStat.chunk_id.in_(prefix_ids),
                ChunkStat.layer == target.layer_of(configuration.depth),
                ChunkStat.quantity == target.quantity,
            )
        )
    }
    prefix = [(int(n), found.get(chunk_id)) for chunk_id, _, n in chunks[:n_prefix]]
    stop = stop_index(target, prefix)
    if stop is not None:
        configuration.stop_chunk = stop
        later = [chunk_id for chunk_id, status, _ in chunks[stop + 1 :] if status != "done"]
        for i in range(0, len(later), _IN_BATCH):
            session.execute(
                update(Chunk)
                .where(Chunk.id.in_(later[i : i + _IN_BATCH]), Chunk.status != "done")
                .values(status="skipped", worker=None, error=None)
                .execution_options(synchronize_session=False)
            )
        configuration.frontier = stop
        return stop
    configuration.stop_chunk = None
    if n_prefix == len(chunks):
        return len(chunks) - 1
    configuration.frontier = frontier(target, [int(n) for _, _, n in chunks], prefix)
    session.flush()
    return None


def aggregate_sweep(*, session: Session, sweep_id: int, force: bool = False) -> int:
    """Aggregate the sweep's configurations whose chunks are all done, and the targeted ones
    (`aggregate_config` decides those); returns how many were aggregated.

    Configurations already aggregated (status done) are skipped unless `force`.
    """
    unfinished = exists().where(Chunk.configuration_id == Configuration.id, Chunk.status != "done")
    query = (
        select(Configuration.id)
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Configuration.id)
        .where(SweepConfiguration.sweep_id == sweep_id)
        .where(or_(~unfinished, Configuration.target_json.is_not(None)))
        .order_by(SweepConfiguration.position)
    )
    if not force:
        query = query.where(Configuration.status != "done")
    return sum(
        aggregate_config(session=session, configuration_id=cid)
        for cid in session.scalars(query).all()
    )


def config_records(*, session: Session, configuration_id: int) -> list[LayerRecord]:
    """The aggregated records of a configuration, in (layer, quantity) order."""
    rows = session.scalars(select(LayerStat).where(LayerStat.configuration_id == configuration_id))
    return sorted((record_from_row(r) for r in rows), key=record_order)


def sweep_layer_records(*, session: Session, sweep_id: int) -> dict[int, list[LayerRecord]]:
    """configuration id -> its aggregated records in (layer, quantity) order (one statement)."""
    rows = session.scalars(
        select(LayerStat)
        .join(
            SweepConfiguration,
            SweepConfiguration.configuration_id == LayerStat.configuration_id,
        )
        .where(SweepConfiguration.sweep_id == sweep_id)
    )
    out: dict[int, list[LayerRecord]] = {}
    for row in rows:
        out.setdefault(row.configuration_id, []).append(record_from_row(row))
    return {k: sorted(v, key=record_order) for k, v in out.items()}


def layer_stat_rows(
    *, session: Session, configuration_ids: Sequence[int], histograms: bool = True
) -> list[Any]:
    """The aggregated rows of these configurations as plain tuples of the columns `STAT_ROW`
    (configuration_id, `worker.persist.STAT_FIELDS`, then `QUANTILE_FIELDS`), unordered: one
    statement per 500 ids, no ORM objects (a streamed export reads millions). Without
    `histograms` their bytes are not read (None in their places; the quantiles are there)."""
    columns = [
        getattr(LayerStat, name) if histograms or name not in _HISTOGRAMS else null().label(name)
        for name in (*STAT_FIELDS, *QUANTILE_FIELDS)
    ]
    ids = list(configuration_ids)
    rows: list[Any] = []
    connection = session.connection()  # Core execution: plain rows, no ORM loading step
    for i in range(0, len(ids), _IN_BATCH):
        rows.extend(
            connection.execute(
                select(LayerStat.configuration_id, *columns).where(
                    LayerStat.configuration_id.in_(ids[i : i + _IN_BATCH])
                )
            ).all()
        )
    return rows


def records_by_configuration(rows: Sequence[Any]) -> dict[int, list[LayerRecord]]:
    """configuration id -> its records in (layer, quantity) order, from `layer_stat_rows`."""
    out: dict[int, list[LayerRecord]] = {}
    for row, record in zip(rows, records_from_values([row[1:] for row in rows]), strict=True):
        out.setdefault(row[0], []).append(record)
    return {k: sorted(v, key=record_order) for k, v in out.items()}


def partial_records(
    *, session: Session, sweep_id: int, configuration_ids: Sequence[int] | None = None
) -> dict[int, list[LayerRecord]]:
    """configuration id -> the merge of its DONE chunks so far, for configurations not aggregated.

    The same merge as `aggregate_config` (chunk-index order) over whichever chunks are done, so
    a partial result equals the aggregate of those chunks and grows into the final one. One
    statement for the whole sweep, or per 500 of `configuration_ids` when given (a batch of a
    streamed read); aggregated configurations are left out (their rows are in layer_stats).
    """
    query = (
        select(ChunkStat, Chunk.configuration_id, Chunk.chunk_index)
        .join(Chunk, Chunk.id == ChunkStat.chunk_id)
        .join(Configuration, Configuration.id == Chunk.configuration_id)
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Chunk.configuration_id)
        .where(
            SweepConfiguration.sweep_id == sweep_id,
            Chunk.status == "done",
            Configuration.status != "done",
        )
    )
    if configuration_ids is None:
        rows: list[Any] = list(session.execute(query))
    else:
        ids = list(configuration_ids)
        rows = []
        for i in range(0, len(ids), _IN_BATCH):
            batch = ids[i : i + _IN_BATCH]
            rows.extend(session.execute(query.where(Chunk.configuration_id.in_(batch))))
    groups: dict[int, dict[int, list[LayerRecord]]] = {}
    for stat, configuration_id, chunk_index in rows:
        groups.setdefault(configuration_id, {}).setdefault(chunk_index, []).append(
            record_from_row(stat)
        )
    return {
        cid: merge_records([sorted(chunks[i], key=record_order) for i in sorted(chunks)])
        for cid, chunks in groups.items()
    }

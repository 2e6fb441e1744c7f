"""What the user asks of a sweep, read from the database: one batched read per request.

Each request reads its rows once, whatever the number of configurations: `sweep_results` (the
configurations and every aggregated layer statistic, three statements), `result_records` and
`theory_records` (the records of `scheduler.analysis.records`, without and with theory),
`report_input` (everything `scheduler.analysis.report` renders) and `sweep_progress`. What the
values mean is `scheduler.analysis`'s business; the tables and CSV of the CLI are at the end.

A sweep too large to hold at once is streamed: `result_stream` reads the configurations' light
references once (one statement), then the records of a batch of configurations at a time (at
most `EXPORT_BATCH` of them holding about `EXPORT_ROWS` rows; two or three statements per
batch), with every column and its kind fixed before the first row,
so an export (`scheduler.export`) or `results(columns=..., configs=...)` holds one batch.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter, methodcaller
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from scheduler.activity import chunk_activity, chunk_provenance, config_devices
from scheduler.analysis.records import (
    PARAM_KEYS,
    RECORD_KEYS,
    ConfigResults,
    Record,
    column_kinds,
    columns_for_axes,
    result_columns,
    result_head,
    result_rows,
)
from scheduler.errors import UserError
from scheduler.formatting import config_label, pm, printable
from scheduler.where import Term, Where, check_columns, row_matches, where_terms
from worker.aggregate import (
    layer_stat_rows,
    partial_records,
    records_by_configuration,
    sweep_layer_records,
)
from worker.stat_columns import StatColumnReader

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from scheduler.analysis.compare import CheckReport, Predictor
    from scheduler.analysis.report import ReportInput, SweepProvenance
    from scheduler.analysis.theory import ConfigTheory
    from scheduler.store import ConfigInfo, ConfigRef
    from worker.contract import LayerRecord, SimConfig

__all__ = [
    "ACTIVE_WINDOW",
    "EXPORT_BATCH",
    "ResultSet",
    "ResultStream",
    "StatBatch",
    "SweepProgress",
    "render_check",
    "render_csv",
    "render_summary",
    "render_table",
    "report_input",
    "result_records",
    "result_set",
    "result_stream",
    "results",
    "summarize",
    "sweep_progress",
    "sweep_provenance",
    "sweep_results",
    "table_console",
    "theory_records",
]

ACTIVE_WINDOW = timedelta(seconds=60)  # a heartbeat older than this: the worker is gone
_IN_BATCH = 500  # bound IN (...) lists (SQLite's variable limit)
EXPORT_BATCH = 4000  # at most this many configurations per batch of a streamed read
EXPORT_ROWS = 1 << 17  # and about this many rows (one Parquet row group), however deep they are


# ------------------------------------------------------------------------- requests


def _read_results(session: Session, sweep_id: int) -> tuple[list[ConfigInfo], list[ConfigResults]]:
    """The sweep's configurations (UnknownSweepError if absent) and their records: 3 statements."""
    from scheduler.store import sweep_config_rows

    infos = sweep_config_rows(session=session, sweep_id=sweep_id)
    by_id = sweep_layer_records(session=session, sweep_id=sweep_id)
    if any(info.status != "done" for info in infos):
        by_id.update(partial_records(session=session, sweep_id=sweep_id))
    return infos, _config_results(infos, by_id)


def _config_results(
    infos: Sequence[ConfigInfo], by_id: Mapping[int, Sequence[LayerRecord]]
) -> list[ConfigResults]:
    """Each configuration with its records; complete once all its chunks are aggregated."""
    return [
        ConfigResults(
            info.config_hash,
            info.config,
            info.axes,
            tuple(by_id.get(info.id, ())),
            complete=info.status == "done",
        )
        for info in infos
    ]


def sweep_results(*, session: Session, sweep_id: int) -> list[ConfigResults]:
    """The sweep's configurations in position order, each with its aggregated records."""
    return _read_results(session, sweep_id)[1]


def result_records(
    *,
    session: Session,
    sweep_id: int,
    where: Where = None,
    quantity: str | None = None,
    layer: int | None = None,
) -> list[Record]:
    """One record per (configuration, layer, quantity) of the sweep's aggregated results."""
    configs = sweep_results(session=session, sweep_id=sweep_id)
    terms = _checked_terms(where, result_columns(sweep_id, configs))
    return result_rows(sweep_id, configs, where=terms, quantity=quantity, layer=layer)


def _checked_terms(where: Where, columns: Sequence[str]) -> list[Term]:
    """The terms of `where`, each on one of `columns` (UserError with a did-you-mean)."""
    terms = where_terms(where)
    check_columns(terms, columns)
    return terms


@dataclass(frozen=True)
class ResultSet:
    """What `initsweep results` prints: the records, every column (a header even with no rows),
    and how complete the sweep is (a configuration is complete once all its chunks are in)."""

    records: list[Record]
    columns: list[str]
    n_configs: int
    n_complete: int
    n_with_trials: int  # configurations with at least one chunk done
    incomplete: tuple[str, ...]  # labels of the configurations whose chunks are not all in

    @property
    def complete(self) -> bool:
        return self.n_complete == self.n_configs


def result_set(
    *, session: Session, sweep_id: int, theory: bool = False, **filters: Any
) -> ResultSet:
    """The sweep's records (with theory columns when `theory`) and its completeness, read as
    `result_stream` reads them: terms on configuration columns choose configurations before
    any statistic is read."""
    stream = result_stream(session=session, sweep_id=sweep_id, theory=theory, **filters)
    records = [r for batch in stream for r in batch]
    columns = list(stream.base_columns)
    for r in records:  # theory columns, in first-seen order
        columns.extend(k for k in r if k not in columns)
    return ResultSet(
        records=records,
        columns=columns,
        n_configs=stream.n_configs,
        n_complete=stream.n_complete,
        n_with_trials=stream.n_with_trials,
        incomplete=stream.incomplete,
    )


@dataclass(frozen=True)
class StatBatch:
    """A batch of complete configurations, unbuilt, for a columnar writer: each configuration's
    id and head columns (`result_head`) in position order, and their aggregated rows column by
    column (`worker.stat_columns.layer_stat_columns`: numpy arrays), unordered."""

    config_ids: list[int]
    heads: Sequence[dict[str, Any]]  # a list, or `RefHeads` (made when read)
    columns: dict[str, npt.NDArray[Any]]
    # with theory: each configuration's SimConfig and prediction, in position order
    theory: tuple[Sequence[SimConfig], Sequence[ConfigTheory]] | None = None

    def head_columns(self, names: Sequence[str]) -> dict[str, list[Any]]:
        """The values of `names` in each head, column by column (None where a head lacks one)."""
        if isinstance(self.heads, RefHeads):
            return self.heads.columns(names)
        return _dict_columns(self.heads, names)

    @property
    def n_with_rows(self) -> int:
        """How many of the configurations have rows."""
        return len(np.unique(self.columns["configuration_id"]))


class ResultStream:
    """A sweep's records in batches of configurations (position order, the rows of
    `result_set` in the same order), with `columns` and their `kinds` fixed before the first row.

    Iterate once, inside the session that made it; each batch costs two or three statements
    (configurations, aggregated rows, the merge of the done chunks of incomplete ones) and
    holds the records of at most `batch_size` configurations. `n_complete` and `n_with_trials`
    are counted while iterating (final once it is exhausted). `parts()` is the same stream for
    a columnar writer.
    """

    def __init__(
        self,
        session: Session,
        sweep_id: int,
        refs: Sequence[ConfigRef],
        *,
        theory: bool,
        batch_size: int,
        filters: Mapping[str, Any],
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected at least 1. Received: {batch_size}")
        self._session = session
        self._refs = list(refs)
        self._theory = theory
        self._devices: dict[str, str | None] | None = None  # read with the first batch
        self._batch_size = batch_size
        self._filters = dict(filters)
        self.sweep_id = sweep_id
        self.columns = columns_for_axes(r.axes for r in self._refs)
        self.base_columns = tuple(self.columns)  # without theory's
        # labels of the configurations whose chunks are not all in (filtered or not)
        self.incomplete = tuple(
            config_label(ref_head(sweep_id, r)) for r in self._refs if r.status != "done"
        )
        known: dict[str, str] = {}
        if theory:
            from scheduler.analysis.compare import THEORY_KEYS, THEORY_KINDS

            self.columns.extend(k for k in THEORY_KEYS if k not in self.columns)
            known = THEORY_KINDS
        self.kinds = column_kinds(self.columns, (r.axes for r in self._refs), known)
        axis_columns = [c for c in self.columns if c not in known]
        terms = _checked_terms(self._filters.get("where"), axis_columns)
        self._filters["where"] = terms
        self.n_configs = len(self._refs)
        self.n_complete = 0
        self.n_with_trials = 0
        # Terms on configuration columns choose configurations before any statistic is read;
        # those left out still count towards the completeness figures, as in `result_set`.
        on_config = [t for t in terms if t.key not in RECORD_KEYS]
        if on_config:
            from scheduler.store import configs_with_done_chunks

            kept: list[ConfigRef] = []
            dropped: list[ConfigRef] = []
            for ref in self._refs:
                head = ref_head(sweep_id, ref)
                chosen = row_matches(on_config, head, last=head["depth"])
                (kept if chosen else dropped).append(ref)
            self._refs = kept
            done = [r.id for r in dropped if r.status == "done"]
            self.n_complete += len(done)
            self.n_with_trials += len(done) + len(
                configs_with_done_chunks(
                    session=session, configuration_ids=[r.id for r in dropped if r.status != "done"]
                )
            )

    @property
    def complete(self) -> bool:
        return self.n_complete == self.n_configs

    def __iter__(self) -> Iterator[list[Record]]:
        for part in self._parts(columnar=False):
            assert not isinstance(part, StatBatch)
            yield part

    def parts(self) -> Iterator[list[Record] | StatBatch]:
        """The batches of `__iter__`, except that a batch of complete configurations read with
        no filter comes as a `StatBatch` (the same rows, not built as records; with theory, if
        no configuration of it has the correlation map of batch > 1)."""
        return self._parts(columnar=True)

    def _parts(self, *, columnar: bool) -> Iterator[list[Record] | StatBatch]:
        filtered = any(v not in (None, {}, []) for v in self._filters.values())
        columnar = columnar and not filtered
        reader = StatColumnReader(self._session) if columnar else None
        try:
            yield from self._batches(reader)
        finally:
            if reader is not None:
                reader.close()

    def _batches(self, reader: StatColumnReader | None) -> Iterator[list[Record] | StatBatch]:
        """`_parts`' batches: columnar where `reader` is given (it reads their statistics)."""
        from scheduler.store import sweep_config_rows

        session, sweep_id = self._session, self.sweep_id
        bounds = _batch_bounds(self._refs, self._batch_size)
        for k in range(len(bounds) - 1):
            start, end = bounds[k], bounds[k + 1]
            after = bounds[k + 2] if k + 2 < len(bounds) else end  # the next batch's end
            batch = self._refs[start:end]
            ids = [r.id for r in batch]
            if reader is not None and not all(r.status == "done" for r in batch):
                batch = _without_trials(session, batch)  # those open ones have no record
                ids = [r.id for r in batch]
                if not batch:
                    continue
            if reader is not None and not self._theory and all(r.status == "done" for r in batch):
                # complete when the stream began, and aggregation replaces rows atomically
                later = self._refs[end:after]
                ahead = [r.id for r in later] if all(r.status == "done" for r in later) else []
                part = StatBatch(
                    config_ids=ids,
                    heads=RefHeads(sweep_id, batch),
                    columns=reader.read(ids, ahead),
                )
                self.n_complete += len(batch)
                self.n_with_trials += part.n_with_rows
                yield part
                continue
            infos = sweep_config_rows(session=session, sweep_id=sweep_id, configuration_ids=ids)
            open_ids = [info.id for info in infos if info.status != "done"]
            self.n_complete += len(infos) - len(open_ids)
            pairs = self._theory and any(info.config.batch > 1 for info in infos)
            if reader is not None and not open_ids and not pairs:
                sims = [info.config for info in infos]
                part = StatBatch(
                    config_ids=[info.id for info in infos],
                    heads=[
                        result_head(
                            sweep_id, ConfigResults(info.config_hash, info.config, info.axes)
                        )
                        for info in infos
                    ],
                    columns=reader.read(ids),
                    theory=(sims, self._predict(sims)) if self._theory else None,
                )
                self.n_with_trials += part.n_with_rows
                yield part
                continue
            rows = layer_stat_rows(session=session, configuration_ids=ids)
            by_id = records_by_configuration(rows)
            if open_ids:
                by_id.update(
                    partial_records(session=session, sweep_id=sweep_id, configuration_ids=open_ids)
                )
            configs = _config_results(infos, by_id)
            self.n_with_trials += sum(bool(c.records) for c in configs)
            records = result_rows(sweep_id, configs, **self._filters)
            if self._theory:
                from scheduler.analysis.compare import with_theory

                records = with_theory(records, predictor=self._predictor())
            yield records

    def _predictor(self) -> Predictor:
        """Theory on the devices that computed each configuration (read once, when first used)."""
        from scheduler.analysis.compare import device_predictor

        if self._devices is None:
            self._devices = config_devices(session=self._session, sweep_id=self.sweep_id)
        return device_predictor(self._devices)

    def _predict(self, configs: Sequence[SimConfig]) -> list[ConfigTheory]:
        """The predictions `with_theory` makes for these configurations (all together)."""
        from scheduler.analysis.compare import predict_all

        return predict_all(configs, self._predictor())


_DEPTH = PARAM_KEYS.index("depth")
_PARAMS = frozenset(PARAM_KEYS)
_PARAM_AT = {k: i for i, k in enumerate(PARAM_KEYS)}
_HEAD_OWN = frozenset({"sweep_id", "config_hash", "complete"})  # an axis so named replaces them


def _batch_bounds(refs: Sequence[ConfigRef], most: int) -> list[int]:
    """The starts of consecutive batches of `refs`, then `len(refs)`: each batch at most `most`
    configurations and, past its first, at most `EXPORT_ROWS` rows (3 (depth + 1) each, an
    upper bound), so a batch of deep configurations holds no more rows than one of shallow ones."""
    rows = 3 * (np.fromiter((r.params[_DEPTH] for r in refs), np.int64, len(refs)) + 1)
    ends = np.cumsum(rows)
    bounds, start = [0], 0
    while start < len(refs):
        fit = int(np.searchsorted(ends, ends[start] - rows[start] + EXPORT_ROWS, side="right"))
        start = min(max(fit, start + 1), start + most, len(refs))
        bounds.append(start)
    return bounds


def _without_trials(session: Session, refs: list[ConfigRef]) -> list[ConfigRef]:
    """`refs` without their open configurations when none of those has a chunk done (then
    they hold no record: a batch of the others reads as a StatBatch); else all of them."""
    from scheduler.store import configs_with_done_chunks

    open_ids = [r.id for r in refs if r.status != "done"]
    if configs_with_done_chunks(session=session, configuration_ids=open_ids):
        return refs
    return [r for r in refs if r.status == "done"]


def result_stream(
    *,
    session: Session,
    sweep_id: int,
    theory: bool = False,
    configs: Iterable[str] | None = None,
    batch_size: int = EXPORT_BATCH,
    **filters: Any,
) -> ResultStream:
    """The sweep's records as a `ResultStream` (UnknownSweepError if absent): with theory
    columns when `theory`, only the configurations whose hash is in `configs` when given (a hash
    that is not the sweep's is a UserError), filtered as `result_rows` filters."""
    from scheduler.store import sweep_config_refs

    wanted = None if configs is None else list(dict.fromkeys(configs))
    refs = sweep_config_refs(session=session, sweep_id=sweep_id, config_hashes=wanted)
    if wanted is not None:
        known = {r.config_hash for r in refs}
        missing = [h for h in wanted if h not in known]
        if missing:
            raise UserError(
                f"configs: {missing[0]!r} is not a configuration of sweep {sweep_id} "
                "(give full config_hash values, as the results print them)"
            )
    return ResultStream(
        session, sweep_id, refs, theory=theory, batch_size=batch_size, filters=filters
    )


class RefHeads(Sequence[dict[str, Any]]):
    """`ref_head` of each of `refs`, made when an item is read; `columns` gives them column by
    column without making them (the parameter tuples transposed once, the axes read by key)."""

    def __init__(self, sweep_id: int, refs: Sequence[ConfigRef]) -> None:
        self._sweep_id = sweep_id
        self._refs = list(refs)

    def __len__(self) -> int:
        return len(self._refs)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [ref_head(self._sweep_id, r) for r in self._refs[index]]
        return ref_head(self._sweep_id, self._refs[index])

    def columns(self, names: Sequence[str]) -> dict[str, list[Any]]:
        """`{name: [head.get(name) for head in self]}`, computed from the references."""
        refs, n = self._refs, len(self._refs)
        axes = [r.axes for r in refs]
        keys = {k for order in dict.fromkeys(map(tuple, axes)) for k in order}
        if keys & _HEAD_OWN:  # an axis named like a head's own column replaces it: rare
            return _dict_columns(list(self), names)
        params = list(zip(*(r.params for r in refs), strict=True)) if n else []
        out: dict[str, list[Any]] = {}
        for name in names:
            if name in _PARAM_AT:
                out[name] = list(params[_PARAM_AT[name]]) if n else []
            elif name == "sweep_id":
                out[name] = [self._sweep_id] * n
            elif name == "config_hash":
                out[name] = [r.config_hash for r in refs]
            elif name == "complete":
                out[name] = [r.status == "done" for r in refs]
            elif name in keys:
                out[name] = list(map(methodcaller("get", name), axes))
            else:
                out[name] = [None] * n
        return out


def _dict_columns(heads: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """The values of `names` in each of `heads`, column by column (None where a head lacks one)."""
    if not names:
        return {}
    try:
        rows = list(map(itemgetter(*names), heads)) if len(names) > 1 else None
    except KeyError:
        rows = None
    if rows is None:
        rows = [tuple(head.get(n) for n in names) for head in heads]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {n: list(col) for n, col in zip(names, columns, strict=True)}


def ref_head(sweep_id: int, ref: ConfigRef) -> dict[str, Any]:
    """`result_head` of a configuration from its light reference (its typed parameter columns,
    `scheduler.store.PARAM_COLUMNS`, are its `config_params`): no SimConfig parsed."""
    head = {"sweep_id": sweep_id, "config_hash": ref.config_hash}
    head.update(zip(PARAM_KEYS, ref.params, strict=True))
    for key, value in ref.axes.items():  # an axis that is a parameter keeps the parameter's
        if key not in _PARAMS:
            head[key] = value
    head["complete"] = ref.status == "done"
    return head


def theory_records(
    *,
    session: Session,
    sweep_id: int,
    predictor: Predictor | None = None,
    pairs: bool = True,
    **filters: Any,
) -> list[Record]:
    """`result_records` with the theory columns of `scheduler.analysis.compare.with_theory`
    (without `pairs`, the correlation map's columns stay empty: figures do not draw them)."""
    from scheduler.analysis.compare import device_predictor, with_theory

    records = result_records(session=session, sweep_id=sweep_id, **filters)
    if predictor is None:
        predictor = device_predictor(config_devices(session=session, sweep_id=sweep_id))
    return with_theory(records, predictor=predictor, pairs=pairs)


def sweep_provenance(*, session: Session, sweep_id: int) -> SweepProvenance:
    """Provenance of the sweep's chunks: versions, devices, samplers, workers, seeds, durations."""
    from scheduler.analysis.report import SweepProvenance

    rows = chunk_provenance(session=session, sweep_id=sweep_id)

    def count(values: Iterable[Any]) -> dict[str, int]:
        return dict(Counter(str(v) for v in values if v is not None).most_common())

    seed_keys: dict[int, set[int]] = {}
    per_config: dict[int, Counter[str]] = {}
    for r in rows:
        seed_keys.setdefault(r.configuration_id, set()).add(int(r.seed_key))
        per_config.setdefault(r.configuration_id, Counter())[str(r.status)] += 1
    durations = [float(r.duration_s) for r in rows if r.duration_s is not None]
    started = [r.started_at for r in rows if r.started_at is not None]
    finished = [r.finished_at for r in rows if r.finished_at is not None]
    return SweepProvenance(
        n_chunks=len(rows),
        status_counts=count(r.status for r in rows),
        tf_versions=count(r.tf_version for r in rows),
        devices=count(r.device for r in rows),
        samplers=count(r.sampler for r in rows),
        dtypes=count(r.dtype for r in rows),
        workers=count(r.worker for r in rows),
        seed_keys={k: sorted(v) for k, v in seed_keys.items()},
        chunks_per_config={k: dict(v) for k, v in per_config.items()},
        duration_total_s=sum(durations),
        duration_mean_s=sum(durations) / len(durations) if durations else None,
        attempts_total=sum(int(r.attempts or 0) for r in rows),
        first_started=min(started) if started else None,
        last_finished=max(finished) if finished else None,
    )


def report_input(*, session: Session, sweep_id: int) -> ReportInput:
    """Everything the HTML report of the sweep shows, read once (no query per configuration)."""
    from scheduler.analysis.report import ReportInput
    from scheduler.store import get_sweep

    info = get_sweep(session=session, sweep_id=sweep_id)
    configs, results_ = _read_results(session, sweep_id)
    return ReportInput(
        sweep=info,
        configs=tuple(configs),
        records=tuple(result_rows(sweep_id, results_)),
        provenance=sweep_provenance(session=session, sweep_id=sweep_id),
        devices=config_devices(session=session, sweep_id=sweep_id),
    )


@dataclass(frozen=True)
class SweepProgress:
    """Chunk counts, throughput and ETA of one sweep."""

    sweep_id: int
    name: str
    status: str
    counts: dict[str, int]
    trials_done: int
    trials_total: int
    rate: float | None  # trials/s over the time the sweep ran (first start to last finish)
    eta_s: float | None  # only while running
    workers: tuple[str, ...]  # workers holding a running chunk with a fresh heartbeat

    @property
    def finished(self) -> bool:
        """Nothing is going on (done, partial, failed, cancelled or interrupted)."""
        return self.status not in ("pending", "running")


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def sweep_progress(
    *, session: Session, sweep_id: int | None = None, now: datetime | None = None
) -> list[SweepProgress]:
    """Progress of `sweep_id` (UnknownSweepError when absent), or of every sweep, oldest first.

    The rate counts the time the sweep ran: up to now while it runs, up to its last finished
    chunk once it has stopped (a finished sweep's rate does not decay as time passes).
    """
    from models import utcnow
    from scheduler.store import get_sweep, list_sweeps

    infos = (
        list_sweeps(session=session)
        if sweep_id is None
        else [get_sweep(session=session, sweep_id=sweep_id)]
    )
    now = now or utcnow()
    activity = chunk_activity(
        session=session, sweep_ids=[i.id for i in infos], since=now - ACTIVE_WINDOW
    )
    out = []
    for info in infos:
        act = activity.get(info.id)
        running = info.status in ("pending", "running")
        rate = eta = None
        if act is not None and act.first_started is not None and act.trials_done:
            end = now if running or act.last_finished is None else _utc(act.last_finished)
            elapsed = max((end - _utc(act.first_started)).total_seconds(), 1e-3)
            rate = act.trials_done / elapsed
            if running and rate > 0:
                eta = (info.trials_total - info.trials_done) / rate
        out.append(
            SweepProgress(
                sweep_id=info.id,
                name=info.name,
                status=info.status,
                counts=dict(info.chunk_counts),
                trials_done=info.trials_done,
                trials_total=info.trials_total,
                rate=rate,
                eta_s=eta,
                workers=tuple(sorted(act.live_workers)) if act is not None and running else (),
            )
        )
    return out


def results(
    sweep_id: int,
    *,
    db: str | None = None,
    where: Where = None,
    quantity: str | None = None,
    layer: int | None = None,
    columns: Sequence[str] | None = None,
    configs: Iterable[str] | None = None,
    theory: bool = False,
) -> pd.DataFrame:
    """The sweep's results as a pandas DataFrame (one row per configuration, layer, quantity).

    `where`, `quantity` and `layer` filter rows as `initsweep results` does (`where`: the terms
    of `scheduler.where`, as one string, a list, or a mapping {column: value}). `columns` keeps
    only these columns, in this order (the others are never held: a few columns of a large
    sweep fit where every column would not); `configs` keeps only the configurations with these
    `config_hash` values (full hashes, as the results print them; one that is not the sweep's
    is a UserError). `theory` adds the mean-field columns of `results --theory`. The sweep is
    read in batches of `EXPORT_BATCH` configurations either way.
    """
    import pandas as pd

    from models.db import make_session_factory, resolve_url, session_scope

    if isinstance(columns, str):
        raise TypeError("columns: expected a list of column names, not one string")
    if isinstance(configs, str):
        raise TypeError("configs: expected a list of config_hash values, not one string")
    wanted = None if columns is None else list(dict.fromkeys(columns))
    rows: list[dict[str, Any]] = []
    engine = _reading_engine(resolve_url(db))
    try:
        with session_scope(make_session_factory(engine)) as session:
            stream = result_stream(
                session=session,
                sweep_id=sweep_id,
                theory=theory,
                configs=configs,
                where=where,
                quantity=quantity,
                layer=layer,
            )
            if wanted is not None:
                unknown = [c for c in wanted if c not in stream.columns]
                if unknown:
                    raise UserError(
                        f"columns: {unknown[0]!r} is not a column; expected some of "
                        + ", ".join(stream.columns)
                    )
            for batch in stream:
                if wanted is None:
                    rows.extend(batch)
                else:
                    rows.extend({c: r.get(c) for c in wanted} for r in batch)
    finally:
        engine.dispose()
    if wanted is None:
        return pd.DataFrame.from_records(rows)
    return pd.DataFrame.from_records(rows, columns=wanted)


def _reading_engine(url: str) -> Engine:
    """`results()`'s read-only engine of `url`, kept for the process so that its compiled
    statements are reused (its connections are closed after every call); made again, with
    `make_engine`'s checks, when a SQLite file has gone."""
    from sqlalchemy.engine import make_url

    engine = _ENGINES.get(url)
    if engine is not None and make_url(url).get_backend_name() == "sqlite":
        path = make_url(url).database or ""
        if not os.path.isfile(path):
            engine = None
    if engine is None:
        from models.db import make_engine

        engine = _ENGINES[url] = make_engine(url, read_only=True)
        while len(_ENGINES) > 8:
            _ENGINES.pop(next(iter(_ENGINES))).dispose()
    return engine


_ENGINES: dict[str, Engine] = {}


# --------------------------------------------------------------------------- output


def render_csv(records: list[Record], columns: Sequence[str] = ()) -> str:
    """CSV with a header of `columns`, then of the other keys in first-seen order."""
    keys: dict[str, None] = dict.fromkeys(columns)
    for r in records:
        keys.update(dict.fromkeys(r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(keys), lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def render_table(records: list[Record]) -> None:
    """Print records as a rich table."""
    from rich.table import Table
    from rich.text import Text

    table = Table("config", "layer", "quantity", "finite", "mean", "std", "mean_sq")
    for r in records:
        table.add_row(
            Text(config_label(r)),  # a label is the user's text: never markup
            str(r["layer"]),
            r["quantity"],
            f"{r['n_finite']}/{r['n_trials']}",
            pm(r["mean"], r["mean_se"]),
            pm(r["std"], r["std_se"]),
            pm(r["mean_sq"], r["mean_sq_se"]),
        )
    table_console().print(table)


def summarize(records: list[Record]) -> list[dict[str, Any]]:
    """One row per configuration: last-layer activation std, layer-1 gradient std, fates.

    `overflow_layer` is the median over trials of the first layer whose activations are
    non-finite (None when fewer than half the trials ever overflow).
    """
    by_config: dict[str, dict[str, Any]] = {}
    first: dict[str, list[tuple[int, int]]] = {}
    for r in records:
        s = by_config.setdefault(r["config_hash"], {"label": config_label(r)})
        if r["quantity"] == "activation" and r["layer"] == r["depth"]:
            s.update(
                n_trials=r["n_trials"],
                act=(r["std"], r["std_se"]),
                finite=f"{r['n_finite']}/{r['n_trials']}",
                collapsed=r["n_collapsed"],
            )
        if r["quantity"] == "gradient" and r["layer"] == 1:
            s["grad"] = (r["std"], r["std_se"])
        if r["quantity"] == "activation" and r["n_first_nonfinite"]:
            first.setdefault(r["config_hash"], []).append((r["layer"], r["n_first_nonfinite"]))
    for key, s in by_config.items():
        seen, half = 0, s.get("n_trials", 0) / 2
        s["overflow_layer"] = None
        for layer, n in sorted(first.get(key, [])):
            seen += n
            if seen > half:
                s["overflow_layer"] = layer
                break
    return list(by_config.values())


PIPE_WIDTH = 100_000  # a pipe or file has no width to fit: tables print whole


def table_console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): the terminal's width, or PIPE_WIDTH in a pipe or
    file (a table is never cut there)."""
    import sys

    from rich.console import Console

    tty = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr) if tty else Console(stderr=stderr, width=PIPE_WIDTH)


def render_summary(records: list[Record], out: Console | None = None) -> None:
    """Print the per-configuration summary table of a run (on stdout unless `out`)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        "configuration",
        "std(h) at last layer",
        "std(dL/dz) at layer 1",
        "finite at end",
        "overflow layer (median)",
        "collapsed",
        title="per-trial std over units, mean over trials ± standard error",
    )
    for s in summarize(records):
        overflow = s["overflow_layer"]
        table.add_row(
            Text(s["label"]),
            pm(*s.get("act", (None, None))),
            pm(*s.get("grad", (None, None))),
            s.get("finite", "—"),
            "—" if overflow is None else str(overflow),
            str(s.get("collapsed", 0)),
        )
    (out or table_console()).print(table)


def render_check(report: CheckReport, console: Console | None = None) -> None:
    """Print a theory check's deviations as a rich table, then its verdict (stdout by default)."""
    from rich.table import Table
    from rich.text import Text

    console = console or table_console()
    rows = report.rows()
    if rows and console.width < 140:  # too narrow for a table: one paragraph each
        for d, r in zip(report.deviations, rows, strict=True):
            console.print(
                Text(
                    f"{r['config']} · layer {r['layer']} {r['quantity']} {r['statistic']}: "
                    f"{r['observed']} vs {r['predicted']} (z {r['z']}) — {r['explanation']}",
                    style="" if d.explained else "red",
                ),
                highlight=False,
            )
    elif rows:
        table = Table(title=f"deviations from mean-field theory, |z| > {report.threshold:g}")
        table.add_column("config", max_width=30, no_wrap=True, overflow="ellipsis")
        table.add_column("layer", justify="right")
        table.add_column("quantity", no_wrap=True)
        table.add_column("stat", no_wrap=True)
        table.add_column("observed ± SE", justify="right", no_wrap=True)
        table.add_column("predicted", justify="right", no_wrap=True)
        table.add_column("z", justify="right", no_wrap=True)
        table.add_column("explanation", min_width=24, ratio=1)
        for d, r in zip(report.deviations, rows, strict=True):
            style = "red" if not d.explained else None
            table.add_row(
                Text(printable(d.label or d.config)),
                r["layer"],
                r["quantity"],
                r["statistic"],
                r["observed"],
                r["predicted"],
                r["z"],
                r["explanation"],
                style=style,
            )
        console.print(table)
    for note in report.notes():
        console.print(note, highlight=False)
    console.print(report.summary(), style="green" if report.passed else "bold red")

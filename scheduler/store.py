"""Sweeps, configurations and chunks in the database. Takes a Session; never commits.

The caller owns the transaction (`models.db.session_scope`), so `create_sweep` writes the sweep,
its configurations, links and chunks all-or-nothing. Configurations are content-addressed by
`run_key` (config_hash, seed and target; never the trial count): a configuration already stored
by an earlier sweep is linked, not recomputed, and grown when this sweep asks more trials of it
(`scheduler.growth`).
ORM rows stay in here; domain values (`SweepInfo`, `ConfigInfo`) go out. A chunk's own rows
(claim, task, statistics) belong to `worker.persist`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, CursorResult, Select, Table, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import (
    CHUNK_STATUSES,
    SWEEP_FINISHED,
    SWEEP_STATUSES,
    Base,
    Chunk,
    Configuration,
    Sweep,
    SweepConfiguration,
    utcnow,
)
from models.bulk import insert_rows, insert_rows_returning_ids
from models.errors import TransientStoreError
from scheduler.errors import SpecError, UnknownSweepError
from scheduler.growth import first_frontier, grow_configurations, within_frontier
from scheduler.plan import ConfigPlan, SweepPlan
from worker.contract import SimConfig
from worker.target import Target

MAX_BIGINT = (1 << 63) - 1
_IN_BATCH = 500  # bound IN (...) lists (SQLite's variable limit, planner-friendly sizes)


@dataclass(frozen=True)
class SweepInfo:
    """A sweep and its progress; `chunk_counts` by chunk status (every status present)."""

    id: int
    name: str
    seed: int
    status: str
    created_at: datetime
    finished_at: datetime | None
    spec_yaml: str
    n_configs: int
    chunk_counts: dict[str, int]
    trials_done: int
    trials_total: int  # of the chunks it may still run or has run: skipped ones left out

    @property
    def n_chunks(self) -> int:
        return sum(self.chunk_counts.values())

    @property
    def n_wanted(self) -> int:
        """Chunks it runs or has run: those skipped (past a met target) left out."""
        return self.n_chunks - self.chunk_counts.get("skipped", 0)


@dataclass(frozen=True)
class ConfigInfo:
    """A configuration as linked to one sweep: its place there and the user's axis values."""

    id: int
    config_hash: str
    config: SimConfig
    axes: dict[str, Any]
    status: str
    position: int
    run_key: str
    trials: int
    target: Target | None = None
    stop_chunk: int | None = None  # where its target was met (None: not, or not yet)


def create_sweep(*, session: Session, plan: SweepPlan) -> int:
    """Insert a sweep; get-or-create its configurations by run_key; chunks for new ones, and
    for the trials an existing one lacks (`growth.grow_configurations`)."""
    if not 0 <= plan.seed <= MAX_BIGINT:
        raise SpecError(f"seed: expected an integer in [0, 2**63). Received: {plan.seed}")
    now = utcnow()
    sweep = Sweep(
        name=plan.name,
        seed=plan.seed,
        spec_yaml=plan.spec_yaml,
        spec_json=json.dumps(plan.spec_json, sort_keys=True, separators=(",", ":")),
        status="pending",
        memory_budget_bytes=plan.memory_budget_bytes,
        created_at=now,
        updated_at=now,
    )
    session.add(sweep)

    # A run_key listed twice is one configuration: link it once, at its first position.
    plans: dict[str, tuple[int, ConfigPlan]] = {}
    for position, config_plan in enumerate(plan.configs):
        plans.setdefault(config_plan.run_key, (position, config_plan))
    ids = _config_ids_by_run_key(session, plans)
    grow_configurations(
        session=session,
        plans={ids[key]: config_plan for key, (_, config_plan) in plans.items() if key in ids},
        chunk_trials=plan.spec_json.get("chunk_trials"),
    )
    new = [key for key in plans if key not in ids]
    session.flush()  # the sweep's row (its id) before the Core statements below
    try:
        ids.update(
            insert_rows_returning_ids(
                session,
                _table(Configuration),
                [_new_configuration(plans[k][1]) for k in new],
                key="run_key",
            )
        )
    except IntegrityError as e:  # another sweep inserted the same run_key since our SELECT
        raise TransientStoreError(
            f"sweep {plan.name!r}: a concurrent submission created the same configurations; retry"
        ) from e

    links = [
        {
            "sweep_id": sweep.id,
            "configuration_id": ids[key],
            "position": position,
            "axes_json": json.dumps(config_plan.axes, sort_keys=True, separators=(",", ":")),
        }
        for key, (position, config_plan) in plans.items()
    ]
    insert_rows(session, _table(SweepConfiguration), links)
    chunks: list[dict[str, Any]] = []
    for key in new:
        config_plan = plans[key][1]
        chunks.extend(
            {
                "configuration_id": ids[key],
                "chunk_index": chunk.chunk_index,
                "trial_start": chunk.trial_start,
                "n_trials": chunk.n_trials,
                "status": "pending",
                "attempts": 0,
                "queue": config_plan.queue,
                "seed_key": config_plan.seed_key,
            }
            for chunk in config_plan.chunks
        )
    insert_rows(session, _table(Chunk), chunks)
    return sweep.id


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _config_ids_by_run_key(session: Session, run_keys: Iterable[str]) -> dict[str, int]:
    keys = list(run_keys)
    found: dict[str, int] = {}
    for i in range(0, len(keys), _IN_BATCH):
        rows = session.execute(
            select(Configuration.run_key, Configuration.id).where(
                Configuration.run_key.in_(keys[i : i + _IN_BATCH])
            )
        )
        found.update({key: id_ for key, id_ in rows})
    return found


def _new_configuration(plan: ConfigPlan) -> dict[str, Any]:
    """The configurations row of a configuration not stored yet."""
    config = plan.config
    return dict(
        run_key=plan.run_key,
        config_hash=config.config_hash,
        config_json=config.canonical_json(),
        seed=plan.seed,
        seed_key=plan.seed_key,
        trials=plan.trials,
        chunk_trials=plan.chunk_trials,
        queue=plan.queue,
        init_name=config.init.name,
        init_label=config.init.label,
        activation_name=config.activation.name,
        activation_label=config.activation.label,
        depth=config.depth,
        width=config.width,
        input_dim=config.input_dim,
        batch=config.batch,
        dtype=config.dtype,
        bias_std=config.bias_std,
        sampler=config.sampler,
        input_q=config.input_q,
        input_corr=config.input_corr,
        status="pending",
        target_json=None if plan.target is None else plan.target.canonical_json(),
        frontier=first_frontier(plan),
        stop_chunk=None,
        aggregated_at=None,
    )


def get_sweep(*, session: Session, sweep_id: int) -> SweepInfo:
    """The sweep `sweep_id` with its progress; UnknownSweepError when there is none."""
    infos = _sweep_infos(session, select(Sweep).where(Sweep.id == sweep_id))
    if not infos:
        raise UnknownSweepError(f"sweep {sweep_id}: no such sweep")
    return infos[0]


def sweep_names(*, session: Session) -> dict[int, str]:
    """Every sweep's name by id, oldest first (one statement, no progress counts)."""
    return {int(i): n for i, n in session.execute(select(Sweep.id, Sweep.name).order_by(Sweep.id))}


def list_sweeps(*, session: Session) -> list[SweepInfo]:
    """Every sweep, oldest first, with its progress."""
    return _sweep_infos(session, select(Sweep).order_by(Sweep.id))


def _sweep_infos(session: Session, query: Any) -> list[SweepInfo]:
    sweeps: Sequence[Sweep] = session.scalars(query).all()
    if not sweeps:
        return []
    ids = [s.id for s in sweeps]
    n_configs: dict[int, int] = {}
    counts: dict[int, dict[str, int]] = {i: dict.fromkeys(CHUNK_STATUSES, 0) for i in ids}
    trials: dict[int, dict[str, int]] = {i: dict.fromkeys(CHUNK_STATUSES, 0) for i in ids}
    for i in range(0, len(ids), _IN_BATCH):
        batch = ids[i : i + _IN_BATCH]
        rows = session.execute(
            select(SweepConfiguration.sweep_id, func.count())
            .where(SweepConfiguration.sweep_id.in_(batch))
            .group_by(SweepConfiguration.sweep_id)
        )
        n_configs.update({sweep_id: n for sweep_id, n in rows})
        chunk_rows = session.execute(
            select(
                SweepConfiguration.sweep_id,
                Chunk.status,
                func.count(),
                func.coalesce(func.sum(Chunk.n_trials), 0),
            )
            .join(Chunk, Chunk.configuration_id == SweepConfiguration.configuration_id)
            .where(SweepConfiguration.sweep_id.in_(batch))
            .group_by(SweepConfiguration.sweep_id, Chunk.status)
        )
        for sweep_id, status, n, n_trials in chunk_rows:
            counts[sweep_id][status] = int(n)
            trials[sweep_id][status] = int(n_trials)
    return [
        SweepInfo(
            id=s.id,
            name=s.name,
            seed=s.seed,
            status=s.status,
            created_at=s.created_at,
            finished_at=s.finished_at,
            spec_yaml=s.spec_yaml,
            n_configs=n_configs.get(s.id, 0),
            chunk_counts=counts[s.id],
            trials_done=trials[s.id]["done"],
            trials_total=sum(trials[s.id].values()) - trials[s.id]["skipped"],
        )
        for s in sweeps
    ]


def _require_sweep(session: Session, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise UnknownSweepError(f"sweep {sweep_id}: no such sweep")
    return sweep


def _check_statuses(where: str, statuses: Iterable[str], allowed: tuple[str, ...]) -> list[str]:
    values = list(statuses)
    for value in values:
        if value not in allowed:
            raise ValueError(f"{where}: expected one of {', '.join(allowed)}. Received: {value!r}")
    return values


def _sweep_config_ids(sweep_id: int) -> Any:
    return select(SweepConfiguration.configuration_id).where(
        SweepConfiguration.sweep_id == sweep_id
    )


def chunk_ids(
    *,
    session: Session,
    sweep_id: int,
    statuses: Iterable[str] = ("pending", "running", "failed"),
) -> list[int]:
    """Ids of the sweep's chunks in `statuses`, by (configuration position, chunk_index)."""
    wanted = _check_statuses("statuses", statuses, CHUNK_STATUSES)
    _require_sweep(session, sweep_id)
    rows = session.scalars(
        select(Chunk.id)
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Chunk.configuration_id)
        .where(SweepConfiguration.sweep_id == sweep_id, Chunk.status.in_(wanted))
        .order_by(SweepConfiguration.position, Chunk.chunk_index)
    )
    return list(rows)


def chunk_trials(*, session: Session, chunk_ids: Sequence[int]) -> int:
    """Total trials of the chunks `chunk_ids`."""
    total = 0
    for i in range(0, len(chunk_ids), _IN_BATCH):
        batch = chunk_ids[i : i + _IN_BATCH]
        total += int(
            session.scalar(select(func.sum(Chunk.n_trials)).where(Chunk.id.in_(batch))) or 0
        )
    return total


def chunk_configs(*, session: Session, chunk_ids: Sequence[int]) -> list[tuple[int, int, str]]:
    """(chunk id, n_trials, canonical JSON of its configuration) of `chunk_ids`, in that order
    (what `scheduler.chunking.chunk_seconds` needs to group chunks into tasks)."""
    found: dict[int, tuple[int, int, str]] = {}
    for i in range(0, len(chunk_ids), _IN_BATCH):
        rows = session.execute(
            select(Chunk.id, Chunk.n_trials, Configuration.config_json)
            .join(Configuration, Configuration.id == Chunk.configuration_id)
            .where(Chunk.id.in_(chunk_ids[i : i + _IN_BATCH]))
        )
        found.update((cid, (cid, n, text)) for cid, n, text in rows)
    return [found[cid] for cid in chunk_ids if cid in found]


def mark_enqueued(
    *, session: Session, chunk_ids: Iterable[int], now: datetime | None = None
) -> None:
    """Record that these chunks are being sent to an executor (for the lost-message check)."""
    ids = list(chunk_ids)
    now = now or utcnow()
    for i in range(0, len(ids), _IN_BATCH):
        session.execute(
            update(Chunk)
            .where(Chunk.id.in_(ids[i : i + _IN_BATCH]))
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )


def set_sweep_status(*, session: Session, sweep_id: int, status: str) -> None:
    """Set a sweep's status; finished_at is set for finished statuses and cleared otherwise."""
    _check_statuses("status", [status], SWEEP_STATUSES)
    sweep = _require_sweep(session, sweep_id)
    now = utcnow()
    sweep.status = status
    sweep.updated_at = now
    if status in SWEEP_FINISHED:
        sweep.finished_at = sweep.finished_at or now
    else:
        sweep.finished_at = None
    session.flush()


def refresh_sweep_status(*, session: Session, sweep_id: int) -> str:
    """Derive the status from chunks: done (every chunk done or skipped), partial (failures,
    nothing left to send: a targeted configuration's chunks past its frontier wait for chunks
    before them) or running.

    A cancelled sweep stays cancelled unless all of its work is done.
    """
    sweep = _require_sweep(session, sweep_id)
    left = {s for s in ("pending", "running", "failed") if _has_chunk(session, sweep_id, s)}
    if not left:
        status = "done"
    elif "failed" in left and "running" not in left and not _sendable(session, sweep_id):
        status = "partial"
    else:
        status = "running"
    if sweep.status == "cancelled" and status != "done":
        return sweep.status
    if status != sweep.status:
        set_sweep_status(session=session, sweep_id=sweep_id, status=status)
    return status


def _has_chunk(session: Session, sweep_id: int, status: str) -> bool:
    """Some chunk of the sweep has `status`: found from the status index, one probe of the
    links per candidate (the cost follows the chunks in that status, not the sweep's size)."""
    linked = (
        select(SweepConfiguration.configuration_id)
        .where(
            SweepConfiguration.configuration_id == Chunk.configuration_id,
            SweepConfiguration.sweep_id == sweep_id,
        )
        .exists()
    )
    found = session.scalar(select(Chunk.id).where(Chunk.status == status, linked).limit(1))
    return found is not None


def _sendable(session: Session, sweep_id: int) -> bool:
    """Some pending chunk of the sweep may be sent now (within its frontier)."""
    return (
        session.scalar(
            select(Chunk.id)
            .join(Configuration, Configuration.id == Chunk.configuration_id)
            .where(Chunk.configuration_id.in_(_sweep_config_ids(sweep_id)))
            .where(Chunk.status == "pending", within_frontier())
            .limit(1)
        )
        is not None
    )


def reset_chunks(
    *, session: Session, sweep_id: int, statuses: Iterable[str] = ("failed", "running")
) -> int:
    """Put the sweep's chunks in `statuses` back to pending (resume); returns how many.

    They start afresh: attempts back to 0 (a chunk failed by the claim limit can run again),
    no error, and no enqueue mark, so the reconciler sends them at once.
    """
    wanted = _check_statuses("statuses", statuses, CHUNK_STATUSES)
    _require_sweep(session, sweep_id)
    result = session.execute(
        update(Chunk)
        .where(Chunk.configuration_id.in_(_sweep_config_ids(sweep_id)), Chunk.status.in_(wanted))
        .values(status="pending", worker=None, attempts=0, error=None, enqueued_at=None)
        .execution_options(synchronize_session="fetch")
    )
    session.execute(
        update(Configuration)
        .where(Configuration.id.in_(_sweep_config_ids(sweep_id)), Configuration.status == "partial")
        .values(status="pending")
        .execution_options(synchronize_session="fetch")
    )
    return int(cast(CursorResult[Any], result).rowcount)


def sweep_config_rows(
    *,
    session: Session,
    sweep_id: int,
    configuration_ids: Sequence[int] | None = None,
    targeted: bool = False,
) -> list[ConfigInfo]:
    """The sweep's configurations in position order; only `configuration_ids` when given, only
    those with a precision target when `targeted`.

    With `configuration_ids` (a batch of `sweep_config_refs`, read in statements of at most
    500 ids), a streamed read pages over a sweep of any size in bounded memory; the sweep is
    then looked up only when no row comes back (a batch costs one statement).
    """
    if configuration_ids is None:
        _require_sweep(session, sweep_id)
    query = (
        select(Configuration, SweepConfiguration.position, SweepConfiguration.axes_json)
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Configuration.id)
        .where(SweepConfiguration.sweep_id == sweep_id)
        .order_by(SweepConfiguration.position)
    )
    if targeted:
        query = query.where(Configuration.target_json.is_not(None))
    if configuration_ids is None:
        rows = list(session.execute(query))
    else:
        ids = list(configuration_ids)
        rows = []
        for i in range(0, len(ids), _IN_BATCH):
            rows.extend(session.execute(query.where(Configuration.id.in_(ids[i : i + _IN_BATCH]))))
        rows.sort(key=lambda row: int(row[1]))
        if not rows:
            _require_sweep(session, sweep_id)
    return [
        ConfigInfo(
            id=c.id,
            config_hash=c.config_hash,
            config=SimConfig.from_json(json.loads(c.config_json)),
            axes=json.loads(axes_json),
            status=c.status,
            position=position,
            run_key=c.run_key,
            trials=c.trials,
            target=None if c.target_json is None else Target.from_json(json.loads(c.target_json)),
            stop_chunk=c.stop_chunk,
        )
        for c, position, axes_json in rows
    ]


# The typed parameter columns of a configuration, in `ConfigRef.params` order: written from its
# SimConfig when it is created (`_new_configuration`), so they are its `config_params` values.
PARAM_COLUMNS: tuple[str, ...] = (
    "init_label",
    "activation_label",
    "depth",
    "width",
    "input_dim",
    "batch",
    "dtype",
    "bias_std",
    "sampler",
    "input_q",
    "input_corr",
)


class ConfigRef(NamedTuple):
    """A configuration's place in a sweep without its parsed SimConfig: what a streamed read
    pages over (and the axis values that fix an export's columns before the first row), with
    its typed parameter columns (`PARAM_COLUMNS`, in that order). A named tuple, not a frozen
    dataclass: a sweep of 10^5 configurations makes 10^5 of them, at a tenth of the cost."""

    id: int
    config_hash: str
    position: int
    axes: dict[str, Any]
    status: str
    params: tuple[Any, ...] = ()


def sweep_config_refs(
    *, session: Session, sweep_id: int, config_hashes: Iterable[str] | None = None
) -> list[ConfigRef]:
    """The sweep's configurations in position order, light (one statement, no config JSON);
    only those whose hash is in `config_hashes` when given (a statement per 500 of them)."""
    _require_sweep(session, sweep_id)
    query = (
        select(
            Configuration.id,
            Configuration.config_hash,
            SweepConfiguration.position,
            SweepConfiguration.axes_json,
            Configuration.status,
            *(getattr(Configuration, name) for name in PARAM_COLUMNS),
        )
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Configuration.id)
        .where(SweepConfiguration.sweep_id == sweep_id)
        .order_by(SweepConfiguration.position)
    )
    connection = session.connection()  # Core execution: plain rows, no ORM loading step
    if config_hashes is None:
        rows: list[Any] = _driver_rows(connection, query)
    else:
        hashes = list(dict.fromkeys(config_hashes))
        rows = []
        for i in range(0, len(hashes), _IN_BATCH):
            batch = hashes[i : i + _IN_BATCH]
            # the ids by the hash index first: given only the hashes, SQLite would walk the
            # whole sweep's links (sweep_id index) and look each configuration up
            ids = connection.execute(
                select(Configuration.id).where(Configuration.config_hash.in_(batch))
            ).scalars()
            chosen = query.order_by(None).where(SweepConfiguration.configuration_id.in_(list(ids)))
            rows.extend(connection.execute(chosen).all())
        rows.sort(key=lambda row: int(row[2]))
    axes = json_values([row[3] for row in rows])
    return [
        ConfigRef(int(row[0]), str(row[1]), int(row[2]), item, str(row[4]), tuple(row[5:]))
        for row, item in zip(rows, axes, strict=True)
    ]


def _driver_rows(connection: Connection, query: Select[Any]) -> list[Any]:
    """`connection.execute(query).all()` as the driver's own tuples, for statements whose
    columns need no result processing (ints, strings, doubles): a sweep's 10^5 references come
    without a SQLAlchemy row each. Its parameters are written into the text as literals."""
    statement = query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(statement))
        return list(cursor.fetchall())
    finally:
        cursor.close()


_JSON_BATCH = 10_000  # JSON texts decoded as one array


def json_values(texts: Sequence[str]) -> list[Any]:
    """`json.loads` of each of `texts`, decoded as JSON arrays of many (one call to the decoder
    per batch instead of one per text: the same values); a batch whose joined text does not
    split back into as many values is decoded one text at a time."""
    out: list[Any] = []
    for i in range(0, len(texts), _JSON_BATCH):
        batch = texts[i : i + _JSON_BATCH]
        try:
            values = json.loads("[" + ",".join(batch) + "]")
        except ValueError:
            values = None
        if not isinstance(values, list) or len(values) != len(batch):
            values = [json.loads(t) for t in batch]
        out.extend(values)
    return out


def configs_with_done_chunks(*, session: Session, configuration_ids: Sequence[int]) -> set[int]:
    """Those of `configuration_ids` with at least one chunk done (a statement per 500, found by
    the configurations' chunk index: `status || ''` keeps a planner without statistics, as
    SQLite's, off the status index, which would walk every done chunk)."""
    ids = list(configuration_ids)
    found: set[int] = set()
    for i in range(0, len(ids), _IN_BATCH):
        found.update(
            session.scalars(
                select(Chunk.configuration_id)
                .where(
                    Chunk.configuration_id.in_(ids[i : i + _IN_BATCH]),
                    (Chunk.status + "") == "done",
                )
                .distinct()
            )
        )
    return found


@dataclass(frozen=True)
class DeletedSweep:
    """What `delete_sweep` removed: configurations (with their chunks and statistics) that no
    other sweep links to, and those it kept because another sweep does."""

    configurations: int
    chunks: int
    kept: int


def sweep_footprint(*, session: Session, sweep_id: int) -> DeletedSweep:
    """What `delete_sweep` would remove now (the sweep must exist)."""
    get_sweep(session=session, sweep_id=sweep_id)
    mine = select(SweepConfiguration.configuration_id).where(
        SweepConfiguration.sweep_id == sweep_id
    )
    shared = (
        select(SweepConfiguration.configuration_id)
        .where(SweepConfiguration.configuration_id.in_(mine))
        .where(SweepConfiguration.sweep_id != sweep_id)
        .distinct()
    )
    total = session.scalar(select(func.count()).select_from(mine.subquery())) or 0
    kept = session.scalar(select(func.count()).select_from(shared.subquery())) or 0
    chunks = (
        session.scalar(
            select(func.count())
            .select_from(Chunk)
            .where(Chunk.configuration_id.in_(mine))
            .where(Chunk.configuration_id.not_in(shared))
        )
        or 0
    )
    return DeletedSweep(configurations=total - kept, chunks=chunks, kept=kept)


def delete_sweep(*, session: Session, sweep_id: int) -> DeletedSweep:
    """Delete the sweep, and every configuration of it that no other sweep links to with its
    chunks and statistics (foreign keys cascade); configurations shared with another sweep stay
    whole. UnknownSweepError when there is no such sweep."""
    footprint = sweep_footprint(session=session, sweep_id=sweep_id)
    mine = select(SweepConfiguration.configuration_id).where(
        SweepConfiguration.sweep_id == sweep_id
    )
    shared = select(SweepConfiguration.configuration_id).where(
        SweepConfiguration.sweep_id != sweep_id
    )
    orphans = list(
        session.scalars(
            select(Configuration.id)
            .where(Configuration.id.in_(mine))
            .where(Configuration.id.not_in(shared))
        )
    )
    session.execute(delete(Sweep).where(Sweep.id == sweep_id))
    for i in range(0, len(orphans), _IN_BATCH):
        batch = orphans[i : i + _IN_BATCH]
        session.execute(delete(Configuration).where(Configuration.id.in_(batch)))
    return footprint


def config_versions(
    *, session: Session, sweep_id: int
) -> dict[int, tuple[bool, datetime | None, int]]:
    """Configuration id -> (complete, when last aggregated, chunks done): the version of its
    results, aggregated or partial (the dashboard's cache key). UnknownSweepError if absent."""
    _require_sweep(session, sweep_id)
    done = func.count(Chunk.id).filter(Chunk.status == "done")
    rows = session.execute(
        select(Configuration.id, Configuration.status, Configuration.aggregated_at, done)
        .join(SweepConfiguration, SweepConfiguration.configuration_id == Configuration.id)
        .outerjoin(Chunk, Chunk.configuration_id == Configuration.id)
        .where(SweepConfiguration.sweep_id == sweep_id)
        .group_by(Configuration.id, Configuration.status, Configuration.aggregated_at)
    )
    return {int(i): (status == "done", at, int(n)) for i, status, at, n in rows}

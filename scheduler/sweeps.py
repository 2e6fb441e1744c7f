"""What a user does to a sweep: record it, run it here, resume, submit, cancel.

Transactions and executor calls only: no click, no printing. Each function takes a session
factory opened at the edge (the CLI, the Python API) and returns domain values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from models.db import session_scope
from models.errors import TransientStoreError
from scheduler.database import broker_problem, first_line, redact
from scheduler.errors import (
    BrokerUnavailableError,
    InterruptedRun,
    OptionError,
    RuntimeFailure,
    UserError,
)
from scheduler.store import (
    DeletedSweep,
    chunk_configs,
    chunk_ids,
    chunk_trials,
    create_sweep,
    delete_sweep,
    get_sweep,
    refresh_sweep_status,
    reset_chunks,
    set_sweep_status,
    sweep_footprint,
    sweep_names,
)
from worker.aggregate import aggregate_sweep

if TYPE_CHECKING:
    from scheduler.plan import SweepPlan
    from scheduler.reconcile import PassReport, ReconcilePolicy
    from worker.pool import RunReport

SessionFactory = Callable[[], Session]


def plan_spec(path: str) -> SweepPlan:
    """The validated plan of the spec file at `path` (SpecError when it is invalid)."""
    from scheduler.chunking import plan_sweep
    from scheduler.spec import load_spec

    return plan_sweep(load_spec(path))


def require_compute(what: str) -> None:
    """RuntimeFailure naming `what` when this environment cannot run chunks (no TensorFlow)."""
    from worker.requirements import compute_problem

    problem = compute_problem()
    if problem is not None:
        raise RuntimeFailure(f"{what}: {problem}")


def resolve_sweep(*, session: Session, ref: int | str) -> int:
    """The id of the sweep `ref`: an id as it is, or the one sweep with that name.

    A name no sweep has is an UnknownSweepError (with a did-you-mean); a name several sweeps
    share is a UserError listing their ids.
    """
    if isinstance(ref, int):
        return ref
    from scheduler.errors import UnknownSweepError
    from scheduler.formatting import printable
    from scheduler.spec.values import did_you_mean

    names = sweep_names(session=session)
    ids = [i for i, name in names.items() if name == ref]
    shown = repr(printable(ref))
    if not ids:
        hint = did_you_mean(ref, dict.fromkeys(names.values())).removeprefix("; ")
        raise UnknownSweepError(f"sweep {shown}: no sweep has this name" + (hint and f" ({hint})"))
    if len(ids) > 1:
        raise UserError(
            f"sweep {shown}: {len(ids)} sweeps have this name (ids {', '.join(map(str, ids))}); "
            "give one of the ids"
        )
    return ids[0]


RECORD_ATTEMPTS = 5  # concurrent submissions of the same configurations: the loser retries


def record(factory: SessionFactory, plan: SweepPlan) -> int:
    """Record `plan` as a running sweep (one transaction) and aggregate reused configurations.

    Two submissions racing to create the same configurations collide on their unique run_key;
    the loser's transaction rolls back whole and is retried (it then links the winner's rows).
    """
    for attempt in range(RECORD_ATTEMPTS):
        try:
            with session_scope(factory) as session:
                sweep_id = create_sweep(session=session, plan=plan)
                set_sweep_status(session=session, sweep_id=sweep_id, status="running")
            break
        except TransientStoreError:
            if attempt == RECORD_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    with session_scope(factory) as session:  # configurations finished by earlier sweeps
        aggregate_sweep(session=session, sweep_id=sweep_id)
    return sweep_id


@dataclass(frozen=True)
class LocalRun:
    """What running a sweep here did, and the sweep's status afterwards."""

    report: RunReport
    status: str
    reset_failed: int  # failed chunks given a fresh start (attempts back to 0)
    failed_left: int  # chunks still failed afterwards


def run_here(
    factory: SessionFactory,
    url: str,
    sweep_id: int,
    *,
    workers: int | None,
    on_start: Callable[[int, int], None] | None = None,
    on_done: Callable[[int, int], None] | None = None,
) -> LocalRun:
    """Run the sweep's missing chunks in `workers` local processes (None: as many as their
    nominal work is worth, `estimate.local_workers`); `on_start(chunks, trials)` first
    (a targeted sweep's counts go to its maximum: it may stop short of them).

    Small chunks travel in tasks of about a second of nominal work (`chunking.group_tasks`).
    A targeted configuration's chunks are sent up to its frontier, and more as it moves
    (`growth.wanted_chunk_ids`); the pool asks for them as processes free up.

    Running and failed chunks are put back to pending first (a local run owns its sweep; failed
    ones get their attempts back). Configurations whose chunks are all done but which are not
    aggregated (a database written by an older version) are aggregated before anything else.
    Ctrl-C returns the chunks in flight to pending, marks the sweep `interrupted` and raises
    InterruptedRun; otherwise the sweep's status is refreshed from its chunks.
    """
    from scheduler.chunking import (
        chunk_seconds,
        config_seconds_per_trial,
        group_tasks,
        spread_task_seconds,
    )
    from scheduler.estimate import local_workers
    from scheduler.growth import wanted_chunk_ids
    from worker.pool import run_chunks

    require_compute(f"sweep {sweep_id}")
    with session_scope(factory) as session:
        set_sweep_status(session=session, sweep_id=sweep_id, status="running")  # wants its work
        aggregate_sweep(session=session, sweep_id=sweep_id)
        reset = reset_chunks(session=session, sweep_id=sweep_id, statuses=("failed",))
        reset_chunks(session=session, sweep_id=sweep_id, statuses=("running",))
        ids = chunk_ids(session=session, sweep_id=sweep_id, statuses=("pending",))
        trials = chunk_trials(session=session, chunk_ids=ids)
        first = wanted_chunk_ids(session=session, sweep_id=sweep_id)
        work = chunk_configs(session=session, chunk_ids=first)
        growing = len(first) < len(ids)  # some chunks wait for a frontier to move
        every = chunk_configs(session=session, chunk_ids=ids) if growing else work
    costs = [(cid, chunk_seconds(config_seconds_per_trial(text), n)) for cid, n, text in work]
    if workers is None:  # what all of the pending chunks are worth, not only the first ones
        workers = local_workers(
            sum(chunk_seconds(config_seconds_per_trial(text), n) for _, n, text in every)
        )
    target = spread_task_seconds(sum(c for _, c in costs), workers)
    tasks = group_tasks(costs, target)
    sent = set(first)

    def refill() -> list[tuple[int, ...]]:
        with session_scope(factory) as session:
            more = wanted_chunk_ids(session=session, sweep_id=sweep_id, exclude=sent)
            found = chunk_configs(session=session, chunk_ids=more)
        sent.update(more)
        return group_tasks(
            [(cid, chunk_seconds(config_seconds_per_trial(text), n)) for cid, n, text in found],
            target,
        )

    try:
        if on_start is not None and ids:
            on_start(len(ids), trials)
        report = run_chunks(
            url, tasks, workers=workers, on_done=on_done, refill=refill if growing else None
        )
    except KeyboardInterrupt:
        with session_scope(factory) as session:
            back = reset_chunks(session=session, sweep_id=sweep_id, statuses=("running",))
            set_sweep_status(session=session, sweep_id=sweep_id, status="interrupted")
            left = get_sweep(session=session, sweep_id=sweep_id).chunk_counts["pending"]
        raise InterruptedRun(
            f"sweep {sweep_id}: interrupted; {back} chunks in flight went back to pending, "
            f"{left} chunks left"
        ) from None
    with session_scope(factory) as session:
        status = refresh_sweep_status(session=session, sweep_id=sweep_id)
        failed = get_sweep(session=session, sweep_id=sweep_id).chunk_counts["failed"]
    return LocalRun(report, status, reset, failed)


def reset_failed(factory: SessionFactory, sweep_id: int) -> int:
    """Failed chunks back to pending, every enqueue mark cleared, sweep running; how many failed.

    The reconciler then sends the sweep's pending chunks at once instead of waiting for
    `requeue_after` (their old messages may be lost).
    """
    with session_scope(factory) as session:
        get_sweep(session=session, sweep_id=sweep_id)
        n = reset_chunks(session=session, sweep_id=sweep_id, statuses=("failed",))
        reset_chunks(session=session, sweep_id=sweep_id, statuses=("pending",))
        set_sweep_status(session=session, sweep_id=sweep_id, status="running")
    return n


def require_sweep(factory: SessionFactory, sweep_id: int) -> None:
    """UnknownSweepError unless the sweep exists."""
    with session_scope(factory) as session:
        get_sweep(session=session, sweep_id=sweep_id)


def reconcile_pass(
    factory: SessionFactory, sweep_ids: list[int] | None, policy: ReconcilePolicy
) -> PassReport:
    """One reconciler pass that sends through Celery; an unreachable broker is one error."""
    from kombu.exceptions import OperationalError

    from scheduler.reconcile import celery_sender, reconcile_once
    from worker.celery_app import broker_url

    checked_broker_url()
    try:
        return reconcile_once(factory, celery_sender(), policy, sweep_ids=sweep_ids)
    except OperationalError as exc:
        raise BrokerUnavailableError(
            f"cannot reach the broker {redact(broker_url())}: {first_line(exc)}"
        ) from exc


def checked_broker_url() -> str:
    """$INITSWEEP_BROKER_URL (or the default), OptionError when it is malformed."""
    from worker.celery_app import broker_url

    url = broker_url()
    problem = broker_problem(url)
    if problem is not None:
        raise OptionError(
            "$INITSWEEP_BROKER_URL: expected a broker URL such as redis://:password@host:6379/0. "
            f"Received: {redact(url)} ({problem})"
        )
    return url


def check_broker() -> None:
    """BrokerUnavailableError unless the Celery broker accepts a connection (and its password)."""
    from kombu.connection import Connection

    url = checked_broker_url()
    try:
        with Connection(url, connect_timeout=5) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:  # the broker edge: whatever the transport raised, one line
        raise BrokerUnavailableError(
            f"cannot reach the broker {redact(url)}: {first_line(exc)}; nothing was recorded"
        ) from exc


def cancel(factory: SessionFactory, sweep_id: int) -> bool:
    """Mark the sweep cancelled; False when it already was. A finished sweep is refused.

    Chunks already queued in the broker are then skipped by the workers' claim (no sweep that
    wants work links their configuration), and `resume` takes the sweep up again.
    """
    with session_scope(factory) as session:
        status = get_sweep(session=session, sweep_id=sweep_id).status
        if status == "cancelled":
            return False
        if status in ("done", "partial", "failed"):
            raise UserError(
                f"sweep {sweep_id}: expected a sweep with work left to cancel. "
                f"Received: a {status} sweep"
            )
        set_sweep_status(session=session, sweep_id=sweep_id, status="cancelled")
    return True


def delete(factory: SessionFactory, sweep_id: int) -> DeletedSweep:
    """Delete the sweep and the configurations only it links to (`store.delete_sweep`); a
    running sweep is refused (cancel it first), since its workers would still save into it."""
    with session_scope(factory) as session:
        status = get_sweep(session=session, sweep_id=sweep_id).status
        if status == "running":
            raise UserError(
                f"sweep {sweep_id}: expected a sweep that is not running. Received: a running "
                f"sweep (stop it first: initsweep cancel {sweep_id})"
            )
        return delete_sweep(session=session, sweep_id=sweep_id)


def footprint(factory: SessionFactory, sweep_id: int) -> DeletedSweep:
    """What `delete` would remove now."""
    with session_scope(factory) as session:
        return sweep_footprint(session=session, sweep_id=sweep_id)

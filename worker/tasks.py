"""Celery tasks. A task is a thin view over `worker.execute`: its payload is a chunk id, or a
list of chunk ids (small chunks grouped by `scheduler.chunking.group_tasks`).

Retries: transient database errors (connection lost, server restarting, lock timeouts) are
retried with exponential backoff; a simulation error is retried a bounded number of times and
then recorded as the chunk's final error. Everything else is a bug and fails loudly. In a list,
every chunk is claimed, simulated, saved and aggregated on its own: a retry of the list re-runs
what is not saved (a saved chunk's claim is a no-op), and a simulation error retries only its
own chunk, in a message of its own.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Task
from sqlalchemy.orm import Session, sessionmaker

from models.errors import TransientStoreError
from worker.celery_app import app
from worker.contract import TASK_NAME, TASKS_NAME
from worker.errors import SimulationError

log = logging.getLogger(__name__)

_factory: sessionmaker[Session] | None = None


def session_factory() -> sessionmaker[Session]:
    """This process's session factory (created lazily, after the pool forked)."""
    global _factory
    if _factory is None:
        from models.db import make_engine, make_session_factory, resolve_url

        _factory = make_session_factory(make_engine(resolve_url(None)))
    return _factory


def _backoff(retries: int) -> float:
    return float(min(2**retries, 30))


@app.task(name=TASK_NAME, bind=True, acks_late=True, max_retries=None)
def run_chunk(self: Task, chunk_id: int) -> dict[str, Any]:
    """Claim, simulate and save chunk `chunk_id`; a no-op when it is already saved."""
    from worker.execute import MAX_TRANSIENT_RETRIES, execute_chunk, record_simulation_failure

    retries = int(self.request.retries or 0)
    try:
        result = execute_chunk(session_factory(), int(chunk_id))
    except TransientStoreError as exc:
        if retries >= MAX_TRANSIENT_RETRIES:
            raise
        log.warning("chunk %s: transient store error, retrying: %s", chunk_id, exc)
        raise self.retry(exc=exc, countdown=_backoff(retries)) from exc
    except SimulationError as exc:
        final = record_simulation_failure(session_factory(), int(chunk_id), str(exc))
        log.error(
            "chunk %s: simulation failed (%s): %s", chunk_id, "final" if final else "retry", exc
        )
        if final:
            return {"chunk_id": chunk_id, "status": "failed"}
        raise self.retry(exc=exc, countdown=_backoff(retries)) from exc
    return {"chunk_id": chunk_id, "status": result.status, "pid": os.getpid()}


@app.task(name=TASKS_NAME, bind=True, acks_late=True, max_retries=None)
def run_chunks(self: Task, chunk_ids: list[int]) -> dict[str, Any]:
    """`run_chunk` of each of `chunk_ids` in order; the task is retried with the chunks left."""
    from worker.execute import MAX_TRANSIENT_RETRIES, execute_chunk, record_simulation_failure

    retries = int(self.request.retries or 0)
    ids = [int(c) for c in chunk_ids]
    again: list[int] = []  # chunks whose simulation failed, not finally: retried after the rest
    statuses: dict[str, int] = {}
    for position, chunk_id in enumerate(ids):
        try:
            status = execute_chunk(session_factory(), chunk_id).status
        except TransientStoreError as exc:
            if retries >= MAX_TRANSIENT_RETRIES:
                raise
            log.warning("chunk %s: transient store error, retrying its task: %s", chunk_id, exc)
            rest = again + ids[position:]
            raise self.retry(args=[rest], exc=exc, countdown=_backoff(retries)) from exc
        except SimulationError as exc:
            final = record_simulation_failure(session_factory(), chunk_id, str(exc))
            log.error(
                "chunk %s: simulation failed (%s): %s", chunk_id, "final" if final else "retry", exc
            )
            status = "failed" if final else "retry"
            if not final:
                again.append(chunk_id)
        statuses[status] = statuses.get(status, 0) + 1
    if again:
        raise self.retry(args=[again], countdown=_backoff(retries))
    return {"chunks": len(ids), "statuses": statuses, "pid": os.getpid()}

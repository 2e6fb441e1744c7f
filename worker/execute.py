"""One chunk, end to end: claim, simulate, save, aggregate. Shared by the local pool and Celery.

Each step is its own short transaction, so a process killed anywhere leaves the database
consistent: a claimed-but-unsaved chunk stays `running` until it is re-run (resume or the
reconciler), and a second save of a chunk is a no-op. A chunk's save and the aggregation of its
configuration (when it was the last chunk) are ONE transaction: no state has every chunk done and
the configuration's statistics missing. TensorFlow is imported here lazily, inside
the call, never at import time (Celery's main process forks its pool; TF is not fork-safe).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from worker.errors import MemoryBudgetError, SimulationError

SessionFactory = Callable[[], Session]

# The attempt bounds, in one place (the local pool and Celery share them).
MAX_CLAIMS = 8  # a chunk that kills its worker every time is failed, not redelivered forever
MAX_SIMULATION_ATTEMPTS = 3  # a chunk whose core raises is retried this often, then failed
MAX_TRANSIENT_RETRIES = 12  # transient database errors: retries with backoff before giving up


@dataclass(frozen=True)
class ChunkResult:
    """What happened to a chunk in this call."""

    chunk_id: int
    status: str  # "saved" | "duplicate" | "skipped" (already done before the claim)
    n_trials: int
    duration_s: float


def worker_name() -> str:
    """`name:pid` recorded per chunk; name is $INITSWEEP_WORKER_NAME or the host name."""
    return f"{os.environ.get('INITSWEEP_WORKER_NAME') or socket.gethostname()}:{os.getpid()}"


def execute_chunk(
    factory: SessionFactory, chunk_id: int, *, worker: str | None = None
) -> ChunkResult:
    """Claim `chunk_id`, run the core on it, save it once, and aggregate its configuration."""
    from models.db import session_scope
    from worker.aggregate import aggregate_config
    from worker.persist import chunk_configuration_id, claim_chunk, save_outcome

    name = worker or worker_name()
    with session_scope(factory) as session:
        task = claim_chunk(session=session, chunk_id=chunk_id, worker=name, max_claims=MAX_CLAIMS)
        config_id = chunk_configuration_id(session=session, chunk_id=chunk_id)
    if task is None:
        return ChunkResult(chunk_id, "skipped", 0, 0.0)

    with _Heartbeat(factory, chunk_id, heartbeat_interval()):
        outcome = run_core(task)

    with session_scope(factory) as session:
        saved = save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker=name)
        if saved:
            _inject("INITSWEEP_KILL_AFTER_SAVE", task)  # drills: die inside the transaction
            aggregate_config(session=session, configuration_id=config_id)
    return ChunkResult(
        chunk_id, "saved" if saved else "duplicate", task.n_trials, outcome.provenance.duration_s
    )


def record_simulation_failure(
    factory: SessionFactory,
    chunk_id: int,
    error: str,
    *,
    max_attempts: int = MAX_SIMULATION_ATTEMPTS,
) -> bool:
    """Record a failed attempt; final (chunk failed) once `max_attempts` attempts were made."""
    from models.db import session_scope
    from worker.persist import chunk_attempts, mark_failed

    with session_scope(factory) as session:
        final = chunk_attempts(session=session, chunk_id=chunk_id) >= max_attempts
        mark_failed(session=session, chunk_id=chunk_id, error=error, final=final)
    return final


def heartbeat_interval() -> float:
    """Seconds between heartbeats of a running chunk ($INITSWEEP_HEARTBEAT_S, default 10)."""
    return float(os.environ.get("INITSWEEP_HEARTBEAT_S", "10"))


class _Heartbeat:
    """Touch the chunk's heartbeat from a thread while the core runs (stale = worker dead)."""

    def __init__(self, factory: SessionFactory, chunk_id: int, interval: float) -> None:
        self.factory, self.chunk_id, self.interval = factory, chunk_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        from models.db import session_scope
        from worker.persist import heartbeat

        while not self.stop.wait(self.interval):
            try:
                with session_scope(self.factory) as session:
                    heartbeat(session=session, chunk_id=self.chunk_id)
            except Exception:  # a missed heartbeat only risks a harmless duplicate run
                continue


def run_core(task: Any) -> Any:
    """`worker.sim.simulate_chunk(task)`, with any failure of the core as a SimulationError.

    Fault injection for tests and drills: `INITSWEEP_FAIL_CHUNKS=config_hash_prefix:chunk_index,...`
    makes those chunks fail as a poison chunk would (`INITSWEEP_KILL_AFTER_SAVE`, same syntax,
    kills the process between a chunk's save and its aggregation, before the commit).
    """
    from worker.sim import simulate_chunk

    item = _injected("INITSWEEP_FAIL_CHUNKS", task)
    if item is not None:
        raise SimulationError(f"injected failure of chunk {task.chunk_index} ({item})")
    try:
        return simulate_chunk(task)
    except MemoryBudgetError:
        raise
    except Exception as exc:  # the boundary of the numeric core: any failure is a poison chunk
        raise SimulationError(f"{type(exc).__name__}: {exc}") from exc


def _injected(variable: str, task: Any) -> str | None:
    """The item of $variable (`hash_prefix:chunk_index,...`) that names this task's chunk."""
    for item in filter(None, os.environ.get(variable, "").split(",")):
        prefix, _, index = item.partition(":")
        if task.config.config_hash.startswith(prefix) and str(task.chunk_index) == index:
            return item
    return None


def _inject(variable: str, task: Any) -> None:
    """Kill this process at once (SIGKILL-like: no cleanup) when $variable names the chunk."""
    if _injected(variable, task) is not None:
        os._exit(137)

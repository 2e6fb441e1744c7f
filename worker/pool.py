"""The embedded executor: run a sweep's pending chunks in local worker processes.

Processes are spawned (never forked: TensorFlow is not fork-safe) and each pins TensorFlow to a
fixed thread count, so a chunk's bits do not depend on how many processes run; throughput scales
with processes instead. The database is the source of truth: every chunk is claimed, saved and
aggregated through `worker.execute`, exactly as a Celery worker does, so an interrupted run
leaves only whole chunks behind and `resume` runs what is missing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from worker.errors import SimulationError

TF_THREADS_PER_PROCESS = 1

_factory = None  # per worker process


@dataclass
class RunReport:
    """What a local run did."""

    saved: int = 0
    duplicates: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    trials: int = 0
    core_seconds: float = 0.0
    wall_seconds: float = 0.0


def default_workers() -> int:
    """One process per core."""
    return max(1, os.cpu_count() or 1)


def _init_process(url: str, threads: int) -> None:
    global _factory
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    os.environ["INITSWEEP_TF_THREADS"] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.db import make_engine, make_session_factory

    _factory = make_session_factory(make_engine(url))
    _import_tensorflow_quietly()


def _import_tensorflow_quietly() -> None:
    """Import the core (TensorFlow) now, not while holding a claimed chunk, without its banner.

    TensorFlow's C++ start-up notices go to fd 2 whatever TF_CPP_MIN_LOG_LEVEL says; under a
    progress bar they are noise, so fd 2 points at /dev/null for the import only.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import worker.sim  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _run_one(chunk_id: int) -> tuple[int, str, int, float, str | None]:
    from worker.execute import execute_chunk

    assert _factory is not None
    try:
        result = execute_chunk(_factory, chunk_id)
    except SimulationError as exc:
        return chunk_id, "error", 0, 0.0, str(exc)
    return chunk_id, result.status, result.n_trials, result.duration_s, None


def run_chunks(
    url: str,
    chunk_ids: Sequence[int],
    *,
    workers: int,
    on_done: Callable[[int, int], None] | None = None,
) -> RunReport:
    """Run `chunk_ids` on `workers` spawned processes; `on_done(chunk_id, n_trials)` per chunk.

    A chunk whose simulation fails is retried up to `worker.execute.MAX_SIMULATION_ATTEMPTS`
    times, then marked failed.
    KeyboardInterrupt stops the pool at once and propagates; saved chunks stay saved.
    """
    from models.db import make_engine, make_session_factory
    from worker.execute import record_simulation_failure

    report = RunReport()
    start = time.perf_counter()
    if not chunk_ids:
        return report
    factory = make_session_factory(make_engine(url))
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(chunk_ids)),
        mp_context=ctx,
        initializer=_init_process,
        initargs=(url, TF_THREADS_PER_PROCESS),
    )
    try:
        pending: set[Future[tuple[int, str, int, float, str | None]]] = {
            pool.submit(_run_one, cid) for cid in chunk_ids
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                cid, status, n_trials, seconds, error = fut.result()
                if status == "error":
                    final = record_simulation_failure(factory, cid, error or "")
                    if final:
                        report.failed[cid] = error or ""
                    else:
                        pending.add(pool.submit(_run_one, cid))
                    continue
                if status == "saved":
                    report.saved += 1
                    report.trials += n_trials
                    report.core_seconds += seconds
                elif status == "duplicate":
                    report.duplicates += 1
                if on_done is not None:
                    on_done(cid, n_trials)
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for proc in procs:
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.join(timeout=10)
        raise
    else:
        pool.shutdown(wait=True)
    report.wall_seconds = time.perf_counter() - start
    return report

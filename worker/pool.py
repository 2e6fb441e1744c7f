"""The embedded executor: run a sweep's pending chunks in local worker processes.

What is submitted to a process is a task: one chunk, or several small ones run one after the
other (`scheduler.chunking.group_tasks`), so a sweep of many tiny configurations is not one
round trip per millisecond of work.

Processes are spawned (never forked: TensorFlow is not fork-safe) and each pins TensorFlow to a
fixed thread count, so a chunk's bits do not depend on how many processes run; throughput scales
with processes instead. The database is the source of truth: every chunk is claimed, saved and
aggregated through `worker.execute`, exactly as a Celery worker does, so an interrupted run
leaves only whole chunks behind and `resume` runs what is missing.

The processes do not re-run the caller's `__main__` (`_Spawn`): a plain script that calls
`initsweep.run(...)` at module level, without an `if __name__ == "__main__":` guard, would
otherwise start the same run again in every spawned process. They need nothing from it.
"""

from __future__ import annotations

import multiprocessing.context
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.errors import SimulationError

if TYPE_CHECKING:
    from worker.execute import SessionFactory

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
    processes: int = 0  # the pool's size: `workers`, or fewer when there are fewer tasks


def default_workers() -> int:
    """One process per core."""
    return max(1, os.cpu_count() or 1)


def _init_process(url: str, threads: int) -> None:
    global _factory
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    _die_with_parent(os.getppid())
    os.environ["INITSWEEP_TF_THREADS"] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.db import make_engine, make_session_factory

    _factory = make_session_factory(make_engine(url))
    _import_tensorflow_quietly()


def _die_with_parent(parent: int) -> None:
    """Exit when the parent dies, even by SIGKILL: PR_SET_PDEATHSIG on Linux, and a watchdog."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


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


Outcome = tuple[int, str, int, float, str | None]
Task = tuple[int, ...]  # chunk ids run one after the other by one pool process


def _run_one(chunk_id: int) -> Outcome:
    """Run one chunk in this pool process; transient database errors are retried here."""
    from models.errors import TransientStoreError
    from worker.execute import MAX_TRANSIENT_RETRIES, execute_chunk

    assert _factory is not None
    for attempt in range(MAX_TRANSIENT_RETRIES + 1):
        try:
            result = execute_chunk(_factory, chunk_id)
        except SimulationError as exc:
            return chunk_id, "error", 0, 0.0, str(exc)
        except TransientStoreError as exc:
            if attempt == MAX_TRANSIENT_RETRIES:
                return chunk_id, "transient", 0, 0.0, str(exc)
            time.sleep(min(2.0**attempt, 30.0))
            continue
        return chunk_id, result.status, result.n_trials, result.duration_s, None
    raise AssertionError("unreachable")


def _run_task(chunk_ids: Task) -> list[Outcome]:
    """Run the chunks of one task in order in this pool process, each on its own."""
    return [_run_one(chunk_id) for chunk_id in chunk_ids]


def run_chunks(
    url: str,
    tasks: Sequence[Sequence[int]],
    *,
    workers: int,
    on_done: Callable[[int, int], None] | None = None,
    refill: Callable[[], Sequence[Sequence[int]]] | None = None,
) -> RunReport:
    """Run `tasks` (each a sequence of chunk ids, `scheduler.chunking.group_tasks`) on
    `workers` spawned processes; `on_done(chunk_id, n_trials)` once per finished chunk.
    `refill()`, when given, is asked for more tasks whenever a process is free and none is
    queued (a targeted sweep's chunks are sent as its frontier moves); the run ends when
    nothing is in flight and it has none.

    At most `workers` tasks are in flight, so when a pool process dies (killed, out of memory)
    the tasks it may have held are known: the pool is started anew, the chunks of those tasks
    that were saved meanwhile are booked as saved (from the database), and the others run
    again, a dead task's chunks one per task, so that a chunk that kills its process is found
    out; a chunk in flight alone at `MAX_SIMULATION_ATTEMPTS` such deaths is marked failed. A
    chunk whose simulation raises is retried as often (alone), then marked failed; transient
    database errors are retried with backoff inside the pool process (`MAX_TRANSIENT_RETRIES`).
    KeyboardInterrupt stops the pool at once and propagates; saved chunks stay saved.
    """
    from models.db import make_engine, make_session_factory
    from worker.execute import MAX_SIMULATION_ATTEMPTS, record_simulation_failure

    report = RunReport()
    start = time.perf_counter()
    queue: list[Task] = [tuple(t) for t in reversed(tasks) if t]  # pop() takes them in order
    if not queue:
        return report
    factory = make_session_factory(make_engine(url))
    deaths: dict[int, int] = {}
    n_workers = workers if refill is not None else min(workers, len(queue))
    report.processes = n_workers
    pool = _new_pool(url, n_workers)
    in_flight: dict[Future[list[Outcome]], Task] = {}

    def top_up() -> None:
        if refill is not None and not queue and len(in_flight) < n_workers:
            queue.extend(tuple(t) for t in reversed(refill()) if t)

    try:
        while queue or in_flight:
            while queue and len(in_flight) < n_workers:
                task = queue.pop()
                in_flight[pool.submit(_run_task, task)] = task
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            lost: list[tuple[Task, bool]] = []  # (task, died: its own future saw the death)
            for fut in done:
                task = in_flight.pop(fut)
                try:
                    outcomes = fut.result()
                except BrokenProcessPool:
                    lost.append((task, True))
                    continue
                for outcome in outcomes:
                    _account(report, outcome, queue, factory, on_done)
            if not lost:
                top_up()
                continue
            for fut, task in in_flight.items():  # every future of a broken pool is lost
                fut.cancel()
                lost.append((task, False))
            in_flight.clear()
            _stop(pool)  # its processes are gone now: what they saved is in the database
            for task, died in lost:
                left = _book_saved(report, factory, task, on_done)
                if not left:
                    continue
                if not died:  # lost with the pool, not the cause: as it was
                    queue.append(left)
                    continue
                if len(task) > 1:  # one chunk per task from now on: the cause is found out
                    queue.extend((cid,) for cid in reversed(left))
                    continue
                cid = left[0]
                deaths[cid] = deaths.get(cid, 0) + 1
                if deaths[cid] < MAX_SIMULATION_ATTEMPTS:
                    queue.append((cid,))
                else:
                    error = f"its pool process died {deaths[cid]} times"
                    record_simulation_failure(factory, cid, error, max_attempts=0)  # final
                    report.failed[cid] = error
            pool = _new_pool(url, n_workers)
            top_up()
    except BaseException:
        _stop(pool)
        raise
    else:
        pool.shutdown(wait=True)
    report.wall_seconds = time.perf_counter() - start
    return report


def _book_saved(
    report: RunReport,
    factory: SessionFactory,
    task: Task,
    on_done: Callable[[int, int], None] | None,
) -> Task:
    """Book the chunks of a lost task that were saved before it was lost; the others, in order."""
    from models.db import session_scope
    from worker.persist import saved_chunks

    with session_scope(factory) as session:
        saved = saved_chunks(session=session, chunk_ids=task)
    for cid in task:
        if cid in saved:
            n_trials, seconds = saved[cid]
            _account(report, (cid, "saved", n_trials, seconds, None), [], factory, on_done)
    return tuple(cid for cid in task if cid not in saved)


def _account(
    report: RunReport,
    outcome: Outcome,
    queue: list[Task],
    factory: SessionFactory,
    on_done: Callable[[int, int], None] | None,
) -> None:
    """Book one finished chunk: saved, duplicate, skipped, or failed (retried alone, or final)."""
    from worker.execute import record_simulation_failure

    cid, status, n_trials, seconds, error = outcome
    if status == "error":
        if record_simulation_failure(factory, cid, error or ""):
            report.failed[cid] = error or ""
        else:
            queue.append((cid,))
        return
    if status == "transient":  # the database stayed unavailable: the chunk is left for resume
        report.failed[cid] = error or ""
        return
    if status == "saved":
        report.saved += 1
        report.trials += n_trials
        report.core_seconds += seconds
    elif status == "duplicate":
        report.duplicates += 1
    if on_done is not None:
        on_done(cid, n_trials)


@contextmanager
def _main_hidden() -> Iterator[None]:
    """While a process is spawned: `__main__` without `__file__` and with `__spec__` None, so
    the child's preparation imports nothing of it (`multiprocessing.spawn.get_preparation_data`
    reads both)."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class _SpawnProcess(multiprocessing.context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: multiprocessing.process.BaseProcess) -> Any:
        with _main_hidden():
            return multiprocessing.context.SpawnProcess._Popen(process_obj)


class _Spawn(multiprocessing.context.SpawnContext):
    """The spawn start method, without re-running the caller's `__main__` in the children."""

    Process = _SpawnProcess


def _new_pool(url: str, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_Spawn(),
        initializer=_init_process,
        initargs=(url, TF_THREADS_PER_PROCESS),
    )


def _stop(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's processes now (interrupt, or a broken pool) and reap them."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.join(timeout=10)

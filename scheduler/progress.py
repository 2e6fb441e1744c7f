"""The live progress of sweeps (`initsweep status`), from `scheduler.query.sweep_progress`: as
JSON-ready records, and as the rich table made of the same records."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models.db import session_scope
from scheduler.formatting import clock, printable
from scheduler.query import SweepProgress, sweep_progress

if TYPE_CHECKING:
    from rich.table import Table
    from sqlalchemy.orm import Session

CHUNK_COLUMNS = ("pending", "running", "done", "failed")  # and skipped, in JSON and below


def progress_record(p: SweepProgress) -> dict[str, Any]:
    """One sweep's progress as plain values (`status --format json`; None where unknown)."""
    return {
        "sweep_id": p.sweep_id,
        "name": p.name,
        "status": p.status,
        "chunks": {k: p.counts.get(k, 0) for k in (*CHUNK_COLUMNS, *sorted(p.counts))},
        "trials_done": p.trials_done,
        "trials_total": p.trials_total,
        "trials_per_s": p.rate,
        "eta_s": p.eta_s,
        "workers": list(p.workers),
        "finished": p.finished,
    }


def status_records(
    factory: Callable[[], Session], sweep_id: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """`progress_record` of one sweep (or of every sweep), and whether all are finished; for
    one sweep, with `targets`: where its targeted configurations stand (`scheduler.targets`)."""
    from scheduler.targets import target_states

    with session_scope(factory) as session:
        rows = sweep_progress(session=session, sweep_id=sweep_id)
        states = [] if sweep_id is None else target_states(session=session, sweep_id=sweep_id)
    records = [progress_record(p) for p in rows]
    if states:
        records[0]["targets"] = [{**s.record(), "line": s.line()} for s in states]
    return records, all(p.finished for p in rows)


def status_notes(records: list[dict[str, Any]]) -> list[str]:
    """The lines printed under `status_table`: skipped chunks, and each target's SE beside it."""
    lines = []
    for r in records:
        skipped = r["chunks"].get("skipped", 0)
        if skipped:
            lines.append(
                f"sweep {r['sweep_id']}: {skipped} chunks skipped (past where their target was met)"
            )
        lines.extend(f"sweep {r['sweep_id']}: {t['line']}" for t in r.get("targets", []))
    return [printable(line) for line in lines]


def status_table(records: list[dict[str, Any]]) -> Table:
    """The rich table of `status_records`."""
    from rich.table import Table
    from rich.text import Text

    table = Table("sweep", "name", "status", *CHUNK_COLUMNS, "trials", "trials/s", "ETA")
    table.add_column("active workers")
    for r in records:
        rate = r["trials_per_s"]
        table.add_row(
            str(r["sweep_id"]),
            Text(printable(r["name"])),  # never markup, never raw control characters
            r["status"],
            *(str(r["chunks"][k]) for k in CHUNK_COLUMNS),
            f"{r['trials_done']}/{r['trials_total']}",
            "—" if rate is None else f"{rate:,.0f}",
            clock(r["eta_s"]),
            Text(printable(", ".join(r["workers"])) or "—"),
        )
    return table


class RunProgress:
    """A local run's progress, written as one line every `every_s` seconds from a daemon thread
    (for a log file or a pipe, where a progress bar would be noise), and once more at `stop`.

    `start(chunks, trials)` and `done(trials)` are the run's callbacks (`sweeps.run_here`'s
    `on_start` and `on_done`); `write` receives each line.
    """

    def __init__(self, sweep_id: int, every_s: float, write: Callable[[str], None]) -> None:
        import threading

        self.sweep_id = sweep_id
        self.every_s = every_s
        self._write = write
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.chunks = self.trials = self.chunks_done = self.trials_done = 0
        self._t0 = self._t_last = 0.0

    def line(self, now: float) -> str:
        """`sweep 1: 5/24 chunks · 200/960 trials · 45 trials/s · ETA 0m17s · elapsed 0m04s`;
        once every chunk is in, the time to the last one (not the pool's shutdown after it)."""
        with self._lock:
            end = self._t_last if self.chunks and self.chunks_done >= self.chunks else now
            elapsed = max(end - self._t0, 0.0)
            rate = self.trials_done / elapsed if elapsed > 0 and self.trials_done else None
            eta = (self.trials - self.trials_done) / rate if rate else None
            return (
                f"sweep {self.sweep_id}: {self.chunks_done}/{self.chunks} chunks · "
                f"{self.trials_done}/{self.trials} trials · "
                f"{'—' if rate is None else f'{rate:,.0f}'} trials/s · ETA {clock(eta)} · "
                f"elapsed {clock(elapsed)}"
            )

    def start(self, chunks: int, trials: int) -> None:
        import threading
        import time

        with self._lock:
            self.chunks, self.trials, self._t0 = chunks, trials, time.monotonic()
        self._write(self.line(self._t0))
        self._thread = threading.Thread(target=self._run, name="progress-lines", daemon=True)
        self._thread.start()

    def done(self, _chunk_id: int, trials: int) -> None:
        import time

        with self._lock:
            self._t_last = time.monotonic()
            self.chunks_done += 1
            self.trials_done += trials

    def stop(self) -> None:
        """Stop the thread and write the final line (when the run had started)."""
        import time

        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._write(self.line(time.monotonic()))

    def _run(self) -> None:
        import time

        while not self._stopped.wait(self.every_s):
            self._write(self.line(time.monotonic()))

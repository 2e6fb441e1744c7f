"""What the user asks of a sweep, read from the database: one batched read per request.

Each request reads its rows once, whatever the number of configurations: `sweep_results` (the
configurations and every aggregated layer statistic, three statements), `result_records` and
`theory_records` (the records of `scheduler.analysis.records`, without and with theory),
`report_input` (everything `scheduler.analysis.report` renders) and `sweep_progress`. What the
values mean is `scheduler.analysis`'s business; the tables and CSV of the CLI are at the end.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from scheduler.analysis.records import ConfigResults, Record, result_rows
from scheduler.formatting import config_label, pm
from scheduler.store import chunk_activity, chunk_provenance
from worker.aggregate import sweep_layer_records

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console
    from sqlalchemy.orm import Session

    from scheduler.analysis.compare import CheckReport, Predictor
    from scheduler.analysis.report import ReportInput, SweepProvenance
    from scheduler.store import ConfigInfo

__all__ = [
    "ACTIVE_WINDOW",
    "SweepProgress",
    "render_check",
    "render_csv",
    "render_summary",
    "render_table",
    "report_input",
    "result_records",
    "results",
    "summarize",
    "sweep_failures",
    "sweep_progress",
    "sweep_provenance",
    "sweep_results",
    "theory_records",
]

ACTIVE_WINDOW = timedelta(seconds=120)
_IN_BATCH = 500  # bound IN (...) lists (SQLite's variable limit)


# ------------------------------------------------------------------------- requests


def _read_results(session: Session, sweep_id: int) -> tuple[list[ConfigInfo], list[ConfigResults]]:
    """The sweep's configurations (UnknownSweepError if absent) and their records: 3 statements."""
    from scheduler.store import sweep_config_rows

    infos = sweep_config_rows(session=session, sweep_id=sweep_id)
    by_id = sweep_layer_records(session=session, sweep_id=sweep_id)
    results_ = [
        ConfigResults(info.config_hash, info.config, info.axes, tuple(by_id.get(info.id, ())))
        for info in infos
    ]
    return infos, results_


def sweep_results(*, session: Session, sweep_id: int) -> list[ConfigResults]:
    """The sweep's configurations in position order, each with its aggregated records."""
    return _read_results(session, sweep_id)[1]


def result_records(
    *,
    session: Session,
    sweep_id: int,
    where: Mapping[str, str] | None = None,
    quantity: str | None = None,
    layer: int | None = None,
) -> list[Record]:
    """One record per (configuration, layer, quantity) of the sweep's aggregated results."""
    return result_rows(
        sweep_id,
        sweep_results(session=session, sweep_id=sweep_id),
        where=where,
        quantity=quantity,
        layer=layer,
    )


def theory_records(
    *,
    session: Session,
    sweep_id: int,
    predictor: Predictor | None = None,
    **filters: Any,
) -> list[Record]:
    """`result_records` with the theory columns of `scheduler.analysis.compare.with_theory`."""
    from scheduler.analysis.compare import with_theory
    from scheduler.analysis.theory import predict

    records = result_records(session=session, sweep_id=sweep_id, **filters)
    return with_theory(records, predictor=predictor or predict)


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
    )


def sweep_failures(
    *, session: Session, sweep_ids: Iterable[int], per_sweep: int = 20
) -> dict[int, list[dict[str, Any]]]:
    """Sweep id -> its latest failed chunks (at most `per_sweep`): configuration label, error."""
    from scheduler.analysis.records import config_columns
    from scheduler.store import chunk_failures

    found = chunk_failures(session=session, sweep_ids=list(sweep_ids), per_sweep=per_sweep)
    return {
        sweep_id: [
            {
                "chunk_id": f.chunk_id,
                "chunk_index": f.chunk_index,
                "configuration": config_label(config_columns(f.config, f.axes)),
                "attempts": f.attempts,
                "worker": f.worker,
                "error": f.error,
                "finished_at": f.finished_at,
            }
            for f in failures
        ]
        for sweep_id, failures in found.items()
    }


@dataclass(frozen=True)
class SweepProgress:
    """Chunk counts, throughput and ETA of one sweep."""

    sweep_id: int
    name: str
    status: str
    counts: dict[str, int]
    trials_done: int
    trials_total: int
    rate: float | None  # trials/s since the first chunk of this sweep started
    eta_s: float | None
    workers: tuple[str, ...]  # workers that ran or finished a chunk in the last two minutes

    @property
    def finished(self) -> bool:
        return self.status in ("done", "partial", "failed", "cancelled")


def sweep_progress(
    *, session: Session, sweep_id: int | None = None, now: datetime | None = None
) -> list[SweepProgress]:
    """Progress of `sweep_id` (UnknownSweepError when absent), or of every sweep, oldest first."""
    from models import utcnow
    from scheduler.store import get_sweep, list_sweeps

    infos = (
        list_sweeps(session=session)
        if sweep_id is None
        else [get_sweep(session=session, sweep_id=sweep_id)]
    )
    now = now or utcnow()
    firsts, workers = chunk_activity(
        session=session, sweep_ids=[i.id for i in infos], since=now - ACTIVE_WINDOW
    )
    out = []
    for info in infos:
        first_start, done_trials = firsts.get(info.id, (None, 0))
        rate = eta = None
        if first_start is not None and done_trials:
            start = first_start if first_start.tzinfo else first_start.replace(tzinfo=UTC)
            elapsed = max((now - start).total_seconds(), 1e-3)
            rate = done_trials / elapsed
            eta = (info.trials_total - info.trials_done) / rate if rate > 0 else None
        out.append(
            SweepProgress(
                sweep_id=info.id,
                name=info.name,
                status=info.status,
                counts=dict(info.chunk_counts),
                trials_done=info.trials_done,
                trials_total=info.trials_total,
                rate=rate,
                eta_s=eta if info.status not in ("done", "partial", "cancelled") else None,
                workers=tuple(sorted(workers.get(info.id, ()))),
            )
        )
    return out


def results(
    sweep_id: int,
    *,
    db: str | None = None,
    where: Mapping[str, str] | None = None,
    quantity: str | None = None,
    layer: int | None = None,
) -> pd.DataFrame:
    """The sweep's results as a pandas DataFrame (one row per configuration, layer, quantity)."""
    import pandas as pd

    from models.db import make_engine, make_session_factory, resolve_url, session_scope

    engine = make_engine(resolve_url(db))
    try:
        with session_scope(make_session_factory(engine)) as session:
            rows = result_records(
                session=session, sweep_id=sweep_id, where=where, quantity=quantity, layer=layer
            )
    finally:
        engine.dispose()
    return pd.DataFrame.from_records(rows)


# --------------------------------------------------------------------------- output


def render_csv(records: list[Record]) -> str:
    """CSV with a header of the union of keys in first-seen order."""
    keys: dict[str, None] = {}
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

    table = Table("config", "layer", "quantity", "finite", "mean", "std", "mean_sq")
    for r in records:
        table.add_row(
            config_label(r),
            str(r["layer"]),
            r["quantity"],
            f"{r['n_finite']}/{r['n_trials']}",
            pm(r["mean"], r["mean_se"]),
            pm(r["std"], r["std_se"]),
            pm(r["mean_sq"], r["mean_sq_se"]),
        )
    _console().print(table)


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


def _console() -> Any:
    """A rich console; wide when writing to a pipe or file (no terminal to fit)."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def render_summary(records: list[Record]) -> None:
    """Print the per-configuration summary table of a run."""
    from rich.table import Table

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
            s["label"],
            pm(*s.get("act", (None, None))),
            pm(*s.get("grad", (None, None))),
            s.get("finite", "—"),
            "—" if overflow is None else str(overflow),
            str(s.get("collapsed", 0)),
        )
    _console().print(table)


def render_check(report: CheckReport, console: Console | None = None) -> None:
    """Print a theory check's deviations as a rich table, then its verdict (stdout by default)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    rows = report.rows()
    if rows and console.width < 140:  # too narrow for a table: one paragraph each
        for d, r in zip(report.deviations, rows, strict=True):
            console.print(
                f"{r['config']} · layer {r['layer']} {r['quantity']} {r['statistic']}: "
                f"{r['observed']} vs {r['predicted']} (z {r['z']}) — {r['explanation']}",
                style=None if d.explained else "red",
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
                d.label or d.config,
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
    console.print(report.summary(), style="green" if report.ok else "bold red")

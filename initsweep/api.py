"""The Python API: validate, run or submit a spec (a dict, YAML text or a file), then read the
sweep back as DataFrames and matplotlib Figures. A thin face over `scheduler`: every call opens
the database, does one thing through the same functions the CLI uses, and closes it again.

    import initsweep
    sweep = initsweep.run({"name": "demo", "seed": 0, "trials": 200,
                           "grid": {"activation": ["tanh", "relu"]},
                           "fixed": {"init": "he_normal", "depth": 10, "width": 64}},
                          db="demo.db")
    df = sweep.results(theory=True, where=["quantity=activation", "layer>=5"])
    fig = sweep.figure("layers")            # a matplotlib Figure
    sweep.plot("layers", "layers.pdf")      # PNG, PDF or SVG by the extension
    initsweep.compare(sweep, other)         # one row per matched (configuration, layer, quantity)

Errors are `initsweep.InitsweepError`s with one line that says where: `SpecError` and the other
`UserError`s for what the caller can fix, `DatabaseUnavailableError` for a database that cannot
be opened (a missing SQLite file is never created by a read).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.contract import OBSERVABLES

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from scheduler.analysis.compare import CheckReport
    from scheduler.analysis.records import Record
    from scheduler.estimate import WallEstimate, WorkEstimate
    from scheduler.plan import SweepPlan
    from scheduler.query import SweepProgress

Spec = Mapping[str, Any] | str | Path
Where = Mapping[str, Any] | Sequence[str] | str | None


def _plan(spec: Spec) -> SweepPlan:
    """The validated plan of `spec`: a mapping, YAML text, or the path of a YAML file."""
    from scheduler.chunking import plan_sweep
    from scheduler.spec import load_spec, parse_spec

    if isinstance(spec, Mapping):
        import yaml

        return plan_sweep(parse_spec(yaml.safe_dump(dict(spec), sort_keys=False), "<dict>"))
    if isinstance(spec, Path) or (isinstance(spec, str) and "\n" not in spec):
        return plan_sweep(load_spec(spec))
    return plan_sweep(parse_spec(spec, "<text>"))


@dataclass(frozen=True)
class Plan:
    """What a spec expands to, and what running it costs (as `initsweep validate` prints)."""

    name: str
    n_configs: int
    n_chunks: int
    n_trials: int
    work: WorkEstimate
    wall: WallEstimate
    configurations: tuple[dict[str, Any], ...]  # the axis values of each configuration

    def __str__(self) -> str:
        return "\n".join([f"sweep {self.name!r}", *self.work.lines(), self.wall.line()])


def validate(spec: Spec, *, workers: int | None = None) -> Plan:
    """Check `spec` and return its `Plan`; nothing is written anywhere."""
    from scheduler.chunking import fresh_run_workers
    from scheduler.estimate import estimate, wall_estimate

    plan = _plan(spec)
    work = estimate(plan)
    return Plan(
        name=plan.name,
        n_configs=len(plan.configs),
        n_chunks=plan.n_chunks,
        n_trials=plan.n_trials,
        work=work,
        wall=wall_estimate(plan, workers=workers or fresh_run_workers(work)),
        configurations=tuple(dict(cp.axes) for cp in plan.configs),
    )


def run(spec: Spec, *, db: str | None = None, workers: int | None = None) -> Sweep:
    """Record `spec` as a sweep and run it here, in local worker processes; returns when done.

    Ctrl-C leaves the sweep `interrupted` (chunks in flight back to pending) and raises
    `InterruptedRun`; `Sweep.resume()` or `initsweep resume` continues it.
    """
    from scheduler.database import open_database
    from scheduler.sweeps import record, require_compute

    plan = _plan(spec)
    require_compute("run")  # before anything is recorded
    with open_database(db) as factory:
        sweep_id = record(factory, plan)
    sweep = Sweep(sweep_id, db)
    sweep.resume(workers=workers)
    return sweep


def submit(spec: Spec, *, db: str | None = None) -> Sweep:
    """Record `spec` and enqueue its first chunks for Celery workers ($INITSWEEP_BROKER_URL);
    returns at once (`initsweep scheduler` keeps the sweep moving)."""
    from scheduler.database import open_database
    from scheduler.reconcile import ReconcilePolicy
    from scheduler.sweeps import check_broker, reconcile_pass, record

    plan = _plan(spec)
    check_broker()  # before anything is recorded
    with open_database(db) as factory:
        sweep_id = record(factory, plan)
        reconcile_pass(factory, [sweep_id], ReconcilePolicy())
    return Sweep(sweep_id, db)


def sweeps(*, db: str | None = None) -> pd.DataFrame:
    """Every sweep in the database: id, name, status, chunk counts, created."""
    import pandas as pd

    from models.db import session_scope
    from scheduler.database import open_database
    from scheduler.store import list_sweeps

    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        infos = list_sweeps(session=session)
    return pd.DataFrame.from_records(
        [
            {"id": s.id, "name": s.name, "status": s.status, "configurations": s.n_configs,
             **s.chunk_counts, "trials_done": s.trials_done, "trials_total": s.trials_total,
             "created_at": s.created_at}
            for s in infos
        ]
    )  # fmt: skip


def sweep(ref: int | str, *, db: str | None = None) -> Sweep:
    """The sweep `ref` (its id, or its name when only one sweep has it) in `db`."""
    from models.db import session_scope
    from scheduler.database import open_database
    from scheduler.store import get_sweep
    from scheduler.sweeps import resolve_sweep

    if isinstance(ref, str) and ref.isdigit():
        ref = int(ref)
    with open_database(db, read_only=True) as factory, session_scope(factory) as session:
        sweep_id = resolve_sweep(session=session, ref=ref)
        get_sweep(session=session, sweep_id=sweep_id)  # UnknownSweepError for an unknown id
    return Sweep(sweep_id, db)


@dataclass(frozen=True)
class Sweep:
    """A handle on one recorded sweep: an id and the database it lives in."""

    id: int
    db: str | None = None

    def resume(self, *, workers: int | None = None) -> str:
        """Run the missing chunks here (`workers` processes; None: as many as the work is
        worth, `scheduler.estimate.local_workers`); returns the sweep's status afterwards."""
        from models.db import resolve_url
        from scheduler.database import open_database
        from scheduler.sweeps import run_here

        with open_database(self.db) as factory:
            outcome = run_here(factory, resolve_url(self.db), self.id, workers=workers)
        return outcome.status

    def status(self) -> SweepProgress:
        """Chunk counts, trials done, rate and ETA (as `initsweep status` prints them)."""
        from models.db import session_scope
        from scheduler.database import open_database
        from scheduler.query import sweep_progress

        with open_database(self.db, read_only=True) as factory, session_scope(factory) as s:
            return sweep_progress(session=s, sweep_id=self.id)[0]

    def results(
        self,
        *,
        theory: bool = False,
        where: Where = None,
        quantity: str | None = None,
        layer: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """One row per (configuration, layer, quantity), as `initsweep results` prints them;
        `theory` adds the mean-field columns, `where` filters like `--where`."""
        from scheduler.query import results

        return results(
            self.id,
            db=self.db,
            where=_where(where),
            quantity=quantity,
            layer=layer,
            columns=columns,
            theory=theory,
        )

    def figure(self, kind: str = "layers", **options: Any) -> Figure:
        """The figure `kind` (`scheduler.analysis.plots.KINDS`) as a matplotlib Figure;
        `options` as `initsweep plot` takes them (stat, quantity, layer, x, color, style)."""
        from scheduler.analysis.plots import figure

        return figure(kind, self._theory_records(), **options)

    def plot(self, kind: str, path: str | Path, **options: Any) -> Path:
        """Write the figure `kind` to `path` (PNG, PDF or SVG by its extension)."""
        from scheduler.analysis.plots import plot

        return plot(kind, self._theory_records(), path, **options)

    def check(self, *, threshold: float = 4.0, strict: bool = False) -> CheckReport:
        """Compare with mean-field theory as `initsweep check` does (`.passed`, `.verdict`)."""
        from models.db import session_scope
        from scheduler.analysis.compare import check
        from scheduler.database import open_database
        from scheduler.query import result_set

        with open_database(self.db, read_only=True) as factory, session_scope(factory) as s:
            found = result_set(session=s, sweep_id=self.id, theory=True)
        return check(found.records, threshold, strict=strict, incomplete=found.incomplete)

    def report(self, path: str | Path) -> Path:
        """Write the self-contained HTML report to `path`."""
        from models.db import session_scope
        from scheduler.analysis.report import render_report
        from scheduler.database import open_database
        from scheduler.query import report_input

        with open_database(self.db, read_only=True) as factory, session_scope(factory) as s:
            data = report_input(session=s, sweep_id=self.id)
        out = Path(path)
        out.write_text(render_report(data), encoding="utf-8")
        return out

    def _theory_records(self) -> list[Record]:
        from models.db import session_scope
        from scheduler.database import open_database
        from scheduler.query import theory_records

        with open_database(self.db, read_only=True) as factory, session_scope(factory) as s:
            return theory_records(session=s, sweep_id=self.id, pairs=False)


def _where(where: Where) -> Mapping[str, Any] | None:
    """`where` as `scheduler.query.results` takes it: terms `column=value` or a mapping."""
    from scheduler.errors import UserError

    if where is None or isinstance(where, Mapping):
        return where
    terms = [where] if isinstance(where, str) else list(where)
    out: dict[str, Any] = {}
    for term in terms:
        key, sep, value = str(term).partition("=")
        if not sep or not key.strip():
            raise UserError(f"where: expected column=value. Received: {term!r}")
        out[key.strip()] = value.strip()
    return out


def compare(
    *sweeps: Sweep,
    stats: Iterable[str] = OBSERVABLES,
    quantity: str | None = None,
    layer: int | None = None,
) -> pd.DataFrame:
    """Two or more sweeps side by side, one row per matched (configuration, layer, quantity).

    Rows match on layer, quantity and every parameter column (`records.PARAM_KEYS`) whose
    values the sweeps share; a parameter on which they differ everywhere (dtype float32 in one
    sweep, float64 in the other) is what is being compared and is kept per sweep instead. For each
    statistic s: `s_<id>` and `s_se_<id>` per sweep and, against the first sweep,
    `z_s_<id>` = (s_<id> - s_<first>) / sqrt(se_<id>^2 + se_<first>^2).
    """
    from scheduler.analysis.records import PARAM_KEYS
    from scheduler.errors import UserError

    if len(sweeps) < 2:
        raise UserError("compare: expected two or more sweeps")
    stats = list(stats)
    frames = [s.results(quantity=quantity, layer=layer) for s in sweeps]
    for sw, frame in zip(sweeps, frames, strict=True):
        if frame.empty:
            raise UserError(f"compare: sweep {sw.id} has no results")
    shared = [
        c
        for c in PARAM_KEYS
        if all(c in f for f in frames)
        and set.intersection(*(set(f[c].astype(str)) for f in frames))
    ]
    keys = [*shared, "layer", "quantity"]
    out: pd.DataFrame | None = None
    for sw, frame in zip(sweeps, frames, strict=True):
        own = [c for c in PARAM_KEYS if c in frame and c not in shared]
        keep = frame[keys + own + [c for s in stats for c in (s, f"{s}_se")] + ["n_trials"]].rename(
            columns={c: f"{c}_{sw.id}" for c in [*own, "n_trials", *stats]}
            | {f"{s}_se": f"{s}_se_{sw.id}" for s in stats}
        )
        out = keep if out is None else out.merge(keep, on=keys, how="inner")
    assert out is not None
    first = sweeps[0].id
    for sw in sweeps[1:]:
        for s in stats:
            diff = out[f"{s}_{sw.id}"] - out[f"{s}_{first}"]
            se = (out[f"{s}_se_{sw.id}"] ** 2 + out[f"{s}_se_{first}"] ** 2) ** 0.5
            out[f"z_{s}_{sw.id}"] = [
                float(d) / float(e) if e and math.isfinite(float(e)) and float(e) > 0 else None
                for d, e in zip(diff, se, strict=True)
            ]
    return out.reset_index(drop=True)

"""Results as records, pandas DataFrames, tables and CSV.

A record is one (configuration, layer, quantity) of a sweep: the configuration's parameters and
axis values, the trial counts, and for each per-trial unit statistic (`mean`, `std`, `mean_sq`)
its average over the finite trials with the standard error of that average. `pooled_std` is the
std of all values of all finite trials pooled: sqrt(E_t[mean_sq] - E_t[mean]^2).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scheduler.errors import UserError
from worker.contract import LayerRecord, SimConfig
from worker.stats import Moments

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.orm import Session

STAT_KEYS = (
    "n_trials",
    "n_finite",
    "n_first_nonfinite",
    "n_collapsed",
    "mean",
    "mean_se",
    "std",
    "std_se",
    "mean_sq",
    "mean_sq_se",
    "pooled_std",
)


def _num(x: float) -> float | None:
    """JSON-safe float: None for nan/inf (never stored, never printed as NaN)."""
    return x if math.isfinite(x) else None


def config_params(config: SimConfig) -> dict[str, Any]:
    """The parameter columns of a configuration."""
    return {
        "init": config.init.label,
        "activation": config.activation.label,
        "depth": config.depth,
        "width": config.width,
        "input_dim": config.input_dim,
        "batch": config.batch,
        "dtype": config.dtype,
        "bias_std": config.bias_std,
        "sampler": config.sampler,
    }


def _stat(m: Moments) -> tuple[float | None, float | None]:
    return (_num(m.mean) if m.n else None, _num(m.sem))


def record_row(record: LayerRecord) -> dict[str, Any]:
    """The statistic columns of one aggregated (layer, quantity)."""
    mean, mean_se = _stat(record.mean)
    std, std_se = _stat(record.std)
    msq, msq_se = _stat(record.mean_sq)
    pooled = None
    if record.n_finite:
        pooled = _num(math.sqrt(max(record.mean_sq.mean - record.mean.mean**2, 0.0)))
    return {
        "layer": record.layer,
        "quantity": record.quantity,
        "n_trials": record.n_trials,
        "n_finite": record.n_finite,
        "n_first_nonfinite": record.n_first_nonfinite,
        "n_collapsed": record.n_collapsed,
        "mean": mean,
        "mean_se": mean_se,
        "std": std,
        "std_se": std_se,
        "mean_sq": msq,
        "mean_sq_se": msq_se,
        "pooled_std": pooled,
    }


def _matches(row: Mapping[str, Any], where: Mapping[str, str]) -> bool:
    for key, want in where.items():
        have = row[key]
        if isinstance(have, int | float) and not isinstance(have, bool):
            try:
                if float(want) != float(have):
                    return False
            except ValueError:
                return False
        elif str(have) != want:
            return False
    return True


def result_records(
    session: Session,
    sweep_id: int,
    *,
    where: Mapping[str, str] | None = None,
    quantity: str | None = None,
    layer: int | None = None,
) -> list[dict[str, Any]]:
    """One dict per (configuration, layer, quantity) of the sweep's aggregated results."""
    from scheduler.aggregate import config_records
    from scheduler.store import get_sweep, sweep_config_rows

    get_sweep(session, sweep_id)
    rows: list[dict[str, Any]] = []
    where = dict(where or {})
    for info in sweep_config_rows(session, sweep_id):
        params = config_params(info.config)
        extra = {k: v for k, v in info.axes.items() if k not in params}
        head = {"sweep_id": sweep_id, "config_hash": info.config_hash, **params, **extra}
        for record in config_records(session, info.id):
            if quantity is not None and record.quantity != quantity:
                continue
            if layer is not None and record.layer != layer:
                continue
            row = {**head, **record_row(record)}
            unknown = [k for k in where if k not in row]
            if unknown:
                raise UserError(
                    f"--where {unknown[0]}: unknown column; expected one of "
                    + ", ".join(k for k in row if k not in STAT_KEYS)
                )
            if _matches(row, where):
                rows.append(row)
    return rows


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
            rows = result_records(session, sweep_id, where=where, quantity=quantity, layer=layer)
    finally:
        engine.dispose()
    return pd.DataFrame.from_records(rows)


def render_csv(records: list[dict[str, Any]]) -> str:
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


def fmt_pm(value: float | None, se: float | None) -> str:
    """`1.234e-01 ± 2.1e-03`, or `—` when there is no value."""
    if value is None:
        return "—"
    if se is None:
        return f"{value:.4g}"
    return f"{value:.4g} ± {se:.2g}"


def render_table(records: list[dict[str, Any]]) -> None:
    """Print records as a rich table."""
    from rich.table import Table

    table = Table("config", "layer", "quantity", "finite", "mean", "std", "mean_sq")
    for r in records:
        table.add_row(
            _config_label(r),
            str(r["layer"]),
            r["quantity"],
            f"{r['n_finite']}/{r['n_trials']}",
            fmt_pm(r["mean"], r["mean_se"]),
            fmt_pm(r["std"], r["std_se"]),
            fmt_pm(r["mean_sq"], r["mean_sq_se"]),
        )
    _console().print(table)


def _g(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _config_label(r: Mapping[str, Any]) -> str:
    if r.get("label"):
        return str(r["label"])
    init = r["init"]
    if r.get("sigma_w") is not None:  # the phase-diagram sugar: say what the user wrote
        init = f"sigma_w={_g(r['sigma_w'])}"
        if r.get("sigma_b"):
            init += f", sigma_b={_g(r['sigma_b'])}"
    base = f"{init} · {r['activation']} · d={r['depth']} · w={r['width']}"
    if r.get("dtype") != "float32":
        base += f" · {r['dtype']}"
    return base


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: last-layer activation std, layer-1 gradient std, fates.

    `overflow_layer` is the median over trials of the first layer whose activations are
    non-finite (None when fewer than half the trials ever overflow).
    """
    by_config: dict[str, dict[str, Any]] = {}
    first: dict[str, list[tuple[int, int]]] = {}
    for r in records:
        s = by_config.setdefault(r["config_hash"], {"label": _config_label(r)})
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


def render_summary(records: list[dict[str, Any]]) -> None:
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
            fmt_pm(*s.get("act", (None, None))),
            fmt_pm(*s.get("grad", (None, None))),
            s.get("finite", "—"),
            "—" if overflow is None else str(overflow),
            str(s.get("collapsed", 0)),
        )
    _console().print(table)

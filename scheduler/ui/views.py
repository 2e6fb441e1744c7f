"""The data behind the dashboard's plots, from a `ResultTable` (values in, JSON-ready values out).

- `layers`:    per configuration and quantity, a statistic against the layer with its SE and
               the theory (the interactive counterpart of `scheduler.analysis.plots` `layers`).
- `explosion`: configurations x layers, the fraction of trials non-finite at or before each
               layer and collapsed to exactly 0 there, with the predicted layers.
- `phase`:     (sigma_w, sigma_b) grids of the last layer's log10 E[mean_sq(h)] and of the
               gradient ratio, with the chi_1 = 1 line of the theory.
- `compare`:   two or more sweeps: their summaries, and the configurations they share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scheduler.analysis.compare import CENSORED, CheckReport
from scheduler.analysis.theory import critical_sigma_w
from scheduler.errors import UserError
from scheduler.formatting import number, pm
from scheduler.ui.table import (
    MAX_CHECK_ROWS,
    ConfigEntry,
    Ints,
    Mask,
    ResultTable,
)
from scheduler.where import parse_where
from worker.contract import QUANTITIES

__all__ = ["STATS", "check_summary", "compare", "explosion", "layers", "phase", "summary"]

# statistic -> (its SE column, the theory column, log scale)
STATS: dict[str, tuple[str, str, bool]] = {
    "std": ("std_se", "theory_std", True),
    "mean_sq": ("mean_sq_se", "theory_mean_sq", True),
    "mean": ("mean_se", "theory_mean", False),
}
_ACT, _GRAD = QUANTITIES.index("activation"), QUANTITIES.index("gradient")
_SUGAR = ("sigma_w", "sigma_b", "bias_std", "init", "label")


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _list(values: np.ndarray[Any, Any]) -> list[float | None]:
    return [_f(v) for v in values.tolist()]


def legend(entry: ConfigEntry, varying: Sequence[str]) -> str:
    """What tells a configuration apart: its `label`, else the values of the varying axes."""
    columns = entry.columns
    if "label" in varying and columns.get("label"):
        return str(columns["label"])
    keys = [k for k in varying if k in columns and k != "label"]
    if "width" in keys and columns.get("input_dim") == columns.get("width"):
        keys = [k for k in keys if k != "input_dim"]
    if "sigma_w" in columns:  # the sigma_w axis stands for its init scheme, sigma_b for bias_std
        keys = [k for k in keys if k != "init"]
    if "sigma_b" in columns:
        keys = [k for k in keys if k != "bias_std"]
    parts = [
        number(columns[k], 6) if k in ("init", "activation") else f"{k}={number(columns[k], 6)}"
        for k in keys
    ]
    return " · ".join(parts) or entry.label


def _chosen(table: ResultTable, where: str | None) -> tuple[Mask, Ints]:
    """Rows matching `where`, and the configurations (entry indices) that have such rows."""
    rows = table.mask(parse_where(where))
    return rows, np.unique(table.cfg[rows])


def _by_config(table: ResultTable, rows: Mask) -> dict[int, Ints]:
    """Entry index -> its matching row indices in layer order."""
    index = np.nonzero(rows)[0]
    if not len(index):
        return {}
    index = index[np.lexsort((table.layer[index], table.cfg[index]))]
    owners = table.cfg[index]
    cuts = np.nonzero(np.diff(owners))[0] + 1
    return {
        int(part[0]): idx
        for part, idx in zip(np.split(owners, cuts), np.split(index, cuts), strict=True)
    }


def layers(
    table: ResultTable,
    *,
    where: str | None = None,
    stat: str = "std",
    quantities: Sequence[str] = ("activation", "gradient"),
    max_lines: int = 20,
) -> dict[str, Any]:
    """Per-layer `stat` of each matching configuration (the first `max_lines`), SE and theory."""
    if stat not in STATS:
        raise UserError(f"stat: expected one of {', '.join(STATS)}. Received: {stat!r}")
    for q in quantities:
        if q not in QUANTITIES:
            raise UserError(f"quantity: expected one of {', '.join(QUANTITIES)}. Received: {q!r}")
    se_key, theory_key, log = STATS[stat]
    rows, configs = _chosen(table, where)
    shown = configs[: max(1, min(int(max_lines), 200))]
    keep = np.isin(table.cfg, shown) & rows
    series: dict[int, dict[str, Any]] = {}
    present = []
    for q in quantities:
        code = QUANTITIES.index(q)
        groups = _by_config(table, keep & (table.quantity == code))
        if groups:
            present.append(q)
        for c, idx in groups.items():
            entry = table.entries[c]
            s = series.setdefault(
                c,
                {
                    "legend": legend(entry, table.varying),
                    "label": entry.label,
                    "position": entry.position,
                    "config_hash": entry.config_hash,
                    "quantities": {},
                },
            )
            finite, trials = table.values["n_finite"][idx], table.values["n_trials"][idx]
            censored = (finite < trials) | (table.values["n_collapsed"][idx] > 0)
            s["quantities"][q] = {
                "layer": [int(x) for x in table.layer[idx]],
                "y": _list(table.values[stat][idx]),
                "se": _list(table.values[se_key][idx]),
                "theory": _list(table.values[theory_key][idx]),
                "censored": [bool(x) for x in censored],
                "finite": [int(x) for x in finite],
                "trials": [int(x) for x in trials],
            }
    return {
        "sweep_id": table.sweep_id,
        "stat": stat,
        "log": log,
        "quantities": present,
        "series": [series[c] for c in sorted(series)],
        "total": len(configs),
        "shown": len(series),
        "theory_done": table.theory_done,
        "configs_with_results": table.configs_with_results,
    }


def explosion(
    table: ResultTable, *, where: str | None = None, max_rows: int = 40
) -> dict[str, Any]:
    """Configurations x layers: fraction non-finite at or before the layer, fraction collapsed."""
    rows, _ = _chosen(table, where)
    groups = _by_config(table, rows & (table.quantity == _ACT) & (table.layer >= 1))
    items: list[dict[str, Any]] = []
    for c, idx in groups.items():
        entry, head = table.entries[c], table.theory_heads.get(c, {})
        trials = np.maximum(table.values["n_trials"][idx], 1.0)
        first = table.values["n_first_nonfinite"][idx]
        collapsed = table.values["n_collapsed"][idx]
        overflow, underflow = head.get("theory_overflow_layer"), head.get("theory_underflow_layer")
        items.append(
            {
                "legend": legend(entry, table.varying),
                "label": entry.label,
                "depth": entry.depth,
                "layer": [int(x) for x in table.layer[idx]],
                "nonfinite": _list(np.cumsum(first) / trials),
                "collapsed": _list(collapsed / trials),
                "overflow": _f(overflow),
                "underflow": _f(underflow),
                "eventful": bool(first.sum() or collapsed.sum() or overflow or underflow),
            }
        )
    eventful = [i for i in items if i["eventful"]]
    ordered = eventful + [i for i in items if not i["eventful"]]
    shown = ordered[: max(1, min(int(max_rows), 200))]
    return {
        "sweep_id": table.sweep_id,
        "depth": max((int(i["depth"]) for i in shown), default=0),
        "rows": shown,
        "total": len(items),
        "eventful": len(eventful),
    }


def _sigma_b(entry: ConfigEntry) -> float:
    value = entry.columns.get("sigma_b", entry.columns.get("bias_std", 0.0))
    return float(value or 0.0)


def _edges(values: Sequence[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0] - 0.5, values[0] + 0.5
    return (
        values[0] - (values[1] - values[0]) / 2,
        values[-1] + (values[-1] - values[-2]) / 2,
    )


def phase(table: ResultTable, *, where: str | None = None) -> dict[str, Any]:
    """The order-to-chaos grids of a (sigma_w, sigma_b) sweep, or why there are none."""
    rows, configs = _chosen(table, where)
    entries = [table.entries[int(c)] for c in configs]
    if not entries or not all("sigma_w" in e.columns for e in entries):
        return {
            "available": False,
            "reason": "the phase view needs a sweep over sigma_w and sigma_b axes "
            "(as in examples/phase_diagram.yaml)",
        }
    sws = sorted({float(e.columns["sigma_w"]) for e in entries})
    sbs = sorted({_sigma_b(e) for e in entries})
    if len(sws) < 2 or len(sbs) < 2:
        return {
            "available": False,
            "reason": f"the phase view needs at least 2 values of both sigma_w and sigma_b "
            f"(here {len(sws)} and {len(sbs)})",
        }
    others = [k for k in table.varying if k not in _SUGAR]
    groups: dict[str, list[int]] = {}
    for c in configs:
        e = table.entries[int(c)]
        title = " · ".join(f"{k}={number(e.columns.get(k), 6)}" for k in others)
        groups.setdefault(title, []).append(int(c))
    by_config = _by_config(table, rows)
    out = []
    for title, members in list(groups.items())[:6]:
        final = np.full((len(sbs), len(sws)), np.nan)
        ratio = np.full((len(sbs), len(sws)), np.nan)
        for c in members:
            e = table.entries[c]
            yi, xi = sbs.index(_sigma_b(e)), sws.index(float(e.columns["sigma_w"]))
            idx = by_config.get(c, np.zeros(0, dtype=np.int64))
            found: dict[tuple[int, int], float] = {
                (int(table.layer[i]), int(table.quantity[i])): float(table.values["mean_sq"][i])
                for i in idx
            }
            top = found.get((e.depth, _ACT), math.nan)
            if top > 0:
                final[yi, xi] = math.log10(top)
            g1, gd = found.get((1, _GRAD), math.nan), found.get((e.depth, _GRAD), math.nan)
            if g1 > 0 and gd > 0:
                ratio[yi, xi] = math.log10(g1 / gd)
        first = table.entries[members[0]]
        lo, hi = _edges(sbs)
        line_x, line_y = [], []
        for k in range(61):
            sb = max(0.0, lo) + (hi - max(0.0, lo)) * k / 60
            try:
                line_x.append(critical_sigma_w(sb, first.config.activation))
                line_y.append(sb)
            except ValueError:
                continue
        out.append(
            {
                "title": title,
                "activation": str(first.columns.get("activation")),
                "depth": max(table.entries[c].depth for c in members),
                "final": [_list(r) for r in final],
                "ratio": [_list(r) for r in ratio],
                "critical": {"sigma_w": line_x, "sigma_b": line_y},
            }
        )
    return {
        "available": True,
        "sweep_id": table.sweep_id,
        "sigma_w": sws,
        "sigma_b": sbs,
        "groups": out,
    }


def summary(table: ResultTable) -> dict[str, Any]:
    """What the results of a sweep hold: sizes, axes, theory progress, deviations."""
    present = sorted({QUANTITIES[int(q)] for q in np.unique(table.quantity)}, key=QUANTITIES.index)
    deviations = int(np.sum(table.values["abs_z"] > 4)) if table.n_rows else 0
    return {
        "n_rows": table.n_rows,
        "n_configs": len(table.entries),
        "configs_with_results": table.configs_with_results,
        "theory_done": table.theory_done,
        "varying": table.varying,
        "quantities": present,
        "max_depth": max((e.depth for e in table.entries), default=0),
        "has_phase": bool(table.entries) and all("sigma_w" in e.columns for e in table.entries),
        "deviations": deviations,
        "filter_columns": [
            *table.config_keys,
            "layer",
            "quantity",
            "mean",
            "std",
            "mean_sq",
            "abs_z",
            "z_mean_sq",
            "n_finite",
        ],
    }


def check_summary(
    report: CheckReport | None, table: ResultTable, limit: int = 100
) -> dict[str, Any]:
    """The theory check's verdict and its deviations (censored ones counted, not listed)."""
    if report is None:
        if not table.configs_with_results:
            reason = "no results yet"
        elif table.n_rows > MAX_CHECK_ROWS:
            reason = (
                f"{table.n_rows:,} rows, more than the dashboard checks: run "
                f"`initsweep check {table.sweep_id}`"
            )
        elif not table.theory_complete:
            reason = (
                f"theory computed for {table.theory_done} of {table.configs_with_results} "
                "configurations so far"
            )
        else:
            reason = (
                f"{table.n_rows:,} rows: run `initsweep check {table.sweep_id}` for the verdict"
            )
        return {"available": False, "reason": reason}
    pairs = [
        (d, row)
        for d, row in zip(report.deviations, report.rows(), strict=True)
        if d.explanation != CENSORED
    ]
    pairs.sort(key=lambda p: (p[0].explained, -abs(p[0].z)))
    return {
        "available": True,
        "ok": report.ok,
        "passed": report.passed,
        "verdict": report.verdict(),
        "summary": report.summary(),
        "n_compared": report.n_compared,
        "n_deviations": len(report.deviations),
        "n_censored_deviations": len(report.deviations) - len(pairs),
        "n_unexplained": len(report.unexplained),
        "deviations": [{**row, "explained": d.explained} for d, row in pairs[:limit]],
        "n_listed": len(pairs),
    }


def compare(tables: Mapping[int, ResultTable], *, stat: str = "std") -> dict[str, Any]:
    """Configurations (by config_hash) in two or more of the sweeps: `stat` at the last layer of
    the activations in each, and z of each difference from the first sweep that has it."""
    if stat not in STATS:
        raise UserError(f"stat: expected one of {', '.join(STATS)}. Received: {stat!r}")
    se_key = STATS[stat][0]
    ids = list(tables)
    values: dict[str, dict[int, tuple[float | None, float | None]]] = {}
    labels: dict[str, str] = {}
    for sweep_id, table in tables.items():
        last = (table.quantity == _ACT) & (table.layer == table.depth)
        for i in np.nonzero(last)[0]:
            entry = table.entries[int(table.cfg[i])]
            labels.setdefault(entry.config_hash, entry.label)
            values.setdefault(entry.config_hash, {})[sweep_id] = (
                _f(table.values[stat][i]),
                _f(table.values[se_key][i]),
            )
    rows: list[tuple[float, dict[str, Any]]] = []
    for key, by_sweep in values.items():
        if len(by_sweep) < 2:
            continue
        base_id = next(s for s in ids if s in by_sweep)
        zs = {s: _z_difference(by_sweep[base_id], by_sweep[s]) for s in by_sweep if s != base_id}
        worst = max((abs(z) for z in zs.values() if z is not None), default=None)
        row = {
            "config_hash": key,
            "label": labels[key],
            "cells": {str(s): pm(*by_sweep[s]) if s in by_sweep else "—" for s in ids},
            "z": {str(s): None if z is None else round(z, 2) for s, z in zs.items()},
            "max_abs_z": worst,
        }
        rows.append((-(worst or 0.0), row))
    rows.sort(key=lambda pair: pair[0])
    matched = [row for _, row in rows]
    return {"stat": stat, "sweep_ids": ids, "matched": matched[:300], "n_matched": len(matched)}


def _z_difference(
    a: tuple[float | None, float | None], b: tuple[float | None, float | None]
) -> float | None:
    """(b - a) / sqrt(se_a^2 + se_b^2), None when either estimate or SE is missing."""
    (va, sa), (vb, sb) = a, b
    if va is None or sa is None or vb is None or sb is None or sa * sa + sb * sb <= 0.0:
        return None
    return (vb - va) / math.sqrt(sa * sa + sb * sb)

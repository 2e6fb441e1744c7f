"""A sweep's results as columns (numpy), filtered, sorted and paged on the server.

A sweep of 10^4 configurations has 10^5 to 10^6 (configuration, layer, quantity) rows, too many
to keep as record dicts or to send to a browser. The dashboard keeps one array per column,
computed in bulk from the raw (n, mean, M2) of each statistic with the formulas of
`worker.stats.Moments` and `scheduler.analysis.records.record_row` (mean; SE = sqrt(M2/(n-1)/n),
none below 2 finite trials; pooled_std = sqrt(E[mean_sq] - E[mean]^2)), and the theory columns
of `scheduler.analysis.compare.with_theory`, computed per configuration. Only the rows of the
page being sent become records (the columns of `initsweep results --theory`).

Filters are those of `initsweep results --where` (`scheduler.where`), as one string of
space-separated terms: `activation=relu,tanh layer>=5 init=normal sigma_w=1.5 layer=last`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.analysis.compare import THEORY_KEYS, with_theory
from scheduler.analysis.records import DIST_KEYS, PAIR_KEYS, STAT_KEYS, Record, record_columns
from scheduler.analysis.theory import ConfigTheory
from scheduler.formatting import MISSING, number, pm
from scheduler.where import Term, is_number, matches, numeric_mask, parse_where, unknown_column
from worker.contract import OBSERVABLES, QUANTITIES, SimConfig

__all__ = [
    "CONFIG_THEORY",
    "DASHBOARD_OMITS",
    "MAX_CHECK_ROWS",
    "RAW_COLUMNS",
    "ROW_THEORY",
    "ConfigEntry",
    "ResultTable",
    "theory_block",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

# Raw columns of a configuration's block (worker.aggregate.STAT_ROW without the id;
# the quantity as its index in worker.contract.QUANTITIES).
RAW_COLUMNS: tuple[str, ...] = (
    "layer",
    "quantity",
    "n_trials",
    "n_finite",
    "n_first_nonfinite",
    "n_collapsed",
    "mean_mean",
    "mean_m2",
    "std_mean",
    "std_m2",
    "mean_sq_mean",
    "mean_sq_m2",
    "mean_exp2",
    "std_exp2",
    "mean_sq_exp2",
)
_RAW = {name: i for i, name in enumerate(RAW_COLUMNS)}
COUNT_KEYS = ("n_trials", "n_finite", "n_first_nonfinite", "n_collapsed")
# The dashboard's table does not show the per-trial distribution columns yet: DIST_KEYS, the
# pair observables (PAIR_KEYS) and the theory columns of the exact log-norm law
# (`DASHBOARD_OMITS`) are left out of its rows.
LOG_THEORY = ("theory_log_mean_sq", "theory_log_mean_sq_var", "z_log_mean_sq", "z_log_mean_sq_var")
DASHBOARD_OMITS = (*DIST_KEYS, *PAIR_KEYS, *LOG_THEORY)
CONFIG_THEORY = ("finite_width", "theory_overflow_layer", "theory_underflow_layer")
TABLE_STATS = tuple(k for k in STAT_KEYS if k not in (*DIST_KEYS, *PAIR_KEYS))
ROW_THEORY = tuple(k for k in THEORY_KEYS if k not in (*CONFIG_THEORY, *LOG_THEORY))
NUMERIC = (*TABLE_STATS, *ROW_THEORY, "abs_z")
ROW_KEYS = ("layer", "quantity", *NUMERIC)
MAX_LIMIT = 500
MAX_CHECK_ROWS = 60_000  # the theory check runs on sweeps up to this size (`initsweep check` above)


@dataclass(frozen=True)
class ConfigEntry:
    """A configuration as the dashboard shows it: its place, parameters, axis values, label."""

    id: int
    position: int
    config_hash: str
    config: SimConfig
    columns: Mapping[str, Any]  # scheduler.analysis.records.config_columns
    label: str  # scheduler.formatting.config_label

    @property
    def depth(self) -> int:
        return self.config.depth


def _count(x: float) -> int:
    return int(x) if math.isfinite(x) else 0


def _nan_to_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def stat_columns(raw: Floats) -> dict[str, Floats]:
    """The statistic columns of raw rows (RAW_COLUMNS), NaN where a record has None: the counts,
    then `scheduler.analysis.records.record_columns` (record_row's floats, bit for bit)."""
    out: dict[str, Floats] = {k: raw[:, _RAW[k]] for k in COUNT_KEYS}
    moments = {
        name: (
            raw[:, _RAW[f"{name}_mean"]],
            raw[:, _RAW[f"{name}_m2"]],
            raw[:, _RAW[f"{name}_exp2"]].astype(np.int64),
        )
        for name in OBSERVABLES
    }
    n_finite = raw[:, _RAW["n_finite"]].astype(np.int64)
    for key, (values, valid) in record_columns(n_finite, moments).items():
        out[key] = np.where(valid, values, np.nan)
    return out


def theory_block(
    entry: ConfigEntry, raw: Floats, theory: ConfigTheory
) -> tuple[Floats, dict[str, Any]]:
    """`with_theory`'s columns for a configuration's raw rows: per row (ROW_THEORY, NaN: none)
    and per configuration (CONFIG_THEORY)."""
    stats = stat_columns(raw)
    records = [
        Record(
            {
                "config_hash": entry.config_hash,
                "layer": int(raw[i, 0]),
                "quantity": QUANTITIES[int(raw[i, 1])],
                **{k: _nan_to_none(float(stats[k][i])) for k in ("mean", "mean_se")},
                **{k: _nan_to_none(float(stats[k][i])) for k in ("std", "std_se")},
                **{k: _nan_to_none(float(stats[k][i])) for k in ("mean_sq", "mean_sq_se")},
                **{k: _count(float(stats[k][i])) for k in COUNT_KEYS},
            },
            entry.config,
        )
        for i in range(raw.shape[0])
    ]
    rows = with_theory(records, predictor=lambda _config: theory)
    block = np.full((len(rows), len(ROW_THEORY)), np.nan)
    for i, row in enumerate(rows):
        for j, key in enumerate(ROW_THEORY):
            value = row[key]
            if value is not None:
                block[i, j] = float(value)
    head = {
        "finite_width": rows[0]["finite_width"] if rows else None,
        "theory_overflow_layer": theory.overflow_layer,
        "theory_underflow_layer": theory.underflow_layer,
    }
    return block, head


def _empty(columns: int) -> Floats:
    return np.zeros((0, columns), dtype=np.float64)


@dataclass(frozen=True)
class Column:
    """A column of the results table as displayed: sort/filter key, header, alignment."""

    key: str
    label: str
    numeric: bool
    title: str = ""


@dataclass
class ResultTable:
    """One snapshot of a sweep's results, as arrays (see the module docstring).

    `raw[i]` and `theory[i]` are the blocks of `entries[i]` (absent: no chunk done yet; no theory
    yet; `partial`: the merge of the chunks done so far); rows are in (position, layer, quantity)
    order.
    """

    sweep_id: int
    entries: Sequence[ConfigEntry]
    raw: Mapping[int, Floats]
    theory: Mapping[int, Floats] = field(default_factory=dict)
    theory_heads: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    partial: frozenset[int] = frozenset()  # entries whose chunks are not all in

    def __post_init__(self) -> None:
        blocks, theory, owners = [], [], []
        for i in range(len(self.entries)):
            block = self.raw.get(i)
            if block is None or not len(block):
                continue
            blocks.append(block)
            owners.append(np.full(len(block), i, dtype=np.int64))
            t = self.theory.get(i)
            theory.append(
                t
                if t is not None and len(t) == len(block)
                else np.full((len(block), len(ROW_THEORY)), np.nan)
            )
        raw = np.concatenate(blocks) if blocks else _empty(len(RAW_COLUMNS))
        self.n_rows = len(raw)
        self.cfg: Ints = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
        self.layer: Floats = raw[:, _RAW["layer"]]
        self.quantity: Ints = raw[:, _RAW["quantity"]].astype(np.int64)
        self.depth: Floats = np.array([e.depth for e in self.entries], dtype=np.float64)[self.cfg]
        self.values = stat_columns(raw)
        tcols = np.concatenate(theory) if theory else _empty(len(ROW_THEORY))
        for j, key in enumerate(ROW_THEORY):
            self.values[key] = tcols[:, j]
        # the larger |z| of the two; NaN only where neither exists
        self.values["abs_z"] = np.fmax(
            np.abs(self.values["z_mean"]), np.abs(self.values["z_mean_sq"])
        )
        self._labels = {e.config_hash: e.label for e in self.entries}
        self._input_is_width = all(
            e.columns.get("input_dim") == e.columns.get("width") for e in self.entries
        )
        keys: dict[str, None] = {"config_hash": None, "configuration": None}
        for e in self.entries:
            keys.update(dict.fromkeys(e.columns))
        self.config_keys = [*keys, "complete", *CONFIG_THEORY]
        self.varying = [
            k
            for k in keys
            if k not in ("config_hash", "configuration")
            and len({repr(e.columns.get(k)) for e in self.entries}) > 1
        ]
        if "sigma_w" in self.varying and "sigma_b" in self.varying:  # read as (sigma_w, sigma_b)
            self.varying.remove("sigma_w")
            self.varying.insert(self.varying.index("sigma_b"), "sigma_w")

    # ------------------------------------------------------------------ per configuration

    @property
    def theory_done(self) -> int:
        return len(self.theory_heads)

    @property
    def configs_with_results(self) -> int:
        return sum(1 for i in range(len(self.entries)) if len(self.raw.get(i, ())))

    def config_value(self, i: int, key: str) -> Any:
        entry = self.entries[i]
        if key == "config_hash":
            return entry.config_hash
        if key == "configuration":
            return entry.label
        if key in CONFIG_THEORY:
            return self.theory_heads.get(i, {}).get(key)
        if key == "complete":
            return i not in self.partial
        return entry.columns.get(key)

    def config_mask(self, terms: Sequence[Term]) -> Mask:
        """Configurations matching the configuration-level terms (row-level ones ignored)."""
        mask = np.ones(len(self.entries), dtype=bool)
        for term in terms:
            if term.key in ROW_KEYS:
                continue
            mask &= np.array(
                [matches(term, self.config_value(i, term.key)) for i in range(len(mask))],
                dtype=bool,
            )
        return mask

    # ------------------------------------------------------------------------- per row

    def check_keys(self, terms: Sequence[Term], sort: Sequence[str] = ()) -> None:
        """UserError naming the columns there are when a term or sort key is unknown."""
        known = [*self.config_keys, *ROW_KEYS]
        for key in [t.key for t in terms]:
            if key not in known:
                raise unknown_column(key, known, "filter")
        for key in [s.lstrip("-") for s in sort]:
            if key not in known:
                raise unknown_column(key, known, "sort")

    def mask(self, terms: Sequence[Term]) -> Mask:
        """Rows matching every term."""
        self.check_keys(terms)
        rows = self.config_mask(terms)[self.cfg]
        for term in terms:
            if term.key == "layer":
                rows &= numeric_mask(term, self.layer, last=self.depth)
            elif term.key == "quantity":
                codes = np.array([matches(term, q) for q in QUANTITIES], dtype=bool)
                rows &= codes[self.quantity] if len(self.quantity) else rows
            elif term.key in NUMERIC:
                rows &= numeric_mask(term, self.values[term.key])
        return rows

    def order(self, rows: Mask, sort: Sequence[str]) -> Ints:
        """Indices of the matching rows, sorted by `sort` keys (`-key`: descending; None last)."""
        self.check_keys([], sort)
        index = np.nonzero(rows)[0]
        if not sort or not len(index):
            return index
        keys: list[Floats] = []
        for spec in reversed(sort):  # np.lexsort: the last key is the primary one
            desc, key = spec.startswith("-"), spec.lstrip("-")
            if key == "layer":
                values = self.layer[index]
            elif key == "quantity":
                values = self.quantity[index].astype(np.float64)
            elif key in NUMERIC:
                values = self.values[key][index]
            else:
                values = self._config_rank(key)[self.cfg[index]]
            missing = np.isnan(values)
            keys += [np.where(missing, 0.0, -values if desc else values), missing.astype(float)]
        return index[np.lexsort(keys)]

    def _config_rank(self, key: str) -> Floats:
        values = [self.config_value(i, key) for i in range(len(self.entries))]

        def sort_key(i: int) -> tuple[int, float, str]:
            v = values[i]
            if is_number(v):
                return (0, float(v), "")
            return (1, 0.0, str(v))

        # equal values share a rank, so that the next sort key decides between them
        distinct = sorted({sort_key(i) for i, v in enumerate(values) if v is not None})
        position = {k: r for r, k in enumerate(distinct)}
        rank = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            if v is not None:
                rank[i] = position[sort_key(i)]
        return rank

    def record(self, i: int) -> dict[str, Any]:
        """Row `i` as a record: the columns of `initsweep results --theory`, plus `abs_z`."""
        c = int(self.cfg[i])
        entry = self.entries[c]
        out: dict[str, Any] = {
            "sweep_id": self.sweep_id,
            "config_hash": entry.config_hash,
            **entry.columns,
            "complete": c not in self.partial,
            "layer": int(self.layer[i]),
            "quantity": QUANTITIES[int(self.quantity[i])],
        }
        for key in TABLE_STATS:
            x = float(self.values[key][i])
            out[key] = int(x) if key in COUNT_KEYS else _nan_to_none(x)
        head = self.theory_heads.get(c, {})
        for key in THEORY_KEYS:
            if key in LOG_THEORY:
                continue
            if key in CONFIG_THEORY:
                out[key] = head.get(key)
            elif key == "theory_exact":
                flag = float(self.values[key][i])
                out[key] = None if math.isnan(flag) else flag == 1.0  # None: no theory yet
            else:
                out[key] = _nan_to_none(float(self.values[key][i]))
        out["abs_z"] = _nan_to_none(float(self.values["abs_z"][i]))
        return out

    # ------------------------------------------------------------------------ display

    def records(self) -> list[Record]:
        """Every row as a Record carrying its configuration (what `compare.check` judges)."""
        return [
            Record(self.record(i), self.entries[int(self.cfg[i])].config)
            for i in range(self.n_rows)
        ]

    @property
    def theory_complete(self) -> bool:
        return self.theory_done >= self.configs_with_results

    def columns(self, terms: Sequence[Term] = ()) -> list[Column]:
        """The displayed columns: the varying parameters (or the label), then the statistics;
        the quantity only when the filter leaves more than one."""
        hidden = {"input_dim"} if self._input_is_width else set()
        if all("sigma_w" in e.columns for e in self.entries):  # the axis stands for the scheme
            hidden.add("init")
        if all("sigma_b" in e.columns for e in self.entries):
            hidden.add("bias_std")
        shown = [k for k in self.varying if k not in hidden]
        one_quantity = any(
            t.key == "quantity" and t.op == "=" and len(t.values) == 1 for t in terms
        )
        head = [
            Column(k, k, all(is_number(e.columns.get(k)) for e in self.entries)) for k in shown
        ] or [Column("configuration", "configuration", False)]
        return [
            *head,
            Column("layer", "layer", True),
            *([] if one_quantity else [Column("quantity", "quantity", False)]),
            Column("n_finite", "finite", True, "trials finite at this layer / trials"),
            Column("mean", "mean ± SE", True, "mean over units, averaged over trials"),
            Column("std", "std ± SE", True, "std over units, averaged over trials"),
            Column("theory_std", "theory", True, "mean-field sqrt(E[std²])"),
            Column("mean_sq", "mean_sq ± SE", True, "mean of squares over units"),
            Column("theory_mean_sq", "theory", True, "mean-field E[mean_sq]"),
            Column("z_mean_sq", "z", True, "(mean_sq - theory) / SE; red: |z| > 4"),
        ]

    def cells(self, record: Mapping[str, Any], columns: Sequence[Column]) -> list[list[str]]:
        """[text, css class] for each displayed column of a record."""
        out = []
        for col in columns:
            k = col.key
            if k in ("mean", "std", "mean_sq"):
                out.append([pm(record[k], record[f"{k}_se"]), "num"])
            elif k == "n_finite":
                cls = "num" if record["n_finite"] == record["n_trials"] else "num warn"
                out.append([f"{record['n_finite']}/{record['n_trials']}", cls])
            elif k == "z_mean_sq":
                z = record[k]
                hot = z is not None and abs(z) > 4
                out.append([MISSING if z is None else f"{z:+.1f}", "num hot" if hot else "num"])
            elif k == "configuration":
                out.append([self._labels[record["config_hash"]], ""])
            else:
                value = record.get(k)
                out.append(
                    [number(value, 6 if k in self.varying else 4), "num" if col.numeric else ""]
                )
        return out

    def page(
        self, *, where: str | None, sort: Sequence[str], offset: int, limit: int
    ) -> dict[str, Any]:
        """One page of matching rows: records, their display cells, the total that matched."""
        terms = parse_where(where)
        index = self.order(self.mask(terms), sort)
        limit = max(1, min(int(limit), MAX_LIMIT))
        offset = max(0, int(offset))
        records = [self.record(int(i)) for i in index[offset : offset + limit]]
        columns = self.columns(terms)
        return {
            "sweep_id": self.sweep_id,
            "total": len(index),
            "offset": offset,
            "limit": limit,
            "columns": [c.__dict__ for c in columns],
            "rows": records,
            "cells": [self.cells(r, columns) for r in records],
        }

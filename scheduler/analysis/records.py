"""Result records: one row per (configuration, layer, quantity), built from values.

A record holds the configuration's parameters and axis values, the trial counts, and for each
per-trial unit statistic (`mean`, `std`, `mean_sq`) its average over the finite trials with the
standard error of that average. `pooled_std` is the std of all values of all finite trials
pooled: sqrt(E_t[mean_sq] - E_t[mean]^2). The per-trial distribution (`distribution_row`):
the mean of log(mean_sq) over trials and its variance, each with its standard error, and the
5%, 50% and 95% quantiles of each statistic over the finite trials, read from its histogram.
The pair observables between a trial's inputs (`pair_row`, batch >= 2, else None): the
average over trials of the per-trial mean pair correlation (`corr`, over `n_corr` trials) and
of the cross second moment q_ab (`cross`), each with its standard error. Its columns are what `initsweep results` prints (JSON,
CSV); the `SimConfig` it belongs to rides along as the attribute `Record.config`, outside the
columns, so analysis reads schemes from the configuration, never from a rendered label.
Each column has one kind for typed exports (Parquet): `COLUMN_KINDS` for the fixed columns,
`axis_kind` for the axis values a sweep adds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.where import Where, row_matches, where_terms
from worker.contract import OBSERVABLES, QUANTILES, LayerRecord, SimConfig, TrialDistribution
from worker.histogram import many_quantiles
from worker.stats import Moments, Moments4, pooled_std, pooled_std_array, scaled_values

__all__ = [
    "COLUMN_KINDS",
    "DIST_KEYS",
    "KINDS",
    "PAIR_KEYS",
    "PARAM_KEYS",
    "QUANTILE_KEYS",
    "RECORD_KEYS",
    "STAT_KEYS",
    "ConfigResults",
    "Record",
    "axis_kind",
    "column_kinds",
    "columns_for_axes",
    "config_columns",
    "config_of",
    "config_params",
    "distribution_columns",
    "distribution_row",
    "distribution_row_of",
    "kind_value",
    "pair_columns",
    "pair_row",
    "record_columns",
    "record_row",
    "result_columns",
    "result_head",
    "result_rows",
]

QUANTILE_KEYS = tuple(f"{name}_{suffix}" for name in OBSERVABLES for suffix, _ in QUANTILES)
DIST_KEYS = (
    "log_mean_sq",
    "log_mean_sq_se",
    "log_mean_sq_var",
    "log_mean_sq_var_se",
    *QUANTILE_KEYS,
)
PAIR_KEYS = ("n_corr", "corr", "corr_se", "cross", "cross_se")
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
    *DIST_KEYS,
    *PAIR_KEYS,
)
PARAM_KEYS = (
    "init",
    "activation",
    "depth",
    "width",
    "input_dim",
    "batch",
    "dtype",
    "bias_std",
    "sampler",
    "input_q",
    "input_corr",
)

# The kind of every value of a column, what a typed export (Parquet) stores: "int" (int64),
# "float" (float64), "bool" or "str", each nullable. A column's None is null, never NaN.
KINDS = ("int", "float", "bool", "str")
COLUMN_KINDS: dict[str, str] = {
    "sweep_id": "int",
    "config_hash": "str",
    "init": "str",
    "activation": "str",
    "depth": "int",
    "width": "int",
    "input_dim": "int",
    "batch": "int",
    "dtype": "str",
    "bias_std": "float",
    "sampler": "str",
    "input_q": "float",
    "input_corr": "float",
    "complete": "bool",
    "layer": "int",
    "quantity": "str",
    "n_trials": "int",
    "n_finite": "int",
    "n_first_nonfinite": "int",
    "n_collapsed": "int",
    "n_corr": "int",
    **{k: "float" for k in STAT_KEYS if not k.startswith("n_")},
}
# The columns of `record_row`, in its order (after a record's `result_head`).
RECORD_KEYS = ("layer", "quantity", *STAT_KEYS)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_EXACT_IN_FLOAT = 1 << 53


class Record(dict[str, Any]):
    """A record's columns (a dict, as printed), and the SimConfig it belongs to (None: unknown)."""

    __slots__ = ("config",)

    def __init__(self, columns: Mapping[str, Any], config: SimConfig | None) -> None:
        super().__init__(columns)
        self.config = config


def config_of(record: Mapping[str, Any]) -> SimConfig | None:
    """The SimConfig a record carries (None for a plain mapping)."""
    return getattr(record, "config", None)


@dataclass(frozen=True)
class ConfigResults:
    """One configuration of a sweep: its hash, SimConfig, axis values and aggregated records."""

    config_hash: str
    config: SimConfig
    axes: Mapping[str, Any] = field(default_factory=dict)
    records: Sequence[LayerRecord] = ()
    complete: bool = True  # False: records merge the chunks done so far (`n_trials` of them)


def _json_float(x: float) -> float | None:
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
        "input_q": config.input_q,
        "input_corr": config.input_corr,
    }


def config_columns(config: SimConfig, axes: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter columns, then the axis values that are not parameters (`label`, `sigma_w`, ...)."""
    params = config_params(config)
    return {**params, **{k: v for k, v in axes.items() if k not in params}}


def _stat(m: Moments) -> tuple[float | None, float | None]:
    """(mean, SE) as floats; None where a value is not a float64 (beyond its range either way:
    the scaled form of `worker.stats.Moments` holds it, a float would print inf or a false 0)."""
    sem = m.sem
    sem_ok = math.isfinite(sem) and (sem != 0.0 or m.m2 == 0.0)
    return (m.value if m.n and m.representable else None, sem if sem_ok else None)


def record_row(record: LayerRecord, quantiles: Sequence[float] | None = None) -> dict[str, Any]:
    """The statistic columns of one aggregated (layer, quantity); `quantiles`: its histograms'
    (`distribution_row`), when already computed."""
    mean, mean_se = _stat(record.mean)
    std, std_se = _stat(record.std)
    msq, msq_se = _stat(record.mean_sq)
    pooled = None
    if record.n_finite:
        pooled = _json_float(pooled_std(record.mean, record.mean_sq))
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
        **distribution_row(record.dist, quantiles),
        **pair_row(record.cross, record.corr),
    }


def pair_row(cross: Moments | None, corr: Moments | None) -> dict[str, Any]:
    """The `PAIR_KEYS` columns (all None without pair observables: batch 1, or not recorded).

    corr: the mean over `n_corr` trials of the per-trial mean over input pairs a < b of
    <v_a, v_b> / (|v_a| |v_b|); cross: the mean over the finite trials of the per-trial mean
    over pairs of <v_a, v_b> / units (q_ab); each with its standard error (`Moments.sem`)."""
    if cross is None or corr is None:
        return dict.fromkeys(PAIR_KEYS)
    cross_mean, cross_se = _stat(cross)
    corr_mean, corr_se = _stat(corr)
    return {
        "n_corr": corr.n,
        "corr": corr_mean,
        "corr_se": corr_se,
        "cross": cross_mean,
        "cross_se": cross_se,
    }


def pair_columns(
    cross: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]],
    corr: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]],
    n_finite: npt.NDArray[np.int64],
) -> dict[str, Column]:
    """`pair_row`'s columns for many records at once, bit for bit, from the stored
    (cross_mean, cross_m2, cross_exp2) and (corr_n, corr_mean, corr_m2) columns
    (`worker.persist.PAIR_FIELDS`; float arrays, NaN where NULL: no pair observables);
    `n_corr` is an int64 column."""
    has = ~np.isnan(np.asarray(cross[0], dtype=np.float64))
    c_mean, c_m2, c_exp = (np.where(has, np.asarray(a, dtype=np.float64), 0.0) for a in cross)
    r_n, r_mean, r_m2 = (np.where(has, np.asarray(a, dtype=np.float64), 0.0) for a in corr)
    out: dict[str, Column] = {}
    for prefix, n, (mean, m2, exp2) in (
        ("cross", np.asarray(n_finite, dtype=np.int64), (c_mean, c_m2, c_exp.astype(np.int64))),
        ("corr", r_n.astype(np.int64), (r_mean, r_m2, np.zeros(r_n.shape, np.int64))),
    ):
        found = record_columns(n, {"value": (mean, m2, exp2)}, names=("value",))
        value, ok = found["value"]
        sem, sem_ok = found["value_se"]
        out[prefix] = (value, has & ok)
        out[f"{prefix}_se"] = (sem, has & sem_ok)
    counts: Any = r_n.astype(np.int64)  # a count column: ints, as `pair_row` gives them
    out["n_corr"] = (counts, has)
    return out


def distribution_row(
    dist: TrialDistribution | None, quantiles: Sequence[float] | None = None
) -> dict[str, float | None]:
    """The `DIST_KEYS` columns of a per-trial distribution (all None when not recorded).

    log_mean_sq is the mean over trials of log(mean_sq) (natural log; trials whose mean_sq is
    0 left out), log_mean_sq_var its sample variance (ddof=1), each with its standard error
    (`Moments4.sem`, `variance_se`); `{statistic}_{q05,median,q95}` are `Histogram.quantile`.
    """
    if dist is None:
        return dict.fromkeys(DIST_KEYS)
    row = distribution_row_of(dist.log_mean_sq)
    found = iter(dist_quantiles([dist])[0] if quantiles is None else quantiles)
    for name in OBSERVABLES:
        for suffix, _ in QUANTILES:
            row[f"{name}_{suffix}"] = _json_float(next(found))
    return row


def dist_quantiles(dists: Sequence[TrialDistribution]) -> list[list[float]]:
    """Per distribution, the `QUANTILES` of each observable's histogram (observable-major), all
    in one `many_quantiles` pass (bit for bit `Histogram.quantiles`)."""
    ps = [p for _, p in QUANTILES]
    hists = [d.histogram(name) for d in dists for name in OBSERVABLES]
    width = len(OBSERVABLES) * len(ps)
    flat = many_quantiles(hists, ps).reshape(len(dists), width).tolist()
    return [[float(v) for v in row] for row in flat]


def distribution_columns(
    log: Sequence[npt.NDArray[np.float64]], quantiles: Mapping[str, npt.NDArray[np.float64]]
) -> dict[str, Column]:
    """`distribution_row`'s columns for many records at once, bit for bit: from each record's
    log(mean_sq) (n, mean, m2, m3, m4) and the quantile columns stored with aggregated records
    (`worker.persist.QUANTILE_FIELDS`), float arrays with NaN where the value is None (a
    stored value is never NaN): n NaN for a record without a distribution."""
    nf, mean, m2, _, m4 = (np.asarray(c, dtype=np.float64) for c in log)
    has = ~np.isnan(nf)
    out: dict[str, Column] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        # Moments4.variance, sem and variance_se, operation for operation
        s2 = m2 / (nf - 1.0)
        sem = np.sqrt(s2 / nf)
        spread = m4 / (nf * nf) - s2 * s2 * (nf - 3.0) / (nf * (nf - 1.0))
        var_se = np.sqrt(np.where(spread < 0.0, 0.0, spread))
        out["log_mean_sq"] = (mean, has & (nf > 0) & np.isfinite(mean))
        out["log_mean_sq_se"] = (sem, has & (nf > 1) & np.isfinite(sem))
        out["log_mean_sq_var"] = (s2, has & (nf > 1) & np.isfinite(s2))
        out["log_mean_sq_var_se"] = (var_se, has & (nf > 3) & np.isfinite(var_se))
    for key in QUANTILE_KEYS:
        values = np.asarray(quantiles[key], dtype=np.float64)
        out[key] = (values, ~np.isnan(values))
    return out


def distribution_row_of(log: Moments4 | None) -> dict[str, float | None]:
    """The log(mean_sq) columns of `distribution_row` (all None without a distribution)."""
    if log is None:
        return dict.fromkeys(DIST_KEYS[:4])
    return {
        "log_mean_sq": _json_float(log.mean) if log.n else None,
        "log_mean_sq_se": _json_float(log.sem),
        "log_mean_sq_var": _json_float(log.variance),
        "log_mean_sq_var_se": _json_float(log.variance_se),
    }


Column = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]  # values, and where not None


def record_columns(
    n_finite: npt.NDArray[np.int64],
    moments: Mapping[
        str,
        tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]],
    ],
    names: Sequence[str] = OBSERVABLES,
) -> dict[str, Column]:
    """`record_row`'s float columns for many records at once: for each column its values and
    where they are not None, bit for bit what `record_row` computes one record at a time.

    `moments` maps each observable (`mean`, `std`, `mean_sq`) to its scaled (mean, m2, exp2)
    over the `n_finite` finite trials (`worker.stats.Moments`), one entry per record. With
    other `names` (not all three observables) only their mean and SE columns are computed.
    """
    n = np.asarray(n_finite, dtype=np.int64)
    nf = n.astype(np.float64)
    out: dict[str, Column] = {}
    scaled: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for name in names:
            raw, m2, exp2 = moments[name]
            mean = np.asarray(raw, dtype=np.float64)
            m2 = np.asarray(m2, dtype=np.float64)
            e = np.asarray(exp2, dtype=np.int64)
            scaled[name] = (mean, e)
            value, ok = scaled_values(mean, e)
            out[name] = (value, (n > 0) & ok)
            # Moments.sem: sqrt(variance / n), variance = m2 / (n - 1), for n > 1, scaled by 2^exp2
            sem, _ = scaled_values(np.sqrt((m2 / (nf - 1.0)) / nf), e)
            out[f"{name}_se"] = (sem, (n > 1) & np.isfinite(sem) & ((sem != 0.0) | (m2 == 0.0)))
        if tuple(names) != OBSERVABLES:
            return out
        pooled = pooled_std_array(scaled["mean"], scaled["mean_sq"])
    out["pooled_std"] = (pooled, (n > 0) & np.isfinite(pooled))
    return out


def result_head(sweep_id: int, item: ConfigResults) -> dict[str, Any]:
    """The configuration columns every record of `item` starts with, `complete` last."""
    return {
        "sweep_id": sweep_id,
        "config_hash": item.config_hash,
        **config_columns(item.config, item.axes),
        "complete": item.complete,
    }


def result_columns(sweep_id: int, configs: Iterable[ConfigResults]) -> list[str]:
    """Every column of the records of `configs`, in first-seen order (a header with no rows)."""
    return columns_for_axes(item.axes for item in configs)


def columns_for_axes(axes: Iterable[Mapping[str, Any]]) -> list[str]:
    """`result_columns` of configurations with these axis values, in order (no SimConfig needed:
    the parameter columns are the same for every configuration)."""
    columns: dict[str, None] = {}
    for item in dict.fromkeys(tuple(item) for item in axes):  # each distinct key order once
        columns.update(dict.fromkeys(("sweep_id", "config_hash", *PARAM_KEYS)))
        columns.update(dict.fromkeys(k for k in item if k not in PARAM_KEYS))
        columns["complete"] = None
    columns.update(dict.fromkeys(("layer", "quantity", *STAT_KEYS)))
    return list(columns)


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "other"
    if isinstance(value, float):
        return "float" if math.isfinite(value) else "other"
    return "str" if isinstance(value, str) else "other"


def axis_kind(values: Iterable[Any]) -> str:
    """The kind of an axis column holding `values` (None: absent, ignored).

    One kind is that kind; ints and floats together are "float" while every int is exact in a
    float64 (|i| <= 2**53); anything else (mixed kinds, lists, mappings) is "str", each value
    written by `kind_value`. A column with no value at all is "str" (all null).
    """
    values = [v for v in values if v is not None]
    types = set(map(type, values))
    if len(types) == 1:  # one exact type: decided by C loops over the values
        (only,) = types
        if only is float:
            return "float" if all(map(math.isfinite, values)) else "str"
        if only is int:
            return "int" if _INT64[0] <= min(values) and max(values) <= _INT64[1] else "str"
        if only is str or only is bool:
            return _value_kind(values[0])
    kinds: set[str] = set()
    exact = True
    for value in values:
        if value is None:
            continue
        kind = _value_kind(value)
        kinds.add(kind)
        if kind == "int" and abs(value) > _EXACT_IN_FLOAT:
            exact = False
    if len(kinds) == 1 and "other" not in kinds:
        return kinds.pop()
    if kinds == {"int", "float"} and exact:
        return "float"
    return "str"


def column_kinds(
    columns: Sequence[str],
    axes: Iterable[Mapping[str, Any]],
    known: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The kind of each of `columns`: `COLUMN_KINDS`, then `known` (e.g. theory columns), then
    `axis_kind` of the values of `axes` (each configuration's axis values)."""
    fixed = {**COLUMN_KINDS, **(known or {})}
    values: dict[str, list[Any]] = {c: [] for c in columns if c not in fixed}
    items = list(axes)
    orders = list(dict.fromkeys(map(tuple, items)))
    by_keys: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    if len(orders) == 1:  # every configuration has the same axes (a grid): all together
        by_keys[orders[0]] = items
    else:
        for item in items:  # the items with the same keys, together
            by_keys.setdefault(tuple(item), []).append(item)
    for keys, group in by_keys.items():
        chosen = [k for k in keys if k in values]
        if not chosen:
            continue
        rows = list(map(itemgetter(*chosen), group))
        for key, column in zip(
            chosen, zip(*rows, strict=True) if len(chosen) > 1 else [rows], strict=True
        ):
            values[key].extend(column)
    return {c: fixed[c] if c in fixed else axis_kind(values[c]) for c in columns}


def kind_value(value: Any, kind: str) -> Any:
    """`value` as a column of `kind` stores it: a float for "float", the string itself or its
    JSON for "str" (`true`, `1.5`, `[1, 2]`); None stays None."""
    if value is None:
        return None
    if kind == "float":
        return float(value)
    if kind == "str" and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    return value


def result_rows(
    sweep_id: int,
    configs: Iterable[ConfigResults],
    *,
    where: Where = None,
    quantity: str | None = None,
    layer: int | None = None,
) -> list[Record]:
    """One Record per (configuration, layer, quantity), in the order given, filtered.

    `where` keeps the rows that satisfy every term (`scheduler.where`: `sigma_w=1.5`,
    `activation=relu,tanh`, `layer>=5`, `init=normal`); a column a row lacks is a missing
    value there. Checking the names against the sweep's columns is the caller's
    (`scheduler.where.check_columns`): a batch of a sweep need not hold every axis.
    """
    rows: list[Record] = []
    terms = where_terms(where)
    items = list(configs)
    dists = [r.dist for item in items for r in item.records if r.dist is not None]
    found = iter(dist_quantiles(dists))  # every histogram's quantiles in one pass
    for item in items:
        head = result_head(sweep_id, item)
        for record in item.records:
            quantiles = None if record.dist is None else next(found)
            if quantity is not None and record.quantity != quantity:
                continue
            if layer is not None and record.layer != layer:
                continue
            row = {**head, **record_row(record, quantiles)}
            if row_matches(terms, row, last=item.config.depth):
                rows.append(Record(row, item.config))
    return rows

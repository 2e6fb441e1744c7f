"""Monte Carlo against mean-field theory: predictions beside every record, z-scores, a verdict.

`with_theory` adds to each result record (`scheduler.analysis.records`) the predictions of
`scheduler.analysis.theory.predict` for its (layer, quantity):

    theory_mean, theory_mean_sq, theory_std      E[mean], E[mean_sq], sqrt(E[std^2]); None: none
    theory_<stat>_lo, theory_<stat>_hi            the interval E[stat] may lie in at this width
                                                  (`theory.corrections`: the prediction +- 3x
                                                  its O(depth/width) correction; for std the
                                                  Hoelder bound below sqrt(E[std^2]))
    theory_dispersion                             relative variance of the per-trial mean_sq
    z_mean_sq = (mean_sq - theory_mean_sq) / mean_sq_se
    z_mean    = (mean - theory_mean) / mean_se   (where a mean is predicted)
    theory_log_mean_sq, theory_log_mean_sq_var   exact E and Var of log mean_sq over trials
                                                 (`theory.exact_log_mean_sq`; None elsewhere)
    z_log_mean_sq, z_log_mean_sq_var             their z-scores (log_mean_sq_se, _var_se)
    z_std     = distance of std from [theory_std_lo, theory_std_hi] in std_se (0 inside)
    theory_p_overflow_lo/hi, theory_p_collapse_lo/hi
              P(L <= layer - 2), P(L <= layer + 2) of the first non-finite forward layer and of
              the collapse layer (`theory.precision`), forward quantities only

and `theory_exact` (E[mean_sq] of this quantity is exact at any width: linear, relu,
leaky_relu with centred i.i.d. weights), `finite_width` (the prediction's sentence of
`theory.finite_width_note`, `ConfigTheory.width_note`, or None), `theory_overflow_layer`,
`theory_underflow_layer`. The activation is read from the configuration the record carries
(`records.Record.config`).

`check` lists every (configuration, layer, quantity, statistic) with |z| > threshold, each with
one explanation, and every excuse is bounded by its size:

- "known finite-width effect (within 3x its O(depth/width) correction, ...)": the observed value
  is within threshold SEs of the finite-width interval theory states for that statistic (zero
  width where the value is exact at any width: every E[mean_sq] of linear/relu/leaky_relu with
  centred i.i.d. weights, gradients included, Hanin 2018; means fixed by symmetry).
- "heavy-tailed trials (...)": an average of N log-normal trials (Var[log mean_sq] from the
  theory's dispersion) typically misses the tail beyond its 1 - 1/N quantile: the interval's
  lower end times `excuses.truncation(1/N, s)` (what makes exact relu E[mean_sq] look low at
  depth/width 2).
- "overflow/collapse censoring (p of trials; within its bound)": the record's own censoring
  widens that interval by exactly what it can do: overflow removes the largest share p of the
  trials (mean_sq and std: [lo rho, hi / (1 - p)], rho the log-normal truncation of
  `excuses.truncation`; a symmetric mean is unbiased), collapse sets finite trials to 0 (down to 0).
  Records with fewer than 2 finite trials have no estimate and are skipped (counted).
- The recorded overflow and collapse laws of each configuration are compared with theory's
  within LAYER_TOLERANCE = 2 layers ("overflow layer", "collapse layer"); they have no excuse.
- "within chance for N comparisons (...)": the |z| left after the excuses is below the
  family-wise bound of `family_bound` (a few |z| > 4 are expected among thousands of t-scores).
- "unexplained": everything else. `CheckReport.ok` is False when there is one.

`with_theory(predictor=...)` injects another theory (tests feed a wrong one and expect FAILED).
The report and its wording are `scheduler.analysis.verdict`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scheduler.analysis.excuses import censored, distance, explain
from scheduler.analysis.pair_theory import PAIR_THEORY_KEYS, pair_theory
from scheduler.analysis.records import Record, config_of
from scheduler.analysis.theory import (
    ConfigTheory,
    LayerTheory,
    exact_log_mean_sq,
    predict,
    predict_many,
)
from scheduler.analysis.verdict import (
    CENSORED,
    CHANCE,
    FAMILY_ALPHA,
    UNEXPLAINED,
    CheckReport,
    Deviation,
    family_bound,
)
from scheduler.formatting import config_label
from worker.contract import QUANTITIES, SimConfig

__all__ = [
    "CENSORED",
    "CHANCE",
    "FAMILY_ALPHA",
    "THEORY_KEYS",
    "THEORY_KINDS",
    "UNEXPLAINED",
    "CheckReport",
    "Deviation",
    "DevicePredictor",
    "Predictor",
    "TheoryColumns",
    "check",
    "device_predictor",
    "family_bound",
    "predict_all",
    "theories",
    "theory_columns",
    "with_theory",
]

Predictor = Callable[[SimConfig], ConfigTheory]

# Activations whose E[mean_sq] recursion is exact at any width (positively homogeneous).
_HOMOGENEOUS = ("linear", "relu", "leaky_relu")

THEORY_KEYS = (
    "theory_mean",
    "theory_mean_sq",
    "theory_std",
    "z_mean",
    "z_mean_sq",
    "z_std",
    "theory_mean_lo",
    "theory_mean_hi",
    "theory_mean_sq_lo",
    "theory_mean_sq_hi",
    "theory_std_lo",
    "theory_std_hi",
    "theory_dispersion",
    "theory_exact",
    "finite_width",
    "theory_overflow_layer",
    "theory_underflow_layer",
    "theory_log_mean_sq",
    "theory_log_mean_sq_var",
    "z_log_mean_sq",
    "z_log_mean_sq_var",
    "theory_p_overflow_lo",
    "theory_p_overflow_hi",
    "theory_p_collapse_lo",
    "theory_p_collapse_hi",
    "z_corr",
    "z_cross",
    *PAIR_THEORY_KEYS,
)
# Each theory column's kind (`scheduler.analysis.records.KINDS`), for typed exports.
THEORY_KINDS: dict[str, str] = {
    **{k: "float" for k in THEORY_KEYS},
    "theory_exact": "bool",
    "finite_width": "str",
}
# A recorded overflow or collapse law agrees with theory's when it lies within this many layers
# of it (the band [P(L <= l - tol), P(L <= l + tol)]), up to binomial sampling error.
LAYER_TOLERANCE = 2


class DevicePredictor:
    """`predict` of each configuration on the device that computed it (`devices`: config_hash
    -> a chunk provenance device name; CPU where absent), which sets its dtype's subnormal
    behaviour (`precision.underflow_model`); `many` predicts many together (`predict_many`)."""

    def __init__(self, devices: Mapping[str, str | None]) -> None:
        self.devices = devices

    def __call__(self, config: SimConfig) -> ConfigTheory:
        return predict(config, device=self.devices.get(config.config_hash))

    def many(self, configs: Sequence[SimConfig]) -> list[ConfigTheory]:
        """`self(config)` of each configuration, computed together."""
        return predict_many(configs, [self.devices.get(c.config_hash) for c in configs])


def device_predictor(devices: Mapping[str, str | None]) -> DevicePredictor:
    """The `DevicePredictor` of `devices` (config_hash -> a chunk provenance device name)."""
    return DevicePredictor(devices)


def predict_all(configs: Sequence[SimConfig], predictor: Predictor = predict) -> list[ConfigTheory]:
    """`predictor(config)` of each configuration: `predict_many` when the predictor is `predict`
    or a `DevicePredictor` (the same values, computed together), else one call each."""
    if predictor is predict:
        return predict_many(configs)
    if isinstance(predictor, DevicePredictor):
        return predictor.many(configs)
    return [predictor(c) for c in configs]


def theories(
    configs: Mapping[str, SimConfig], predictor: Predictor = predict
) -> dict[str, ConfigTheory]:
    """`predictor(config)` for every configuration, by config_hash (`predict_all`)."""
    return dict(zip(configs, predict_all(list(configs.values()), predictor), strict=True))


def _z(observed: Any, predicted: float | None, se: Any) -> float | None:
    if observed is None or predicted is None or se is None or not se > 0.0:
        return None
    z = (float(observed) - predicted) / float(se)
    return z if math.isfinite(z) else None


def _z_interval(observed: Any, bounds: tuple[float, float] | None, se: Any) -> float | None:
    """Signed distance of `observed` from the interval `bounds`, in standard errors (0 inside)."""
    if observed is None or bounds is None or se is None or not se > 0.0:
        return None
    lo, hi = bounds
    x = float(observed)
    z = (x - hi) / float(se) if x > hi else (x - lo) / float(se) if x < lo else 0.0
    return z if math.isfinite(z) else None


def _band(law: tuple[float, ...] | None, layer: int) -> tuple[float, float] | None:
    """(P(L <= layer - tol), P(L <= layer + tol)) of a first-layer law; None without one."""
    if law is None:
        return None
    lo = law[max(0, layer - LAYER_TOLERANCE)]
    hi = law[min(len(law) - 1, layer + LAYER_TOLERANCE)]
    return lo, hi


def _mean_sq_exact(config: SimConfig, theory: ConfigTheory) -> bool:
    """E[mean_sq] of every quantity is exact at any width (see the module docstring)."""
    return theory.exact and config.activation.name in _HOMOGENEOUS


# per configuration: its theory, layers by key, finite-width note, exact log mean_sq laws
_Cached = tuple[
    ConfigTheory,
    dict[tuple[int, str], LayerTheory],
    str | None,
    dict[tuple[int, str], tuple[float, float]],
]


def with_theory(
    records: Iterable[Mapping[str, Any]],
    configs: Mapping[str, SimConfig] | None = None,
    *,
    predictor: Predictor = predict,
    pairs: bool = True,
) -> list[Record]:
    """Copies of `records` with the theory columns of the module docstring (None: no prediction);
    the correlation map's (`pair_theory`, seconds per configuration of smooth activations) only
    with `pairs`.

    Each record's configuration is `configs[config_hash]` when `configs` is given, else the one
    it carries (`Record.config`); the copies carry it too. `predictor` (default `predict`) is
    called once per configuration (`predict_all`: all of them together where it can), so a test
    can inject a wrong prediction.
    """
    rows = list(records)
    known: dict[str, SimConfig] = {}
    for record in rows:
        key = str(record["config_hash"])
        if key not in known:
            found = config_of(record) if configs is None else configs.get(key)
            if found is not None:
                known[key] = found
    cache: dict[str, _Cached] = {}
    for (key, each), theory in zip(
        known.items(), predict_all(list(known.values()), predictor), strict=True
    ):
        by_key = {(t.layer, t.quantity): t for t in theory.layers}
        exact = exact_log_mean_sq(each) or {}
        cache[key] = (theory, by_key, theory.width_note, exact)
    blank = dict.fromkeys(THEORY_KEYS)
    out: list[Record] = []
    for record in rows:
        key = str(record["config_hash"])
        config = config_of(record) if configs is None else configs.get(key)
        row = Record(record, config)
        row.update(blank)
        row["theory_exact"] = False
        if config is None:
            out.append(row)
            continue
        theory, by_key, note, exact = cache[key]
        row["finite_width"] = note
        row["theory_overflow_layer"] = theory.overflow_layer
        row["theory_underflow_layer"] = theory.underflow_layer
        quantity, layer = str(record["quantity"]), int(record["layer"])
        row["theory_exact"] = _mean_sq_exact(config, theory)
        if quantity != "gradient":
            for name, law in (
                ("overflow", theory.overflow_cdf),
                ("collapse", theory.underflow_cdf),
            ):
                band = _band(law, layer)
                if band is not None:
                    row[f"theory_p_{name}_lo"], row[f"theory_p_{name}_hi"] = band
        pred = by_key.get((layer, quantity))
        if pred is not None:
            row["theory_mean"] = pred.mean
            row["theory_mean_sq"] = pred.mean_sq
            row["theory_std"] = pred.std
            row["theory_dispersion"] = pred.dispersion
            for stat, bounds in (
                ("mean", pred.mean_bounds),
                ("mean_sq", pred.mean_sq_bounds),
                ("std", pred.std_bounds),
            ):
                if bounds is not None:
                    row[f"theory_{stat}_lo"], row[f"theory_{stat}_hi"] = bounds
            row["z_mean"] = _z(record.get("mean"), pred.mean, record.get("mean_se"))
            row["z_mean_sq"] = _z(record.get("mean_sq"), pred.mean_sq, record.get("mean_sq_se"))
            row["z_std"] = _z_interval(record.get("std"), pred.std_bounds, record.get("std_se"))
        log_pred = exact.get((int(record["layer"]), quantity))
        if log_pred is not None:
            mean, var = log_pred
            row["theory_log_mean_sq"], row["theory_log_mean_sq_var"] = mean, var
            row["z_log_mean_sq"] = _z(record.get("log_mean_sq"), mean, record.get("log_mean_sq_se"))
            row["z_log_mean_sq_var"] = _z(
                record.get("log_mean_sq_var"), var, record.get("log_mean_sq_var_se")
            )
        out.append(row)
    if pairs:
        _add_pair_theory(out)
    return out


Column = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]  # values, and where not None
_FLOAT_THEORY_KEYS = tuple(k for k in THEORY_KEYS if THEORY_KINDS[k] == "float")


@dataclass(frozen=True)
class TheoryColumns:
    """`with_theory`'s columns for rows given column by column: every float column as (values,
    where not None) per row, `theory_exact` per row, `finite_width` per configuration."""

    floats: dict[str, Column]
    exact: npt.NDArray[np.bool_]
    notes: list[str | None]


def theory_columns(
    configs: Sequence[SimConfig],
    theories: Sequence[ConfigTheory],
    config: npt.NDArray[np.int64],
    layer: npt.NDArray[np.int64],
    quantity: npt.NDArray[np.int64],
    stats: Mapping[str, Column],
) -> TheoryColumns:
    """The theory columns `with_theory` adds to the records of rows i = 0..n-1 of configuration
    `configs[config[i]]` (its theory `theories[config[i]]`, batch 1: no correlation map), layer
    `layer[i]` and quantity `QUANTITIES[quantity[i]]`, whose statistics are `stats` (record
    columns as (values, where not None)): the same values, bit for bit, computed column by
    column (each prediction is looked up by configuration x layer x quantity in one table)."""
    if any(c.batch > 1 for c in configs):
        raise ValueError("theory_columns: the correlation map (batch > 1) is per record")
    n_q = len(QUANTITIES)
    width = n_q * (max([c.depth for c in configs], default=0) + 1)  # table slots per config
    slot = config * width + layer * n_q + quantity
    size = len(configs) * width
    q_index = {q: i for i, q in enumerate(QUANTITIES)}

    def table(keys: Sequence[int] | npt.NDArray[np.int64], values: list[float | None]) -> Column:
        """Row columns from (slot, value) pairs: NaN and not valid where a slot has no value."""
        out = np.full(size, np.nan)
        known = np.zeros(size, dtype=bool)
        at = np.asarray(keys, dtype=np.int64)
        out[at] = np.array(values, dtype=np.float64)
        known[at] = [v is not None for v in values]
        return out[slot], known[slot]

    flat = [t for theory in theories for t in theory.layers]
    owner = np.repeat(np.arange(len(theories)), [len(theory.layers) for theory in theories])
    at_layer = np.array([t.layer for t in flat], dtype=np.int64)
    at_quantity = np.array([q_index[t.quantity] for t in flat], dtype=np.int64)
    keys = owner * width + at_layer * n_q + at_quantity
    fields: dict[str, list[float | None]] = {
        "mean": [t.mean for t in flat],
        "mean_sq": [t.mean_sq for t in flat],
        "std": [t.std for t in flat],
        "dispersion": [t.dispersion for t in flat],
    }
    for stat in ("mean", "mean_sq", "std"):
        bounds = [getattr(t, f"{stat}_bounds") for t in flat]
        fields[f"{stat}_lo"] = [None if b is None else b[0] for b in bounds]
        fields[f"{stat}_hi"] = [None if b is None else b[1] for b in bounds]
    log_keys: list[int] = []
    log_values: tuple[list[float | None], list[float | None]] = ([], [])
    for i, each in enumerate(configs):
        for (at, q), (mean, var) in (exact_log_mean_sq(each) or {}).items():
            log_keys.append(i * width + at * n_q + q_index[q])
            log_values[0].append(mean)
            log_values[1].append(var)
    pred = {name: table(keys, values) for name, values in fields.items()}
    out: dict[str, Column] = {
        f"theory_{name}": pred[name] for name in ("mean", "mean_sq", "std", "dispersion")
    }
    out.update({f"theory_{name}": pred[name] for name in _BOUND_KEYS})
    out["z_mean"] = _z_column(stats["mean"], pred["mean"], stats["mean_se"])
    out["z_mean_sq"] = _z_column(stats["mean_sq"], pred["mean_sq"], stats["mean_sq_se"])
    out["z_std"] = _z_interval_column(stats["std"], pred["std_lo"], pred["std_hi"], stats["std_se"])
    log_mean, log_var = table(log_keys, log_values[0]), table(log_keys, log_values[1])
    out["theory_log_mean_sq"], out["theory_log_mean_sq_var"] = log_mean, log_var
    out["z_log_mean_sq"] = _z_column(stats["log_mean_sq"], log_mean, stats["log_mean_sq_se"])
    out["z_log_mean_sq_var"] = _z_column(
        stats["log_mean_sq_var"], log_var, stats["log_mean_sq_var_se"]
    )
    for key, values in (
        ("theory_overflow_layer", [t.overflow_layer for t in theories]),
        ("theory_underflow_layer", [t.underflow_layer for t in theories]),
    ):
        per_config = np.array(values, dtype=np.float64)
        known = np.array([v is not None for v in values], dtype=bool)
        out[key] = per_config[config], known[config]
    forward = quantity != q_index["gradient"]
    for name, laws in (
        ("overflow", [t.overflow_cdf for t in theories]),
        ("collapse", [t.underflow_cdf for t in theories]),
    ):
        lo, hi = _band_columns(laws, config, layer)
        out[f"theory_p_{name}_lo"] = lo[0], lo[1] & forward
        out[f"theory_p_{name}_hi"] = hi[0], hi[1] & forward
    blank = np.full(len(config), np.nan), np.zeros(len(config), dtype=bool)
    floats = {k: out.get(k, blank) for k in _FLOAT_THEORY_KEYS}  # the correlation map's: None
    exact = np.array(
        [_mean_sq_exact(c, t) for c, t in zip(configs, theories, strict=True)], dtype=bool
    )
    return TheoryColumns(floats=floats, exact=exact[config], notes=[t.width_note for t in theories])


_BOUND_KEYS = tuple(f"{stat}_{end}" for stat in ("mean", "mean_sq", "std") for end in ("lo", "hi"))


def _z_column(observed: Column, predicted: Column, se: Column) -> Column:
    """`_z` of each row: (observed - predicted) / se where all three are known, se > 0 and the
    quotient is finite."""
    with np.errstate(all="ignore"):
        z = (observed[0] - predicted[0]) / se[0]
        valid = observed[1] & predicted[1] & se[1] & (se[0] > 0.0) & np.isfinite(z)
    return z, valid


def _z_interval_column(observed: Column, lo: Column, hi: Column, se: Column) -> Column:
    """`_z_interval` of each row (0 inside [lo, hi]; the interval's ends are known together)."""
    x, s = observed[0], se[0]
    with np.errstate(all="ignore"):
        z = np.where(x > hi[0], (x - hi[0]) / s, np.where(x < lo[0], (x - lo[0]) / s, 0.0))
        valid = observed[1] & lo[1] & se[1] & (s > 0.0) & np.isfinite(z)
    return z, valid


def _band_columns(
    laws: Sequence[tuple[float, ...] | None],
    config: npt.NDArray[np.int64],
    layer: npt.NDArray[np.int64],
) -> tuple[Column, Column]:
    """`_band` of each row: (lo, hi) of its configuration's law at its layer."""
    longest = max([len(law) for law in laws if law is not None], default=1)
    table = np.full((len(laws), longest), np.nan)
    lengths = np.ones(len(laws), dtype=np.int64)
    for i, law in enumerate(laws):
        if law is not None:
            table[i, : len(law)] = law
            lengths[i] = len(law)
    known = np.array([law is not None for law in laws], dtype=bool)[config]
    last = lengths[config] - 1
    lo = table[config, np.minimum(np.maximum(layer - LAYER_TOLERANCE, 0), last)]
    hi = table[config, np.minimum(layer + LAYER_TOLERANCE, last)]
    return (lo, known), (hi, known)


def _add_pair_theory(rows: list[Record]) -> None:
    """The correlation map's columns and z-scores (`pair_theory`), one configuration at a time."""
    groups: dict[str, list[Record]] = {}
    for row in rows:
        if row.config is not None and row.config.batch > 1:
            groups.setdefault(str(row["config_hash"]), []).append(row)
    for group in groups.values():
        config = group[0].config
        assert config is not None
        for row, values in zip(group, pair_theory(config, group), strict=True):
            row.update(values)
            for stat in ("corr", "cross"):
                predicted = values[f"theory_{stat}"]
                row[f"z_{stat}"] = _z(row.get(stat), predicted, row.get(f"{stat}_se"))


def check(
    records: Iterable[Mapping[str, Any]],
    threshold: float = 4.0,
    *,
    family_alpha: float = FAMILY_ALPHA,
    strict: bool = False,
    allow_partial: bool = False,
    incomplete: Iterable[str] = (),
) -> CheckReport:
    """Judge records from `with_theory`: every |z| > threshold, explained or not (module doc).

    Statistics: mean_sq and mean against their predictions, std against its interval, and per
    configuration the recorded overflow and collapse laws against theory's (`_layer_laws`).
    With thousands of statistics a few |z| > 4 are expected by chance alone (the z-scores use
    the sample SE of n trials, so they are Student-t): a deviation no other explanation covers
    is "within chance" when the |z| left after the excuses is below `family_bound(n_compared,
    n_finite, family_alpha)`. `strict` turns every excuse off but the chance bound;
    `incomplete` names configurations whose chunks are not all in (besides records marked
    `complete=False`).
    """
    rows = list(records)
    candidates: list[tuple[Mapping[str, Any], str, float]] = []
    n_compared = n_censored = 0
    for record in rows:
        if censored(record):
            n_censored += any(record.get(f"z_{s}") is not None for s in _STATISTICS)
            continue
        for statistic in _STATISTICS:
            z = record.get(f"z_{statistic}")
            if z is None:
                continue
            n_compared += 1
            if abs(z) > threshold:
                candidates.append((record, statistic, float(z)))
    laws = _layer_laws(rows, threshold)
    n_compared += laws.n_compared
    deviations: list[Deviation] = []
    for record, statistic, z in candidates:
        if strict:
            explanation, left = UNEXPLAINED, abs(z)
        else:
            explanation, left = explain(record, statistic, threshold)
        if explanation == UNEXPLAINED:
            bound = family_bound(n_compared, int(record["n_finite"]), family_alpha)
            if left < bound:
                explanation = CHANCE.format(n=n_compared, bound=bound, alpha=family_alpha)
        predicted = record.get(f"theory_{statistic}")
        deviations.append(
            Deviation(
                config_hash=str(record["config_hash"]),
                config=config_label(record),
                layer=int(record["layer"]),
                quantity=str(record["quantity"]),
                statistic=statistic,
                observed=float(record[statistic]),
                se=float(record[f"{statistic}_se"]),
                predicted=float(predicted) if predicted is not None else math.nan,
                z=z,
                explanation=explanation,
                label=str(record["label"]) if record.get("label") else None,
            )
        )
    for deviation, n_trials in laws.deviations:
        if abs(deviation.z) < family_bound(n_compared, n_trials, family_alpha):
            explanation = CHANCE.format(
                n=n_compared,
                bound=family_bound(n_compared, n_trials, family_alpha),
                alpha=family_alpha,
            )
            deviation = dataclasses.replace(deviation, explanation=explanation)
        deviations.append(deviation)
    labels: dict[str, str] = {}
    predicted_configs: set[str] = set()
    unfinished: set[str] = set()
    for record in rows:
        key = str(record["config_hash"])
        labels.setdefault(key, config_label(record))
        if record.get("theory_mean_sq") is not None or record.get("theory_mean") is not None:
            predicted_configs.add(key)
        if record.get("complete") is False:
            unfinished.add(key)
    return CheckReport(
        threshold=threshold,
        n_compared=n_compared,
        n_censored=n_censored,
        deviations=tuple(deviations),
        n_configs=len(labels),
        no_prediction=tuple(v for k, v in labels.items() if k not in predicted_configs),
        incomplete=tuple(
            dict.fromkeys([*(v for k, v in labels.items() if k in unfinished), *incomplete])
        ),
        strict=strict,
        allow_partial=allow_partial,
    )


_STATISTICS = ("mean_sq", "mean", "std", "corr", "cross")


@dataclass(frozen=True)
class _Laws:
    n_compared: int
    deviations: tuple[tuple[Deviation, int], ...]  # (deviation, n_trials)


def _layer_laws(rows: list[Mapping[str, Any]], threshold: float) -> _Laws:
    """The recorded overflow and collapse laws of every configuration against theory's.

    From the preactivation records of a configuration, in layer order: F_over(l) = (trials whose
    first non-finite layer is <= l) / n_trials and F_collapse(l) = n_collapsed(l) / n_trials
    (collapse is absorbing). Each must lie in theory's band [P(L <= l - 2), P(L <= l + 2)]
    (`theory_p_*_lo/hi`, LAYER_TOLERANCE = 2 layers) within `threshold` binomial standard
    errors sqrt(max(P (1 - P), 1 / n) / n) of the nearer end; the worst layer of each law that
    does not is one deviation ("overflow layer" or "collapse layer").
    """
    by_config: dict[str, list[Mapping[str, Any]]] = {}
    for record in rows:
        if record.get("quantity") == "preactivation":
            by_config.setdefault(str(record["config_hash"]), []).append(record)
    n_compared = 0
    out: list[tuple[Deviation, int]] = []
    for records in by_config.values():
        records.sort(key=lambda r: int(r["layer"]))
        for name, statistic in (("overflow", "overflow layer"), ("collapse", "collapse layer")):
            worst: tuple[float, Mapping[str, Any], float, float, float] | None = None
            first = 0
            for record in records:
                n = int(record.get("n_trials") or 0)
                first += int(record.get("n_first_nonfinite") or 0)
                lo, hi = record.get(f"theory_p_{name}_lo"), record.get(f"theory_p_{name}_hi")
                if lo is None or hi is None or n == 0:
                    continue
                measured = (first if name == "overflow" else int(record["n_collapsed"] or 0)) / n
                n_compared += 1
                end = hi if measured > hi else lo
                se = math.sqrt(max(end * (1.0 - end), 1.0 / n) / n)
                z = distance(measured, lo, hi, se) * (1.0 if measured > hi else -1.0)
                if abs(z) > threshold and (worst is None or abs(z) > abs(worst[0])):
                    worst = (z, record, measured, se, end)
            if worst is not None:
                z, record, measured, se, end = worst
                out.append(
                    (
                        Deviation(
                            config_hash=str(record["config_hash"]),
                            config=config_label(record),
                            layer=int(record["layer"]),
                            quantity="preactivation",
                            statistic=statistic,
                            observed=measured,
                            se=se,
                            predicted=end,
                            z=z,
                            explanation=UNEXPLAINED,
                            label=str(record["label"]) if record.get("label") else None,
                        ),
                        int(record["n_trials"]),
                    )
                )
    return _Laws(n_compared, tuple(out))

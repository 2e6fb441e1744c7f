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
leaky_relu with centred i.i.d. weights), `finite_width` (the sentence of
`theory.finite_width_note`, or None), `theory_overflow_layer`, `theory_underflow_layer`. The
activation is read from the configuration the record carries (`records.Record.config`).

`check` lists every (configuration, layer, quantity, statistic) with |z| > threshold, each with
one explanation, and every excuse is bounded by its size:

- "known finite-width effect (within 3x its O(depth/width) correction, ...)": the observed value
  is within threshold SEs of the finite-width interval theory states for that statistic (zero
  width where the value is exact at any width: every E[mean_sq] of linear/relu/leaky_relu with
  centred i.i.d. weights, gradients included, Hanin 2018; means fixed by symmetry).
- "heavy-tailed trials (...)": an average of N log-normal trials (Var[log mean_sq] from the
  theory's dispersion) typically misses the tail beyond its 1 - 1/N quantile: the interval's
  lower end times `_truncation(1/N, s)` (what makes exact relu E[mean_sq] look low at
  depth/width 2).
- "overflow/collapse censoring (p of trials; within its bound)": the record's own censoring
  widens that interval by exactly what it can do: overflow removes the largest share p of the
  trials (mean_sq and std: [lo rho, hi / (1 - p)], rho the log-normal truncation of
  `_truncation`; a symmetric mean is unbiased), collapse sets finite trials to 0 (down to 0).
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.analysis.records import Record, config_of
from scheduler.analysis.theory import (
    DTYPE_LIMITS,
    FINITE_WIDTH_MULTIPLE,
    ConfigTheory,
    LayerTheory,
    exact_log_mean_sq,
    finite_width_note,
    predict,
)
from scheduler.analysis.verdict import (
    CENSORED,
    CHANCE,
    FAMILY_ALPHA,
    FINITE_WIDTH,
    HEAVY_TAIL,
    UNEXPLAINED,
    CheckReport,
    Deviation,
    family_bound,
)
from scheduler.formatting import config_label
from worker.contract import SimConfig

__all__ = [
    "CENSORED",
    "CHANCE",
    "FAMILY_ALPHA",
    "THEORY_KEYS",
    "THEORY_KINDS",
    "UNEXPLAINED",
    "CheckReport",
    "Deviation",
    "Predictor",
    "check",
    "device_predictor",
    "family_bound",
    "theories",
    "with_theory",
]

Predictor = Callable[[SimConfig], ConfigTheory]

# Activations whose E[mean_sq] recursion is exact at any width (positively homogeneous).
_HOMOGENEOUS = ("linear", "relu", "leaky_relu")
# Activations whose E[mean] is fixed by symmetry (phi(-u) = 2 phi(0) - phi(u)) at any width.
_SYMMETRIC_MEAN = ("linear", "tanh", "sigmoid")

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


def device_predictor(devices: Mapping[str, str | None]) -> Predictor:
    """`predict` of each configuration on the device that computed it (`devices`: config_hash
    -> a chunk provenance device name; CPU where absent), which sets its dtype's subnormal
    behaviour (`precision.underflow_model`)."""

    def on_device(config: SimConfig) -> ConfigTheory:
        return predict(config, device=devices.get(config.config_hash))

    return on_device


def theories(
    configs: Mapping[str, SimConfig], predictor: Predictor = predict
) -> dict[str, ConfigTheory]:
    """`predictor(config)` for every configuration, by config_hash (one call per configuration)."""
    return {h: predictor(c) for h, c in configs.items()}


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


def _mean_sq_exact(config: SimConfig, theory: ConfigTheory, quantity: str) -> bool:
    """E[mean_sq] of `quantity` is exact at any width (see the module docstring)."""
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
) -> list[Record]:
    """Copies of `records` with the theory columns of the module docstring (None: no prediction).

    Each record's configuration is `configs[config_hash]` when `configs` is given, else the one
    it carries (`Record.config`); the copies carry it too. `predictor` (default `predict`) is
    called once per configuration, so a test can inject a wrong prediction.
    """
    cache: dict[str, _Cached] = {}
    out: list[Record] = []
    for record in records:
        key = str(record["config_hash"])
        config = config_of(record) if configs is None else configs.get(key)
        row = Record(record, config)
        row.update(dict.fromkeys(THEORY_KEYS))
        row["theory_exact"] = False
        if config is None:
            out.append(row)
            continue
        if key not in cache:
            theory = predictor(config)
            by_key = {(t.layer, t.quantity): t for t in theory.layers}
            exact = exact_log_mean_sq(config) or {}
            cache[key] = (theory, by_key, _width_note(config), exact)
        theory, by_key, note, exact = cache[key]
        row["finite_width"] = note
        row["theory_overflow_layer"] = theory.overflow_layer
        row["theory_underflow_layer"] = theory.underflow_layer
        quantity, layer = str(record["quantity"]), int(record["layer"])
        row["theory_exact"] = _mean_sq_exact(config, theory, quantity)
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
    return out


def _width_note(config: SimConfig) -> str | None:
    """`finite_width_note`, or None where it cannot be computed (theory has no prediction)."""
    try:
        return finite_width_note(config)
    except (ArithmeticError, ValueError):
        return None


def _activation_name(record: Mapping[str, Any]) -> str | None:
    """The activation's scheme name, from the configuration the record carries."""
    config = config_of(record)
    return None if config is None else config.activation.name


def _genuine_zeros(record: Mapping[str, Any]) -> bool:
    """relu zeroes a whole layer for real when every unit is negative (a common mode of
    non-centred weights, or a narrow layer): those zeros are samples, not censoring, when the
    signal is far above the dtype's underflow scale."""
    predicted = record.get("theory_mean_sq")
    tiny = DTYPE_LIMITS.get(str(record.get("dtype", "float32")), DTYPE_LIMITS["float32"])[1]
    return (
        _activation_name(record) == "relu"
        and predicted is not None
        and predicted > (1e6 * tiny) ** 2
    )


def _censored(record: Mapping[str, Any]) -> bool:
    """Fewer than 2 finite trials: no estimate and no standard error (skipped)."""
    return int(record.get("n_finite") or 0) < 2


def _censoring(record: Mapping[str, Any]) -> tuple[float, float]:
    """(p_over, p_collapse): the share of trials non-finite at this layer, and of finite trials
    collapsed to exactly 0 (0 for genuine relu zeros)."""
    n_trials = int(record.get("n_trials") or 0)
    n_finite = int(record.get("n_finite") or 0)
    p_over = 1.0 - n_finite / n_trials if n_trials else 0.0
    collapsed = int(record.get("n_collapsed") or 0)
    p_collapse = collapsed / n_finite if n_finite and not _genuine_zeros(record) else 0.0
    return p_over, p_collapse


def _truncation(p: float, s: float) -> float:
    """E[X | X below its (1 - p) quantile] / E[X] for log-normal X with Var[log X] = s^2:
    Phi(Phi^{-1}(1 - p) - s) / (1 - p) (what removing the largest p of the trials leaves)."""
    from scipy import special

    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return float(special.ndtr(special.ndtri(1.0 - p) - s)) / (1.0 - p)


def _censored_bounds(
    record: Mapping[str, Any], statistic: str, bounds: tuple[float, float]
) -> tuple[float, float]:
    """`bounds` of E[statistic] widened by exactly what the record's censoring can do.

    Overflow removes the largest share p of the trials: for X >= 0 (mean_sq, std) the finite
    average lies in [lo rho, hi / (1 - p)], rho = `_truncation(p, s)` with s^2 = log(1 + d) of
    the per-trial dispersion d (std: square roots); a symmetric mean is unbiased. Collapse sets
    a share of the finite trials to 0: the interval extends down to 0.
    """
    p_over, p_collapse = _censoring(record)
    lo, hi = bounds
    dispersion = record.get("theory_dispersion")
    s = math.sqrt(math.log1p(dispersion)) if dispersion is not None else math.inf
    root = statistic == "std"
    if statistic == "mean" and _symmetric_mean(record):
        return lo, hi
    if p_over > 0.0:
        rho = (
            _truncation(p_over, s / 2.0 if statistic == "mean" else s) if math.isfinite(s) else 0.0
        )
        up = 1.0 / (1.0 - p_over) if p_over < 1.0 else math.inf
        if root:
            rho, up = math.sqrt(rho), math.sqrt(up)
        ends = (lo * rho, lo * up, hi * rho, hi * up)
        lo, hi = min(ends), max(ends)
    if p_collapse > 0.0:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return lo, hi


def _symmetric_mean(record: Mapping[str, Any]) -> bool:
    """E[mean] is fixed by symmetry: preactivations, gradients, linear/tanh/sigmoid activations."""
    return str(record["quantity"]) != "activation" or _activation_name(record) in _SYMMETRIC_MEAN


def _distance(x: float, lo: float, hi: float, se: float) -> float:
    return (x - hi) / se if x > hi else (lo - x) / se if x < lo else 0.0


def _sampled(
    record: Mapping[str, Any], statistic: str, bounds: tuple[float, float]
) -> tuple[float, float]:
    """`bounds` with the heavy tail a sample of N trials typically misses: a log-normal X with
    Var[log X] = s^2 = log(1 + d) (d the theory's per-trial dispersion, Hanin & Nica 2019)
    averaged over N trials rarely sees values beyond its 1 - 1/N quantile, so the average is
    typically E[X] `_truncation(1/N, s)` (s/2 for std and means, which grow like sqrt(q))."""
    dispersion = record.get("theory_dispersion")
    n = int(record.get("n_finite") or 0)
    if dispersion is None or n < 2 or (statistic == "mean" and _symmetric_mean(record)):
        return bounds
    s = math.sqrt(math.log1p(dispersion)) / (1.0 if statistic == "mean_sq" else 2.0)
    rho = _truncation(1.0 / n, s)
    lo, hi = bounds
    return min(lo, lo * rho), max(hi, hi * rho)


def _explain(record: Mapping[str, Any], statistic: str, threshold: float) -> tuple[str, float]:
    """(explanation, the |z| left after it) of a statistic whose |z| exceeds the threshold.

    The finite-width interval of the theory (`theory_<statistic>_lo/hi`), then that interval
    widened by the record's censoring (`_censored_bounds`): the first within `threshold` SEs
    explains the deviation; else UNEXPLAINED with the distance from the widest interval.
    """
    x, se = float(record[statistic]), float(record[f"{statistic}_se"])
    point = record.get(f"theory_{statistic}")
    lo, hi = record.get(f"theory_{statistic}_lo"), record.get(f"theory_{statistic}_hi")
    if point is None:
        return UNEXPLAINED, math.inf
    # an interval that does not hold the prediction (an inconsistent injected theory) is none
    p = float(point)
    ok = lo is not None and hi is not None and lo <= p <= hi
    bounds: tuple[float, float] = (float(lo), float(hi)) if ok else (p, p)  # type: ignore[arg-type]
    point = p
    width_z = _distance(x, bounds[0], bounds[1], se)
    if width_z <= threshold and bounds != (point, point):
        ratio = int(record["depth"]) / int(record["width"])
        return FINITE_WIDTH.format(ratio=ratio, k=FINITE_WIDTH_MULTIPLE), width_z
    sampled = _sampled(record, statistic, bounds)
    width_z = _distance(x, sampled[0], sampled[1], se)
    if width_z <= threshold and sampled != bounds:
        spread = math.log1p(float(record["theory_dispersion"]))
        return HEAVY_TAIL.format(n=int(record["n_finite"]), s2=spread), width_z
    bounds = sampled
    p_over, p_collapse = _censoring(record)
    if p_over > 0.0 or p_collapse > 0.0:
        wide = _censored_bounds(record, statistic, (bounds[0], bounds[1]))
        censored_z = _distance(x, wide[0], wide[1], se)
        if censored_z <= threshold:
            share = f"{max(p_over, p_collapse):.3g}"
            return CENSORED.format(share=share), censored_z
        return UNEXPLAINED, censored_z
    return UNEXPLAINED, width_z


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
        if _censored(record):
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
            explanation, left = _explain(record, statistic, threshold)
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


_STATISTICS = ("mean_sq", "mean", "std")


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
                z = _distance(measured, lo, hi, se) * (1.0 if measured > hi else -1.0)
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

"""Monte Carlo against mean-field theory: predictions beside every record, z-scores, a verdict.

`with_theory` adds to each result record (`scheduler.analysis.records`) the predictions of
`scheduler.analysis.theory.predict` for its (layer, quantity):

    theory_mean, theory_mean_sq, theory_std      E[mean], E[mean_sq], sqrt(E[std^2]); None: none
    z_mean_sq = (mean_sq - theory_mean_sq) / mean_sq_se
    z_mean    = (mean - theory_mean) / mean_se   (where a mean is predicted)
    theory_log_mean_sq, theory_log_mean_sq_var   exact E and Var of log mean_sq over trials
                                                 (`theory.exact_log_mean_sq`; None elsewhere)
    z_log_mean_sq, z_log_mean_sq_var             their z-scores (log_mean_sq_se, _var_se)

and the facts `check` needs to judge a deviation: `theory_exact` (E[mean_sq] of this quantity is
exact at any width), `finite_width` (the sentence of `theory.finite_width_note`, or None),
`theory_overflow_layer` and `theory_underflow_layer`; the activation it reads from the
configuration the record carries (`records.Record.config`), never from a label.
There is no z for `std`: theory gives sqrt(E[std^2]) >= E[std] (Jensen), not E[std].

`check` lists the (configuration, layer, quantity, statistic) with |z| > threshold, each with one
explanation:

- "overflow/collapse censoring": some trials were non-finite or collapsed to exactly 0 at that
  layer (or fewer than 2 finite trials): the average over the finite trials is a biased estimate
  of the expectation theory predicts. Never counts against `ok`. (A relu layer that is exactly 0
  because every unit is negative, far above the dtype's underflow scale, is a sample, not
  censoring.)
- "known finite-width effect (depth/width=..., Hanin & Rolnick 2018)": `finite_width_note`
  applies (depth/width > 0.1) and the deviation is of the kind it explains: any statistic of an
  activation whose mean-field map is only the infinite-width limit (tanh, selu, ...), the mean of
  a relu/leaky_relu activation when it lies below the prediction (E[sqrt(q)] < sqrt(E[q]) once q
  fluctuates), and gradients of non-linear networks (gradient independence assumption).
  Never for means fixed by symmetry: preactivations, gradients, and activations of linear,
  tanh and sigmoid (phi(u) - phi(0) odd, z symmetric).
  Never for E[mean_sq] where it is exact at any width: preactivations and activations of
  linear, relu and leaky_relu networks with centred i.i.d. weights, and every quantity of linear
  ones (the expectation over weights is multiplicative, Hanin & Rolnick 2018 sec. 4).
- "within chance for N comparisons (...)": no other explanation applies but |z| is below the
  family-wise bound of `family_bound` (a few |z| > 4 are expected among thousands of t-scores).
- "unexplained": everything else. `CheckReport.ok` is False when there is one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scheduler.analysis.records import Record, config_of
from scheduler.analysis.theory import (
    DTYPE_LIMITS,
    ConfigTheory,
    LayerTheory,
    exact_log_mean_sq,
    finite_width_note,
    predict,
)
from scheduler.formatting import config_label, pm
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
    "family_bound",
    "theories",
    "with_theory",
]

Predictor = Callable[[SimConfig], ConfigTheory]

CENSORED = "overflow/collapse censoring"
UNEXPLAINED = "unexplained"
CHANCE = "within chance for {n} comparisons (|z| < {bound:.2g}, family-wise α = {alpha:g})"
FAMILY_ALPHA = 0.01
FINITE_WIDTH = "known finite-width effect (depth/width={ratio:.3g}, Hanin & Rolnick 2018)"

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
    "theory_exact",
    "finite_width",
    "theory_overflow_layer",
    "theory_underflow_layer",
    "theory_log_mean_sq",
    "theory_log_mean_sq_var",
    "z_log_mean_sq",
    "z_log_mean_sq_var",
)
# Each theory column's kind (`scheduler.analysis.records.KINDS`), for typed exports.
THEORY_KINDS: dict[str, str] = {
    "theory_mean": "float",
    "theory_mean_sq": "float",
    "theory_std": "float",
    "z_mean": "float",
    "z_mean_sq": "float",
    "theory_exact": "bool",
    "finite_width": "str",
    "theory_overflow_layer": "float",
    "theory_underflow_layer": "float",
    "theory_log_mean_sq": "float",
    "theory_log_mean_sq_var": "float",
    "z_log_mean_sq": "float",
    "z_log_mean_sq_var": "float",
}


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


def _mean_sq_exact(config: SimConfig, theory: ConfigTheory, quantity: str) -> bool:
    """E[mean_sq] of `quantity` is exact at any width (see the module docstring)."""
    name = config.activation.name
    if not theory.exact or name not in _HOMOGENEOUS:
        return False
    return name == "linear" or quantity in ("preactivation", "activation")


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
            cache[key] = (theory, by_key, finite_width_note(config), exact)
        theory, by_key, note, exact = cache[key]
        row["finite_width"] = note
        row["theory_overflow_layer"] = theory.overflow_layer
        row["theory_underflow_layer"] = theory.underflow_layer
        quantity = str(record["quantity"])
        row["theory_exact"] = _mean_sq_exact(config, theory, quantity)
        pred = by_key.get((int(record["layer"]), quantity))
        if pred is not None:
            row["theory_mean"] = pred.mean
            row["theory_mean_sq"] = pred.mean_sq
            row["theory_std"] = pred.std
            row["z_mean"] = _z(record.get("mean"), pred.mean, record.get("mean_se"))
            row["z_mean_sq"] = _z(record.get("mean_sq"), pred.mean_sq, record.get("mean_sq_se"))
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


@dataclass(frozen=True)
class Deviation:
    """One statistic of one (configuration, layer, quantity) further than threshold SEs away."""

    config_hash: str
    config: str
    layer: int
    quantity: str
    statistic: str  # mean_sq or mean
    observed: float
    se: float
    predicted: float
    z: float
    explanation: str
    label: str | None = None  # the sweep's `label` axis, when it names the configuration

    @property
    def explained(self) -> bool:
        return self.explanation != UNEXPLAINED


@dataclass(frozen=True)
class CheckReport:
    """Deviations beyond `threshold` standard errors, and what the verdict rests on.

    `ok`: no deviation is unexplained. `passed` (the verdict, and `initsweep check`'s exit code)
    also needs something compared and every configuration complete (unless `allow_partial`).
    """

    threshold: float
    n_compared: int  # (record, statistic) pairs with a prediction and a z-score
    n_censored: int  # records whose estimate is censored (skipped whatever their z)
    deviations: tuple[Deviation, ...] = field(default_factory=tuple)
    n_configs: int = 0
    no_prediction: tuple[str, ...] = ()  # configurations theory has no prediction for
    incomplete: tuple[str, ...] = ()  # configurations whose chunks are not all in
    strict: bool = False  # no excuses: only the family-wise chance bound may explain
    allow_partial: bool = False

    @property
    def unexplained(self) -> tuple[Deviation, ...]:
        return tuple(d for d in self.deviations if not d.explained)

    @property
    def ok(self) -> bool:
        return not self.unexplained

    @property
    def passed(self) -> bool:
        return self.ok and self.n_compared > 0 and (self.allow_partial or not self.incomplete)

    @property
    def excused(self) -> dict[str, int]:
        """Explained deviations counted by kind of reason: censoring, finite-width, chance."""
        counts: dict[str, int] = {}
        for d in self.deviations:
            if d.explained:
                counts[_reason(d.explanation)] = counts.get(_reason(d.explanation), 0) + 1
        return counts

    def verdict(self) -> str:
        """ok, FAILED, NOTHING COMPARED or INCOMPLETE."""
        if not self.ok:
            return "FAILED"
        if self.n_compared == 0:
            return "NOTHING COMPARED"
        if self.incomplete and not self.allow_partial:
            return "INCOMPLETE"
        return "ok"

    def summary(self) -> str:
        """One line: the verdict and its counts."""
        line = (
            f"theory check {self.verdict()}: {self.n_compared} statistics compared, "
            f"{len(self.deviations)} beyond |z| > {self.threshold:g} "
            f"({len(self.unexplained)} unexplained), {self.n_censored} censored records skipped"
        )
        if self.excused:
            line += "; excused: " + ", ".join(f"{n} {k}" for k, n in self.excused.items())
        if self.no_prediction:
            line += (
                f"; {len(self.no_prediction)} of {self.n_configs} configurations have no prediction"
            )
        if self.incomplete:
            line += f"; {len(self.incomplete)} of {self.n_configs} configurations incomplete"
            line += " (--allow-partial)" if self.allow_partial else ""
        if self.strict:
            line += "; strict (no excuses)"
        return line

    def notes(self) -> list[str]:
        """The configurations without a prediction and the incomplete ones, one line each."""
        return [f"no prediction: {c}" for c in self.no_prediction] + [
            f"incomplete: {c}" for c in self.incomplete
        ]

    def rows(self) -> list[dict[str, str]]:
        """The deviations as display strings (for tables)."""
        return [
            {
                "config": d.config,
                "layer": str(d.layer),
                "quantity": d.quantity,
                "statistic": d.statistic,
                "observed": pm(d.observed, d.se),
                "predicted": f"{d.predicted:.4g}",
                "z": f"{d.z:+.1f}",
                "explanation": d.explanation,
            }
            for d in self.deviations
        ]

    def text(self) -> str:
        """The deviations as aligned text lines, then the summary line."""
        rows = self.rows()
        if not rows:
            return self.summary()
        keys = list(rows[0])
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
        widths["config"] = min(widths["config"], 60)

        def line(values: Mapping[str, str]) -> str:
            cells = []
            for k in keys:
                text = values[k]
                if len(text) > widths[k]:
                    text = text[: widths[k] - 1] + "…"
                cells.append(text.ljust(widths[k]) if k != "explanation" else text)
            return "  ".join(cells).rstrip()

        lines = [line({k: k for k in keys})]
        lines += [line(r) for r in rows]
        lines.append(self.summary())
        return "\n".join(lines)


def _reason(explanation: str) -> str:
    """The kind of an explanation: censoring, finite-width, chance (or the text itself)."""
    if explanation == CENSORED:
        return "censoring"
    if explanation.startswith("known finite-width"):
        return "finite-width"
    if explanation.startswith("within chance"):
        return "chance"
    return explanation


def _activation_name(record: Mapping[str, Any]) -> str | None:
    """The activation's scheme name, from the configuration the record carries."""
    config = config_of(record)
    return None if config is None else config.activation.name


def _censored(record: Mapping[str, Any]) -> bool:
    """The average over finite trials is not an estimate of the expectation theory predicts."""
    n_trials = int(record.get("n_trials") or 0)
    n_finite = int(record.get("n_finite") or 0)
    if n_finite < 2 or n_finite < n_trials:
        return True
    if not int(record.get("n_collapsed") or 0):
        return False
    # Trials collapsed to exactly 0. relu zeroes a whole layer for real when every unit is
    # negative (a common mode of non-centred weights, or a narrow layer): those zeros are
    # samples, not censoring, when the signal is far above the dtype's underflow scale.
    activation = _activation_name(record)
    predicted = record.get("theory_mean_sq")
    tiny = DTYPE_LIMITS.get(str(record.get("dtype", "float32")), DTYPE_LIMITS["float32"])[1]
    genuine = activation == "relu" and predicted is not None and predicted > (1e6 * tiny) ** 2
    return not genuine


def _explain(record: Mapping[str, Any], statistic: str, z: float) -> str:
    if _censored(record):
        return CENSORED
    note = record.get("finite_width")
    if note is None:
        return UNEXPLAINED
    ratio = int(record["depth"]) / int(record["width"])
    explained = FINITE_WIDTH.format(ratio=ratio)
    activation = _activation_name(record)
    quantity = str(record["quantity"])
    if statistic == "mean_sq":
        return UNEXPLAINED if record.get("theory_exact") else explained
    # statistic == "mean": predicted E[mean] is 0 by symmetry for preactivations and gradients
    # (centred weights, r ~ N(0, I)) at any width; activation means are mean-field values.
    # So are activation means of odd activations (and sigmoid = 1/2 + odd): z is symmetric.
    if quantity != "activation" or activation in _SYMMETRIC_MEAN:
        return UNEXPLAINED
    if activation in ("relu", "leaky_relu"):
        return explained if z < 0.0 else UNEXPLAINED
    return explained


def family_bound(n_compared: int, n_trials: int, alpha: float = FAMILY_ALPHA) -> float:
    """|z| that one of `n_compared` true-null z-scores exceeds with probability `alpha`.

    Šidák-style bound on Student's t with n_trials - 1 degrees of freedom (z uses the sample
    SE): the two-sided quantile 1 - alpha / (2 n_compared).
    """
    from scipy import stats

    df = max(1, n_trials - 1)
    return float(stats.t.isf(alpha / (2.0 * max(1, n_compared)), df))


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

    With thousands of statistics a few |z| > 4 are expected by chance alone (the z-scores use
    the sample SE of n trials, so they are Student-t): a deviation no other explanation covers
    is "within chance" when |z| is below `family_bound(n_compared, n_finite, family_alpha)`.
    `strict` turns every excuse off but the chance bound; `incomplete` names configurations
    whose chunks are not all in (besides records marked `complete=False`).
    """
    rows = list(records)
    candidates: list[tuple[Mapping[str, Any], str, float]] = []
    n_compared = n_censored = 0
    for record in rows:
        censored = _censored(record)
        n_censored += censored
        for statistic in ("mean_sq", "mean"):
            z = record.get(f"z_{statistic}")
            if z is None:
                continue
            n_compared += not censored
            if abs(z) > threshold:
                candidates.append((record, statistic, float(z)))
    deviations: list[Deviation] = []
    for record, statistic, z in candidates:
        explanation = UNEXPLAINED if strict else _explain(record, statistic, z)
        if explanation == UNEXPLAINED:
            bound = family_bound(n_compared, int(record["n_finite"]), family_alpha)
            if abs(z) < bound:
                explanation = CHANCE.format(n=n_compared, bound=bound, alpha=family_alpha)
        deviations.append(
            Deviation(
                config_hash=str(record["config_hash"]),
                config=config_label(record),
                layer=int(record["layer"]),
                quantity=str(record["quantity"]),
                statistic=statistic,
                observed=float(record[statistic]),
                se=float(record[f"{statistic}_se"]),
                predicted=float(record[f"theory_{statistic}"]),
                z=z,
                explanation=explanation,
                label=str(record["label"]) if record.get("label") else None,
            )
        )
    labels: dict[str, str] = {}
    predicted: set[str] = set()
    unfinished: set[str] = set()
    for record in rows:
        key = str(record["config_hash"])
        labels.setdefault(key, config_label(record))
        if record.get("theory_mean_sq") is not None or record.get("theory_mean") is not None:
            predicted.add(key)
        if record.get("complete") is False:
            unfinished.add(key)
    return CheckReport(
        threshold=threshold,
        n_compared=n_compared,
        n_censored=n_censored,
        deviations=tuple(deviations),
        n_configs=len(labels),
        no_prediction=tuple(v for k, v in labels.items() if k not in predicted),
        incomplete=tuple(
            dict.fromkeys([*(v for k, v in labels.items() if k in unfinished), *incomplete])
        ),
        strict=strict,
        allow_partial=allow_partial,
    )

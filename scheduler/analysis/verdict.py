"""The verdict of `initsweep check`: deviations, their explanations, counts and text.

`scheduler.analysis.compare.check` builds a `CheckReport`; this module words it. The
explanations are the constants below (`CENSORED`, `FINITE_WIDTH`, `CHANCE`, `UNEXPLAINED`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scheduler.formatting import pm

__all__ = [
    "CENSORED",
    "CHANCE",
    "FAMILY_ALPHA",
    "FINITE_WIDTH",
    "HEAVY_TAIL",
    "UNEXPLAINED",
    "CheckReport",
    "Deviation",
    "family_bound",
]

CENSORED = "overflow/collapse censoring ({share} of trials; within its bound)"
UNEXPLAINED = "unexplained"
CHANCE = "within chance for {n} comparisons (|z| < {bound:.2g}, family-wise α = {alpha:g})"
FAMILY_ALPHA = 0.01
HEAVY_TAIL = (
    "heavy-tailed trials (an average of {n} misses the log-normal tail, "
    "Var[log mean_sq] = {s2:.3g}, Hanin & Nica 2019)"
)
FINITE_WIDTH = (
    "known finite-width effect (within {k:g}x its O(depth/width) correction, "
    "depth/width={ratio:.3g}, Hanin & Nica 2019)"
)


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
    if explanation.startswith("overflow/collapse censoring"):
        return "censoring"
    if explanation.startswith("known finite-width"):
        return "finite-width"
    if explanation.startswith("heavy-tailed"):
        return "heavy-tail"
    if explanation.startswith("within chance"):
        return "chance"
    return explanation


def family_bound(n_compared: int, n_trials: int, alpha: float = FAMILY_ALPHA) -> float:
    """|z| that one of `n_compared` true-null z-scores exceeds with probability `alpha`.

    Šidák-style bound on Student's t with n_trials - 1 degrees of freedom (z uses the sample
    SE): the two-sided quantile 1 - alpha / (2 n_compared).
    """
    from scipy import stats

    df = max(1, n_trials - 1)
    return float(stats.t.isf(alpha / (2.0 * max(1, n_compared)), df))

"""Precision targets: when a configuration has enough trials, decided on a prefix of its chunks.

A target names one statistic of one (layer, quantity) of the results (`std` of the `activation`
at the last layer, say) and the standard error wanted for it: absolute (`se`) or relative to
the magnitude of its value (`rel_se`), with at least `min_trials` trials. The statistic's SE is
the one results print, `Moments.sem` = sqrt(m2 / (n - 1) / n) over the finite trials
(`scheduler.analysis.records`); relative, sem / |mean|.

Stopping rule (`stop_index`): with chunks in index (= trial) order and M_k the merge, in that
order, of the records of chunks 0..k (exactly `worker.contract.merge_records`),

    k* = min { k : trials(0..k) >= min_trials and SE(M_k) <= goal }

and None when no prefix meets it. k* depends only on the records of chunks 0..k*, never on
which chunks finished first or how many workers ran, so the aggregate (the merge of chunks
0..k*) is bit-identical under any schedule.

How far ahead to compute (`frontier`) only decides how much work may be wasted past k*, never a
result: from a prefix of n trials with SE s, an SE ~ 1/sqrt(n) law predicts
n (s / goal)^2 trials; the frontier covers that (and min_trials), plus one chunk past the
first missing one, so the work never stalls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.contract import OBSERVABLES, QUANTITIES, LayerRecord

TARGET_KEYS: tuple[str, ...] = ("statistic", "quantity", "layer", "se", "rel_se", "min_trials")
DEFAULT_MIN_TRIALS = 100


@dataclass(frozen=True)
class Target:
    """SE goal of `statistic` of (`layer`, `quantity`); `layer` None is the last layer.

    Exactly one of `se` (absolute) and `rel_se` (relative to |value|) is set."""

    statistic: str
    quantity: str
    layer: int | None
    se: float | None
    rel_se: float | None
    min_trials: int

    def __post_init__(self) -> None:
        if self.statistic not in OBSERVABLES or self.quantity not in QUANTITIES:
            raise ValueError(
                f"expected a statistic in {OBSERVABLES} and a quantity in {QUANTITIES}. "
                f"Received: {self.statistic!r}, {self.quantity!r}"
            )
        if (self.se is None) == (self.rel_se is None):
            raise ValueError(f"expected one of se, rel_se. Received: {self.se}, {self.rel_se}")
        if self.min_trials < 1 or (self.layer is not None and self.layer < 1):
            raise ValueError(
                f"expected min_trials >= 1 and layer >= 1. Received: {self.min_trials}, "
                f"{self.layer}"
            )

    def layer_of(self, depth: int) -> int:
        """The 1-based layer the target is at, in a network of `depth` layers."""
        return depth if self.layer is None else self.layer

    def to_json(self) -> dict[str, Any]:
        """Spec JSON (`layer: last` for the last layer; only the SE kind that is set)."""
        out: dict[str, Any] = {
            "statistic": self.statistic,
            "quantity": self.quantity,
            "layer": "last" if self.layer is None else self.layer,
        }
        if self.se is not None:
            out["se"] = self.se
        else:
            out["rel_se"] = self.rel_se
        out["min_trials"] = self.min_trials
        return out

    def canonical_json(self) -> str:
        """One text per target (sorted keys, no spaces): part of a configuration's run key."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        """Inverse of `to_json` (trusted input: the database's or a validated spec's)."""
        layer = data["layer"]
        return cls(
            statistic=str(data["statistic"]),
            quantity=str(data["quantity"]),
            layer=None if layer == "last" else int(layer),
            se=None if data.get("se") is None else float(data["se"]),
            rel_se=None if data.get("rel_se") is None else float(data["rel_se"]),
            min_trials=int(data["min_trials"]),
        )

    def describe(self, depth: int | None = None) -> str:
        """`activation std at layer 10` (`at the last layer` without a depth)."""
        if depth is not None:
            where = f"layer {self.layer_of(depth)}"
        else:
            where = "the last layer" if self.layer is None else f"layer {self.layer}"
        return f"{self.quantity} {self.statistic} at {where}"

    @property
    def kind(self) -> str:
        """`se` or `rel_se`: which SE the goal is in."""
        return "se" if self.se is not None else "rel_se"

    @property
    def goal(self) -> float:
        """The SE wanted, in the units of `kind`."""
        return float(self.se if self.se is not None else self.rel_se)  # type: ignore[arg-type]

    def reached(self, record: LayerRecord | None) -> float | None:
        """The SE of the record's statistic in the goal's units (relative: sem / |value|);
        None where there is none (under 2 finite trials, a value beyond float64, or 0 in a
        relative goal)."""
        if record is None:
            return None
        moments = getattr(record, self.statistic)
        sem = moments.sem
        if not math.isfinite(sem) or (sem == 0.0 and moments.m2 != 0.0):
            return None  # beyond float64 either way: no SE to compare
        if self.se is not None:
            return sem
        value = moments.value
        if not moments.representable or value == 0.0:
            return None
        rel = sem / abs(value)
        return rel if math.isfinite(rel) else None

    def met(self, record: LayerRecord | None) -> bool:
        """The record's SE is at or below the goal."""
        se = self.reached(record)
        return se is not None and se <= self.goal


def stop_index(target: Target, prefix: Sequence[tuple[int, LayerRecord | None]]) -> int | None:
    """k* of the module doc over `prefix`: (n_trials, the target's record or None) of chunks
    0..m in index order, all done; None when no prefix of them meets the target."""
    merged: LayerRecord | None = None
    trials = 0
    for k, (n_trials, record) in enumerate(prefix):
        trials += n_trials
        if record is not None:
            merged = record if merged is None else merged.merge(record)
        if trials >= target.min_trials and target.met(merged):
            return k
    return None


def frontier(
    target: Target,
    sizes: Sequence[int],
    prefix: Sequence[tuple[int, LayerRecord | None]],
) -> int:
    """The last chunk index worth computing now (module doc), for chunks of `sizes` trials in
    index order of which `prefix` (as for `stop_index`) are the first ones, all done."""
    if not sizes:
        return 0
    merged: LayerRecord | None = None
    done = 0
    for n_trials, record in prefix:
        done += n_trials
        if record is not None:
            merged = record if merged is None else merged.merge(record)
    wanted = float(target.min_trials)
    se = target.reached(merged)
    if se is not None and done:
        wanted = max(wanted, done * (se / target.goal) ** 2)
    covered, index = 0, len(sizes) - 1
    for k, n_trials in enumerate(sizes):
        covered += n_trials
        if covered >= wanted:
            index = k
            break
    return min(len(sizes) - 1, max(index, len(prefix) + 1))

"""The spec's `target` section: a precision target (`worker.target.Target`), validated.

    target:
      statistic: std        # mean | std | mean_sq
      quantity: activation  # preactivation | activation | gradient
      layer: last           # or a 1-based layer of every configuration
      se: 0.002             # absolute SE of the statistic's mean over trials; or rel_se
      min_trials: 200       # at least this many (default min(trials, 100)); trials is the most

Every bad value is one located line (`target.se: expected a positive number. Received: -1`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.errors import SpecError
from scheduler.spec.model import MAX_DEPTH
from scheduler.spec.values import (
    choice,
    did_you_mean,
    key_text,
    number,
    positive_int,
    received,
    show_key,
)
from worker.contract import OBSERVABLES, QUANTITIES, SimConfig
from worker.target import DEFAULT_MIN_TRIALS, TARGET_KEYS, Target


def parse_target(data: Any, trials: int) -> Target:
    """The Target of a spec's `target` value, for a spec of `trials` trials at most."""
    if not isinstance(data, Mapping):
        raise SpecError(
            "target: expected a mapping, e.g. target: {statistic: std, quantity: activation, "
            f"layer: last, se: 0.002, min_trials: 200}}. Received: {received(data)}"
        )
    for key in data:
        if key not in TARGET_KEYS:
            raise SpecError(
                f"target.{key_text(key)}: unknown key {show_key(key)}; expected one of "
                f"{', '.join(TARGET_KEYS)}{did_you_mean(key, TARGET_KEYS)}"
            )
    present = {k: v for k, v in data.items() if v is not None}
    for key in ("statistic", "quantity"):
        if key not in present:
            options = OBSERVABLES if key == "statistic" else QUANTITIES
            raise SpecError(f"target.{key}: missing; expected one of {', '.join(options)}")
    statistic = choice(present["statistic"], OBSERVABLES, "statistic", "target.statistic")
    quantity = choice(present["quantity"], QUANTITIES, "quantity", "target.quantity")
    layer = _layer(present.get("layer", "last"))
    if ("se" in present) == ("rel_se" in present):
        given = "both" if "se" in present else "neither"
        raise SpecError(
            "target: expected one of se (absolute) and rel_se (relative to the value). "
            f"Received: {given}"
        )
    kind = "se" if "se" in present else "rel_se"
    goal = number(present[kind], f"target.{kind}", positive=True)
    min_trials = positive_int(
        present.get("min_trials", min(trials, DEFAULT_MIN_TRIALS)), "target.min_trials"
    )
    if min_trials > trials:
        raise SpecError(
            f"target.min_trials: expected at most trials ({trials:,}, the most a configuration "
            f"runs). Received: {min_trials:,}"
        )
    return Target(
        statistic=statistic,
        quantity=quantity,
        layer=layer,
        se=goal if kind == "se" else None,
        rel_se=goal if kind == "rel_se" else None,
        min_trials=min_trials,
    )


def _layer(value: Any) -> int | None:
    if value == "last":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DEPTH:
        raise SpecError(
            f"target.layer: expected 'last' or a layer in 1..depth. Received: {received(value)}"
        )
    return value


def check_target_layer(target: Target, configs: Sequence[tuple[SimConfig, str]]) -> None:
    """A numbered layer exists in every configuration ((config, origin) pairs)."""
    if target.layer is None:
        return
    for config, origin in configs:
        if config.depth < target.layer:
            raise SpecError(
                f"target.layer: expected a layer of every configuration; {origin} has depth "
                f"{config.depth}. Received: {target.layer}"
            )

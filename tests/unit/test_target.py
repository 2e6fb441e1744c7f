"""worker.target and the spec's `target`: the stopping rule k*, the frontier, and every bad value
as one located line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scheduler.errors import SpecError
from scheduler.spec import parse_spec, spec_from_json
from worker.contract import LayerRecord
from worker.stats import Moments
from worker.target import Target, frontier, stop_index

pytestmark = pytest.mark.unit

GRID = "grid: {init: [he_normal], activation: [relu], depth: [2, 3], width: [4]}\n"


def _record(values: list[float]) -> LayerRecord:
    m = Moments.of(values)
    return LayerRecord(3, "activation", len(values), len(values), 0, 0, m, m, m)


def _chunks(seed: int, sizes: list[int], scale: float = 1.0) -> list[tuple[int, LayerRecord]]:
    rng = np.random.default_rng(seed)
    return [(n, _record(list(1.0 + scale * rng.standard_normal(n)))) for n in sizes]


def _sem(records: list[LayerRecord]) -> float:
    values = Moments()
    for r in records:
        values = values.merge(r.std)
    return math.sqrt(values.m2 / (values.n - 1) / values.n)


def test_stop_index_is_the_first_prefix_meeting_the_target() -> None:
    chunks = _chunks(0, [10] * 30)
    sems = [_sem([r for _, r in chunks[: k + 1]]) for k in range(30)]
    goal = sems[12]
    for min_trials in (1, 50, 200):
        target = Target("std", "activation", None, goal, None, min_trials)
        expected = next(k for k in range(30) if 10 * (k + 1) >= min_trials and sems[k] <= goal)
        assert stop_index(target, chunks) == expected
    assert stop_index(Target("std", "activation", None, 1e-9, None, 1), chunks) is None
    assert stop_index(Target("std", "activation", None, goal, None, 1), chunks[:3]) in (
        None,
        0,
        1,
        2,
    )


def test_relative_target_and_undefined_se() -> None:
    target = Target("mean", "activation", 3, None, 0.05, 1)
    assert target.reached(_record([2.0])) is None  # one trial: no SE
    assert target.reached(_record([-1.0, 1.0])) is None  # a mean of 0: no relative SE
    record = _record([1.0, 2.0, 3.0, 4.0])
    assert target.reached(record) == pytest.approx(record.mean.sem / 2.5)
    assert not target.met(record) and target.met(_record(list(np.linspace(9.9, 10.1, 50))))


def test_frontier_follows_the_inverse_square_law_and_never_stalls() -> None:
    target = Target("std", "activation", None, 0.01, None, 40)
    sizes = [10] * 100
    assert frontier(target, sizes, []) == 3  # min_trials: chunks 0..3
    prefix = _chunks(1, [10] * 4)
    se = _sem([r for _, r in prefix])
    wanted = 40 * (se / 0.01) ** 2
    assert frontier(target, sizes, prefix) == min(99, max(4 + 1, math.ceil(wanted / 10) - 1))
    easy = Target("std", "activation", None, 1e9, None, 40)
    assert frontier(easy, sizes, prefix) == 5  # the next missing chunk and one more
    assert frontier(target, [10, 10], prefix[:2]) == 1


def test_target_json_round_trip_and_key_text() -> None:
    target = Target("mean_sq", "gradient", 2, None, 0.01, 300)
    assert Target.from_json(target.to_json()) == target
    assert target.canonical_json() == (
        '{"layer":2,"min_trials":300,"quantity":"gradient","rel_se":0.01,"statistic":"mean_sq"}'
    )
    assert Target("std", "activation", None, 0.1, None, 1).to_json()["layer"] == "last"


def test_spec_target_parses_and_round_trips() -> None:
    spec = parse_spec(
        "trials: 5000\ntarget: {statistic: std, quantity: activation, layer: last, se: 0.002, "
        "min_trials: 200}\n" + GRID
    )
    assert spec.target == Target("std", "activation", None, 0.002, None, 200)
    assert spec_from_json(spec.to_json()).target == spec.target
    default = parse_spec(
        "trials: 50\ntarget: {statistic: mean, quantity: gradient, rel_se: 1}\n" + GRID
    )
    assert default.target is not None and default.target.min_trials == 50  # min(trials, 100)


T = "trials: 400\ntarget: "


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("[std]", "target: expected a mapping, e.g. target: {statistic: std"),
        ("{statistic: std, quantity: activation, se: 1, sd: 2}", "target.sd: unknown key 'sd'"),
        ("{quantity: activation, se: 1}", "target.statistic: missing; expected one of mean, std"),
        ("{statistic: std, se: 1}", "target.quantity: missing; expected one of preactivation"),
        ("{statistic: var, quantity: activation, se: 1}", "target.statistic: unknown statistic 'var'"),
        ("{statistic: std, quantity: output, se: 1}", "target.quantity: unknown quantity 'output'"),
        ("{statistic: std, quantity: activation}", "target: expected one of se (absolute) and rel_se"),
        ("{statistic: std, quantity: activation, se: 1, rel_se: 1}", "Received: both"),
        ("{statistic: std, quantity: activation, se: -1}", "target.se: expected a positive number. Received: -1"),
        ("{statistic: std, quantity: activation, se: 0}", "target.se: expected a positive number. Received: 0"),
        ("{statistic: std, quantity: activation, rel_se: .inf}", "target.rel_se: expected a positive number"),
        ("{statistic: std, quantity: activation, se: '1'}", "target.se: expected a positive number. Received: '1'"),
        ("{statistic: std, quantity: activation, se: 1, layer: 0}", "target.layer: expected 'last' or a layer"),
        ("{statistic: std, quantity: activation, se: 1, layer: first}", "target.layer: expected 'last' or a layer"),
        ("{statistic: std, quantity: activation, se: 1, layer: 3}", "target.layer: expected a layer of every configuration; grid (init=he_normal, activation=relu, depth=2, width=4) has depth 2. Received: 3"),
        ("{statistic: std, quantity: activation, se: 1, min_trials: 0}", "target.min_trials: expected a positive integer. Received: 0"),
        ("{statistic: std, quantity: activation, se: 1, min_trials: 401}", "target.min_trials: expected at most trials (400"),
    ],
)  # fmt: skip
def test_bad_target_is_one_located_line(target: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(T + target + "\n" + GRID)
    text = str(info.value)
    assert message in text and "\n" not in text

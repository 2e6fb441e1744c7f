"""`check`'s verdict rests on something: nothing compared, incomplete sweeps and --strict."""

from __future__ import annotations

import pytest

from scheduler.analysis.compare import check, with_theory
from scheduler.analysis.records import Record
from scheduler.analysis.theory import predict
from tests.unit.test_compare import make_config, monte_carlo, record

pytestmark = pytest.mark.unit

RELU = make_config("relu", depth=4, width=32)


def _good() -> list[Record]:
    return with_theory(monte_carlo(RELU, trials=400), {RELU.config_hash: RELU})


def test_a_good_complete_sweep_passes() -> None:
    report = check(_good())
    assert report.ok and report.passed and report.verdict() == "ok"
    assert report.n_configs == 1 and report.no_prediction == () and report.incomplete == ()


def test_nothing_compared_does_not_pass() -> None:
    report = check([])
    assert report.ok and not report.passed
    assert report.summary().startswith("theory check NOTHING COMPARED: 0 statistics compared")


def test_configurations_without_a_prediction_are_counted() -> None:
    other = make_config("tanh", depth=2, width=8)
    rows = _good() + with_theory([record(other, 1, "activation")], {})  # no theory for it
    report = check(rows)
    assert report.passed and len(report.no_prediction) == 1
    assert "1 of 2 configurations have no prediction" in report.summary()
    assert report.notes() == [f"no prediction: {report.no_prediction[0]}"]


def test_an_incomplete_sweep_fails_unless_partial_is_allowed() -> None:
    rows = [{**r, "complete": False} for r in _good()]
    report = check(rows)
    assert report.ok and not report.passed and report.verdict() == "INCOMPLETE"
    assert "1 of 1 configurations incomplete" in report.summary()
    assert check(rows, allow_partial=True).passed
    # configurations with no chunk done have no rows at all: named by the caller
    assert not check(_good(), incomplete=["tanh · d=2 · w=8"]).passed


def test_excuses_are_counted_by_reason_and_strict_turns_them_off() -> None:
    tanh = make_config("tanh", depth=40, width=32)  # depth/width = 1.25: finite width applies
    t = predict(tanh).get(20, "activation")
    assert t.mean_sq is not None and t.mean_sq_bounds is not None
    mean_sq = t.mean_sq
    far = max(t.mean_sq_bounds, key=lambda end: abs(end - mean_sq))  # within the bound
    se = abs(far - mean_sq) / 100.0
    rows = with_theory(
        [record(tanh, 20, "activation", mean=t.mean, mean_sq=far, mean_sq_se=se, std=t.std)],
        {tanh.config_hash: tanh},
    )
    lenient = check(rows)
    assert lenient.passed and lenient.excused == {"finite-width": 1}
    assert "excused: 1 finite-width" in lenient.summary()
    strict = check(rows, strict=True)
    assert not strict.passed and len(strict.unexplained) == 1
    assert strict.summary().endswith("strict (no excuses)")

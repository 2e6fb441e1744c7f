"""`check` on real sweeps: the true theory passes, a theory with 1.5x the weight variance or an
overflow law shifted past its tolerance fails, naming the records (the predictor is injected)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from models.db import session_scope
from scheduler.analysis.compare import UNEXPLAINED, check, with_theory
from scheduler.analysis.records import Record
from scheduler.analysis.theory import ConfigTheory, predict
from scheduler.database import open_database
from scheduler.query import result_records
from tests.conftest import run_cli
from worker.contract import INIT_SCHEMES, Scheme, SimConfig, canonical_scheme
from worker.schemes import variance_scaling_args

pytestmark = pytest.mark.integration

SPEC = """\
name: fool-check
seed: 3
trials: 1000
chunk_trials: 500
configs:
  - {label: tanh-glorot, init: glorot_uniform, activation: tanh, depth: 8, width: 32}
  - {label: relu-he, init: he_normal, activation: relu, depth: 64, width: 32}
  - {label: overflow, init: {name: normal, std: 1.0}, activation: linear, depth: 60, width: 100,
     sampler: dense}
"""


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fool")
    spec = root / "spec.yaml"
    spec.write_text(SPEC)
    db = root / "sweep.db"
    proc = run_cli("run", str(spec), "--db", str(db), "-w", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    return db


def _records(db: Path) -> list[Record]:
    with open_database(str(db), read_only=True) as factory, session_scope(factory) as session:
        return result_records(session=session, sweep_id=1)


def scaled_variance(config: SimConfig) -> ConfigTheory:
    """The theory of `config` with 1.5x its weight variance (variance_scaling scale x 1.5),
    presented as the theory of `config`."""
    if config.init.name == "normal":
        std = config.init.num("std") * 1.5**0.5
        init = canonical_scheme(INIT_SCHEMES, "normal", {"std": std})
    else:
        scale, mode, distribution = variance_scaling_args(config.init)
        init = canonical_scheme(
            INIT_SCHEMES,
            "variance_scaling",
            {"scale": 1.5 * scale, "mode": mode, "distribution": distribution},
        )
    return dataclasses.replace(predict(dataclasses.replace(config, init=init)), config=config)


def shifted_overflow(layers: int):  # type: ignore[no-untyped-def]
    """The true theory with its overflow law moved `layers` layers deeper."""

    def predictor(config: SimConfig) -> ConfigTheory:
        true = predict(config)
        if true.overflow_cdf is None:
            return true
        law = (0.0,) * layers + true.overflow_cdf[: len(true.overflow_cdf) - layers]
        return dataclasses.replace(true, overflow_cdf=law)

    return predictor


def test_the_true_theory_passes(sweep_db: Path) -> None:
    proc = run_cli("check", "1", "--db", str(sweep_db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "theory check ok" in proc.stdout
    report = check(with_theory(_records(sweep_db)))
    assert report.passed and report.n_compared > 1000


def test_a_theory_with_one_and_a_half_times_the_variance_fails(sweep_db: Path) -> None:
    report = check(with_theory(_records(sweep_db), predictor=scaled_variance))
    assert not report.passed and report.verdict() == "FAILED"
    flagged = {d.label for d in report.unexplained}
    assert {"tanh-glorot", "relu-he"} <= flagged, report.text()
    tanh = [d for d in report.unexplained if d.label == "tanh-glorot"]
    assert {d.statistic for d in tanh} & {"mean_sq", "std"}
    assert all(d.explanation == UNEXPLAINED for d in report.unexplained)
    assert "tanh-glorot" in report.text() or "glorot_uniform" in report.text()


def test_an_overflow_law_off_by_more_than_its_tolerance_fails(sweep_db: Path) -> None:
    records = _records(sweep_db)
    measured = [r for r in records if r["label"] == "overflow" and r["quantity"] == "preactivation"]
    assert sum(int(r["n_first_nonfinite"]) for r in measured) == 1000  # every trial overflows
    within = check(with_theory(records, predictor=shifted_overflow(1)))
    assert within.passed, within.text()
    report = check(with_theory(records, predictor=shifted_overflow(4)))
    assert not report.passed
    (deviation,) = [d for d in report.unexplained if d.statistic == "overflow layer"]
    assert deviation.label == "overflow" and 30 <= deviation.layer <= 50


def test_the_overflow_layer_is_within_two_layers_of_theory(sweep_db: Path) -> None:
    records = [r for r in _records(sweep_db) if r["label"] == "overflow"]
    config = records[0].config
    assert config is not None
    predicted = predict(config).overflow_layer
    first = [
        int(r["layer"])
        for r in sorted(records, key=lambda r: int(r["layer"]))
        if r["quantity"] == "preactivation"
        for _ in range(int(r["n_first_nonfinite"]))
    ]
    assert predicted is not None and abs(sum(first) / len(first) - predicted) < 2.0
    assert Scheme("linear") == config.activation

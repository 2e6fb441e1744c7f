"""Extreme spec values, end to end: every value the spec accepts runs, and `check`, `report`,
`plot` and `results --theory` (every format) complete on it, with "no prediction" exactly where
theory has none; values whose derived parameters would not be finite are refused at validation
with one located line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

# Each of the extremes the audit found crashing theory, at the largest (or zero) value the spec
# accepts; tiny sizes and trials keep the run to seconds.
EXTREMES = [
    "{init: {name: normal, std: 0}, activation: tanh}",
    "{init: {name: orthogonal, gain: 0}, activation: relu}",
    "{init: {name: xavier_normal, gain: 0}, activation: linear}",
    "{init: {name: normal, std: 1.0e+150}, activation: tanh, dtype: float64}",
    "{init: {name: normal, std: 1.0e+150}, activation: relu}",
    "{init: he_normal, activation: {name: leaky_relu, alpha: 1.0e+150}, dtype: float64}",
    "{init: he_normal, activation: {name: elu, alpha: 1.0e+150}}",
    "{sigma_w: 1.0e+150, activation: tanh, dtype: float64}",
    "{sigma_w: 1.0e-150, sigma_b: 1.0e+150, activation: gelu}",
    "{init: {name: uniform, low: -1.0e+150, high: 1.0e+150}, activation: swish}",
    "{init: {name: normal, mean: 1.0e+150, std: 1}, activation: relu, dtype: float64}",
    "{init: {name: normal, std: 1.0e-150}, activation: linear, dtype: float16}",
]
SPEC = (
    "name: extremes\nseed: 1\ntrials: 4\nchunk_trials: 4\n"
    "fixed: {depth: 3, width: 4, sampler: dense}\nconfigs:\n"
    + "".join(f"  - {entry}\n" for entry in EXTREMES)
)

# Sweep 2: the phase-diagram shape (sigma_w x sigma_b) at the extremes.
PHASE_SPEC = (
    "name: extreme-phase\nseed: 2\ntrials: 4\nchunk_trials: 4\n"
    "grid: {sigma_w: [1.0e-150, 1.0, 1.0e+150], sigma_b: [0.0, 1.0e+150]}\n"
    "fixed: {activation: tanh, depth: 3, width: 4, dtype: float64}\n"
)


@pytest.fixture(scope="module")
def extreme_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("extremes")
    spec = root / "spec.yaml"
    spec.write_text(SPEC)
    db = root / "sweep.db"
    proc = run_cli("run", str(spec), "--db", str(db), "-w", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    phase = root / "phase.yaml"
    phase.write_text(PHASE_SPEC)
    proc = run_cli("run", str(phase), "--db", str(db), "-w", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    return db


def _ok(*args: str) -> str:
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_check_completes_and_names_configurations_without_prediction(extreme_db: Path) -> None:
    proc = run_cli("check", "1", "--db", str(extreme_db))
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr and "theory check" in proc.stdout
    rows = json.loads(_ok("results", "1", "--db", str(extreme_db), "--theory", "--format", "json"))
    predicted = {
        r["config_hash"] for r in rows if r["theory_mean_sq"] is not None or r["theory_mean"]
    }
    without = {r["config_hash"] for r in rows} - predicted
    listed = [line for line in proc.stdout.splitlines() if line.startswith("no prediction: ")]
    assert len(listed) == len(without)
    if without:
        assert f"{len(without)} of {len(EXTREMES)} configurations have no prediction" in (
            proc.stdout.replace("\n", " ")
        )


def test_results_with_theory_in_every_format(extreme_db: Path, tmp_path: Path) -> None:
    db = str(extreme_db)
    rows = json.loads(_ok("results", "1", "--db", db, "--theory", "--format", "json"))
    assert len({r["config_hash"] for r in rows}) == len(EXTREMES)
    plain = json.loads(_ok("results", "1", "--db", db, "--format", "json"))
    plain_lines = _ok("results", "1", "--db", db, "--format", "jsonl").splitlines()
    assert [json.loads(line) for line in plain_lines] == plain  # capped moments read as inf
    for row in rows:  # JSON has no inf or NaN: every float is finite or null
        for key, value in row.items():
            assert not (isinstance(value, float) and not math.isfinite(value)), (key, row)
    lines = _ok("results", "1", "--db", db, "--theory", "--format", "jsonl").splitlines()
    assert [json.loads(line) for line in lines] == rows
    csv = _ok("results", "1", "--db", db, "--theory", "--format", "csv").splitlines()
    assert len(csv) == len(rows) + 1 and "theory_mean_sq" in csv[0]
    table = _ok("results", "1", "--db", db, "--theory")
    assert table.strip()
    out = tmp_path / "out.parquet"
    _ok("results", "1", "--db", db, "--theory", "--format", "parquet", "-o", str(out))
    assert pq.read_table(out).num_rows == len(rows)


@pytest.mark.parametrize(
    ("kind", "sweep"), [("layers", "1"), ("explosion", "1"), ("layers", "2"), ("phase", "2")]
)
def test_plots_complete(extreme_db: Path, tmp_path: Path, kind: str, sweep: str) -> None:
    out = tmp_path / f"{kind}.png"
    _ok("plot", sweep, "--db", str(extreme_db), "--kind", kind, "-o", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("sweep", ["1", "2"])
def test_report_and_check_complete(extreme_db: Path, tmp_path: Path, sweep: str) -> None:
    out = tmp_path / "report.html"
    _ok("report", sweep, "--db", str(extreme_db), "-o", str(out))
    assert "<html" in out.read_text()
    proc = run_cli("check", sweep, "--db", str(extreme_db))
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ("{sigma_w: 1.0e+200, activation: tanh}", "configs[0].sigma_w"),
        ("{init: {name: normal, std: 1.0e+308}, activation: relu}", "configs[0].init.std"),
        ("{init: he_normal, activation: {name: leaky_relu, alpha: 1.0e+308}}", "alpha"),
        ("{init: {name: normal, std: 1.0e-200}, activation: relu}", "configs[0].init.std"),
        (
            "{init: {name: scaled_uniform, scale: 1.0e+150, high: 1.0e+150}, activation: relu}",
            "configs[0].init",
        ),
    ],
)
def test_values_with_non_finite_derived_parameters_are_refused(
    tmp_path: Path, entry: str, where: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"trials: 4\nfixed: {{depth: 2, width: 4}}\nconfigs:\n  - {entry}\n")
    proc = run_cli("run", str(spec), "--db", str(tmp_path / "x.db"), "-q")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert where in line and "Received" in line
    assert not (tmp_path / "x.db").exists() or "Traceback" not in proc.stderr

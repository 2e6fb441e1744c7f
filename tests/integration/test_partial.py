"""Partial and empty sweeps are reported as such: rows of the chunks done, a header, a verdict."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from models.db import make_engine, make_session_factory, resolve_url, session_scope
from scheduler.database import open_database
from scheduler.sweeps import plan_spec, record
from tests.conftest import run_cli
from worker.aggregate import chunk_records
from worker.contract import merge_records
from worker.persist import record_values

pytestmark = pytest.mark.integration

SPEC = """\
name: partial
seed: 2
trials: 120
chunk_trials: 40
grid:
  init: [he_normal]
  activation: [relu, tanh]
  depth: [3]
  width: [16]
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def test_results_of_a_sweep_with_nothing_done(spec: Path, tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    with open_database(str(db)) as factory:
        sweep_id = record(factory, plan_spec(str(spec)))
    proc = run_cli("results", str(sweep_id), "--db", str(db), "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert "no results yet" in proc.stderr
    (header,) = list(csv.reader(io.StringIO(proc.stdout)))
    assert header[:2] == ["sweep_id", "config_hash"] and "complete" in header
    assert "mean_sq_se" in header
    assert json.loads(run_cli("results", "1", "--db", str(db), "--format", "json").stdout) == []
    checked = run_cli("check", "1", "--db", str(db))
    assert checked.returncode == 1 and "NOTHING COMPARED" in checked.stdout


def test_partial_results_are_the_merge_of_the_chunks_done(spec: Path, tmp_path: Path) -> None:
    db = tmp_path / "partial.db"
    first = run_cli("run", str(spec), "--db", str(db), "-w", "1", "-q")
    assert first.returncode == 0, first.stderr
    config_hash = json.loads(run_cli("results", "1", "--db", str(db), "--format", "json").stdout)[
        0
    ]["config_hash"]
    db2 = tmp_path / "again.db"
    # chunk 1 of the first configuration always fails: that configuration stays incomplete
    failed = run_cli(
        "run",
        str(spec),
        "--db",
        str(db2),
        "-w",
        "1",
        env={"INITSWEEP_FAIL_CHUNKS": f"{config_hash[:12]}:1"},
    )
    assert failed.returncode == 1
    proc = run_cli("results", "1", "--db", str(db2), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "partial results: 1 of 2 configurations complete" in proc.stderr
    rows = json.loads(proc.stdout)
    partial = [r for r in rows if r["config_hash"] == config_hash]
    complete = [r for r in rows if r["config_hash"] != config_hash]
    assert partial and all(r["complete"] is False and r["n_trials"] == 80 for r in partial)
    assert complete and all(r["complete"] is True and r["n_trials"] == 120 for r in complete)

    factory = make_session_factory(make_engine(resolve_url(str(db2))))
    with session_scope(factory) as session:
        from sqlalchemy import text

        ids = [
            i
            for (i,) in session.execute(
                text(
                    "SELECT c.id FROM chunks c JOIN configurations f ON f.id = c.configuration_id "
                    "WHERE f.config_hash = :h AND c.status = 'done' ORDER BY c.chunk_index"
                ),
                {"h": config_hash},
            )
        ]
        merged = merge_records([chunk_records(session=session, chunk_id=i) for i in ids])
    assert len(ids) == 2
    by_key = {(r["layer"], r["quantity"]): r for r in partial}
    for m in merged:
        row = by_key[(m.layer, m.quantity)]
        values = record_values(m)
        assert row["mean_sq"] == values["mean_sq_mean"]
        assert row["n_finite"] == m.n_finite

    assert run_cli("check", "1", "--db", str(db2)).returncode == 1  # incomplete
    allowed = run_cli("check", "1", "--db", str(db2), "--allow-partial")
    assert allowed.returncode == 0, allowed.stdout
    assert "1 of 2 configurations incomplete (--allow-partial)" in allowed.stdout.replace("\n", " ")

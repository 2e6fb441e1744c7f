"""`initsweep results --format jsonl|parquet` of a real sweep: the values of `--format json`."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scheduler.sweeps import plan_spec
from tests.conftest import ROOT, run_cli
from tests.rows import assert_same_rows, typed

pytestmark = pytest.mark.integration

SPEC = """\
name: export
seed: 4
trials: 12
chunk_trials: 6
grid:
  sigma_w: [1.0, 1.5]
  bias: [zeros, {name: normal, std: 0.1}]
fixed:
  activation: tanh
  depth: 3
  width: 8
"""
CLI = [sys.executable, "-m", "scheduler.cli"]
KIND_OF = {pa.int64(): "int", pa.float64(): "float", pa.bool_(): "bool", pa.string(): "str"}


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep of 4 configurations, the first incomplete (its chunk 1 always fails)."""
    root = tmp_path_factory.mktemp("export")
    spec = root / "spec.yaml"
    spec.write_text(SPEC)
    first = plan_spec(str(spec)).configs[0].config.config_hash
    db = root / "sweep.db"
    proc = run_cli(
        "run",
        str(spec),
        "--db",
        str(db),
        "-w",
        "1",
        "-q",
        env={"INITSWEEP_FAIL_CHUNKS": f"{first[:12]}:1"},
    )
    assert proc.returncode == 1, proc.stderr  # the sweep is partial
    return db


def _results(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = run_cli("results", "1", "--db", str(db), *args)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("theory", [[], ["--theory"]], ids=["plain", "theory"])
def test_json_jsonl_and_parquet_hold_the_same_values(
    sweep_db: Path, tmp_path: Path, theory: list[str]
) -> None:
    as_json = _results(sweep_db, "--format", "json", *theory)
    rows = json.loads(as_json.stdout)
    assert "partial results: 3 of 4 configurations complete" in as_json.stderr
    assert {r["complete"] for r in rows} == {True, False}
    assert len(rows) == 4 * (1 + 3 * 3)

    lines = _results(sweep_db, "--format", "jsonl", *theory)
    assert lines.stderr == as_json.stderr
    assert [json.loads(line) for line in lines.stdout.splitlines()] == rows
    assert_same_rows(
        rows, [json.loads(x) for x in lines.stdout.splitlines()], dict.fromkeys(rows[0], "json")
    )
    _results(sweep_db, "--format", "jsonl", "-o", str(tmp_path / "out.jsonl"), *theory)
    assert (tmp_path / "out.jsonl").read_text() == lines.stdout

    written = _results(
        sweep_db, "--format", "parquet", "-o", str(tmp_path / "out.parquet"), *theory
    )
    assert written.stdout == "" and written.stderr == as_json.stderr
    table = pq.read_table(tmp_path / "out.parquet")
    columns = table.schema.names
    kinds = {f.name: KIND_OF[f.type] for f in table.schema}
    assert columns[:2] == ["sweep_id", "config_hash"] and "complete" in columns
    assert kinds["sigma_w"] == "float" and kinds["bias"] == "str" and kinds["complete"] == "bool"
    assert kinds["n_finite"] == "int" and kinds["mean_sq_se"] == "float"
    if theory:
        assert kinds["z_mean_sq"] == "float" and kinds["theory_exact"] == "bool"
        assert any(v is None for r in rows for v in r.values())  # None <-> null, both ways
    want = typed(rows, kinds)
    assert want == [{c: r.get(c) for c in columns} for r in rows]  # no value changed kind
    assert_same_rows(rows, table.to_pylist(), kinds, columns)
    assert_same_rows(rows, table.to_pandas().to_dict("records"), kinds, columns)

    piped = subprocess.run(  # no -o and stdout not a terminal: Parquet to the pipe
        [*CLI, "results", "1", "--db", str(sweep_db), "--format", "parquet", *theory],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert piped.returncode == 0, piped.stderr
    assert pq.read_table(pa.BufferReader(piped.stdout)).equals(table)


def test_parquet_is_not_written_to_a_terminal(sweep_db: Path) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [*CLI, "results", "1", "--db", str(sweep_db), "--format", "parquet"],
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            timeout=300,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "--format parquet" in line and "-o FILE" in line


def test_jsonl_filters_as_json_does(sweep_db: Path) -> None:
    args: list[Any] = ["--quantity", "gradient", "--where", "bias=zeros", "--layer", "2"]
    rows = json.loads(_results(sweep_db, "--format", "json", *args).stdout)
    lines = _results(sweep_db, "--format", "jsonl", *args).stdout.splitlines()
    assert len(rows) == 2 and [json.loads(x) for x in lines] == rows

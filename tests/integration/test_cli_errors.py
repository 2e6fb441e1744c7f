"""Bad input: one located stderr line, exit 2 (1 for runtime failures), nothing written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

GOOD = {
    "name": "bad",
    "seed": 0,
    "trials": 10,
    "grid": {"init": ["he_normal"], "activation": ["relu"], "depth": [2], "width": [4]},
}

CASES = {
    "unknown_init": (
        "name: x\ntrials: 10\ngrid: {init: [he_normall], activation: [relu], depth: [2], width: [4]}\n",
        "grid.init[0]",
    ),
    "unknown_activation": (
        "name: x\ntrials: 10\ngrid: {init: [he_normal], activation: [relu, rleu], depth: [2], width: [4]}\n",
        "grid.activation[1]",
    ),
    "zero_width": (
        "name: x\ntrials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [2], width: [4, 0]}\n",
        "grid.width[1]",
    ),
    "negative_depth": (
        "name: x\ntrials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [-3], width: [4]}\n",
        "grid.depth[0]",
    ),
    "zero_trials": (
        "name: x\ntrials: 0\ngrid: {init: [he_normal], activation: [relu], depth: [2], width: [4]}\n",
        "trials",
    ),
    "wrong_type": (
        "name: x\ntrials: many\ngrid: {init: [he_normal], activation: [relu], depth: [2], width: [4]}\n",
        "trials",
    ),
    "bool_is_not_int": (
        "name: x\ntrials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [true], width: [4]}\n",
        "grid.depth[0]",
    ),
    "unknown_key": (
        "name: x\ntrials: 10\ngrdi: {init: [he_normal], activation: [relu], depth: [2], width: [4]}\n",
        "grdi",
    ),
    "unknown_param": (
        "name: x\ntrials: 10\ngrid: {init: [{name: normal, sd: 1}], activation: [relu], depth: [2], width: [4]}\n",
        "grid.init[0]",
    ),
    "malformed_yaml": ("name: x\ntrials: [10\n  grid: {\n", "invalid YAML"),
    "over_memory_budget": (
        "name: x\ntrials: 10\nmemory_budget: 1MiB\n"
        "grid: {init: [he_normal], activation: [relu], depth: [4], width: [2048]}\n",
        "memory budget",
    ),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec(case: str, command: str, tmp_path: Path) -> None:
    text, located = CASES[case]
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    db = tmp_path / "never.db"
    args = [command, str(spec)] + (["--db", str(db)] if command == "run" else [])
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("initsweep: error: ")
    assert located in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert not db.exists(), "nothing may be written for a bad spec"


def test_missing_spec_file(tmp_path: Path) -> None:
    proc = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "nope.yaml" in proc.stderr


def test_unknown_sweep_id(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    assert run_cli("db", "upgrade", "--db", str(db)).returncode == 0
    for args in (["results", "42"], ["status", "42"], ["resume", "42"], ["cancel", "42"]):
        proc = run_cli(*args, "--db", str(db))
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip() == (
            f"initsweep: error: sweep 42: no such sweep in sqlite:///{db}; "
            "choose another with --db or $INITSWEEP_DATABASE_URL"
        ), proc.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sweeps").fetchone()[0] == 0


def test_read_commands_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for args in (["status"], ["sweeps"], ["results", "1"], ["check", "1"], ["report", "1"]):
        proc = run_cli(*args, "--db", str(missing))
        assert proc.returncode == 1, (args, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"initsweep: error: cannot open database sqlite:///{missing}")
        assert "no such database file" in line and "--db" in line
        assert not missing.exists()
    other = tmp_path / "other.db"  # an unrelated SQLite file keeps its tables, and only them
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x)")
    proc = run_cli("sweeps", "--db", str(other))
    assert proc.returncode == 1 and "no initsweep schema" in proc.stderr
    with sqlite3.connect(other) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["notes"]


def test_unreachable_database_hides_password(tmp_path: Path) -> None:
    spec = tmp_path / "ok.yaml"
    spec.write_text(
        "name: x\ntrials: 10\ngrid: {init: [he_normal], activation: [relu], depth: [2], width: [4]}\n"
    )
    url = "postgresql+psycopg://alice:s3cret-pw@127.0.0.1:1/nowhere"
    proc = run_cli("run", str(spec), "--db", url)
    assert proc.returncode == 1, proc.stderr
    assert "cannot open database" in proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_where_clause(tmp_path: Path) -> None:
    spec = tmp_path / "ok.yaml"
    spec.write_text(
        "name: x\ntrials: 4\ngrid: {init: [he_normal], activation: [relu], depth: [1], width: [4]}\n"
        "fixed: {sampler: dense}\n"
    )
    db = tmp_path / "w.db"
    assert run_cli("run", str(spec), "--db", str(db), "-q", "-w", "1").returncode == 0
    proc = run_cli("results", "1", "--db", str(db), "--where", "colour=red")
    assert proc.returncode == 2
    assert "--where colour: unknown column" in proc.stderr
    proc = run_cli("results", "1", "--db", str(db), "--where", "depth")
    assert proc.returncode == 2
    assert "--where 'depth': expected COLUMN OP VALUE" in proc.stderr

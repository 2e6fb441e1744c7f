"""`initsweep run` end to end on SQLite: bit-identical results however the run went."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.sweeps import plan_spec
from tests.conftest import ROOT, chunks_done, interrupt_mid_run, run_cli
from worker.memory import sub_batch_size

pytestmark = pytest.mark.integration

SPEC = """\
name: local-run
seed: 7
trials: 240
chunk_trials: 40
grid:
  init: [he_normal, {name: normal, std: 0.3}]
  activation: [relu, tanh]
  depth: [6]
  width: [24]
fixed:
  sampler: dense
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "sweep.yaml"
    path.write_text(SPEC)
    return path


def _json_results(db: Path, sweep_id: str) -> str:
    proc = run_cli("results", sweep_id, "--db", str(db), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _chunk_stat_counts(db: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT chunk_id, count(*) FROM chunk_stats GROUP BY chunk_id ORDER BY chunk_id"
        ).fetchall()


@pytest.fixture(scope="module")
def reference(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    proc = run_cli("run", str(spec), "--db", str(db), "--workers", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    sweep_id = proc.stdout.strip()
    assert sweep_id == "1"
    text = _json_results(db, sweep_id)
    records = json.loads(text)
    # 4 configurations x (1 input layer + 6 layers x 3 quantities)
    assert len(records) == 4 * (1 + 6 * 3)
    assert all(r["n_trials"] == 240 for r in records)
    return text


def test_two_workers_bit_identical(spec: Path, reference: str, tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    proc = run_cli("run", str(spec), "--db", str(db), "--workers", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    assert _json_results(db, "1") == reference
    counts = _chunk_stat_counts(db)
    assert len(counts) == 4 * 6  # every chunk recorded exactly once
    assert {n for _, n in counts} == {1 + 6 * 3}


def test_interrupt_then_resume_bit_identical(spec: Path, reference: str, tmp_path: Path) -> None:
    db = tmp_path / "int.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "run", str(spec), "--db", str(db), "-w", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    interrupt_mid_run(proc, lambda: chunks_done(db), 24)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    with sqlite3.connect(db) as conn:
        done = conn.execute("SELECT count(*) FROM chunks WHERE status='done'").fetchone()[0]
    assert 3 <= done < 24, "the interrupt must land mid-sweep"

    resumed = run_cli("resume", "1", "--db", str(db), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert _json_results(db, "1") == reference
    assert len(_chunk_stat_counts(db)) == 24


def test_memory_budget_does_not_change_the_results(
    spec: Path, reference: str, tmp_path: Path
) -> None:
    """Issue 10 item 7: 256 KiB (about the smallest budget this spec validates with: sub-batches
    of a few trials) and the default 1 GiB (sub-batches of a whole 40-trial chunk) give
    byte-identical results: a chunk's statistics are reduced in trial blocks, not sub-batches."""
    small = tmp_path / "small.yaml"
    small.write_text(spec.read_text() + "memory_budget: 256KiB\n")
    plan = plan_spec(str(small))
    sizes = {sub_batch_size(c.config, 40, plan.memory_budget_bytes) for c in plan.configs}
    assert max(sizes) < 16 and plan.memory_budget_bytes == 256 << 10
    db = tmp_path / "small.db"
    proc = run_cli("run", str(small), "--db", str(db), "-q")
    assert proc.returncode == 0, proc.stderr
    assert _json_results(db, "1") == reference


def test_same_spec_again_reuses_configurations(spec: Path, tmp_path: Path) -> None:
    db = tmp_path / "reuse.db"
    first = run_cli("run", str(spec), "--db", str(db), "-q")
    assert first.returncode == 0, first.stderr
    second = run_cli("run", str(spec), "--db", str(db))
    assert second.returncode == 0, second.stderr
    assert "sweep 2: done" in second.stderr and second.stdout == "2\n"  # stdout: data only
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM configurations").fetchone()[0] == 4
        assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 24
    a = json.loads(_json_results(db, "1"))
    b = json.loads(_json_results(db, "2"))
    strip = [{k: v for k, v in r.items() if k != "sweep_id"} for r in a]
    assert strip == [{k: v for k, v in r.items() if k != "sweep_id"} for r in b]

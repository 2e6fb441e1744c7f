"""What a local run leaves behind when it is interrupted, killed or disturbed: always the truth.

Every scenario ends with the results JSON byte-identical to an undisturbed run and each chunk
recorded exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, chunks_done, cmdline, descendants, interrupt_mid_run, run_cli

pytestmark = pytest.mark.integration

SPEC = """\
name: lifecycle
seed: 11
trials: 600
chunk_trials: 150
grid:
  init: [he_normal, glorot_normal]
  activation: [relu, tanh]
  depth: [12]
  width: [96]
fixed:
  sampler: dense
"""
N_CHUNKS = 16
ONE_CONFIG = """\
name: one
seed: 5
trials: 120
chunk_trials: 40
grid: {init: [he_normal], activation: [tanh], depth: [4], width: [16]}
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "sweep.yaml"
    path.write_text(SPEC)
    (path.parent / "one.yaml").write_text(ONE_CONFIG)
    return path


def _results(db: Path, sweep: str = "1") -> str:
    proc = run_cli("results", sweep, "--db", str(db), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _reference(path: Path, tmp: Path) -> str:
    db = tmp / "reference.db"
    proc = run_cli("run", str(path), "--db", str(db), "-w", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    return _results(db)


@pytest.fixture(scope="module")
def reference(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return _reference(spec, tmp_path_factory.mktemp("ref"))


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=60) as conn:
        return conn.execute(sql).fetchall()


def _start(
    spec: Path, db: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "run", str(spec), "--db", str(db), *extra],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate: Callable[[], bool], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.2)
    raise AssertionError("timed out")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _recorded_once(db: Path, n_chunks: int) -> None:
    rows = _query(db, "SELECT chunk_id, count(*) FROM chunk_stats GROUP BY chunk_id")
    assert len(rows) == n_chunks
    assert len({n for _, n in rows}) == 1


def test_sigint_marks_interrupted_and_resume_completes(
    spec: Path, reference: str, tmp_path: Path
) -> None:
    db = tmp_path / "int.db"
    proc = _start(spec, db, "-w", "2")
    interrupt_mid_run(proc, lambda: chunks_done(db), N_CHUNKS)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"initsweep resume 1 --db {db}" in err
    assert err.count("initsweep: error:") == 1 and "Traceback" not in err
    assert _query(db, "SELECT status FROM sweeps") == [("interrupted",)]
    assert _query(db, "SELECT count(*) FROM chunks WHERE status='running'") == [(0,)]
    assert chunks_done(db) < N_CHUNKS
    status = run_cli("status", "1", "--db", str(db), env={"COLUMNS": "200"})
    assert "interrupted" in status.stdout

    resumed = run_cli("resume", "1", "--db", str(db), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert _results(db) == reference
    assert _query(db, "SELECT status FROM sweeps") == [("done",)]
    _recorded_once(db, N_CHUNKS)


def test_killed_between_save_and_aggregation_then_resume(spec: Path, tmp_path: Path) -> None:
    one = spec.parent / "one.yaml"
    expected = _reference(one, tmp_path)
    db = tmp_path / "kill.db"
    # The pool process of the last chunk dies inside the transaction that saves the chunk and
    # aggregates its configuration, every time: nothing of it may be half-written.
    proc = run_cli(
        "run", str(one), "--db", str(db), "-w", "1", env={"INITSWEEP_KILL_AFTER_SAVE": ":2"}
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _query(db, "SELECT chunk_index, status FROM chunks ORDER BY chunk_index") == [
        (0, "done"),
        (1, "done"),
        (2, "failed"),
    ]
    assert _query(db, "SELECT count(*) FROM layer_stats") == [(0,)]
    assert _query(db, "SELECT status FROM sweeps") == [("partial",)]

    resumed = run_cli("resume", "1", "--db", str(db), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert "1 failed chunks reset" in resumed.stderr
    assert _results(db) == expected

    # A database where every chunk is done but the configuration was never aggregated (written
    # by a version that aggregated in a second transaction) is repaired by resume.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM layer_stats")
        conn.execute("UPDATE configurations SET status='pending', aggregated_at=NULL")
        conn.execute("UPDATE sweeps SET status='done'")
    repaired = run_cli("resume", "1", "--db", str(db), "-q")
    assert repaired.returncode == 0, repaired.stderr
    assert _results(db) == expected
    assert _query(db, "SELECT status FROM configurations") == [("done",)]


def test_sigkill_of_a_pool_process_run_completes_exactly_once(
    spec: Path, reference: str, tmp_path: Path
) -> None:
    db = tmp_path / "pool.db"
    proc = _start(spec, db, "-w", "2", "-q")
    _wait_for(lambda: chunks_done(db) >= 2)
    children = [p for p in descendants(proc.pid) if "spawn_main" in cmdline(p)]
    assert children, "expected spawned pool processes"
    os.kill(children[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert _results(db) == reference
    _recorded_once(db, N_CHUNKS)


def test_sigkill_of_run_leaves_no_process(spec: Path, tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    proc = _start(spec, db, "-w", "2", "-q")
    _wait_for(lambda: chunks_done(db) >= 1)
    family = descendants(proc.pid)
    assert family
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in family):
        time.sleep(0.2)
    assert not [p for p in family if _alive(p)]


def test_resume_of_a_chunk_failed_by_the_claim_limit(spec: Path, tmp_path: Path) -> None:
    one = spec.parent / "one.yaml"
    db = tmp_path / "claims.db"
    assert run_cli("run", str(one), "--db", str(db), "-q").returncode == 0
    expected = _results(db)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM chunk_stats WHERE chunk_id = (SELECT max(id) FROM chunks)")
        conn.execute("DELETE FROM layer_stats")
        conn.execute(
            "UPDATE chunks SET status='failed', attempts=8, "
            "error='abandoned after 8 attempts whose worker was lost' WHERE id = (SELECT max(id) FROM chunks)"
        )
        conn.execute("UPDATE configurations SET status='pending'")
        conn.execute("UPDATE sweeps SET status='partial'")
    resumed = run_cli("resume", "1", "--db", str(db), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert "1 failed chunks reset" in resumed.stderr
    assert _results(db) == expected


def test_a_held_sqlite_lock_is_waited_out(
    spec: Path, reference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "locked.db"
    monkeypatch.setenv("INITSWEEP_SQLITE_BUSY_TIMEOUT", "3")  # the run and its pool processes
    proc = _start(spec, db, "-w", "2", "-q")
    _wait_for(lambda: chunks_done(db) >= 1)
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")  # held past the busy timeout of every worker
    time.sleep(8)
    conn.execute("ROLLBACK")
    conn.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert _results(db) == reference
    _recorded_once(db, N_CHUNKS)

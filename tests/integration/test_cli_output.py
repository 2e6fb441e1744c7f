"""Sweeps by name, `--format json` for status, sweeps, check and validate, whole tables in a
pipe, and `run` in a batch job: progress lines on stderr while it runs, only data on stdout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration

LONG = "a-sweep-name-long-enough-to-overflow-eighty-columns-" + "x" * 60
SPEC = """\
name: {name}
seed: 5
trials: 8
grid:
  activation: [tanh, relu]
  sigma_w: [1.0, 1.5]
fixed:
  depth: 2
  width: 4
  sampler: dense
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Sweep 1 `solo`, sweeps 2 and 3 both `twice`, sweep 4 with a very long name."""
    folder = tmp_path_factory.mktemp("names")
    path = str(folder / "names.db")
    for name in ("solo", "twice", "twice", LONG):
        spec = folder / "spec.yaml"
        spec.write_text(SPEC.format(name=name))
        done = run_cli("run", str(spec), "--db", path, "-q", timeout=300)
        assert done.returncode == 0, done.stderr
    return path


def test_a_name_reads_as_its_id(db: str) -> None:
    for command in (["results", "--format", "json"], ["status", "--format", "json"]):
        by_id = run_cli(command[0], "1", *command[1:], "--db", db)
        by_name = run_cli(command[0], "solo", *command[1:], "--db", db)
        assert by_id.returncode == by_name.returncode == 0, by_name.stderr
        if command[0] == "status":  # the rate and ETA fields are the same: the sweep is done
            assert json.loads(by_name.stdout)[0]["sweep_id"] == 1
        assert by_name.stdout == by_id.stdout
    check_id = run_cli("check", "1", "--db", db, "--format", "json")
    check_name = run_cli("check", "solo", "--db", db, "--format", "json")
    assert (check_name.returncode, check_name.stdout) == (check_id.returncode, check_id.stdout)


def test_an_ambiguous_or_unknown_name_is_one_line_and_exit_2(db: str, tmp_path: Path) -> None:
    for command in ("results", "status", "check", "plot", "resume", "cancel"):
        extra = ["-o", str(tmp_path / "plot.png")] if command == "plot" else []
        done = run_cli(command, "twice", "--db", db, *extra)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.startswith(
            "initsweep: error: sweep 'twice': 2 sweeps have this name (ids 2, 3); give one of"
        ), done.stderr
        assert done.stderr.count("\n") == 1 and done.stdout == ""
    done = run_cli("results", "sol", "--db", db)
    assert done.returncode == 2 and done.stderr.startswith(
        "initsweep: error: sweep 'sol': no sweep has this name (did you mean 'solo'?) in sqlite:"
    ), done.stderr
    done = run_cli("results", "0", "--db", db)
    assert done.returncode == 2 and "0 is not in the range" in done.stderr


def test_json_formats(db: str, tmp_path: Path) -> None:
    sweeps = json.loads(run_cli("sweeps", "--db", db, "--format", "json").stdout)
    assert [(s["id"], s["name"], s["status"]) for s in sweeps] == [
        (1, "solo", "done"),
        (2, "twice", "done"),
        (3, "twice", "done"),
        (4, LONG, "done"),
    ]
    assert all(s["configs"] == 4 and s["trials_done"] == s["trials_total"] == 32 for s in sweeps)
    assert all(s["chunks"]["done"] == sum(s["chunks"].values()) > 0 for s in sweeps)
    assert all(s["created_at"] and s["finished_at"] for s in sweeps)

    (status,) = json.loads(run_cli("status", "2", "--db", db, "--format", "json").stdout)
    chunks = status["chunks"]
    assert chunks["pending"] == chunks["running"] == chunks["failed"] == 0 < chunks["done"]
    assert (status["sweep_id"], status["name"], status["trials_done"]) == (2, "twice", 32)
    assert status["finished"] is True and status["eta_s"] is None and status["workers"] == []

    checked = run_cli("check", "1", "--db", db, "--format", "json")
    report = json.loads(checked.stdout)
    assert checked.returncode == (0 if report["passed"] else 1)
    assert report["verdict"] in ("ok", "FAILED") and report["n_compared"] > 0
    assert report["summary"].startswith(f"theory check {report['verdict']}: ")
    table = run_cli("check", "1", "--db", db)
    assert table.returncode == checked.returncode and report["summary"] in table.stdout

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(name="v"))
    valid = run_cli("validate", str(spec), "--format", "json")
    assert valid.returncode == 0, valid.stderr
    record = json.loads(valid.stdout)
    assert (record["valid"], record["name"], record["n_configs"], record["n_trials"]) == (
        True,
        "v",
        4,
        32,
    )
    text = run_cli("validate", str(spec)).stdout
    assert f"configurations   {record['n_configs']}" in text
    spec.write_text("name: v\ntrials: 0\n")
    bad = run_cli("validate", str(spec), "--format", "json")
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1


def test_tables_are_whole_in_a_pipe(db: str) -> None:
    for command in ("sweeps", "status"):
        done = run_cli(command, "--db", db)
        assert done.returncode == 0, done.stderr
        assert LONG in done.stdout and "…" not in done.stdout, done.stdout
        assert "\x1b[" not in done.stdout  # no terminal, no colour codes
        row = next(line for line in done.stdout.splitlines() if LONG in line)
        assert "done" in row and len(row) > 160


BATCH = """\
name: batch
seed: 1
trials: 240
chunk_trials: 20
grid:
  activation: [tanh, relu]
fixed:
  init: he_normal
  depth: 8
  width: 32
  sampler: dense
"""
PROGRESS = re.compile(
    r"^sweep 1: (\d+)/(\d+) chunks · (\d+)/(\d+) trials · (—|[\d,]+) trials/s · "
    r"ETA (—|\d+[hm]\d+[ms]) · elapsed \d+[hm]\d+[ms]$"
)


def test_a_batch_job_logs_progress_lines_on_stderr_and_only_the_id_on_stdout(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "batch.yaml"
    spec.write_text(BATCH)
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "INITSWEEP_PROGRESS_EVERY": "0.5"}
    command = [sys.executable, "-m", "scheduler.cli", "run", str(spec)]
    command += ["--db", str(tmp_path / "b.db"), "-w", "1"]
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=ROOT, env=env)
        seen_while_running: list[str] = []
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            seen_while_running = [x for x in err.read_text().splitlines() if PROGRESS.match(x)]
            if len(seen_while_running) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before two progress lines were written"
        assert proc.wait(timeout=300) == 0, err.read_text()
    assert out.read_text() == "1\n"  # stdout: the sweep id, nothing else
    log = err.read_text()
    assert "\x1b[" not in log and "\r" not in log  # plain lines: no colour, no redrawn bar
    lines = log.splitlines()
    assert lines[0] == "sweep 1: 'batch' · 2 configurations · 24 chunks · 480 trials"
    progress = [PROGRESS.match(x) for x in lines]
    counts = [(int(m[1]), int(m[3])) for m in progress if m]
    assert len(counts) >= 3 and counts[0] == (0, 0) and counts[-1] == (24, 480)
    assert counts == sorted(counts)  # never backwards
    assert all(m[2] == "24" and m[4] == "480" for m in progress if m)
    assert any(
        x.startswith("sweep 1: done · 24 chunks, 480 trials in ") and x.endswith(" on 1 process")
        for x in lines
    )
    assert "std(h) at last layer" in log  # the summary table, on stderr too


def test_a_small_sweep_runs_on_one_process_and_validate_says_so(tmp_path: Path) -> None:
    """Without --workers a sweep of a fraction of a second starts one process (another would
    spend more on its start-up than it could take over), `validate` estimates that count, and
    the summary says it; a minute of work is spread over the cores."""
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC.format(name="small"))
    checked = run_cli("validate", str(spec), "--format", "json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["wall"]["workers"] == 1
    done = run_cli("run", str(spec), "--db", str(tmp_path / "s.db"))
    assert done.returncode == 0, done.stderr
    summary = [x for x in done.stderr.splitlines() if x.startswith("sweep 1: done · 4 chunks")]
    assert len(summary) == 1 and summary[0].endswith(" on 1 process"), done.stderr
    demo = run_cli("validate", str(ROOT / "examples" / "seed_notebook.yaml"), "--format", "json")
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["wall"]["workers"] == min(2, os.cpu_count() or 1)

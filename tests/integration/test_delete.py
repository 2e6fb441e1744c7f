"""`initsweep delete`: asks on a terminal, needs --yes elsewhere, keeps shared configurations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, run_cli
from tests.integration.test_ui import _failing_sweep


def _sweeps(db: str) -> str:
    listed = run_cli("sweeps", "--db", db, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def test_delete_needs_yes_off_a_terminal_and_says_what_it_removed(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    assert run_cli("db", "upgrade", "--db", db).returncode == 0
    sweep_id = _failing_sweep(db)  # "with-failures": 2 configurations, 4 chunks
    refused = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "delete", str(sweep_id), "--db", db],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"initsweep: error: sweep {sweep_id}: not deleted: confirm with --yes (stdin is not a "
        "terminal)"
    ]
    assert "with-failures" in _sweeps(db)
    done = run_cli("delete", "with-failures", "--db", db, "--yes")  # by name
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"sweep {sweep_id}: deleted with 2 configurations and 4 chunks"
    assert "with-failures" not in _sweeps(db)
    again = run_cli("delete", str(sweep_id), "--db", db, "--yes")
    assert again.returncode == 2 and "no such sweep" in again.stderr


def test_delete_asks_on_a_terminal(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    assert run_cli("db", "upgrade", "--db", db).returncode == 0
    sweep_id = _failing_sweep(db)

    def ask(answer: bytes) -> tuple[int, str]:
        primary, secondary = os.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "delete", str(sweep_id), "--db", db],
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        os.close(secondary)
        os.write(primary, answer)
        out, err = proc.communicate(timeout=120)
        os.close(primary)
        return proc.returncode, (out + err).decode()

    code, text = ask(b"n\n")
    assert code == 1 and "Delete sweep 1 (with-failures): 2 configurations and 4 chunks" in text
    assert "not deleted" in text and "with-failures" in _sweeps(db)
    code, text = ask(b"y\n")
    assert code == 0 and f"sweep {sweep_id}: deleted" in text
    assert "with-failures" not in _sweeps(db)

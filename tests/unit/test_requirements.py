"""A missing TensorFlow is one line before anything is recorded or started (glue: find_spec
is replaced, as the control side installs without the `cpu` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from scheduler.cli.main import main
from worker.requirements import INSTALL_HINT, compute_problem

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quick.yaml"


def test_present_here() -> None:
    assert compute_problem() is None


def test_missing_tensorflow_is_one_line_and_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow" else real(name, *a),
    )
    assert compute_problem() is not None and INSTALL_HINT in str(compute_problem())
    db = tmp_path / "x.db"
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(EXAMPLE), "--db", str(db)])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("initsweep: error: run: TensorFlow is not installed") and "\n" not in err
    assert not db.exists()

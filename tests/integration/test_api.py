"""The Python API end to end, as a notebook uses it: dict spec -> run -> results with theory ->
Figure -> PDF and SVG files, compare, check, sweep by name (real worker processes, SQLite)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import initsweep

pytestmark = pytest.mark.integration

SPEC: dict[str, Any] = {
    "name": "api-demo",
    "seed": 0,
    "trials": 60,
    "chunk_trials": 30,
    "grid": {"activation": ["tanh", "relu"]},
    "fixed": {"init": "he_normal", "depth": 4, "width": 16, "sampler": "dense"},
}


def test_notebook_session(tmp_path: Path) -> None:
    db = str(tmp_path / "api.db")
    plan = initsweep.validate(SPEC, workers=1)
    assert (plan.n_configs, plan.n_chunks, plan.n_trials) == (2, 4, 120)
    assert [c["activation"] for c in plan.configurations] == ["tanh", "relu"]
    assert "wall (estimate)" in str(plan)
    assert not Path(db).exists()  # validate writes nothing

    sweep = initsweep.run(SPEC, db=db, workers=1)
    assert sweep.status().status == "done"
    df = sweep.results(theory=True, where={"activation": "tanh"}, quantity="activation")
    assert set(df["activation"]) == {"tanh"} and set(df["quantity"]) == {"activation"}
    assert len(df) == SPEC["fixed"]["depth"] + 1
    assert {"theory_std", "theory_mean_sq", "z_mean_sq"} <= set(df.columns)
    assert (df["n_trials"] == 60).all()
    finite = df["z_mean_sq"].dropna()
    assert len(finite) and (finite.abs() < 6).all()  # He/tanh agrees with theory within 6 SE

    from matplotlib.figure import Figure

    fig = sweep.figure("layers")
    assert isinstance(fig, Figure) and fig.axes
    pdf = sweep.plot("layers", tmp_path / "layers.pdf")
    svg = sweep.plot("layers", tmp_path / "layers.svg")
    png = sweep.plot("layers", tmp_path / "layers.png")
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert b"<svg" in svg.read_bytes()[:2000]
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(initsweep.UserError, match="unknown extension"):
        sweep.plot("layers", tmp_path / "layers.jpeg")
    assert not (tmp_path / "layers.jpeg").exists()

    report = sweep.check()
    assert report.passed, report.verdict
    html = sweep.report(tmp_path / "r.html")
    assert "<html" in html.read_text()[:500].lower()

    assert initsweep.sweep("api-demo", db=db) == sweep
    listed = initsweep.sweeps(db=db)
    assert list(listed["name"]) == ["api-demo"] and list(listed["status"]) == ["done"]

    # the same networks in float64: compare matches them on everything but dtype
    other = initsweep.run({**SPEC, "name": "api-f64", "fixed": {**SPEC["fixed"], "dtype": "float64"}},
                          db=db, workers=1)  # fmt: skip
    initsweep.run({**SPEC, "trials": 30}, db=db, workers=1)  # a second sweep named api-demo
    with pytest.raises(initsweep.UserError, match="2 sweeps have this name"):
        initsweep.sweep("api-demo", db=db)
    both = initsweep.compare(sweep, other, quantity="activation")
    assert len(both) == 2 * (SPEC["fixed"]["depth"] + 1)
    assert {"dtype_1", "dtype_2", "std_1", "std_2", "z_std_2"} <= set(both.columns)
    assert set(both["dtype_1"]) == {"float32"} and set(both["dtype_2"]) == {"float64"}
    z = [v for v in both["z_std_2"] if v is not None and math.isfinite(v)]
    assert len(z) >= SPEC["fixed"]["depth"] * 2 and max(map(abs, z)) < 6


def test_bad_specs_and_references(tmp_path: Path) -> None:
    with pytest.raises(initsweep.SpecError, match=r"grid\.activation\[1\]: unknown activation"):
        initsweep.validate({**SPEC, "grid": {"activation": ["tanh", "rleu"]}})
    db = tmp_path / "none.db"
    with pytest.raises(initsweep.DatabaseUnavailableError, match="no such database file"):
        initsweep.sweep(1, db=str(db))
    assert not db.exists()  # reads never create a database


def test_a_script_without_a_main_guard_runs_its_sweep_once(tmp_path: Path) -> None:
    """The spawned worker processes never re-run the caller's `__main__`: a plain script
    calling `initsweep.run` at module level records one sweep, not one per process."""
    import subprocess
    import sys

    db = tmp_path / "script.db"
    script = tmp_path / "sweep_script.py"
    script.write_text(
        "import initsweep\n"
        "spec = {'name': 'unguarded', 'seed': 0, 'trials': 40, 'chunk_trials': 10,\n"
        "        'grid': {'width': [4, 8]},\n"
        "        'fixed': {'init': 'he_normal', 'activation': 'tanh', 'depth': 2}}\n"
        f"sweep = initsweep.run(spec, db={str(db)!r}, workers=2)\n"
        "print('ran', sweep.id)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran 1"
    assert initsweep.sweeps(db=str(db))["name"].tolist() == ["unguarded"]

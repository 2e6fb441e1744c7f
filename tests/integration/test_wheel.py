"""The package works installed the ordinary way: a wheel in a fresh virtualenv, outside the tree.

The wheel is built from this checkout and installed without `-e` into a new virtualenv in a
temporary folder; its third-party dependencies come from the test run's own environment through a
path entry (they are the same pinned packages, and the test must not download TensorFlow again).
Nothing of the source tree is importable there: the commands must find their migrations through
the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SPEC = """\
name: wheel
seed: 3
trials: 60
grid:
  init: [he_normal]
  activation: [relu, tanh]
  depth: [3]
  width: [8]
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh virtualenv with the initsweep wheel installed."""
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy of the files git knows (an in-tree build/ folder keeps stale modules).
    source = out / "source"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (out / "dist").glob("initsweep-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "models/migrations/env.py" in names
    assert "models/migrations/versions/0001_initial.py" in names
    assert not any(n.startswith("alembic/") for n in names)  # never a package named alembic

    env_dir = out / "venv"
    # No pip inside (ensurepip costs tens of seconds): this environment's pip installs into it.
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            "--no-cache-dir",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Third-party dependencies from this environment; its .pth files (the editable finder of the
    # source tree) are not processed for a plain path entry, so the source stays invisible.
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INITSWEEP_DATABASE_URL")}
    return subprocess.run(
        [str(bin_dir / "initsweep"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_wheel_install_runs_a_sweep_end_to_end(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import models.db, scheduler; print(models.db.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert str(installed.parent) in where and str(ROOT) not in where

    upgraded = _run(installed, tmp_path, "db", "upgrade", "--db", str(tmp_path / "fresh.db"))
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip().endswith("at head")
    current = _run(installed, tmp_path, "db", "current", "--db", str(tmp_path / "fresh.db"))
    assert current.returncode == 0 and current.stdout.strip() not in ("", "<empty>")

    (tmp_path / "spec.yaml").write_text(SPEC)
    ran = _run(installed, tmp_path, "run", "spec.yaml", "--db", "sweep.db", "-w", "1", "-q")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "1"
    results = _run(installed, tmp_path, "results", "1", "--db", "sweep.db", "--format", "csv")
    assert results.returncode == 0, results.stderr
    rows = results.stdout.strip().splitlines()
    assert len(rows) == 1 + 2 * (1 + 3 * 3)  # header + 2 configurations x (input + 3 layers x 3)
    api = subprocess.run(  # the Python API, from the installed package
        [str(installed / "python"), "-c",
         "import initsweep; s = initsweep.sweep(1, db='sweep.db'); "
         "print(initsweep.__file__); print(len(s.results()))"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert api.returncode == 0, api.stderr
    api_file, n_rows = api.stdout.split()
    assert str(installed.parent) in api_file and int(n_rows) == len(rows) - 1

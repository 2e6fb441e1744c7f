"""`initsweep plot` end to end on a tiny real sweep: PDF, SVG and PNG by the extension, every
configuration drawn, the options, and hostile input as one located line with exit 2."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

SPEC = """\
name: plot-cli
seed: 3
trials: 16
grid:
  init: [he_normal, glorot_normal]
  activation: [relu, tanh]
  depth: [2, 4]
  width: [8, 32]
fixed:
  sampler: dense
"""
SVG = "{http://www.w3.org/2000/svg}svg"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("plot")
    db = str(tmp / "plot.db")
    (tmp / "spec.yaml").write_text(SPEC)
    done = run_cli("run", str(tmp / "spec.yaml"), "--db", db, "-q", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return db, done.stdout.strip().splitlines()[-1]


def _plot(sweep: tuple[str, str], out: Path, *args: str) -> None:
    db, sweep_id = sweep
    done = run_cli("plot", sweep_id, "--db", db, "-o", str(out), *args, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(out)


def _ids(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    assert root.tag == SVG
    return [i for el in root.iter() if (i := el.get("id"))]


def _hashes(sweep: tuple[str, str], *where: str) -> set[str]:
    db, sweep_id = sweep
    args = [a for w in where for a in ("--where", w)]
    done = run_cli("results", sweep_id, "--db", db, "--format", "json", *args, timeout=120)
    assert done.returncode == 0, done.stderr
    return {r["config_hash"] for r in json.loads(done.stdout)}


def test_layers_svg_draws_every_configuration(sweep: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "layers.svg"
    _plot(sweep, out)
    ids = _ids(out)
    every = _hashes(sweep)
    assert len(every) == 16
    for quantity in ("activation", "gradient"):  # both depths of each group, gradients too
        assert {i.split(":")[2] for i in ids if i.startswith(f"mc:{quantity}:")} == every


def test_layers_pdf_with_where_stat_and_quantity(sweep: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "relu.pdf"
    _plot(sweep, out, "--where", "activation=relu", "--stat", "mean_sq", "--quantity", "gradient")
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    svg = tmp_path / "relu.svg"
    _plot(sweep, svg, "--where", "activation=relu", "--stat", "mean_sq", "--quantity", "gradient")
    ids = _ids(svg)
    relu = _hashes(sweep, "activation=relu")
    assert len(relu) == 8
    assert {i.split(":")[2] for i in ids if i.startswith("mc:gradient:")} == relu
    assert not any(i.startswith("mc:activation:") for i in ids)


def test_summary_png_and_svg(sweep: tuple[str, str], tmp_path: Path) -> None:
    png = tmp_path / "width.png"
    _plot(sweep, png, "--kind", "summary", "--x", "width")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "depth.svg"
    _plot(sweep, svg, "--kind", "summary", "--x", "depth", "--quantity", "gradient")
    ids = _ids(svg)
    # init x width series in each activation row, each with its theory line
    assert sum(i == "mc:gradient" for i in ids) == 8
    assert sum(i == "theory:gradient" for i in ids) == 8


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("-o", "{tmp}/fig.jpg"),
            "'-o' / '--output': '{tmp}/fig.jpg': unknown extension '.jpg'; expected",
        ),
        (("-o", "{tmp}/fig"), "'{tmp}/fig': no extension; expected a name ending in .png"),
        (("-o", "{tmp}/f.png", "--where", "activation=selu"), "--where activation=selu: no record"),
        (("-o", "{tmp}/f.png", "--kind", "explosion", "--stat", "std"), "--stat: not an option"),
        (("-o", "{tmp}/f.png", "--kind", "summary", "--x", "depht"), "did you mean 'depth'"),
        (("-o", "{tmp}/f.png", "--color", "dtype"), "--color dtype: expected an axis that varies"),
        (("-o", "{tmp}/f.png", "--stat", "var"), "'--stat': 'var' is not one of"),
    ],
)
def test_hostile_input_is_one_line_and_exit_2(
    sweep: tuple[str, str], tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    db, sweep_id = sweep
    argv = [a.format(tmp=tmp_path) for a in args]
    done = run_cli("plot", sweep_id, "--db", db, *argv, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("initsweep: error: "), done.stderr
    assert expected.format(tmp=tmp_path) in lines[0]
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_extension_is_checked_before_the_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    done = run_cli("plot", "1", "--db", str(missing), "-o", str(tmp_path / "f.tiff"), timeout=60)
    assert done.returncode == 2
    assert "--output" in done.stderr and ".tiff" in done.stderr
    assert not missing.exists()

"""Plots and the HTML report of real sweeps run through the CLI, the page checked in Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

GRID_SPEC = """\
name: report-grid
seed: 0
trials: 40
chunk_trials: 20
grid:
  sigma_w: [0.8, 1.6]
  sigma_b: [0.0, 0.3]
fixed:
  activation: tanh
  depth: 4
  width: 16
  sampler: dense
"""
PLAIN_SPEC = """\
name: report-plain
seed: 1
trials: 40
grid:
  init: [he_normal, {name: normal, std: 1.0}]
  activation: [relu, linear]
fixed:
  depth: 3
  width: 8
  sampler: dense
"""
KINDS = ("layers", "explosion", "phase", "quantiles")
_PROBE = """<script>
window.addEventListener("load", function () {
  var out = [];
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    out.push({w: im.naturalWidth, h: im.naturalHeight, shown: im.width, complete: im.complete});
  }
  var pre = document.createElement("pre");
  pre.id = "img-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@dataclass(frozen=True)
class Sweeps:
    db: str
    grid: int
    plain: int


def _cli_has(command: str) -> bool:
    return run_cli(command, "--help", timeout=60).returncode == 0


def _run(spec: Path, db: str) -> int:
    done = run_cli("run", str(spec), "--db", db, "-q", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweeps]:
    tmp = tmp_path_factory.mktemp("report")
    db = str(tmp / "report.db")
    (tmp / "grid.yaml").write_text(GRID_SPEC)
    (tmp / "plain.yaml").write_text(PLAIN_SPEC)
    yield Sweeps(db, _run(tmp / "grid.yaml", db), _run(tmp / "plain.yaml", db))


def _report(sweeps: Sweeps, sweep_id: int, out: Path) -> str:
    if _cli_has("report"):
        done = run_cli("report", str(sweep_id), "--db", sweeps.db, "-o", str(out), timeout=120)
        assert done.returncode == 0, done.stderr
        return out.read_text()
    from models.db import make_engine, make_session_factory, resolve_url, session_scope
    from scheduler.analysis.report import render_report
    from scheduler.query import report_input

    engine = make_engine(resolve_url(sweeps.db))
    try:
        with session_scope(make_session_factory(engine)) as session:
            page = render_report(report_input(session=session, sweep_id=sweep_id))
    finally:
        engine.dispose()
    out.write_text(page)
    return page


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_is_self_contained_and_every_image_renders(sweeps: Sweeps, tmp_path: Path) -> None:
    page = _report(sweeps, sweeps.grid, tmp_path / "report.html")
    assert "<script" not in page.lower()
    external = re.findall(r'(?:src|href)\s*=\s*"(?!data:|#)([^"]*)"', page)
    assert external == [], f"external references: {external}"
    for section in ("Spec", "Provenance", "Results by configuration", "Plots", "Theory comparison"):
        assert f">{section}</h2>" in page
    assert "name: report-grid" in page  # the spec as written
    assert page.count('src="data:image/png;base64,') == 3  # layers, explosion, phase
    assert "χ₁" in page and "phase" in page

    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"))
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'<pre id="img-probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, "the probe did not run: " + dom.stdout[-500:]
    images = json.loads(html.unescape(match[1]))
    assert len(images) == 3
    for image in images:
        assert image["complete"] and image["w"] > 300 and image["h"] > 100 and image["shown"] > 0


def test_plot_writes_a_png_of_every_kind(sweeps: Sweeps, tmp_path: Path) -> None:
    cli_plot = _cli_has("plot")
    records = None
    for kind in KINDS:
        out = tmp_path / f"{kind}.png"
        if cli_plot:
            args = ("plot", str(sweeps.grid), "--db", sweeps.db, "--kind", kind, "-o", str(out))
            done = run_cli(*args, timeout=120)
            assert done.returncode == 0, done.stderr
        else:
            from scheduler.analysis.plots import plot

            records = records or _theory_records(sweeps.db, sweeps.grid)
            assert plot(kind, records, out) == out
        width, height = _png_size(out)
        assert width > 300 and height > 100 and out.stat().st_size > 5_000


def test_phase_plot_without_sigma_axes_is_a_clear_user_error(
    sweeps: Sweeps, tmp_path: Path
) -> None:
    out = tmp_path / "phase.png"
    if _cli_has("plot"):
        args = ("plot", str(sweeps.plain), "--db", sweeps.db, "--kind", "phase", "-o", str(out))
        done = run_cli(*args, timeout=120)
        assert done.returncode == 2
        message = done.stderr.strip().splitlines()[-1]
    else:
        from scheduler.analysis.plots import plot
        from scheduler.errors import UserError

        with pytest.raises(UserError) as info:
            plot("phase", _theory_records(sweeps.db, sweeps.plain), out)
        message = str(info.value)
    assert "sigma_w" in message and "sigma_b" in message and "init" in message
    assert not out.exists()


def _theory_records(db: str, sweep_id: int) -> list[dict[str, object]]:
    from models.db import make_engine, make_session_factory, resolve_url, session_scope
    from scheduler.query import theory_records

    engine = make_engine(resolve_url(db))
    try:
        with session_scope(make_session_factory(engine)) as session:
            return theory_records(session=session, sweep_id=sweep_id)
    finally:
        engine.dispose()

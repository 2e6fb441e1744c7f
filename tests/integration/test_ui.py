"""`initsweep ui`: the real server over real databases, its JSON checked against scheduler.query,
its pages opened in headless Chromium (plots rendered, no console error, a screenshot of each).

The screenshots go to $INITSWEEP_UI_SCREENSHOTS when set, else to a temporary folder; the folder
is printed at the end of the module.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, run_cli
from tests.integration.browser import Browser, chromium_path

pytestmark = pytest.mark.integration

PLAIN = """\
name: init-schemes
seed: 1
trials: 40
chunk_trials: 20
grid:
  init: [he_normal, {name: normal, std: 1.0}]
  activation: [linear, tanh]
fixed:
  depth: 64
  width: 32
  sampler: dense
"""
GRID = """\
name: tanh-phase
seed: 0
trials: 30
grid:
  sigma_w: [0.8, 1.4, 2.0, 2.6]
  sigma_b: [0.0, 0.2, 0.4]
fixed:
  activation: tanh
  depth: 12
  width: 32
  sampler: dense
"""
SLOW = """\
name: live-progress
seed: 3
trials: 4000
chunk_trials: 20
grid:
  activation: [tanh, relu]
fixed:
  init: he_normal
  depth: 30
  width: 256
  sampler: dense
"""
READY = "document.body.dataset.ready === '1'"
PLOTS = "document.querySelectorAll('.main-svg').length"


# ------------------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class Sweeps:
    db: str
    plain: int
    plain_seed2: int
    grid: int
    failing: int


class Server:
    """`initsweep ui --port 0` in a subprocess; `url` is the one it printed."""

    def __init__(self, db: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler.cli", "ui", "--db", db, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert self.proc.stderr is not None
        deadline, line = time.monotonic() + 60, ""
        while "http://" not in line:
            ready, _, _ = select.select([self.proc.stderr], [], [], 1.0)
            if ready:
                line = self.proc.stderr.readline()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"initsweep ui did not start: {line}{self.proc.stderr.read()}")
        self.banner = line.strip()
        self.url = line.split("http://", 1)[1].split("/", 1)[0]
        self.url = f"http://{self.url}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON or text) of GET `path`."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, body, kind = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, body, kind = exc.code, exc.read(), exc.headers
        if "json" in kind.get("content-type", ""):
            return status, json.loads(body)
        return status, body

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body)
        return body

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        rest = self.proc.stderr.read() if self.proc.stderr is not None else ""
        assert "Traceback" not in rest, rest  # Ctrl-C stops it cleanly, connections closed
        return int(self.proc.returncode)


def _run(spec: str, db: str, tmp: Path, name: str) -> int:
    path = tmp / f"{name}.yaml"
    path.write_text(spec)
    done = run_cli("run", str(path), "--db", db, "-q", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def _failing_sweep(db: str) -> int:
    """A sweep with a failed chunk and its error, written as workers would (no TensorFlow)."""
    from models.db import make_engine, make_session_factory, session_scope
    from scheduler.store import chunk_ids, create_sweep, refresh_sweep_status
    from tests.db.builders import config_plan, outcome_for, sim_config, sweep_plan
    from worker.aggregate import aggregate_sweep
    from worker.persist import load_task, mark_failed, save_outcome

    engine = make_engine(db)
    factory = make_session_factory(engine)
    plans = [config_plan(sim_config(width=w, depth=4), trials=40, chunk_trials=20) for w in (8, 16)]
    try:
        with session_scope(factory) as session:
            sweep_id = create_sweep(session=session, plan=sweep_plan(plans, name="with-failures"))
        with session_scope(factory) as session:
            ids = chunk_ids(session=session, sweep_id=sweep_id)
            for chunk_id in ids[:3]:
                outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
                save_outcome(
                    session=session, chunk_id=chunk_id, outcome=outcome, worker="host-a:41"
                )
            mark_failed(
                session=session,
                chunk_id=ids[3],
                error="ResourceExhaustedError: OOM when allocating tensor with shape[20,16,16]",
                final=True,
            )
            aggregate_sweep(session=session, sweep_id=sweep_id)
            refresh_sweep_status(session=session, sweep_id=sweep_id)
    finally:
        engine.dispose()
    return sweep_id


def _large_sweep(db: str, n: int = 10_000, depth: int = 2) -> int:
    """A finished sweep of `n` configurations with made-up statistics, written in bulk."""
    import numpy as np
    import sqlalchemy as sa

    from models import Chunk, Configuration, LayerStat, Sweep, utcnow
    from models.db import make_engine, make_session_factory, session_scope
    from scheduler.store import create_sweep
    from tests.db.builders import config_plan, sim_config, sweep_plan
    from worker.contract import QUANTITIES

    inits = ("he_normal", "glorot_uniform")
    plans = [
        config_plan(
            sim_config(init=inits[i % 2], activation="relu", width=8 + i // 2, depth=depth),
            trials=10,
            chunk_trials=10,
            axes={"init": inits[i % 2], "width": 8 + i // 2},
        )
        for i in range(n)
    ]
    engine = make_engine(db)
    factory = make_session_factory(engine)
    rng = np.random.default_rng(0)
    try:
        with session_scope(factory) as session:
            sweep_id = create_sweep(session=session, plan=sweep_plan(plans, name="ten-thousand"))
        with session_scope(factory) as session:
            ids = session.scalars(sa.select(Configuration.id)).all()
            rows = []
            for cid in ids:
                for layer in range(depth + 1):
                    for quantity in ("activation",) if layer == 0 else QUANTITIES:
                        m = rng.random(3) + 0.5
                        rows.append(
                            {
                                "configuration_id": cid,
                                "layer": layer,
                                "quantity": quantity,
                                "n_trials": 10,
                                "n_finite": 10,
                                "n_first_nonfinite": 0,
                                "n_collapsed": 0,
                                "mean_mean": 0.01 * m[0],
                                "mean_m2": 0.09 * m[0],
                                "std_mean": float(m[1]),
                                "std_m2": 0.9 * m[1],
                                "mean_sq_mean": float(m[2]),
                                "mean_sq_m2": float(m[2]),
                            }
                        )
            session.execute(sa.insert(LayerStat.__table__), rows)  # Core executemany, not ORM bulk
            now = utcnow()
            session.execute(sa.update(Configuration).values(status="done", aggregated_at=now))
            session.execute(sa.update(Chunk).values(status="done", started_at=now, finished_at=now))
            session.execute(sa.update(Sweep).values(status="done", finished_at=now))
    finally:
        engine.dispose()
    return sweep_id


def _read(db: str, read: Callable[..., Any], **kwargs: Any) -> Any:
    from models.db import make_engine, make_session_factory, session_scope

    engine = make_engine(db)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return read(session=session, **kwargs)
    finally:
        engine.dispose()


def _theory_records(db: str, sweep_id: int) -> list[dict[str, Any]]:
    from scheduler.query import theory_records

    return [dict(r) for r in _read(db, theory_records, sweep_id=sweep_id)]


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300)
    return bool(got == want)


def _assert_records(rows: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(rows) == len(want)
    from scheduler.ui.table import DASHBOARD_OMITS  # columns the dashboard does not show yet

    for got, expected in zip(rows, want, strict=True):
        for key, value in expected.items():
            if key in DASHBOARD_OMITS:
                continue
            assert _same(got[key], value), (key, got[key], value, expected["config_hash"])


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Sweeps:
    tmp = tmp_path_factory.mktemp("ui")
    db = str(tmp / "ui.db")
    plain = _run(PLAIN, db, tmp, "plain")
    plain2 = _run(
        PLAIN.replace("seed: 1", "seed: 2").replace("init-schemes", "seeds"), db, tmp, "p2"
    )
    grid = _run(GRID, db, tmp, "grid")
    return Sweeps(db, plain, plain2, grid, _failing_sweep(db))


@pytest.fixture(scope="module")
def server(sweeps: Sweeps) -> Iterator[Server]:
    s = Server(sweeps.db)
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def shots(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Path]:
    folder = Path(os.environ.get("INITSWEEP_UI_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    taken = sorted(p.name for p in folder.glob("*.png"))
    line = f"initsweep ui screenshots ({len(taken)}) in {folder}: {', '.join(taken)}"
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():  # shown whatever the capture mode
        print(f"\n{line}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if chromium_path() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    b = Browser(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


def _page(browser: Browser, server: Server, path: str, shots: Path, name: str, plots: int) -> None:
    """Open a page, wait for it and its plots, check it loaded only local files without an
    error, and save its screenshot."""
    browser.open(server.url + path, ready=f"{READY} && {PLOTS} >= {plots}")
    time.sleep(0.5)  # let late console messages arrive
    browser.evaluate("1")
    assert browser.errors == [], browser.errors
    external = [u for u in browser.requests() if not u.startswith((server.url, "data:"))]
    assert external == [], f"{path} fetched {external}"
    shot = browser.screenshot(shots / f"{name}.png")
    assert shot.stat().st_size > 20_000


# --------------------------------------------------------------------------- JSON


def test_the_server_binds_to_localhost_and_says_where(server: Server) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert "(read-only)" in server.banner


def test_sweeps_endpoint_is_the_progress_of_every_sweep(server: Server, sweeps: Sweeps) -> None:
    from scheduler.query import sweep_progress

    got = server.json("/api/sweeps")["sweeps"]
    want = _read(sweeps.db, sweep_progress)
    assert [s["id"] for s in got] == [p.sweep_id for p in reversed(want)]  # newest first
    for s, p in zip(got, reversed(want), strict=True):
        assert (s["name"], s["status"], s["counts"]) == (p.name, p.status, p.counts)
        assert (s["trials_done"], s["trials_total"]) == (p.trials_done, p.trials_total)
    failing = next(s for s in got if s["id"] == sweeps.failing)
    assert failing["status"] == "partial" and failing["counts"]["failed"] == 1
    (failure,) = failing["failures"]
    assert failure["error"].startswith("ResourceExhaustedError: OOM")
    assert failure["configuration"] == "he_normal · tanh · d=4 · w=16"


def test_sweep_endpoint_has_spec_provenance_and_the_check(server: Server, sweeps: Sweeps) -> None:
    d = server.json(f"/api/sweeps/{sweeps.plain}")
    assert d["spec_yaml"] == PLAIN
    provenance = dict(d["provenance"])
    assert provenance["chunks"] == "8 (done (8))" and provenance["samplers"] == "dense (8)"
    assert d["results"]["configs_with_results"] == 4 and d["results"]["n_configs"] == 4
    assert d["check"]["available"] and d["check"]["ok"], d["check"]
    from scheduler.analysis.compare import check

    assert d["check"]["summary"] == check(_theory_records(sweeps.db, sweeps.plain)).summary()


def test_results_are_the_theory_records_paged_filtered_sorted(
    server: Server, sweeps: Sweeps
) -> None:
    want = _theory_records(sweeps.db, sweeps.plain)
    base = f"/api/sweeps/{sweeps.plain}/results"
    rows: list[dict[str, Any]] = []
    offset = 0
    while True:  # every row, page by page, in the order of `initsweep results`
        page = server.json(f"{base}?offset={offset}&limit=200")
        assert page["total"] == len(want)
        rows += page["rows"]
        offset += 200
        if offset >= page["total"]:
            break
    _assert_records(rows, want)

    where = "activation=tanh quantity=activation layer=last"
    page = server.json(f"{base}?where={urllib.parse.quote(where)}")
    expected = [
        r
        for r in want
        if r["activation"] == "tanh" and r["quantity"] == "activation" and r["layer"] == r["depth"]
    ]
    _assert_records(page["rows"], expected)
    assert page["total"] == 2
    assert [c[0] for c in page["cells"][0][:2]] == ["he_normal", "tanh"]

    # a scheme by name, a list, a range; sorted by a statistic, descending, None last
    where = "init=normal quantity=gradient,activation layer>=60"
    page = server.json(f"{base}?where={urllib.parse.quote(where)}&sort=-std&limit=500")
    expected = [
        r
        for r in want
        if r["init"].startswith("normal(")
        and r["layer"] >= 60
        and r["quantity"] in ("gradient", "activation")
    ]
    assert page["total"] == len(expected) > 0
    values = [r["std"] for r in page["rows"]]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values == present + [None] * (len(values) - len(present))


def test_bad_requests_are_one_clear_message(server: Server, sweeps: Sweeps) -> None:
    status, body = server.get(f"/api/sweeps/{sweeps.plain}/results?where=actvation=relu")
    assert status == 400 and "did you mean 'activation'" in body["error"]
    status, body = server.get(f"/api/sweeps/{sweeps.plain}/results?where=layer%3Eabc")
    assert status == 400 and "expected a number" in body["error"]
    status, body = server.get(f"/api/sweeps/{sweeps.plain}/results?where=activation")
    assert status == 400 and "COLUMN OP VALUE" in body["error"]
    status, body = server.get("/api/sweeps/999")
    assert (status, body) == (404, {"error": "sweep 999: no such sweep"})
    status, page = server.get("/sweeps/999")
    assert status == 404 and b"no such sweep" in page
    status, body = server.get("/api/compare?ids=1")
    assert status == 400 and "2 to 6" in body["error"]


def test_plot_endpoints_carry_the_records_values(server: Server, sweeps: Sweeps) -> None:
    want = _theory_records(sweeps.db, sweeps.plain)
    d = server.json(f"/api/sweeps/{sweeps.plain}/layers?stat=std")
    assert (d["total"], d["shown"], d["quantities"]) == (4, 4, ["activation", "gradient"])
    for s in d["series"]:
        for quantity, series in s["quantities"].items():
            expected = sorted(
                (
                    r
                    for r in want
                    if r["config_hash"] == s["config_hash"] and r["quantity"] == quantity
                ),
                key=lambda r: r["layer"],
            )
            assert series["layer"] == [r["layer"] for r in expected]
            for key, column in (("y", "std"), ("se", "std_se"), ("theory", "theory_std")):
                assert all(
                    _same(a, b[column]) for a, b in zip(series[key], expected, strict=True)
                ), (quantity, key)

    explosion = server.json(f"/api/sweeps/{sweeps.plain}/explosion")
    assert explosion["eventful"] == 1  # N(0, 1) weights in a linear net overflow float32
    (row,) = [r for r in explosion["rows"] if r["eventful"]]
    assert row["label"] == "normal(mean=0, std=1) · linear · d=64 · w=32"
    assert row["nonfinite"][-1] == 1.0 and 40 < row["overflow"] < 64

    assert server.json(f"/api/sweeps/{sweeps.plain}/phase")["available"] is False
    phase = server.json(f"/api/sweeps/{sweeps.grid}/phase")
    assert phase["sigma_w"] == [0.8, 1.4, 2.0, 2.6] and phase["sigma_b"] == [0.0, 0.2, 0.4]
    (group,) = phase["groups"]
    assert len(group["final"]) == 3 and len(group["final"][0]) == 4
    assert group["critical"]["sigma_w"][0] == pytest.approx(1.0)  # tanh, sigma_b = 0


def test_compare_matches_configurations_across_sweeps(server: Server, sweeps: Sweeps) -> None:
    ids = f"{sweeps.plain},{sweeps.plain_seed2}"
    d = server.json(f"/api/compare?ids={ids}")
    assert [s["id"] for s in d["sweeps"]] == [sweeps.plain, sweeps.plain_seed2]
    assert d["n_matched"] == 4  # the same four configurations, other seeds

    def last(sweep_id: int) -> dict[str, dict[str, Any]]:
        return {
            r["config_hash"]: r
            for r in _theory_records(sweeps.db, sweep_id)
            if r["quantity"] == "activation" and r["layer"] == r["depth"]
        }

    a, b = last(sweeps.plain), last(sweeps.plain_seed2)
    for row in d["matched"]:
        ra, rb = a[row["config_hash"]], b[row["config_hash"]]
        z = row["z"][str(sweeps.plain_seed2)]
        if ra["std"] is None or rb["std"] is None:  # overflowed: no estimate to compare
            assert z is None
            continue
        expected = (rb["std"] - ra["std"]) / math.hypot(ra["std_se"], rb["std_se"])
        assert z == pytest.approx(expected, abs=0.006)


def test_read_only_local_and_nothing_from_the_internet(server: Server, sweeps: Sweeps) -> None:
    def files() -> dict[str, bytes]:
        return {
            p.name: p.read_bytes()
            for p in Path(sweeps.db).parent.glob("ui.db*")
            if p.suffix != ".db-shm"
        }

    before = files()
    for path in ("/api/sweeps", f"/api/sweeps/{sweeps.grid}", f"/api/sweeps/{sweeps.grid}/results"):
        server.json(path)
    assert files() == before  # reading wrote nothing

    request = urllib.request.Request(server.url + "/api/sweeps", method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 405
    status, _ = server.get("/api/sweeps", headers={"Host": "attacker.example"})
    assert status == 400  # DNS rebinding: another site's page cannot read the dashboard

    from scheduler.ui.app import plotly_js

    status, body = server.get("/static/plotly.min.js")
    assert status == 200 and body == plotly_js().read_bytes()
    for path in ("/", f"/sweeps/{sweeps.plain}", "/compare?ids=1,2", "/static/app.js"):
        status, body = server.get(path)
        assert status == 200
        text = body.decode()
        assert "https://" not in text and "http://" not in text, path


def test_ui_refuses_a_missing_database_and_a_busy_port(tmp_path: Path, sweeps: Sweeps) -> None:
    import socket

    missing = tmp_path / "none.db"
    done = run_cli("ui", "--db", str(missing), timeout=60)
    assert done.returncode == 1 and "no such database file" in done.stderr, done.stderr
    assert not missing.exists()  # nothing created
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        done = run_cli("ui", "--db", sweeps.db, "--port", port, timeout=60)
    assert done.returncode == 1 and "cannot listen on 127.0.0.1:" in done.stderr, done.stderr


# -------------------------------------------------------------------------- Chromium


def test_pages_render_their_plots_without_console_errors(
    server: Server, sweeps: Sweeps, browser: Browser, shots: Path
) -> None:
    _page(browser, server, "/", shots, "sweeps", plots=0)
    rows = browser.evaluate("document.querySelectorAll('#sweeps tr[data-sweep-id]').length")
    assert rows == 4
    assert "ResourceExhaustedError" in browser.evaluate("document.body.textContent")

    # layers (2 panels) + explosion: Plotly draws a main-svg per figure plus its overlay
    _page(browser, server, f"/sweeps/{sweeps.plain}", shots, "sweep", plots=2)
    text = browser.evaluate("document.body.textContent")
    assert "theory check ok" in text and "name: init-schemes" in text
    assert browser.evaluate("document.querySelectorAll('#results tbody tr').length") == 4
    assert browser.evaluate("document.querySelectorAll('#layers-plot .main-svg').length") >= 1
    assert browser.evaluate("document.querySelectorAll('#explosion-plot .main-svg').length") >= 1

    _page(browser, server, f"/sweeps/{sweeps.grid}", shots, "sweep-phase", plots=2)
    assert browser.evaluate("document.querySelectorAll('#phase-plot .main-svg').length") >= 1

    _page(browser, server, f"/sweeps/{sweeps.failing}", shots, "sweep-failures", plots=2)
    assert not browser.evaluate("document.querySelector('#failures-card').hidden")

    ids = f"{sweeps.plain},{sweeps.plain_seed2}"
    _page(browser, server, f"/compare?ids={ids}", shots, "compare", plots=2)
    assert browser.evaluate("document.querySelectorAll('#compare-plots .main-svg').length") >= 2
    assert browser.evaluate("document.querySelectorAll('#matched tbody tr').length") == 4


def test_the_filter_narrows_plots_and_table_in_the_page(
    server: Server, sweeps: Sweeps, browser: Browser
) -> None:
    browser.open(
        server.url + f"/sweeps/{sweeps.plain}?where=activation%3Dtanh",
        ready=f"{READY} && {PLOTS} >= 2",
    )
    assert browser.evaluate("document.querySelector('#filter').value") == "activation=tanh"
    assert browser.evaluate("document.querySelectorAll('#results tbody tr').length") == 2
    assert "2 of 2 configurations" in browser.evaluate(
        "document.querySelector('#layers-note').textContent"
    )
    assert browser.errors == []


def test_a_sweep_of_ten_thousand_configurations_stays_responsive(
    tmp_path: Path, browser: Browser, shots: Path
) -> None:
    db = str(tmp_path / "large.db")
    assert run_cli("db", "upgrade", "--db", db).returncode == 0
    sweep_id = _large_sweep(db)
    server = Server(db)
    try:
        base = f"/api/sweeps/{sweep_id}/results"
        started = time.monotonic()
        page = server.json(f"{base}?limit=50")
        assert time.monotonic() - started < 60  # the first read of 70,000 rows
        assert page["total"] == 70_000 and len(page["rows"]) == 50
        cases = [
            ("quantity=activation layer=last", "-std", 10_000),
            ("init=glorot_uniform width>=3000 quantity=gradient", "-width", 2 * 2_008),
            ("width<20 layer=1", "init,quantity", 24 * 3),
        ]
        for where, sort, total in cases:
            started = time.monotonic()
            page = server.json(f"{base}?where={urllib.parse.quote(where)}&sort={sort}&limit=100")
            assert time.monotonic() - started < 3.0, where  # server-side filter, sort, page
            assert page["total"] == total, where
        rows = page["rows"]
        assert all(r["width"] < 20 and r["layer"] == 1 for r in rows)
        order = ("preactivation", "activation", "gradient")  # quantities sort in record order
        keys = [(r["init"], order.index(r["quantity"])) for r in rows]
        assert keys == sorted(keys)
        started = time.monotonic()
        layers = server.json(f"/api/sweeps/{sweep_id}/layers?max_lines=20")
        assert time.monotonic() - started < 3.0
        assert (layers["total"], layers["shown"]) == (10_000, 20)
        detail = server.json(f"/api/sweeps/{sweep_id}")
        assert detail["check"]["available"] is False
        assert "initsweep check" in detail["check"]["reason"]

        browser.open(
            server.url + f"/sweeps/{sweep_id}", ready=f"{READY} && {PLOTS} >= 1", timeout=120
        )
        assert browser.evaluate("document.querySelectorAll('#results tbody tr').length") == 50
        assert "20 of 10,000 configurations" in browser.evaluate(
            "document.querySelector('#layers-note').textContent"
        )
        assert browser.errors == []
        browser.screenshot(shots / "sweep-large.png")
    finally:
        assert server.stop() == 0


def test_the_dashboard_over_postgresql(pg_db: str, browser: Browser) -> None:
    assert run_cli("db", "upgrade", "--db", pg_db).returncode == 0
    sweep_id = _failing_sweep(pg_db)
    server = Server(pg_db)
    try:
        from scheduler.database import redact

        assert redact(pg_db) in server.banner  # the URL as shown, password hidden
        (row,) = server.json("/api/sweeps")["sweeps"]
        assert (row["id"], row["status"], row["counts"]["failed"]) == (sweep_id, "partial", 1)
        assert row["failures"][0]["error"].startswith("ResourceExhaustedError")
        page = server.json(f"/api/sweeps/{sweep_id}/results?limit=500")
        _assert_records(page["rows"], _theory_records(pg_db, sweep_id))
        browser.open(server.url + f"/sweeps/{sweep_id}", ready=f"{READY} && {PLOTS} >= 1")
        assert browser.errors == []
    finally:
        assert server.stop() == 0


def test_progress_of_a_running_sweep_changes_between_two_loads(
    tmp_path: Path, browser: Browser, shots: Path
) -> None:
    db = str(tmp_path / "live.db")
    assert run_cli("db", "upgrade", "--db", db).returncode == 0
    server = Server(db)
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli", "run", str(spec), "--db", db, "-w", "1", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:

        def done() -> int:
            sweeps = server.json("/api/sweeps")["sweeps"]
            return int(sweeps[0]["counts"]["done"]) if sweeps else 0

        _wait(lambda: done() >= 1, 180, "the first chunk")
        row = "document.querySelector('tr[data-sweep-id] .chunks')"
        browser.open(server.url + "/", ready=row)
        first = int(browser.evaluate(f"{row}.dataset.done"))
        assert (
            browser.evaluate("document.querySelector('tr[data-sweep-id]').dataset.status")
            == "running"
        )
        assert browser.errors == []
        browser.screenshot(shots / "sweeps-running.png")

        _wait(lambda: done() > first, 120, "another chunk")
        browser.open(server.url + "/", ready=row)
        second = int(browser.evaluate(f"{row}.dataset.done"))
        assert second > first
        assert browser.errors == []

        # the sweep page follows the run by itself, without a reload
        browser.open(server.url + "/sweeps/1", ready=READY)
        shown = int(browser.evaluate("document.querySelector('#chunks-done').dataset.done"))
        _wait(
            lambda: (
                int(browser.evaluate("document.querySelector('#chunks-done').dataset.done")) > shown
            ),
            60,
            "the page to refresh its progress",
        )
        assert browser.evaluate("document.querySelector('#status').textContent") == "running"
        assert browser.errors == []
        browser.screenshot(shots / "sweep-running.png")
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate(timeout=60)
        assert server.stop() == 0

"""Growable and precision-targeted sweeps through the real CLI: raising `trials` runs only the
new trials; a targeted sweep stops at the k* its chunk records give, bit-identical with 1 and 2
local processes and distributed (Celery workers on redis-server and PostgreSQL)."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path

import pytest

from models.db import make_engine, make_session_factory, session_scope
from tests.conftest import run_cli
from tests.integration.cluster import Cluster
from worker.aggregate import chunk_records, config_records
from worker.contract import merge_records

pytestmark = pytest.mark.integration

GROW = """\
name: grow
seed: 3
trials: {trials}
chunk_trials: 100
fixed: {{init: he_normal, activation: tanh, width: 8, sampler: dense}}
configs:
  - {{depth: 2}}
"""
TARGETED = """\
name: targeted
seed: 5
trials: 1000
chunk_trials: 50
target: {statistic: std, quantity: activation, layer: last, rel_se: 0.03, min_trials: 100}
grid:
  init: [he_normal, glorot_uniform]
  activation: [relu]
  depth: [3]
  width: [16]
fixed:
  sampler: dense
"""


def _chunk_rows(db: Path) -> list[tuple[int, int, int, str, int, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, chunk_index, trial_start, status, attempts, started_at FROM chunks "
            "ORDER BY configuration_id, chunk_index"
        ).fetchall()


def test_raising_trials_runs_only_the_new_ones(tmp_path: Path) -> None:
    db, spec = tmp_path / "grow.db", tmp_path / "grow.yaml"
    spec.write_text(GROW.format(trials=200))
    first = run_cli("run", str(spec), "--db", str(db), "--workers", "1")
    assert first.returncode == 0, first.stderr
    before = _chunk_rows(db)
    assert [(i, s) for _, i, s, *_ in before] == [(0, 0), (1, 100)]

    spec.write_text(GROW.format(trials=400))
    second = run_cli("run", str(spec), "--db", str(db), "--workers", "2")
    assert second.returncode == 0, second.stderr
    assert "· 4 chunks · 400 trials (200 new, 200 reused)" in second.stderr
    assert re.search(r"sweep 2: done · 2 chunks, 200 trials in", second.stderr), second.stderr
    after = _chunk_rows(db)
    assert after[:2] == before  # the old chunks were neither claimed nor run again
    assert [(i, s, status, a) for _, i, s, status, a, _ in after[2:]] == [
        (2, 200, "done", 1),
        (3, 300, "done", 1),
    ]

    factory = make_session_factory(make_engine(f"sqlite:///{db}"))
    with session_scope(factory) as session:
        merged = config_records(session=session, configuration_id=1)
        parts = [chunk_records(session=session, chunk_id=row[0]) for row in after]
    assert merged == merge_records(parts)  # bit for bit: the 200 old and the 200 new
    rows = json.loads(run_cli("results", "2", "--db", str(db), "--format", "json").stdout)
    assert {r["n_trials"] for r in rows} == {400}


def _k_star(db_url: str) -> dict[int, tuple[int, int | None]]:
    """configuration id -> (k* recomputed by hand from its chunk records, the stored stop_chunk),
    with rel SE = sqrt(m2 / (n - 1) / n) / |mean| of the merged std at the last layer."""
    import sqlalchemy as sa

    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    out: dict[int, tuple[int, int | None]] = {}
    try:
        with session_scope(factory) as session:
            configs = session.execute(
                sa.text("SELECT id, depth, stop_chunk FROM configurations ORDER BY id")
            ).all()
            for config_id, depth, stop in configs:
                chunks = session.execute(
                    sa.text(
                        "SELECT id, n_trials, status FROM chunks WHERE configuration_id = :c "
                        "ORDER BY chunk_index"
                    ),
                    {"c": config_id},
                ).all()
                merged, n, k_star = None, 0, -1
                for k, (chunk_id, n_trials, status) in enumerate(chunks):
                    assert status == "done", (k, status)
                    (record,) = [
                        r
                        for r in chunk_records(session=session, chunk_id=chunk_id)
                        if r.key == (depth, "activation")
                    ]
                    merged = record if merged is None else merged.merge(record)
                    n += n_trials
                    m = merged.std
                    rel = math.sqrt(m.m2 / (m.n - 1) / m.n) * 2.0**m.exp2 / abs(m.value)
                    if n >= 100 and rel <= 0.03:
                        k_star = k
                        break
                out[config_id] = (k_star, stop)
    finally:
        engine.dispose()
    return out


def _targeted(tmp_path: Path, workers: int) -> tuple[Path, str]:
    spec, db = tmp_path / "targeted.yaml", tmp_path / f"w{workers}.db"
    spec.write_text(TARGETED)
    proc = run_cli("run", str(spec), "--db", str(db), "--workers", str(workers))
    assert proc.returncode == 0, proc.stderr
    return db, proc.stderr


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    db, stderr = _targeted(tmp_path_factory.mktemp("one"), 1)
    out = run_cli("results", "1", "--db", str(db), "--format", "json")
    assert out.returncode == 0, out.stderr
    return db, stderr, out.stdout


def test_target_stops_at_k_star_and_says_so(one_worker: tuple[Path, str, str]) -> None:
    db, stderr, results = one_worker
    stops = _k_star(f"sqlite:///{db}")
    assert all(k == stop and 1 <= k < 19 for k, stop in stops.values()), stops  # met inside
    trials = {r["n_trials"] for r in json.loads(results)}
    assert trials == {50 * (k + 1) for k, _ in stops.values()}
    found = re.findall(
        r"target activation std at layer 3: rel_se (\S+) <= 0\.03 after (\d+) trials", stderr
    )
    assert sorted(int(n) for _, n in found) == sorted(50 * (k + 1) for k, _ in stops.values())
    status = run_cli("status", "1", "--db", str(db))
    assert status.stdout.count("<= 0.03 after") == 2 and "chunks skipped" in status.stdout


def test_two_workers_bit_identical(one_worker: tuple[Path, str, str], tmp_path: Path) -> None:
    db, _ = _targeted(tmp_path, 2)
    out = run_cli("results", "1", "--db", str(db), "--format", "json")
    assert out.stdout == one_worker[2]
    assert _k_star(f"sqlite:///{db}") == _k_star(f"sqlite:///{one_worker[0]}")


def test_distributed_bit_identical(
    one_worker: tuple[Path, str, str], cluster: Cluster, tmp_path: Path
) -> None:
    spec = tmp_path / "targeted.yaml"
    spec.write_text(TARGETED)
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    sweep_id = cluster.submit(spec, task_seconds=0.0)
    assert cluster.wait_finished(sweep_id) == "done", cluster.logs()
    assert cluster.results_json(sweep_id) == one_worker[2]
    assert _k_star(cluster.db_url) == _k_star(f"sqlite:///{one_worker[0]}")

"""Distributed throughput: 1 vs 2 worker processes, and overhead against the core's own time.

Starts a real redis-server and a throwaway PostgreSQL 15 cluster on 127.0.0.1, the reconciler
(`initsweep scheduler`) and N `initsweep worker` processes (concurrency 1 each, one TF thread
each), then for N = 1 and N = 2, in this one run:
  * warms the workers up with a small sweep of the same shapes (TF import, graph tracing);
  * submits the measured sweep and times submit → every configuration aggregated;
  * reads each chunk's core time (`duration_s`, measured inside the worker around the core).
Reports end-to-end trials/s, the 2-vs-1 speed-up, and the overhead of scheduling, broker and
database: 1 - (core seconds / N) / wall seconds.

    python benchmarks/bench_scaling.py            # ~2 minutes on 2 cores
    python benchmarks/bench_scaling.py --quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.cluster import Cluster, RedisServer, fresh_pg_database  # noqa: E402
from tests.pg import find_bindir, postgres_cluster  # noqa: E402

SPEC = """\
name: bench-scaling
seed: {seed}
trials: {trials}
chunk_trials: {chunk}
grid:
  init: [he_normal]
  activation: [relu, tanh]
  depth: [20]
  width: [192]
fixed:
  sampler: dense
"""


def _core_seconds(db_url: str, sweep_id: int) -> tuple[float, int]:
    engine = sa.create_engine(db_url, poolclass=NullPool)
    with engine.connect() as conn:
        seconds, trials = conn.execute(
            sa.text(
                "SELECT sum(c.duration_s), sum(c.n_trials) FROM chunks c JOIN "
                "sweep_configurations s ON s.configuration_id = c.configuration_id "
                "WHERE s.sweep_id = :s"
            ),
            {"s": sweep_id},
        ).one()
    engine.dispose()
    return float(seconds), int(trials)


def run_once(pg_admin: str, n_workers: int, trials: int, chunk: int, tmp: Path) -> dict[str, float]:
    redis = RedisServer(tmp / f"redis{n_workers}").start()
    gen = fresh_pg_database(pg_admin)
    db_url = next(gen)
    logdir = tmp / f"logs{n_workers}"
    logdir.mkdir()
    cluster = Cluster(broker_url=redis.url(), db_url=db_url, logdir=logdir)
    try:
        assert cluster.cli("db", "upgrade").returncode == 0
        for i in range(n_workers):
            cluster.start_worker(f"w{i}")
        cluster.start_scheduler(max_in_flight=2 * n_workers + 2)
        warm = tmp / f"warm{n_workers}.yaml"
        warm.write_text(SPEC.format(seed=99, trials=2 * chunk * n_workers, chunk=chunk))
        cluster.wait_finished(cluster.submit(warm), timeout=600)
        spec = tmp / f"spec{n_workers}.yaml"
        spec.write_text(SPEC.format(seed=1, trials=trials, chunk=chunk))
        start = time.perf_counter()
        sweep_id = cluster.submit(spec)
        status = cluster.wait_finished(sweep_id, timeout=1800)
        wall = time.perf_counter() - start
        assert status == "done", cluster.logs()
        core_s, n = _core_seconds(db_url, sweep_id)
        return {"wall_s": wall, "trials": n, "core_s": core_s}
    finally:
        cluster.stop_all()
        redis.stop()
        gen.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sweep")
    args = parser.parse_args()
    trials, chunk = (400, 50) if args.quick else (1200, 75)
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found")
    with tempfile.TemporaryDirectory() as tmpdir, postgres_cluster(bindir) as pg:
        tmp = Path(tmpdir)
        results = {n: run_once(pg, n, trials, chunk, tmp / str(n)) for n in (1, 2)}
    print(f"sweep: 2 configurations x {trials} trials, depth 20, width 192, chunks of {chunk}")
    print(f"{'workers':>8} {'wall s':>8} {'trials/s':>9} {'core s':>8} {'overhead':>9}")
    for n, r in results.items():
        rate = r["trials"] / r["wall_s"]
        overhead = 1.0 - (r["core_s"] / n) / r["wall_s"]
        print(f"{n:>8} {r['wall_s']:>8.1f} {rate:>9.1f} {r['core_s']:>8.1f} {overhead:>9.1%}")
    r1, r2 = results[1], results[2]
    speedup = (r2["trials"] / r2["wall_s"]) / (r1["trials"] / r1["wall_s"])
    print(f"speed-up with 2 workers: {speedup:.2f}x (target >= 1.7x)")
    core_rate_1 = r1["trials"] / r1["core_s"]
    e2e_rate_1 = r1["trials"] / r1["wall_s"]
    print(
        f"end to end vs core (1 worker): {e2e_rate_1:.1f} vs {core_rate_1:.1f} trials/s "
        f"= {e2e_rate_1 / core_rate_1:.1%} (target overhead <= 20%)"
    )


if __name__ == "__main__":
    main()

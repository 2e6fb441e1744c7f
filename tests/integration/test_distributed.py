"""Distributed sweeps on real redis-server, PostgreSQL and `initsweep worker` processes.

Every test ends with every chunk recorded exactly once and results bit-identical to the
embedded run (`initsweep run` on SQLite) of the same spec, whatever failed on the way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.integration.cluster import (
    REDIS_PASSWORD,
    Cluster,
    RedisServer,
    restart_postgres,
    wait_for,
)

pytestmark = pytest.mark.integration

SPEC = """\
name: distributed
seed: 11
trials: 160
chunk_trials: 20
grid:
  init: [he_normal, glorot_uniform]
  activation: [relu, tanh]
  depth: [12]
  width: [96]
fixed:
  sampler: dense
"""
N_CHUNKS = 4 * 8
ROWS_PER_CHUNK = 1 + 12 * 3


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dist") / "sweep.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def reference(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`results --format json` of the embedded run of the same spec."""
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    proc = run_cli("run", str(spec), "--db", str(db), "-q")
    assert proc.returncode == 0, proc.stderr
    out = run_cli("results", "1", "--db", str(db), "--format", "json")
    assert out.returncode == 0, out.stderr
    return out.stdout


def _assert_exact(cluster: Cluster, sweep_id: int, reference: str) -> None:
    assert cluster.wait_finished(sweep_id) == "done", cluster.logs()
    assert cluster.stats_rows_per_chunk() == [ROWS_PER_CHUNK] * N_CHUNKS
    assert cluster.results_json(sweep_id) == reference


def _wait_running(cluster: Cluster, sweep_id: int, timeout: float = 120) -> None:
    wait_for(
        lambda: cluster.chunk_counts(sweep_id).get("running", 0) > 0, timeout, "a running chunk"
    )


def test_two_workers_match_embedded_run(cluster: Cluster, spec: Path, reference: str) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    sweep_id = cluster.submit(spec)
    _assert_exact(cluster, sweep_id, reference)
    status = cluster.cli("status", str(sweep_id))
    assert status.returncode == 0
    assert "done" in status.stdout
    logs = cluster.logs() + status.stdout + status.stderr
    assert "test-redis-pw" not in logs, "a credential leaked into logs or status"


def test_pool_process_sigkill_three_times(cluster: Cluster, spec: Path, reference: str) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    sweep_id = cluster.submit(spec)
    for _ in range(3):
        _wait_running(cluster, sweep_id)
        time.sleep(0.3)
        children = cluster.children("w1") or cluster.children("w2")
        assert children, cluster.logs()
        os.kill(children[0], signal.SIGKILL)
        time.sleep(1.0)
    _assert_exact(cluster, sweep_id, reference)


def test_worker_main_process_sigkill(cluster: Cluster, spec: Path, reference: str) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler(stale_after=5)
    sweep_id = cluster.submit(spec)
    _wait_running(cluster, sweep_id)
    wait_for(lambda: cluster.chunk_counts(sweep_id).get("done", 0) >= 2, 120, "two chunks done")
    cluster.kill("w1", group=False)  # the main process only; its pool is orphaned
    started = time.monotonic()
    _assert_exact(cluster, sweep_id, reference)
    assert time.monotonic() - started < 240


def test_redis_kill9_and_restart(
    cluster: Cluster, redis_server: RedisServer, spec: Path, reference: str
) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    sweep_id = cluster.submit(spec)
    wait_for(lambda: cluster.chunk_counts(sweep_id).get("done", 0) >= 3, 120, "three chunks done")
    redis_server.kill9()
    time.sleep(2.0)
    redis_server.start()  # same port, same AOF directory
    _assert_exact(cluster, sweep_id, reference)
    assert cluster.procs["w1"].poll() is None and cluster.procs["w2"].poll() is None


def test_every_chunk_published_twice_shuffled(cluster: Cluster, spec: Path, reference: str) -> None:
    sweep_id = cluster.submit(spec, max_in_flight=10_000)  # everything once
    code = (
        "import random, sqlalchemy as sa, os\n"
        "from worker.celery_app import app\n"
        "from worker.contract import TASK_NAME\n"
        "e = sa.create_engine(os.environ['INITSWEEP_DATABASE_URL'])\n"
        "ids = [r[0] for r in e.connect().execute(sa.text('SELECT id FROM chunks'))]\n"
        "random.Random(3).shuffle(ids)\n"
        "for i in ids: app.send_task(TASK_NAME, args=[i], queue='cpu')\n"
        "print(len(ids))\n"
    )
    sent = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=cluster.env(), capture_output=True, text=True
    )
    assert sent.returncode == 0 and sent.stdout.strip() == str(N_CHUNKS), sent.stderr
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    _assert_exact(cluster, sweep_id, reference)


def test_every_chunk_in_two_grouped_tasks(cluster: Cluster, spec: Path, reference: str) -> None:
    """Grouped tasks delivered twice over (each chunk in two overlapping lists, shuffled) and
    single-chunk messages besides: every chunk recorded exactly once."""
    sweep_id = cluster.submit(spec, max_in_flight=10_000)  # everything once, grouped
    code = (
        "import random, sqlalchemy as sa, os\n"
        "from worker.celery_app import app\n"
        "from worker.contract import TASK_NAME, TASKS_NAME\n"
        "e = sa.create_engine(os.environ['INITSWEEP_DATABASE_URL'])\n"
        "ids = [r[0] for r in e.connect().execute(sa.text('SELECT id FROM chunks'))]\n"
        "r = random.Random(5)\n"
        "for _ in range(2):\n"
        "    r.shuffle(ids)\n"
        "    for i in range(0, len(ids), 5):\n"
        "        app.send_task(TASKS_NAME, args=[ids[i:i + 5]], queue='cpu')\n"
        "app.send_task(TASK_NAME, args=[ids[0]], queue='cpu')\n"
        "print(len(ids))\n"
    )
    sent = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=cluster.env(), capture_output=True, text=True
    )
    assert sent.returncode == 0 and sent.stdout.strip() == str(N_CHUNKS), sent.stderr
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    _assert_exact(cluster, sweep_id, reference)


def test_postgres_restart_mid_sweep(cluster: Cluster, spec: Path, reference: str) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    cluster.start_scheduler()
    sweep_id = cluster.submit(spec)
    wait_for(lambda: cluster.chunk_counts(sweep_id).get("done", 0) >= 3, 120, "three chunks done")
    restart_postgres(cluster.db_url)
    _assert_exact(cluster, sweep_id, reference)


def test_poison_chunk_fails_bounded_then_resume(
    cluster: Cluster, spec: Path, reference: str
) -> None:
    # The first configuration of the spec, chunk 2, fails every time while the cause is present.
    first = run_cli("validate", str(spec))
    assert first.returncode == 0
    import yaml

    from scheduler.chunking import plan_sweep
    from scheduler.spec import parse_spec

    plan = plan_sweep(parse_spec(yaml.safe_dump(yaml.safe_load(SPEC))))
    poison = f"{plan.configs[0].config_hash[:16]}:2"
    cluster.start_worker("w1", INITSWEEP_FAIL_CHUNKS=poison)
    cluster.start_worker("w2", INITSWEEP_FAIL_CHUNKS=poison)
    cluster.start_scheduler()
    sweep_id = cluster.submit(spec)
    assert cluster.wait_finished(sweep_id) == "partial", cluster.logs()
    counts = cluster.chunk_counts(sweep_id)
    assert counts == {"done": N_CHUNKS - 1, "failed": 1}
    show = cluster.cli("results", str(sweep_id), "--format", "json")
    partial = json.loads(show.stdout)
    full = json.loads(reference)
    complete = [r for r in partial if r["complete"]]
    assert len(complete) == len(full) - ROWS_PER_CHUNK  # the poisoned configuration is partial
    assert all(r in full for r in complete)  # everything else exact
    poisoned = [r for r in partial if not r["complete"]]
    assert len(poisoned) == ROWS_PER_CHUNK and {r["n_trials"] for r in poisoned} == {140}

    import sqlalchemy as sa

    engine = sa.create_engine(cluster.db_url)
    with engine.connect() as conn:
        attempts, error = conn.execute(
            sa.text("SELECT attempts, error FROM chunks WHERE status = 'failed'")
        ).one()
    engine.dispose()
    assert attempts == 3 and "injected failure" in error

    # Remove the cause: restart the workers without it, then resume.
    cluster.kill("w1")
    cluster.kill("w2")
    cluster.procs["w1"].wait(10)
    cluster.procs["w2"].wait(10)
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    resumed = cluster.cli("resume", str(sweep_id), "--distributed")
    assert resumed.returncode == 0, resumed.stderr
    _assert_exact(cluster, sweep_id, reference)


def test_pickle_message_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    """A well-formed Celery message serialized with pickle is refused, never unpickled."""
    marker = tmp_path / "pwned"
    code = (
        "import os, sys\n"
        "from worker.celery_app import app\n"
        "from worker.contract import TASK_NAME\n"
        "class Exploit:\n"
        "    def __reduce__(self):\n"
        "        return (os.system, ('touch ' + sys.argv[1],))\n"
        "app.send_task(TASK_NAME, args=[Exploit()], serializer='pickle', queue='cpu')\n"
    )
    sent = subprocess.run(
        [sys.executable, "-c", code, str(marker)], cwd=ROOT, env=cluster.env(),
        capture_output=True, text=True,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert not marker.exists()
    cluster.start_worker("w1")
    wait_for(
        lambda: "disallowed" in cluster.logs().lower(),
        90,
        "the worker to refuse the pickle message",
    )
    time.sleep(1.0)
    assert not marker.exists(), "a pickle message was deserialized and executed"
    assert cluster.procs["w1"].poll() is None


def test_submit_to_a_broker_that_refuses_the_password_records_nothing(
    cluster: Cluster, spec: Path
) -> None:
    wrong = cluster.broker_url.replace(f":{REDIS_PASSWORD}@", ":wrong-password@")
    assert wrong != cluster.broker_url
    proc = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", "submit", str(spec)],
        cwd=ROOT,
        env={**cluster.env(), "INITSWEEP_BROKER_URL": wrong},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("initsweep: error: cannot reach the broker")
    assert "nothing was recorded" in lines[0] and "wrong-password" not in lines[0]
    sweeps = cluster.cli("sweeps")
    assert sweeps.returncode == 0 and "distributed" not in sweeps.stdout


def test_cancel_stops_queued_chunks(cluster: Cluster, spec: Path, reference: str) -> None:
    import redis

    # 8 messages (a chunk each) wait in the queue, no worker
    sweep_id = cluster.submit(spec, max_in_flight=8, task_seconds=0)
    cancelled = cluster.cli("cancel", str(sweep_id))
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    queue = redis.Redis.from_url(cluster.broker_url)
    assert queue.llen("cpu") == 8
    cluster.start_worker("w1", concurrency=2)
    wait_for(lambda: queue.llen("cpu") == 0, 120, "the worker to drain the queue")
    time.sleep(2)  # the last message's claim
    assert cluster.chunk_counts(sweep_id).get("done", 0) == 0  # none of them ran
    assert cluster.sweep_status(sweep_id) == "cancelled"
    again = cluster.cli("cancel", str(sweep_id))
    assert again.returncode == 0 and "already" in again.stdout

    cluster.start_scheduler()
    resumed = cluster.cli("resume", str(sweep_id), "--distributed")
    assert resumed.returncode == 0, resumed.stderr
    _assert_exact(cluster, sweep_id, reference)
    refused = cluster.cli("cancel", str(sweep_id))
    assert refused.returncode == 2 and "a done sweep" in refused.stderr


def test_workers_survive_a_full_redis(
    cluster: Cluster, redis_server: RedisServer, spec: Path, reference: str
) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, password=REDIS_PASSWORD)
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    # a chunk per message, so most of them still wait in Redis when it fills up (grouped
    # tasks could all have been delivered before)
    cluster.start_scheduler(requeue_after=5, max_in_flight=N_CHUNKS, task_seconds=0)
    sweep_id = cluster.submit(spec, max_in_flight=N_CHUNKS, task_seconds=0)
    _wait_running(cluster, sweep_id)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used + (1 << 20)))
    blob = b"x" * (64 << 10)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(1000):
            client.set(f"junk:{i}", blob)
    # well below what is used now: every write is refused whatever deliveries free meanwhile
    client.config_set("maxmemory", str(int(client.info("memory")["used_memory"]) - (1 << 20)))
    done_before = cluster.chunk_counts(sweep_id).get("done", 0)
    time.sleep(15)  # workers and scheduler meet OOM errors meanwhile
    for name in ("w1", "w2", "scheduler"):
        assert cluster.procs[name].poll() is None, (name, cluster.logs())
    assert cluster.chunk_counts(sweep_id).get("done", 0) < N_CHUNKS or done_before == N_CHUNKS
    for key in client.scan_iter("junk:*"):
        client.delete(key)
    client.config_set("maxmemory", "0")
    _assert_exact(cluster, sweep_id, reference)

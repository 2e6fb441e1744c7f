"""Horizontal scaling across network namespaces: workers reach Redis and PostgreSQL over veth.

Each worker runs in its own network namespace (`ip netns` + a veth pair), so it can reach the
broker and the database only through their addresses on the veth links, never through the
scheduler host's loopback: the sweep completes only if nothing depends on shared localhost
services. Skips with a printed reason where namespaces cannot be created (not root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.cluster import Cluster, RedisServer, free_port
from tests.pg import find_bindir

pytestmark = pytest.mark.integration

SPEC = """\
name: netns
seed: 5
trials: 120
chunk_trials: 20
grid:
  init: [he_normal, lecun_uniform]
  activation: [relu]
  depth: [8]
  width: [64]
fixed:
  sampler: dense
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces() -> Iterator[list[tuple[str, str, str]]]:
    """Two namespaces; yields (name, host address, namespace address) per namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        reason = "network namespaces need root and iproute2"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    made: list[tuple[str, str, str]] = []
    try:
        for i in (1, 2):
            ns, host_if, ns_if = f"isw{tag}{i}", f"ih{tag}{i}", f"in{tag}{i}"
            host_ip, ns_ip = f"10.231.{i}.1", f"10.231.{i}.2"
            _ip("netns", "add", ns)
            made.append((ns, host_ip, ns_ip))
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", ns_if, "netns", ns)
            _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
            _ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
            _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        for ns, _, _ in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        reason = f"cannot create network namespaces here: {exc.stderr.decode().strip()}"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    yield made
    for i, (ns, _, _) in enumerate(made, start=1):
        subprocess.run(["ip", "link", "del", f"ih{tag}{i}"], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def pg_on(namespaces: list[tuple[str, str, str]]) -> Iterator[int]:
    """A PostgreSQL cluster listening on loopback and on the host ends of the veth links."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found")
    import pwd

    user = pwd.getpwnam("postgres")
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    root = Path(tempfile.mkdtemp(prefix="initsweep-pgns-"))
    os.chown(root, user.pw_uid, user.pw_gid)
    data, port = root / "data", free_port()
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync",
         "--no-instructions"],
        check=True, capture_output=True, cwd=root, **as_user,  # type: ignore[arg-type]
    )  # fmt: skip
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write("host all all 10.231.0.0/16 trust\n")
    listen = ",".join(["127.0.0.1", *(host for _, host, _ in namespaces)])
    subprocess.run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
         f"-p {port} -k {root} -c listen_addresses={listen} -c fsync=off", "start"],
        check=True, capture_output=True, cwd=root, **as_user,  # type: ignore[arg-type]
    )  # fmt: skip
    subprocess.run(
        [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "sweeps"],
        check=True, capture_output=True,
    )  # fmt: skip
    yield port
    subprocess.run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
        capture_output=True, cwd=root, **as_user,  # type: ignore[arg-type]
    )  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


def test_workers_in_network_namespaces(
    namespaces: list[tuple[str, str, str]], pg_on: int, tmp_path: Path
) -> None:
    redis = RedisServer(
        tmp_path / "redis", bind=("127.0.0.1", *(host for _, host, _ in namespaces))
    ).start()
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SPEC)
    local_db = f"postgresql+psycopg://postgres@127.0.0.1:{pg_on}/sweeps"
    (tmp_path / "logs").mkdir()
    host = Cluster(broker_url=redis.url(), db_url=local_db, logdir=tmp_path / "logs")
    try:
        assert host.cli("db", "upgrade").returncode == 0
        for i, (ns, host_ip, _) in enumerate(namespaces, start=1):
            remote = Cluster(
                broker_url=redis.url(host_ip),
                db_url=f"postgresql+psycopg://postgres@{host_ip}:{pg_on}/sweeps",
                logdir=tmp_path / "logs",
                extra_env={"HOME": str(tmp_path / f"home{i}"), "INITSWEEP_WORKER_NAME": f"ns{i}"},
            )
            proc = remote.start_worker(f"ns{i}", prefix=["ip", "netns", "exec", ns])
            host.procs[f"ns{i}"] = proc
            # Inside the namespace the scheduler host's loopback services do not exist.
            probe = subprocess.run(
                ["ip", "netns", "exec", ns, "python3", "-c",
                 f"import socket; socket.create_connection(('127.0.0.1', {redis.port}), 2)"],
                capture_output=True,
            )  # fmt: skip
            assert probe.returncode != 0, "the namespace must not reach the host's loopback"
        # one chunk per message, so both workers take some (grouped tasks could all go to one)
        host.start_scheduler(task_seconds=0)
        sweep_id = host.submit(spec, task_seconds=0)
        assert host.wait_finished(sweep_id, timeout=300) == "done", host.logs()
        import sqlalchemy as sa

        engine = sa.create_engine(local_db)
        with engine.connect() as conn:
            ran = {w.split(":")[0] for (w,) in conn.execute(sa.text("SELECT worker FROM chunks"))}
        engine.dispose()
        assert ran == {"ns1", "ns2"}, "both namespaced workers must have run chunks"
        ref_db = tmp_path / "ref.db"
        assert run_cli("run", str(spec), "--db", str(ref_db), "-q").returncode == 0
        reference = run_cli("results", "1", "--db", str(ref_db), "--format", "json").stdout
        assert host.results_json(sweep_id) == reference
    finally:
        host.stop_all()
        redis.stop()

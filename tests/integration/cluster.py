"""A real cluster for integration tests: redis-server, PostgreSQL, `initsweep worker` processes.

Everything runs as separate OS processes on 127.0.0.1 (or over veth links from network
namespaces), started and stopped by the tests; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.conftest import ROOT

REDIS_PASSWORD = "test-redis-pw-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    """Poll `predicate` until true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class RedisServer:
    """A password-protected redis-server with AOF persistence in a temp dir."""

    workdir: Path
    bind: tuple[str, ...] = ("127.0.0.1",)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, host: str = "127.0.0.1") -> str:
        return f"redis://:{REDIS_PASSWORD}@{host}:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", *self.bind, "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--requirepass", REDIS_PASSWORD, "--protected-mode", "no"],
            stdout=open(self.workdir / "redis.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._ready, 20, "redis-server to accept connections")
        return self

    def _ready(self) -> bool:
        import redis

        client = redis.Redis(
            host="127.0.0.1", port=self.port, password=REDIS_PASSWORD, socket_timeout=1
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def fresh_pg_database(admin_url: str) -> Iterator[str]:
    """A new empty database on the test cluster; dropped afterwards."""
    name = f"it_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def restart_postgres(url: str) -> None:
    """`pg_ctl restart -m fast` of the cluster serving `url` (run as its OS user)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        data_dir = conn.exec_driver_sql("SHOW data_directory").scalar_one()
    engine.dispose()
    bindir = Path(str(shutil.which("pg_ctl") or "")).parent
    from tests.pg import find_bindir

    bindir = find_bindir() or bindir
    as_user: dict[str, object] = {}
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    log = str(Path(data_dir).parent / "restart.log")  # the server must not hold our pipes
    subprocess.run(
        [str(bindir / "pg_ctl"), "-D", data_dir, "-l", log, "-m", "fast", "-w", "-t", "60",
         "restart"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90, cwd="/tmp",
        **as_user,  # type: ignore[arg-type]
    )  # fmt: skip


@dataclass
class Cluster:
    """Workers, a scheduler and CLI calls sharing one broker URL and one database URL."""

    broker_url: str
    db_url: str
    logdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, **more: str) -> dict[str, str]:
        return {
            **os.environ,
            "INITSWEEP_BROKER_URL": self.broker_url,
            "INITSWEEP_DATABASE_URL": self.db_url,
            "INITSWEEP_HEARTBEAT_S": "0.5",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
            **more,
        }

    def _spawn(self, name: str, args: list[str], prefix: list[str] | None = None,
               **env: str) -> subprocess.Popen[bytes]:  # fmt: skip
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "scheduler.cli", *args],
            cwd=ROOT, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str, concurrency: int = 1, prefix: list[str] | None = None,
                     **env: str) -> subprocess.Popen[bytes]:  # fmt: skip
        return self._spawn(
            name,
            ["worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h",
             "--loglevel", "INFO"],
            prefix=prefix, **env,
        )  # fmt: skip

    def start_scheduler(self, *, stale_after: float = 6, requeue_after: float = 20,
                        max_in_flight: int = 6,
                        task_seconds: float = 1.0) -> subprocess.Popen[bytes]:  # fmt: skip
        return self._spawn(
            "scheduler",
            ["scheduler", "--interval", "0.5", "--stale-after", str(stale_after),
             "--requeue-after", str(requeue_after), "--max-in-flight", str(max_in_flight),
             "--task-seconds", str(task_seconds)],
        )  # fmt: skip

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scheduler.cli", *args],
            cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def submit(self, spec: Path, max_in_flight: int = 6, task_seconds: float = 1.0) -> int:
        proc = self.cli("submit", str(spec), "-q", "--max-in-flight", str(max_in_flight),
                        "--task-seconds", str(task_seconds))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.strip())

    def chunk_counts(self, sweep_id: int) -> dict[str, int]:
        engine = sa.create_engine(self.db_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT c.status, count(*) FROM chunks c JOIN sweep_configurations s "
                        "ON s.configuration_id = c.configuration_id WHERE s.sweep_id = :s "
                        "GROUP BY c.status"
                    ),
                    {"s": sweep_id},
                ).all()
        except sa.exc.OperationalError:
            return {}
        finally:
            engine.dispose()
        return {status: int(n) for status, n in rows}

    def sweep_status(self, sweep_id: int) -> str:
        engine = sa.create_engine(self.db_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return str(
                    conn.execute(
                        sa.text("SELECT status FROM sweeps WHERE id = :s"), {"s": sweep_id}
                    ).scalar_one()
                )
        finally:
            engine.dispose()

    def wait_finished(self, sweep_id: int, timeout: float = 240) -> str:
        wait_for(
            lambda: self.sweep_status(sweep_id) in ("done", "partial"),
            timeout,
            f"sweep {sweep_id} to finish (chunks: {self.chunk_counts(sweep_id)}; logs in "
            f"{self.logdir})",
            every=0.5,
        )
        return self.sweep_status(sweep_id)

    def results_json(self, sweep_id: int) -> str:
        proc = self.cli("results", str(sweep_id), "--format", "json")
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def stats_rows_per_chunk(self) -> list[int]:
        engine = sa.create_engine(self.db_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return [
                    int(n)
                    for (n,) in conn.execute(
                        sa.text(
                            "SELECT count(*) FROM chunks c LEFT JOIN chunk_stats s "
                            "ON s.chunk_id = c.id GROUP BY c.id ORDER BY c.id"
                        )
                    )
                ]
        finally:
            engine.dispose()

    def children(self, name: str) -> list[int]:
        """Pids of the pool processes of worker `name`."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.procs[name].pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def kill(self, name: str, sig: int = signal.SIGKILL, group: bool = True) -> None:
        proc = self.procs[name]
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logdir.glob("*.log"))
        )


def records(text: str) -> list[dict[str, object]]:
    return list(json.loads(text))

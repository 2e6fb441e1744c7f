"""A throwaway PostgreSQL cluster for tests (initdb into a temp dir, 127.0.0.1, a free port).

`pg_url` is a session-scoped fixture yielding `postgresql+psycopg://postgres@127.0.0.1:PORT/
initsweep_test`; with $INITSWEEP_TEST_PG_URL set it yields that URL instead and starts nothing
(the role must be allowed to create databases). It skips only when no PostgreSQL server binaries
are found ($INITSWEEP_PG_BIN, /usr/lib/postgresql/*/bin, or initdb on PATH). As root, the
cluster runs as the `postgres` OS user (initdb refuses root). Import it into a conftest:
`from tests.pg import pg_url`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV_URL = "INITSWEEP_TEST_PG_URL"
ENV_BIN = "INITSWEEP_PG_BIN"
DATABASE = "initsweep_test"


def find_bindir() -> Path | None:
    """The directory of PostgreSQL's initdb/pg_ctl, newest version first; None if absent."""
    candidates = [os.environ.get(ENV_BIN, "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> dict[str, Any]:
    """subprocess kwargs that drop root to `postgres`; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` OS user to run PostgreSQL as")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _run(cmd: list[str], **kwargs: Any) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr}")


@contextlib.contextmanager
def postgres_cluster(bindir: Path, database: str = DATABASE) -> Iterator[str]:
    """Start a cluster in a temp dir, create `database`, yield its URL; stop and remove it after."""
    as_user = _as_user()
    root = Path(tempfile.mkdtemp(prefix="initsweep-pg-"))
    data, log = root / "data", root / "server.log"
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    port = _free_port()
    env = {**os.environ, "LC_ALL": "C", "PGTZ": "UTC"}
    started = False
    try:
        _run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            env=env, cwd=root, **as_user,
        )  # fmt: skip
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        try:
            _run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                 "-w", "-t", "60", "start"],
                env=env, cwd=root, **as_user,
            )  # fmt: skip
        except RuntimeError as e:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{e}\nserver log:\n{text}") from e
        started = True
        _run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             database],
            env=env, cwd=root,
        )  # fmt: skip
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    finally:
        if started:
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True, env=env, cwd=root, timeout=60, **as_user,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a PostgreSQL database for this test session (see the module docstring)."""
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (apt-get install postgresql, or set "
            f"{ENV_BIN} to the bin dir holding initdb, or {ENV_URL} to a running server)"
        )
    with postgres_cluster(bindir) as url:
        yield url

"""Shared fixtures: the repo root, a CLI runner in a subprocess, markers by folder."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.pg import pg_url  # noqa: F401  (one session-scoped PostgreSQL cluster for all)

# A suite started in the background by a shell (`make test &`, nohup) has SIGINT ignored, and
# every process it starts would keep it ignored (an ignored signal survives exec): the tests
# that interrupt a run with Ctrl-C need it delivered. A handler (unlike SIG_IGN) is reset to the
# default in each child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
_FOLDER_MARKS = {"unit": "unit", "sim": "sim", "db": "db", "integration": "integration"}


# The files that take minutes, longest first (measured with 2 processes). `make test` hands whole
# files to its processes in collection order (--dist loadfile --no-loadscope-reorder): starting
# the long ones first keeps both processes busy till the end instead of one finishing a long file
# alone. Other files keep their order, after these. A wrong or stale entry costs time, never a test.
LONG_FILES = (  # seconds of a loaded 2-process run, for reference
    "integration/test_distributed.py",  # 958
    "sim/test_conditional.py",  # 756
    "integration/test_lifecycle.py",  # 672
    "integration/test_hostile_input.py",  # 654
    "integration/test_local_run.py",  # 502
    "sim/test_conditional_extremes.py",  # 420
    "integration/test_cli_output.py",  # 340
    "integration/test_report.py",  # 325
    "integration/test_ui.py",  # 323
    "integration/test_extreme_theory.py",  # 285
    "integration/test_cli_errors.py",  # 257
    "integration/test_partial.py",  # 254
    "integration/test_targets.py",  # 232
    "sim/test_traces.py",  # 228
    "integration/test_netns.py",  # 214
    "integration/test_where.py",  # 203
    "integration/test_plot_cli.py",  # 198
    "integration/test_api.py",  # 164
    "sim/test_correlation_map.py",  # 150
)


def _long_first(item: pytest.Item) -> int:
    path = Path(str(item.fspath))
    name = f"{path.parent.name}/{path.name}"
    return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries the marker of its folder (tests/unit -> unit, ...); the long files
    come first (a stable sort: the order within a file is unchanged)."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        mark = _FOLDER_MARKS.get(folder)
        if mark is not None and mark not in item.keywords:
            item.add_marker(getattr(pytest.mark, mark))
    items.sort(key=_long_first)


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`initsweep ARGS` in a fresh interpreter, as a user runs it."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd or ROOT,
    )


def descendants(pid: int) -> set[int]:
    """The pids of every process below `pid` (Linux /proc)."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    stack.append(child)
    return found


def cmdline(pid: int) -> str:
    """The command line of `pid`, its arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def chunks_done(db: Path) -> int:
    """Chunks `done` in the SQLite database `db` (0 before it exists)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=60) as conn:
        return int(conn.execute("SELECT count(*) FROM chunks WHERE status='done'").fetchone()[0])


def _terminate_pending(pid: int) -> bool:
    """Whether `pid` has a SIGTERM pending, or is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    pending = (line.split()[1] for line in status.splitlines() if line[:6] in ("SigPnd", "ShdPnd"))
    return any(int(mask, 16) & (1 << (signal.SIGTERM - 1)) for mask in pending)


def interrupt_mid_run(
    proc: subprocess.Popen[str], done: Callable[[], int], total: int, at_least: int = 3
) -> int:
    """Ctrl-C (SIGINT) to the local run `proc` once `done()` >= `at_least`, landing for sure
    while fewer than `total` chunks are done: its pool processes are frozen (SIGSTOP) before
    the count that decides is read, and go on only once the run has sent them SIGTERM (so
    none saves a chunk after the interrupt, however starved this process is). The count."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if done() >= at_least:
                break
        except sqlite3.OperationalError:  # its tables are not there yet, or it is busy
            pass
        time.sleep(0.05)
    frozen = descendants(proc.pid)
    pool = [pid for pid in frozen if "spawn_main" in cmdline(pid)]
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        count = done()
        assert count < total, f"the sweep finished ({count} chunks) before the interrupt"
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if all(_terminate_pending(pid) for pid in pool):
                break
            time.sleep(0.01)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    return count


@pytest.fixture
def cli():  # type: ignore[no-untyped-def]
    """The `run_cli` helper as a fixture."""
    return run_cli

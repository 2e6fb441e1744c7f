"""Shared fixtures: the repo root, a CLI runner in a subprocess, markers by folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import pg_url  # noqa: F401  (one session-scoped PostgreSQL cluster for all)

ROOT = Path(__file__).resolve().parent.parent
_FOLDER_MARKS = {"unit": "unit", "sim": "sim", "db": "db", "integration": "integration"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries the marker of its folder (tests/unit -> unit, ...)."""
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        mark = _FOLDER_MARKS.get(folder)
        if mark is not None and mark not in item.keywords:
            item.add_marker(getattr(pytest.mark, mark))


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


@pytest.fixture
def cli():  # type: ignore[no-untyped-def]
    """The `run_cli` helper as a fixture."""
    return run_cli

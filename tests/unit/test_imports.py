"""The CLI and the Celery app start without TensorFlow (import rule of ARCHITECTURE.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "modules",
    [
        "scheduler.cli",
        "worker.celery_app, worker.tasks",
        "scheduler.query, worker.pool, scheduler.spec, scheduler.chunking, scheduler.analysis.theory",
        "models.db, worker.persist, scheduler.store, worker.aggregate",
        "scheduler.export, pyarrow.parquet",
    ],
)
def test_no_tensorflow_at_import(modules: str) -> None:
    code = (
        f"import sys; import {modules}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

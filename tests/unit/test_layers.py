"""Every import runs downhill: the layout's rules hold on the project and catch violations."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from tests.layering import RULES, orm_violations, violations

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("initsweep", "models", "worker", "scheduler")


def test_project_follows_the_import_rules() -> None:
    problems = violations(ROOT, PACKAGES, RULES) + orm_violations(ROOT, PACKAGES)
    assert problems == []


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))
    for package in PACKAGES:
        for folder in [root / package, *(p for p in (root / package).rglob("*") if p.is_dir())]:
            (folder / "__init__.py").touch()


CLEAN = {
    "models/chunk.py": "import sqlalchemy\n",
    "worker/contract.py": "import json\n",
    "worker/persist.py": "from models import Chunk\nfrom worker.contract import json\n",
    "worker/sim/dense.py": "import tensorflow as tf\nfrom worker.contract import json\n",
    "scheduler/store.py": "from models.chunk import sqlalchemy\n",
    "scheduler/cli.py": "def main():\n    from scheduler.store import sqlalchemy\n",
    "initsweep/api.py": "def run():\n    from scheduler.store import sqlalchemy\n",
}


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    _tree(tmp_path, CLEAN)
    assert violations(tmp_path, PACKAGES, RULES) + orm_violations(tmp_path, PACKAGES) == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("models/sweep.py", "from scheduler.store import x\n", "models is the bottom layer"),
        ("worker/contract.py", "import tensorflow\n", "numpy-only worker modules"),
        ("worker/stats.py", "from sqlalchemy import select\n", "numpy-only worker modules"),
        ("worker/sim/graph.py", "import celery\n", "worker.sim is pure compute"),
        ("scheduler/plots.py", "import tensorflow\n", "only worker.sim imports TensorFlow"),
        # a lazy import inside a function counts as much as one at the top
        ("worker/tasks.py", "def f():\n    import scheduler.store\n", "worker never imports"),
        ("scheduler/sweeps.py", "from worker.sim import dense\n", "scheduler sends by task name"),
        ("scheduler/reconcile.py", "from worker import persist\n", "scheduler sends by task name"),
        ("scheduler/analysis/plots.py", "import rich\n", "analysis takes values"),
        ("scheduler/analysis/report.py", "from models import db\n", "analysis takes values"),
        ("scheduler/query.py", "from models import Chunk\n", "ORM classes only in storage"),
        ("scheduler/progress.py", "from models.chunk import C\n", "ORM modules only in storage"),
        ("scheduler/cli.py", "from scheduler.store import _table\n", "private name"),
        ("worker/memory.py", "from .contract import _x\n", "private name"),
        ("scheduler/spec/parse.py", "from scheduler.spec import expand\n", ""),
        ("scheduler/query.py", "import initsweep\n", "initsweep is the top"),
        ("initsweep/api.py", "from worker.sim import dense\n", "the Python API starts without"),
        ("initsweep/api.py", "import tensorflow\n", "the Python API starts without"),
    ],
)
def test_checker_catches_a_violation(tmp_path: Path, name: str, text: str, expected: str) -> None:
    _tree(tmp_path, {**CLEAN, name: text})
    problems = violations(tmp_path, PACKAGES, RULES) + orm_violations(tmp_path, PACKAGES)
    if expected:
        assert any(expected in p and name in p for p in problems), problems
    else:  # a legitimate import of a sibling module
        assert problems == []


def test_checker_catches_a_cycle(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            **CLEAN,
            "scheduler/spec/parse.py": "from scheduler.spec.expand import expand\n",
            "scheduler/spec/expand.py": "def f():\n    from scheduler.spec import parse\n",
        },
    )
    problems = violations(tmp_path, PACKAGES, RULES)
    assert problems == ["import cycle: scheduler.spec.expand -> scheduler.spec.parse"]

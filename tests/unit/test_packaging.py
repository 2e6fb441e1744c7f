"""pyproject.toml declares what the product imports and nothing else, and ships every package."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PRODUCT = ("initsweep", "models", "worker", "scheduler")
# distribution name -> the module it provides, where they differ
MODULE_OF = {"pyyaml": "yaml", "tensorflow-cpu": "tensorflow", "psycopg": "psycopg"}


def _imported_third_party() -> set[str]:
    found: set[str] = set()
    files = [p for package in PRODUCT for p in (ROOT / package).rglob("*.py")]
    for path in [*files, ROOT / "alembic" / "env.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in PRODUCT}


def _declared() -> set[str]:
    """The base dependencies and the `cpu` extra (TensorFlow) as module names."""
    names = set()
    base = PYPROJECT["project"]["dependencies"]
    for requirement in [*base, *PYPROJECT["project"]["optional-dependencies"]["cpu"]]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert name is not None
        dist = name.group(0).lower()
        names.add(MODULE_OF.get(dist, dist.replace("-", "_")))
    return names


def test_dependencies_are_what_is_imported() -> None:
    assert _declared() == _imported_third_party()  # psycopg too: models.bulk's COPY


def test_tensorflow_comes_with_an_extra() -> None:
    """The control side installs without TensorFlow; `cpu` and `gpu` bring it; dev has cpu."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not any("tensorflow" in r for r in PYPROJECT["project"]["dependencies"])
    assert all(r.startswith("tensorflow") for r in extras["cpu"])
    assert extras["gpu"] == ["tensorflow[and-cuda]>=2.16; platform_system == 'Linux'"]
    assert "initsweep[cpu]" in extras["dev"]


def test_every_package_is_shipped() -> None:
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for package in PRODUCT
        for init in (ROOT / package).rglob("__init__.py")
    }
    data_only = {"scheduler.ui.static"}  # the dashboard's JS and CSS, no Python
    assert declared == on_disk | {"models.migrations", "models.migrations.versions"} | data_only
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"models.migrations": "alembic"}
    assert not (ROOT / "alembic" / "__init__.py").exists()  # never importable as `alembic`

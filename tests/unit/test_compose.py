"""docker-compose.yml is parsed (no Docker engine here): every command points at a real entry."""

from __future__ import annotations

import importlib

import pytest
import yaml

from scheduler.cli import cli
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_expected_services() -> None:
    assert {"redis", "postgres", "migrate", "scheduler", "worker", "flower"} <= set(SERVICES)


@pytest.mark.parametrize("name", ["migrate", "scheduler", "worker"])
def test_initsweep_commands_exist(name: str) -> None:
    command = SERVICES[name]["command"]
    group = cli
    words = list(command)
    # Walk the click group tree: `db upgrade` is a sub-command of a group.
    while words and hasattr(group, "commands") and words[0] in group.commands:  # type: ignore[attr-defined]
        group = group.commands[words.pop(0)]  # type: ignore[attr-defined]
    assert group is not cli, f"{name}: {command[0]!r} is not an initsweep command"
    params = {opt for p in group.params for opt in getattr(p, "opts", [])}
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in params, f"{name}: unknown option {word}"


def test_flower_points_at_the_celery_app() -> None:
    entry = SERVICES["flower"]["entrypoint"]
    module = entry[entry.index("-A") + 1]
    assert hasattr(importlib.import_module(module), "app")


def test_redis_requires_password_and_persists() -> None:
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass" in command and "--appendonly yes" in command
    assert all(p.startswith("127.0.0.1:") for p in redis["ports"])


def test_postgres_has_volume_and_healthcheck() -> None:
    pg = SERVICES["postgres"]
    assert pg["volumes"] and pg["healthcheck"]
    assert all(p.startswith("127.0.0.1:") for p in pg["ports"])


def test_worker_scales_and_uses_shared_urls() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker  # `--scale worker=N` needs no fixed name
    for service in ("migrate", "scheduler", "worker", "flower"):
        env = SERVICES[service]["environment"]
        assert "INITSWEEP_BROKER_URL" in env and "INITSWEEP_DATABASE_URL" in env


def test_the_image_ships_every_package_installed_for_real() -> None:
    """The Dockerfile copies every top-level package and installs without -e, with an extra."""
    import tomllib

    text = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    for top in {p.split(".")[0] for p in packages} - {"models"} | {"models", "alembic"}:
        assert f"COPY {top} ./{top}" in text, top
    assert 'pip install --no-cache-dir ".[${EXTRA}]"' in text and " -e " not in text
    assert "ARG EXTRA=cpu" in text

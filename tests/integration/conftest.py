"""Fixtures of the integration suite: a fresh redis-server and PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, RedisServer, fresh_pg_database


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[str]:
    yield from fresh_pg_database(pg_url)


@pytest.fixture
def cluster(redis_server: RedisServer, pg_db: str, tmp_path: Path) -> Iterator[Cluster]:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    c = Cluster(broker_url=redis_server.url(), db_url=pg_db, logdir=logdir)
    migrated = c.cli("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    yield c
    c.stop_all()

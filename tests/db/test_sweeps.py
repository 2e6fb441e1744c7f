"""scheduler.sweeps.record: concurrent submissions of one spec both succeed, sharing rows."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from models.db import session_scope
from scheduler.sweeps import record
from tests.db.builders import grid, sweep_plan
from tests.db.conftest import Db

pytestmark = pytest.mark.db


def test_concurrent_submissions_of_the_same_spec(db: Db) -> None:
    plan = sweep_plan(grid([4, 5, 6, 7]))
    n = 4
    barrier = threading.Barrier(n)
    ids: list[int] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait(timeout=30)
            ids.append(record(db.factory, plan))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(set(ids)) == n  # (PostgreSQL ids have gaps where a loser retried)
    with session_scope(db.factory) as session:
        assert session.execute(sa.text("SELECT count(*) FROM sweeps")).scalar() == n
        assert session.execute(sa.text("SELECT count(*) FROM configurations")).scalar() == 4
        links = session.execute(sa.text("SELECT count(*) FROM sweep_configurations")).scalar()
        assert links == 4 * n

"""scheduler.query: one batched read per request, whatever the number of configurations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from models.db import session_scope
from scheduler.analysis.report import render_report
from scheduler.query import report_input, result_records, sweep_progress, theory_records
from scheduler.store import chunk_ids, create_sweep
from tests.db.builders import config_plan, outcome_for, sim_config, sweep_plan
from tests.db.conftest import Db
from worker.aggregate import aggregate_sweep
from worker.persist import load_task, save_outcome

pytestmark = pytest.mark.db

DEPTH = 2
ROWS_PER_CONFIG = 1 + 3 * DEPTH  # the input, then preactivation, activation, gradient per layer
MAX_STATEMENTS = 10  # a small constant: the sweep, its configurations, their rows, its chunks


@pytest.fixture
def statements(db: Db) -> Iterator[list[str]]:
    """Every SQL statement the engine sends, in order (cleared by `_count`)."""
    sent: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", on_execute)
    yield sent
    event.remove(db.engine, "before_cursor_execute", on_execute)


def _sweep(db: Db, n_configs: int, seed: int) -> int:
    """A finished, aggregated sweep of `n_configs` relu configurations (one chunk each)."""
    plans = [
        config_plan(sim_config(activation="relu", depth=DEPTH, width=w), seed=seed, trials=8)
        for w in range(2, 2 + n_configs)
    ]
    with session_scope(db.factory) as session:
        sweep_id = create_sweep(session=session, plan=sweep_plan(plans, seed=seed))
        for chunk_id in chunk_ids(session=session, sweep_id=sweep_id):
            outcome = outcome_for(load_task(session=session, chunk_id=chunk_id))
            assert save_outcome(session=session, chunk_id=chunk_id, outcome=outcome, worker="w")
    with session_scope(db.factory) as session:
        assert aggregate_sweep(session=session, sweep_id=sweep_id) == n_configs
    return sweep_id


def _count(db: Db, sent: list[str], read: Callable[..., Any], *args: Any) -> tuple[int, Any]:
    """Statements sent while `read(session, *args)` runs in a fresh session, and its value."""
    with session_scope(db.factory) as session:
        sent.clear()
        value = read(session, *args)
        n = len(sent)
    return n, value


def test_reads_do_not_grow_with_the_number_of_configurations(db: Db, statements: list[str]) -> None:
    small, large = _sweep(db, 5, seed=1), _sweep(db, 50, seed=2)
    requests: dict[str, Callable[[Session, int], Any]] = {
        "results": lambda s, i: result_records(session=s, sweep_id=i),
        "results --theory": lambda s, i: theory_records(session=s, sweep_id=i),
        "report": lambda s, i: report_input(session=s, sweep_id=i),
        "status": lambda s, i: sweep_progress(session=s, sweep_id=i),
    }
    for name, request in requests.items():
        n_small, _ = _count(db, statements, request, small)
        n_large, value = _count(db, statements, request, large)
        assert n_small == n_large <= MAX_STATEMENTS, (name, n_small, n_large)
        if name.startswith("results"):
            assert len(value) == 50 * ROWS_PER_CONFIG
    n, everything = _count(db, statements, lambda s: sweep_progress(session=s))
    assert n <= MAX_STATEMENTS and [p.sweep_id for p in everything] == [small, large]


def test_report_renders_from_values_alone(db: Db, statements: list[str]) -> None:
    sweep_id = _sweep(db, 3, seed=3)
    _, data = _count(db, statements, lambda s: report_input(session=s, sweep_id=sweep_id))
    assert len(data.configs) == 3 and len(data.records) == 3 * ROWS_PER_CONFIG
    statements.clear()
    page = render_report(data)  # the session is closed: the page needs no database
    assert statements == []
    assert page.count('src="data:image/png;base64,') == 2 and ">Theory comparison</h2>" in page

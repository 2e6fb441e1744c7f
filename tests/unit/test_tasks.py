"""Small chunks grouped into tasks (`scheduler.chunking.group_tasks`): order, bounds, options."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.chunking import (
    CHUNK_OVERHEAD_SECONDS,
    TASK_SECONDS,
    chunk_seconds,
    config_seconds_per_trial,
    group_tasks,
    max_task_chunks,
    spread_task_seconds,
    task_units,
)
from scheduler.estimate import nominal_seconds_per_trial
from worker.contract import Scheme, SimConfig

pytestmark = pytest.mark.unit

COSTS = st.lists(
    st.floats(min_value=CHUNK_OVERHEAD_SECONDS, max_value=5.0, allow_nan=False), max_size=300
)


@settings(max_examples=300, deadline=None)
@given(COSTS, st.sampled_from([0.05, 0.3, 1.0, 2.5]))
def test_tasks_cover_every_chunk_once_in_order_within_bounds(
    costs: list[float], target: float
) -> None:
    work = list(enumerate(costs))
    tasks = group_tasks(work, target)
    assert [c for task in tasks for c in task] == list(range(len(costs)))  # once, in order
    for i, task in enumerate(tasks):
        total = sum(costs[c] for c in task)
        if len(task) > 1:
            assert all(costs[c] < target for c in task)  # a big chunk goes alone
            assert total < 2 * target
        last = i == len(tasks) - 1
        closed_by_big = not last and costs[tasks[i + 1][0]] >= target
        if not last and not closed_by_big and costs[task[0]] < target:
            assert total >= target  # a task carries at least its target
    assert all(len(t) <= max_task_chunks(target) for t in tasks)


def test_zero_task_seconds_is_one_chunk_per_task() -> None:
    work = [(7, 0.01), (3, 0.002), (9, 4.0)]
    assert group_tasks(work, 0.0) == [(7,), (3,), (9,)]
    assert task_units(0.01, 0.0) == 1.0


def test_task_units_are_a_share_of_one_task() -> None:
    assert task_units(0.25) == pytest.approx(0.25 / TASK_SECONDS)
    assert task_units(30.0) == 1.0


def test_a_small_sweep_is_still_spread_over_the_workers() -> None:
    assert spread_task_seconds(1000.0, 2) == TASK_SECONDS
    assert spread_task_seconds(0.8, 2) == pytest.approx(0.1)
    assert spread_task_seconds(0.0, 4) == 0.0


def test_chunk_seconds_is_the_nominal_model_plus_bookkeeping() -> None:
    config = SimConfig(
        init=Scheme("he_normal"), activation=Scheme("relu"), depth=5, width=64, input_dim=64
    )
    per_trial = config_seconds_per_trial(config.canonical_json())
    assert per_trial == nominal_seconds_per_trial(config)
    assert chunk_seconds(per_trial, 100) == pytest.approx(100 * per_trial + CHUNK_OVERHEAD_SECONDS)

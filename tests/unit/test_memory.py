"""The per-trial memory model and the sub-batch it implies (worker.memory)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.contract import Scheme, SimConfig
from worker.memory import (
    DEFAULT_BUDGET,
    MAX_SUB_BATCH,
    MemoryBudgetError,
    format_bytes,
    sub_batch_size,
    trial_bytes,
)

pytestmark = pytest.mark.unit


def config(**kw: object) -> SimConfig:
    base = SimConfig(
        init=Scheme("he_normal"), activation=Scheme("relu"), depth=3, width=100, input_dim=50
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_trial_bytes_by_hand() -> None:
    """float32, depth 3, width 100, input 50, batch 1 (module docstring formula, x1.25 + 1 KiB)."""
    weights = (50 * 100 + 2 * 100 * 100) * 4
    draw = 100 * 100 * (4 + 4) * 2
    acts = 3 * 3 * 1 * 100 * 4 + 4 * 1 * 100 * 8
    assert trial_bytes(config()) == int((weights + draw + acts) * 1.25) + 1024


def test_float64_draws_cost_more_than_half_precision() -> None:
    assert (
        trial_bytes(config(dtype="float64"))
        > trial_bytes(config())
        > trial_bytes(config(dtype="bfloat16"))
    )
    assert trial_bytes(config(dtype="float16")) == trial_bytes(config(dtype="bfloat16"))


def test_conditional_sampler_keeps_no_weights() -> None:
    wide = config(width=4096, input_dim=4096, depth=20)
    assert trial_bytes(dataclasses.replace(wide, sampler="conditional")) < trial_bytes(wide) / 100


def test_sub_batch_bounds() -> None:
    c = config()
    assert sub_batch_size(c, 10) == 10
    assert sub_batch_size(c, 10**6) == DEFAULT_BUDGET // trial_bytes(c)  # 3209 < MAX_SUB_BATCH
    assert sub_batch_size(config(width=10, input_dim=10), 10**6) == MAX_SUB_BATCH
    assert sub_batch_size(c, 10**6, budget_bytes=trial_bytes(c) * 7 + 3) == 7
    assert sub_batch_size(c, 10**6, budget_bytes=trial_bytes(c)) == 1


def test_one_trial_over_budget_raises_with_the_numbers() -> None:
    c = config(width=8192, input_dim=8192, depth=4)
    with pytest.raises(MemoryBudgetError, match=r"over the memory budget of 1\.0 MiB .*width=8192"):
        sub_batch_size(c, 10, budget_bytes=1 << 20)


@settings(max_examples=200, deadline=None)
@given(
    depth=st.integers(1, 300),
    width=st.integers(1, 2048),
    batch=st.integers(1, 64),
    dtype=st.sampled_from(["float32", "float64", "float16", "bfloat16"]),
    n=st.integers(1, 10**5),
    budget=st.integers(1 << 16, 1 << 34),
)
def test_sub_batch_fits_the_budget(
    depth: int, width: int, batch: int, dtype: str, n: int, budget: int
) -> None:
    c = config(depth=depth, width=width, input_dim=width, batch=batch, dtype=dtype)
    per = trial_bytes(c)
    if per > budget:
        with pytest.raises(MemoryBudgetError):
            sub_batch_size(c, n, budget)
        return
    size = sub_batch_size(c, n, budget)
    assert 1 <= size <= min(n, MAX_SUB_BATCH)
    assert size * per <= budget
    # Deterministic, and monotone in the budget.
    assert sub_batch_size(c, n, budget) == size
    assert sub_batch_size(c, n, budget * 2) >= size


def test_default_budget_and_format() -> None:
    assert DEFAULT_BUDGET == 1 << 30
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(1 << 30) == "1.0 GiB"
    assert format_bytes(5 << 40) == "5.0 TiB"

"""`scheduler.query.RefHeads`: the heads of light references, as dicts and column by column."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.analysis.records import PARAM_KEYS
from scheduler.query import RefHeads, ref_head
from scheduler.store import ConfigRef

pytestmark = pytest.mark.unit


def _ref(i: int, axes: dict[str, Any]) -> ConfigRef:
    params = tuple(f"p{i}-{k}" if k != "depth" else i for k in PARAM_KEYS)
    return ConfigRef(10 + i, f"{i:064x}", i, axes, "done" if i % 2 else "pending", params)


@pytest.mark.parametrize(
    "axes",
    [
        [{"sigma_w": 0.5 * i, "activation": "tanh"} for i in range(5)],  # a grid's
        [{"sigma_w": 1.0}, {"label": None}, {}, {"label": "x", "sigma_w": 2}, {"depth": 7}],
        [{"sigma_w": 1.0}, {"config_hash": "mine"}, {"complete": "no"}, {"sweep_id": 9}, {}],
    ],
    ids=["grid", "mixed", "own-names"],
)
def test_columns_are_the_heads_column_by_column(axes: list[dict[str, Any]]) -> None:
    refs = [_ref(i, a) for i, a in enumerate(axes)]
    heads = RefHeads(3, refs)
    want = [ref_head(3, r) for r in refs]
    assert list(heads) == want and heads[1:3] == want[1:3] and len(heads) == len(refs)
    names = sorted({k for h in want for k in h} | {"absent"})
    assert heads.columns(names) == {n: [h.get(n) for h in want] for n in names}
    assert RefHeads(3, []).columns(names) == {n: [] for n in names}

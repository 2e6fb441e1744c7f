"""Row-for-row comparison of exported results: None is null (NaN in pandas), floats bit-equal."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any


def bits(x: float) -> bytes:
    """The IEEE double of `x`, so 0.0 and -0.0 differ and equal values compare equal."""
    return struct.pack("<d", float(x))


def same_value(want: Any, got: Any, kind: str) -> bool:
    """`got` (read back from an export) holds exactly `want` (a JSON value) for a column of
    `kind`: None is None (or NaN where pandas holds a float column), a float is the same
    double, anything else is equal and of the same type."""
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    if got is None:
        return False
    if kind == "float":
        return isinstance(got, float) and not math.isnan(got) and bits(want) == bits(got)
    if kind == "int":  # pandas: numpy int64, or float64 where the column has nulls
        return not isinstance(got, bool) and float(got).is_integer() and int(got) == want
    if isinstance(want, float):
        return isinstance(got, float) and bits(want) == bits(got)
    return type(got) is type(want) and got == want


def assert_same_rows(
    want: Sequence[Mapping[str, Any]],
    got: Sequence[Mapping[str, Any]],
    kinds: Mapping[str, str],
    columns: Sequence[str] | None = None,
) -> None:
    """Every row of `got` holds the values of the same row of `want` (missing keys: None)."""
    assert len(got) == len(want)
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        for column in columns or list(w):
            value = g.get(column)
            assert same_value(w.get(column), value, kinds[column]), (
                i,
                column,
                w.get(column),
                value,
            )


def typed(rows: Sequence[Mapping[str, Any]], kinds: Mapping[str, str]) -> list[dict[str, Any]]:
    """`rows` as a typed export stores them (`scheduler.analysis.records.kind_value`)."""
    from scheduler.analysis.records import kind_value

    return [{c: kind_value(r.get(c), kind) for c, kind in kinds.items()} for r in rows]

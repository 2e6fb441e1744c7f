"""Streamed exports of a sweep's results: Parquet (pyarrow) and JSON lines, one batch at a time.

Both read a `scheduler.query.ResultStream` and hold one batch of configurations (plus, for
Parquet, the row group being filled), so memory stays bounded whatever the number of rows.

- JSON lines: one compact JSON object per record, the same objects, keys and values as an
  element of `results --format json` (None is null; floats are written by `repr`, exact).
- Parquet: one fixed schema from the stream's columns and kinds (`scheduler.analysis.records`):
  int64, float64, bool and string, all nullable; None is null, never NaN. An axis column whose
  values mix kinds is a string column (`records.kind_value`: the string, or the value's JSON).

A batch of complete configurations (`StatBatch`) is never built as records: its statistics
come as numpy columns (`worker.stat_columns.layer_stat_columns`), the record columns are computed
column by column, Arrow arrays are made from their buffers, and each JSON line is one `%`
template filled with the `repr` of each value and the configuration's head, encoded once.
With theory, its columns come the same way (`scheduler.analysis.compare.theory_columns`, from
the batch's predictions), except for configurations of batch > 1, whose correlation map is
computed per record.

A file is written beside its target and renamed into place when complete, so a failed export
never leaves a truncated file under the name asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from scheduler.analysis.records import (
    COLUMN_KINDS,
    QUANTILE_KEYS,
    RECORD_KEYS,
    Record,
    distribution_columns,
    kind_value,
    pair_columns,
    record_columns,
)
from scheduler.query import StatBatch
from worker.contract import OBSERVABLES, QUANTITIES
from worker.stat_columns import uncapped

if TYPE_CHECKING:
    import pyarrow as pa

    from scheduler.analysis.compare import TheoryColumns
    from scheduler.query import ResultStream

__all__ = [
    "LINE_ROWS",
    "ROW_GROUP_ROWS",
    "arrow_schema",
    "record_batch",
    "stat_batch",
    "stat_lines",
    "stat_records",
    "write_jsonl",
    "write_parquet",
]

ROW_GROUP_ROWS = 1 << 17  # rows gathered into one Parquet row group (batches are smaller)
LINE_ROWS = 1 << 13  # JSON lines made and written at a time


def arrow_schema(columns: list[str], kinds: dict[str, str]) -> pa.Schema:
    """The Arrow schema of these columns: every field nullable, of its column's kind."""
    import pyarrow as pa

    types: dict[str, Callable[[], pa.DataType]] = {
        "int": pa.int64,
        "float": pa.float64,
        "bool": pa.bool_,
        "str": pa.string,
    }
    return pa.schema([pa.field(c, types[kinds[c]](), nullable=True) for c in columns])


def record_batch(records: list[Record], schema: pa.Schema, kinds: dict[str, str]) -> pa.RecordBatch:
    """`records` as one RecordBatch of `schema` (a missing key is null)."""
    import pyarrow as pa

    arrays = []
    for field in schema:
        name = field.name
        values = [r.get(name) for r in records]
        if name not in COLUMN_KINDS:  # axis and theory columns: their kind's value
            kind = kinds[name]
            values = [kind_value(v, kind) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


_QUANTITY_NAMES = np.array(QUANTITIES, dtype=object)
_COUNTS = ("n_trials", "n_finite", "n_first_nonfinite", "n_collapsed")
_LOG_PARTS = ("n", "mean", "m2", "m3", "m4")


@dataclass(frozen=True)
class _Columns:
    """A StatBatch's rows in record order, column by column: the configuration (its position
    in the batch) of each row, layer, quantity (its index in QUANTITIES), counts, and
    record_row's float columns."""

    config: npt.NDArray[np.int64]
    layer: npt.NDArray[np.int64]
    quantity: npt.NDArray[np.int64]
    counts: dict[str, npt.NDArray[np.int64]]
    stats: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]
    theory: TheoryColumns | None  # with theory: `with_theory`'s columns (`theory_columns`)


def _columns(batch: StatBatch) -> _Columns:
    read = batch.columns
    ids = np.asarray(batch.config_ids, dtype=np.int64)
    by_id = np.argsort(ids, kind="stable")
    found = np.searchsorted(ids[by_id], read["configuration_id"])
    config = by_id[np.minimum(found, len(ids) - 1)] if len(ids) else found
    if not np.array_equal(ids[config], read["configuration_id"]):
        raise ValueError("a StatBatch holds rows of a configuration it does not list")
    order = np.lexsort((read["quantity"], read["layer"], config))  # position, (layer, quantity)

    def column(name: str) -> npt.NDArray[Any]:
        return read[name][order]

    counts = {k: column(k) for k in _COUNTS}
    moments = {
        name: (
            uncapped(column(f"{name}_mean")),
            uncapped(column(f"{name}_m2")),
            column(f"{name}_exp2"),
        )
        for name in OBSERVABLES
    }
    log = [column(f"log_mean_sq_{p}") for p in _LOG_PARTS]
    cross = (uncapped(column("cross_mean")), uncapped(column("cross_m2")), column("cross_exp2"))
    corr = (column("corr_n"), column("corr_mean"), column("corr_m2"))
    stats = {
        **record_columns(counts["n_finite"], moments),
        **distribution_columns(log, {name: column(name) for name in QUANTILE_KEYS}),
        **pair_columns(cross, corr, counts["n_finite"]),
    }
    position, layer, quantity = config[order], column("layer"), column("quantity")
    theory = None
    if batch.theory is not None:
        from scheduler.analysis.compare import theory_columns

        theory = theory_columns(*batch.theory, position, layer, quantity, stats)
    return _Columns(position, layer, quantity, counts, stats, theory)


def stat_batch(batch: StatBatch, schema: pa.Schema, kinds: dict[str, str]) -> pa.RecordBatch:
    """The RecordBatch of a `StatBatch`, column by column (numpy, no record built): the rows
    `record_batch` makes of the same configurations' records, in the same order. Every array
    is made from its buffers (`pa.array` would import pandas, a second's start-up)."""
    import pyarrow as pa

    c = _columns(batch)
    take = _arrow(c.config, None, pa.int64())
    fixed = {"layer", "quantity", *c.counts, *c.stats}
    heads = batch.head_columns([f.name for f in schema if f.name not in fixed])
    arrays = []
    for field in schema:
        name = field.name
        if name == "layer":
            array = _arrow(c.layer, None, field.type)
        elif name == "quantity":
            array = _small_array(list(QUANTITIES), field.type).take(
                _arrow(c.quantity, None, pa.int64())
            )
        elif name in c.counts:
            array = _arrow(c.counts[name], None, field.type)
        elif name in c.stats:
            values, valid = c.stats[name]
            array = _arrow(values, valid, field.type)
        elif c.theory is not None and name in c.theory.floats:
            values, valid = c.theory.floats[name]
            array = _arrow(values, valid, field.type)
        elif c.theory is not None and name == "theory_exact":
            flags = pa.py_buffer(np.packbits(c.theory.exact, bitorder="little"))
            array = pa.Array.from_buffers(field.type, len(c.layer), [None, flags], null_count=0)
        elif c.theory is not None and name == "finite_width":
            array = _small_array(c.theory.notes, field.type).take(take)
        else:  # a configuration column: one value per configuration, repeated per row
            per_config = _kind_values(heads[name], kinds[name])
            if pa.types.is_string(field.type):
                array = _small_array(per_config, field.type).take(take)
            else:
                array = _repeated(per_config, c.config, field.type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _kind_values(values: list[Any], kind: str) -> list[Any]:
    """`kind_value` of each of `values` (None stays None)."""
    if kind == "float":
        if None in values:
            return [None if v is None else float(v) for v in values]
        return list(map(float, values))
    if kind == "str":
        return [v if v is None or type(v) is str else kind_value(v, kind) for v in values]
    return values


def _repeated(values: list[Any], index: npt.NDArray[np.int64], type: pa.DataType) -> pa.Array:
    """The int64, float64 or bool Arrow array of `values[i]` for each i of `index` (None: null),
    from its buffers: `_small_array(values).take(index)`, computed by numpy."""
    import pyarrow as pa

    valid = None
    if any(v is None for v in values):
        valid = np.array([v is not None for v in values], dtype=bool)[index]
    if pa.types.is_boolean(type):
        flags = np.array([bool(v) for v in values], dtype=bool)[index]
        n = len(flags)
        bits = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
        nulls = 0 if valid is None else n - int(np.count_nonzero(valid))
        data = pa.py_buffer(np.packbits(flags, bitorder="little"))
        return pa.Array.from_buffers(type, n, [bits, data], null_count=nulls)
    dtype = np.float64 if pa.types.is_floating(type) else np.int64
    if valid is not None:
        values = [0 if v is None else v for v in values]
    return _arrow(np.array(values, dtype=dtype)[index], valid, type)


def _arrow(
    values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None, type: pa.DataType
) -> pa.Array:
    """An int64 or float64 Arrow array of `values`, null where not `valid`, from their buffers."""
    import pyarrow as pa

    dtype = np.float64 if pa.types.is_floating(type) else np.int64
    data = np.ascontiguousarray(values, dtype=dtype)
    n = len(data)
    if valid is None or valid.all():
        return pa.Array.from_buffers(type, n, [None, pa.py_buffer(data)], null_count=0)
    bits = np.packbits(valid, bitorder="little")
    nulls = n - int(np.count_nonzero(valid))
    return pa.Array.from_buffers(
        type, n, [pa.py_buffer(bits), pa.py_buffer(data)], null_count=nulls
    )


def _small_array(values: list[Any], type: pa.DataType) -> pa.Array:
    """An Arrow array of `type` (int64, float64, bool or string) holding `values` (None: null),
    from its buffers."""
    import pyarrow as pa

    n = len(values)
    valid = np.array([v is not None for v in values], dtype=bool)
    bits = pa.py_buffer(np.packbits(valid, bitorder="little")) if not valid.all() else None
    nulls = n - int(np.count_nonzero(valid))
    if pa.types.is_string(type):
        encoded = [b"" if v is None else v.encode() for v in values]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        buffers = [bits, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    elif pa.types.is_boolean(type):
        flags = np.array([bool(v) for v in values], dtype=bool)
        buffers = [bits, pa.py_buffer(np.packbits(flags, bitorder="little"))]
    else:
        dtype = np.float64 if pa.types.is_floating(type) else np.int64
        data = np.array([0 if v is None else v for v in values], dtype=dtype)
        buffers = [bits, pa.py_buffer(data)]
    return pa.Array.from_buffers(type, n, buffers, null_count=nulls)


def stat_records(batch: StatBatch) -> list[dict[str, Any]]:
    """The records of a `StatBatch` as plain dicts: the keys, order and values of the Records
    `scheduler.query.ResultStream` yields for the same configurations (`result_head`, then
    `record_row`, then with theory `with_theory`'s columns), computed column by column."""
    c = _columns(batch)
    values: dict[str, list[Any]] = {
        "layer": c.layer.tolist(),
        "quantity": _QUANTITY_NAMES[c.quantity].tolist(),
        **{k: v.tolist() for k, v in c.counts.items()},
    }
    for name, (column, valid) in _float_columns(c).items():
        values[name] = [
            x if ok else None for x, ok in zip(column.tolist(), valid.tolist(), strict=True)
        ]
    keys = _keys(c)
    if c.theory is not None:
        values["theory_exact"] = c.theory.exact.tolist()
        notes = c.theory.notes
        values["finite_width"] = [notes[i] for i in c.config.tolist()]
    rows = zip(*(values[k] for k in keys), strict=True)
    heads = list(batch.heads)  # made once (`RefHeads` makes them when read)
    return [
        {**heads[i], **dict(zip(keys, row, strict=True))}
        for i, row in zip(c.config.tolist(), rows, strict=True)
    ]


def _keys(c: _Columns) -> list[str]:
    """The record keys of these columns, in a record's order (theory's after the statistics)."""
    if c.theory is None:
        return list(RECORD_KEYS)
    from scheduler.analysis.compare import THEORY_KEYS

    return [*RECORD_KEYS, *(k for k in THEORY_KEYS if k not in RECORD_KEYS)]


def _float_columns(
    c: _Columns,
) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]:
    """The statistics' columns, then theory's float columns, as (values, where not None)."""
    return {**c.stats, **(c.theory.floats if c.theory is not None else {})}


def stat_lines(batch: StatBatch, dumps: Callable[[Any], str]) -> Iterator[str]:
    """The JSON lines of a `StatBatch`: `dumps` of each of its `stat_records` and a newline,
    the same text, written column by column (each configuration's head encoded once, each
    value by the `repr` `json` writes; no dict per record) and yielded in pieces of at most
    `LINE_ROWS` lines, so the text held at once stays small whatever the batch."""
    c = _columns(batch)
    keys = _keys(c)
    heads = list(batch.heads)  # made once (`RefHeads` makes them when read)
    named = set(keys)
    if any(key in named for head in heads for key in head):  # a record key replaces it
        records = stat_records(batch)
        for start in range(0, len(records), LINE_ROWS):
            yield "".join([dumps(r) + "\n" for r in records[start : start + LINE_ROWS]])
        return
    floats = _float_columns(c)
    for name, (column, valid) in floats.items():  # checked before the first line is written
        if column.dtype.kind == "f" and not np.isfinite(column[valid]).all():
            raise ValueError(f"{name}: out of range float values are not JSON compliant")
    prefixes = np.array([dumps(head)[:-1] + ("," if head else "") for head in heads], dtype=object)
    quantities = np.array([dumps(q) for q in QUANTITIES], dtype=object)
    exact = np.array(["false", "true"], dtype=object)
    theory = c.theory
    notes = [] if theory is None else ["null" if n is None else dumps(n) for n in theory.notes]
    note_text = np.array(notes, dtype=object)
    line = "%s" + ",".join(dumps(k).replace("%", "%%") + ":%s" for k in keys) + "}\n"
    for start in range(0, len(c.layer), LINE_ROWS):
        rows = slice(start, start + LINE_ROWS)
        config = c.config[rows]
        values: dict[str, list[str]] = {
            "layer": list(map(str, c.layer[rows].tolist())),
            "quantity": quantities[c.quantity[rows]].tolist(),
            **{k: list(map(str, v[rows].tolist())) for k, v in c.counts.items()},
        }
        for name, (column, valid) in floats.items():
            part = column[rows]
            write = float.__repr__ if part.dtype.kind == "f" else str
            text = list(map(write, part.tolist()))
            missing = ~valid[rows]
            if missing.any():
                marked = np.array(text, dtype=object)
                marked[missing] = "null"
                text = marked.tolist()
            values[name] = text
        if theory is not None:
            values["theory_exact"] = exact[theory.exact[rows].astype(np.int64)].tolist()
            values["finite_width"] = note_text[config].tolist()
        lines = zip(prefixes[config].tolist(), *(values[k] for k in keys), strict=True)
        yield "".join(map(line.__mod__, lines))


@contextmanager
def _replacing(path: Path, mode: str) -> Iterator[IO[Any]]:
    """A file written beside `path` and renamed onto it when the block ends without error."""
    part = path.with_name(f".{path.name}.partial")
    try:
        with part.open(mode) as f:
            yield f
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def write_parquet(stream: ResultStream, out: Path | IO[bytes]) -> int:
    """Write the stream as Parquet to the file `out` (or a binary stream); returns the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(stream.columns, stream.kinds)

    def write(target: Any) -> int:
        n, pending, pending_rows = 0, [], 0
        with pq.ParquetWriter(target, schema) as writer:
            for part in stream.parts():
                if isinstance(part, StatBatch):
                    batch = stat_batch(part, schema, stream.kinds)
                elif part:
                    batch = record_batch(part, schema, stream.kinds)
                else:
                    continue
                pending.append(batch)
                pending_rows += batch.num_rows
                n += batch.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(pending, schema=schema))
                    pending, pending_rows = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending, schema=schema))
        return n  # no rows: a file with the schema and no row group

    if isinstance(out, Path):
        with _replacing(out, "wb") as f:
            return write(f)
    return write(out)


def write_jsonl(stream: ResultStream, out: Path | IO[str]) -> int:
    """Write the stream as JSON lines to the file `out` (or a text stream); returns the rows."""

    def write(f: IO[str]) -> int:
        n = 0
        dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
        for part in stream.parts():
            if isinstance(part, StatBatch):
                for text in stat_lines(part, dumps):
                    f.write(text)
                n += len(part.columns["layer"])
            elif part:
                f.write("".join([dumps(r) + "\n" for r in part]))
                n += len(part)
        return n

    if isinstance(out, Path):
        with _replacing(out, "w") as f:
            return write(f)
    return write(out)

"""Streamed exports of a sweep's results: Parquet (pyarrow) and JSON lines, one batch at a time.

Both read a `scheduler.query.ResultStream` and hold one batch of configurations (plus, for
Parquet, the row group being filled), so memory stays bounded whatever the number of rows.

- JSON lines: one compact JSON object per record, the same objects, keys and values as an
  element of `results --format json` (None is null; floats are written by `repr`, exact).
- Parquet: one fixed schema from the stream's columns and kinds (`scheduler.analysis.records`):
  int64, float64, bool and string, all nullable; None is null, never NaN. An axis column whose
  values mix kinds is a string column (`records.kind_value`: the string, or the value's JSON).

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
from worker.aggregate import uncapped
from worker.contract import OBSERVABLES, QUANTITIES

if TYPE_CHECKING:
    import pyarrow as pa

    from scheduler.query import ResultStream

__all__ = [
    "ROW_GROUP_ROWS",
    "arrow_schema",
    "record_batch",
    "stat_batch",
    "stat_records",
    "write_jsonl",
    "write_parquet",
]

ROW_GROUP_ROWS = 1 << 17  # rows gathered into one Parquet row group (batches are smaller)


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
    return _Columns(
        config=config[order],
        layer=column("layer"),
        quantity=column("quantity"),
        counts=counts,
        stats={
            **record_columns(counts["n_finite"], moments),
            **distribution_columns(log, {name: column(name) for name in QUANTILE_KEYS}),
            **pair_columns(cross, corr, counts["n_finite"]),
        },
    )


def stat_batch(batch: StatBatch, schema: pa.Schema, kinds: dict[str, str]) -> pa.RecordBatch:
    """The RecordBatch of a `StatBatch`, column by column (numpy, no record built): the rows
    `record_batch` makes of the same configurations' records, in the same order."""
    import pyarrow as pa

    c = _columns(batch)
    take = pa.array(c.config)
    arrays = []
    for field in schema:
        name = field.name
        if name == "layer":
            array = pa.array(c.layer, type=field.type)
        elif name == "quantity":
            array = pa.array(QUANTITIES, type=field.type).take(pa.array(c.quantity))
        elif name in c.counts:
            array = pa.array(c.counts[name], type=field.type)
        elif name in c.stats:
            values, valid = c.stats[name]
            array = pa.array(values, mask=~valid, type=field.type)
        else:  # a configuration column: one value per configuration, repeated per row
            kind = kinds[name]
            per_config = [kind_value(head.get(name), kind) for head in batch.heads]
            array = pa.array(per_config, type=field.type).take(take)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def stat_records(batch: StatBatch) -> list[dict[str, Any]]:
    """The records of a `StatBatch` as plain dicts: the keys, order and values of the Records
    `scheduler.query.ResultStream` yields for the same configurations (`result_head`, then
    `record_row`), computed column by column."""
    c = _columns(batch)
    values: dict[str, list[Any]] = {
        "layer": c.layer.tolist(),
        "quantity": _QUANTITY_NAMES[c.quantity].tolist(),
        **{k: v.tolist() for k, v in c.counts.items()},
    }
    for name, (column, valid) in c.stats.items():
        values[name] = [
            x if ok else None for x, ok in zip(column.tolist(), valid.tolist(), strict=True)
        ]
    keys = list(RECORD_KEYS)
    rows = zip(*(values[k] for k in keys), strict=True)
    heads = batch.heads
    return [
        {**heads[i], **dict(zip(keys, row, strict=True))}
        for i, row in zip(c.config.tolist(), rows, strict=True)
    ]


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
            records = stat_records(part) if isinstance(part, StatBatch) else part
            if records:
                f.write("".join([dumps(r) + "\n" for r in records]))
                n += len(records)
        return n

    if isinstance(out, Path):
        with _replacing(out, "w") as f:
            return write(f)
    return write(out)

"""Aggregated statistics read column by column, for columnar exports: `layer_stats` rows as numpy
arrays, and the per-configuration packs (`layer_stat_packs`) that make that read cheap.

A pack is one configuration's rows as the database returns them, in (layer, quantity) order,
as fixed-size little-endian records of `PACK_DTYPE` (the int64 columns, then the float64 ones,
NULL as NaN), concatenated into one blob; `LAYOUT` (CRC-32 of the records' field names and
types) tells a pack of this layout from one written with other columns, which is never read as
this one. Packs are written from the rows read back in the transaction that wrote them, so the
values a pack gives are bit for bit the values the rows give on that database. A read takes
each configuration's pack where it has one of this layout, and its rows otherwise (rows
aggregated before packs existed), one statement per 500 ids each way: one Python object per
configuration instead of one per statistic.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from models import LayerStat, LayerStatPack
from worker.contract import OBSERVABLES, QUANTITIES
from worker.persist import CAP, LOG_FIELDS, PAIR_FIELDS, QUANTILE_FIELDS

__all__ = [
    "LAYOUT",
    "PACK_DTYPE",
    "STAT_FLOAT_COLUMNS",
    "STAT_INT_COLUMNS",
    "StatColumnReader",
    "layer_stat_columns",
    "uncapped",
    "write_packs",
]

_IN_BATCH = 500  # bound IN (...) lists (SQLite's variable limit)

# The columns of `layer_stat_columns`: int64 (never NULL; `quantity` is its index in
# QUANTITIES), then float64 (NaN where NULL: the nullable counts and exponents too).
STAT_INT_COLUMNS: tuple[str, ...] = (
    "configuration_id",
    "layer",
    "quantity",
    "n_trials",
    "n_finite",
    "n_first_nonfinite",
    "n_collapsed",
    *(f"{name}_exp2" for name in OBSERVABLES),
)
STAT_FLOAT_COLUMNS: tuple[str, ...] = (
    *(f"{name}_{part}" for name in OBSERVABLES for part in ("mean", "m2")),
    *LOG_FIELDS,
    *PAIR_FIELDS,
    *QUANTILE_FIELDS,
)
# One row of a pack: the columns above, little-endian whatever the machine.
PACK_DTYPE = np.dtype(
    [(c, "<i8") for c in STAT_INT_COLUMNS] + [(c, "<f8") for c in STAT_FLOAT_COLUMNS]
)
LAYOUT = zlib.crc32(repr(PACK_DTYPE.descr).encode()) & 0x7FFFFFFF  # fits a signed 32-bit int
_ROW_DTYPE = np.dtype(
    [(c, np.int64) for c in STAT_INT_COLUMNS] + [(c, np.float64) for c in STAT_FLOAT_COLUMNS]
)
# SQL: `quantity` as its index in QUANTITIES (-1: none of them)
_QUANTITY_INDEX = (
    "CASE quantity "
    + " ".join(f"WHEN '{q}' THEN {i}" for i, q in enumerate(QUANTITIES))
    + " ELSE -1 END"
)


def layer_stat_columns(
    *, session: Session, configuration_ids: Sequence[int]
) -> dict[str, npt.NDArray[Any]]:
    """The aggregated rows of these configurations column by column (`STAT_INT_COLUMNS` as
    int64, `STAT_FLOAT_COLUMNS` as float64 with NaN where NULL), unordered, bit for bit the
    values `worker.aggregate.layer_stat_rows` reads (no histogram): from each configuration's
    pack, or its rows where it has none (PostgreSQL through psycopg: each column of a batch as
    one `bytea` of its values' binary send form; any other driver: plain DBAPI tuples into one
    numpy record array)."""
    connection = session.connection()
    packed = connection.dialect.driver == "psycopg"
    return _stat_columns(connection.connection.dbapi_connection, packed, configuration_ids)


def write_packs(*, session: Session, configuration_ids: Sequence[int]) -> None:
    """Replace the packs of these configurations by their rows as stored now (read back in the
    session's transaction; a configuration without rows gets an empty pack)."""
    connection = session.connection()
    dbapi = connection.connection.dbapi_connection
    psycopg = connection.dialect.driver == "psycopg"
    ids = sorted({int(i) for i in configuration_ids})
    for i in range(0, len(ids), _IN_BATCH):
        batch = ids[i : i + _IN_BATCH]
        session.execute(delete(LayerStatPack).where(LayerStatPack.configuration_id.in_(batch)))
        read = _row_columns(dbapi, psycopg, batch)
        order = np.lexsort((read["quantity"], read["layer"], read["configuration_id"]))
        table = np.empty(len(order), dtype=PACK_DTYPE)
        for name in PACK_DTYPE.names or ():
            table[name] = read[name][order]
        owners = table["configuration_id"]
        bounds = np.searchsorted(owners, [*batch, batch[-1] + 1])
        session.execute(
            insert(LayerStatPack),
            [
                {
                    "configuration_id": cid,
                    "layout": LAYOUT,
                    "n_rows": int(end - start),
                    "data": table[start:end].tobytes(),
                }
                for cid, start, end in zip(batch, bounds[:-1], bounds[1:], strict=True)
            ],
        )


def _stat_columns(
    dbapi: Any, psycopg: bool, configuration_ids: Sequence[int]
) -> dict[str, npt.NDArray[Any]]:
    """`layer_stat_columns` through a DBAPI connection (`psycopg`: psycopg's)."""
    ids = [int(i) for i in configuration_ids]  # ints: written into the statement as they are
    parts: list[dict[str, npt.NDArray[Any]]] = []
    for i in range(0, len(ids), _IN_BATCH):
        batch = ids[i : i + _IN_BATCH]
        table, unpacked = _read_packs(dbapi, psycopg, batch)
        parts.append({c: table[c].astype(_ROW_DTYPE[c]) for c in _ROW_DTYPE.names or ()})
        if unpacked:
            parts.append(_row_columns(dbapi, psycopg, unpacked))
    if not parts:
        parts.append(_fetched_columns(None, None))
    out = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    if np.any(out["quantity"] < 0):
        raise ValueError("layer_stats: a row's quantity is none of " + ", ".join(QUANTITIES))
    return out


def _read_packs(
    dbapi: Any, psycopg: bool, ids: list[int]
) -> tuple[npt.NDArray[np.void], list[int]]:
    """The rows of the packs of `LAYOUT` among these configurations (one structured array of
    `PACK_DTYPE`), and the ids that have none."""
    where = f"configuration_id IN ({', '.join(map(str, ids))}) AND layout = {LAYOUT}"
    statement = (
        f"SELECT configuration_id, n_rows, data FROM {LayerStatPack.__tablename__} WHERE {where}"
    )
    cursor = dbapi.cursor()
    try:
        if psycopg:
            cursor.execute(statement, binary=True)
        else:
            cursor.execute(statement)
        found = cursor.fetchall()
    finally:
        cursor.close()
    owners, n_rows, blobs = zip(*found, strict=True) if found else ((), (), ())
    table = np.frombuffer(b"".join(map(bytes, blobs)), dtype=PACK_DTYPE)
    counts = np.array(n_rows, dtype=np.int64)
    if counts.sum() != len(table) or not np.array_equal(
        table["configuration_id"], np.repeat(np.array(owners, dtype=np.int64), counts)
    ):
        raise ValueError(f"{LayerStatPack.__tablename__}: a pack does not hold its rows")
    have = set(owners)
    return table, [i for i in ids if i not in have]


def _row_columns(
    dbapi: Any, psycopg: bool, configuration_ids: Sequence[int]
) -> dict[str, npt.NDArray[Any]]:
    """The `layer_stats` rows of these configurations as columns, however they are packed."""
    ids = [int(i) for i in configuration_ids]
    parts = []
    for i in range(0, len(ids), _IN_BATCH):
        where = f"configuration_id IN ({', '.join(map(str, ids[i : i + _IN_BATCH]))})"
        parts.append(_server_columns(dbapi, where) if psycopg else _fetched_columns(dbapi, where))
    if not parts:
        parts.append(_fetched_columns(None, None))
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


class StatColumnReader:
    """`layer_stat_columns` of one batch of configurations after another. On PostgreSQL
    (psycopg, whose connection serialises its statements) the batch named as the next one is
    read by a thread meanwhile: the server reads it while the caller works on this one.
    `close` waits for that read."""

    def __init__(self, session: Session) -> None:
        connection = session.connection()
        self._session = session
        self._dbapi = connection.connection.dbapi_connection
        self._ahead = connection.dialect.driver == "psycopg"
        self._pool: ThreadPoolExecutor | None = None
        self._next: tuple[list[int], Future[dict[str, npt.NDArray[Any]]]] | None = None

    def read(
        self, configuration_ids: Sequence[int], following: Sequence[int] = ()
    ) -> dict[str, npt.NDArray[Any]]:
        """`layer_stat_columns` of `configuration_ids`; then `following`'s begins to be read."""
        ids = [int(i) for i in configuration_ids]
        pending, self._next = self._next, None
        if pending is not None and pending[0] == ids:
            out = pending[1].result()
        else:
            if pending is not None:
                pending[1].result()
            out = layer_stat_columns(session=self._session, configuration_ids=ids)
        if self._ahead and following:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="layer-stats")
            later = [int(i) for i in following]
            self._next = (later, self._pool.submit(_stat_columns, self._dbapi, True, later))
        return out

    def close(self) -> None:
        """Wait for a read begun ahead (its error, if any, is dropped: nobody asked for it)."""
        pending, self._next = self._next, None
        if pending is not None:
            pending[1].exception()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _fetched_columns(dbapi: Any, where: str | None) -> dict[str, npt.NDArray[Any]]:
    """The rows matching `where` (None: no row) through a DBAPI cursor, as contiguous columns."""
    rows: list[Any] = []
    if where is not None:
        selected = ", ".join(
            _QUANTITY_INDEX if c == "quantity" else c
            for c in (*STAT_INT_COLUMNS, *STAT_FLOAT_COLUMNS)
        )
        cursor = dbapi.cursor()
        try:
            cursor.execute(f"SELECT {selected} FROM {LayerStat.__tablename__} WHERE {where}")
            rows = cursor.fetchall()
        finally:
            cursor.close()
    if rows and not isinstance(rows[0], tuple):  # a driver's own row type
        rows = [tuple(r) for r in rows]
    table = np.array(rows, dtype=_ROW_DTYPE)
    return {c: np.ascontiguousarray(table[c]) for c in _ROW_DTYPE.names or ()}


def _server_columns(dbapi: Any, where: str) -> dict[str, npt.NDArray[Any]]:
    """The rows matching `where` on PostgreSQL as columns, each aggregated on the server into
    one `bytea`: the concatenated `int8send`/`float8send` of its values (big-endian IEEE 754
    binary64 for floats, so exact; NULL floats sent as NaN), fed row by row to every aggregate
    of one pass, so the columns line up. The result comes in binary, no per-row message."""
    ints = [
        f"({_QUANTITY_INDEX})::int8" if c == "quantity" else f"{c}::int8" for c in STAT_INT_COLUMNS
    ]
    floats = [f"COALESCE({c}::float8, 'NaN'::float8)" for c in STAT_FLOAT_COLUMNS]
    selected = ", ".join(
        [f"string_agg(int8send({e}), ''::bytea)" for e in ints]
        + [f"string_agg(float8send({e}), ''::bytea)" for e in floats]
    )
    with dbapi.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), {selected} FROM {LayerStat.__tablename__} WHERE {where}",
            binary=True,
        )
        n, *blobs = cursor.fetchone()
    if not n:
        return _fetched_columns(None, None)
    out: dict[str, npt.NDArray[Any]] = {}
    for c, blob in zip((*STAT_INT_COLUMNS, *STAT_FLOAT_COLUMNS), blobs, strict=True):
        integer = c in STAT_INT_COLUMNS
        if blob is None or len(blob) != 8 * n:  # string_agg skips NULLs (floats have none)
            raise ValueError(f"layer_stats: {c} is NULL")
        out[c] = np.frombuffer(blob, dtype=">i8" if integer else ">f8").astype(
            np.int64 if integer else np.float64
        )
    return out


def uncapped(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`worker.persist.record_from_row`'s reading of capped moments (+-CAP is +-inf), on a column
    of `layer_stat_columns` values (streamed exports read columns, not records)."""
    return np.where(np.abs(x) == CAP, np.copysign(np.inf, x), x)

"""What the dashboard reads, cached per sweep and kept current while the sweep runs.

Progress, provenance and failures are read afresh on every request (a few aggregate statements,
`scheduler.query`). Results are not: a sweep's aggregated statistics change only when one of its
configurations is (re-)aggregated, so each sweep's `SweepResults` keeps one block of raw rows
per configuration, versioned by (complete, `aggregated_at`, chunks done), and re-reads only the
blocks whose version moved (`scheduler.store.config_versions`, then
`worker.aggregate.layer_stat_rows` for the complete ones and `partial_records`, the merge of
the chunks done so far, for the others: the rows of `initsweep results`, `complete` false). Theory is pure but slow (about 0.1 s per tanh configuration): predictions are cached
per config_hash for the life of the process, the first ones computed within a time budget of the
request and the rest by one background thread, so a 10^4-configuration sweep shows its
statistics at once and its theory columns as they arrive.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from models.db import session_scope
from scheduler.activity import chunk_failures, config_devices
from scheduler.analysis.compare import CheckReport, check
from scheduler.analysis.records import config_columns
from scheduler.analysis.theory import ConfigTheory, predict
from scheduler.formatting import config_label
from scheduler.store import config_versions, sweep_config_rows
from scheduler.ui.table import (
    CONFIG_THEORY,
    MAX_CHECK_ROWS,
    RAW_COLUMNS,
    ROW_THEORY,
    ConfigEntry,
    Floats,
    ResultTable,
    theory_block,
)
from worker.aggregate import STAT_ROW, layer_stat_rows, partial_records
from worker.contract import OBSERVABLES, QUANTITIES, LayerRecord

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["REFRESH_S", "Dashboard", "SweepResults", "Theories", "sweep_failures"]

REFRESH_S = 2.0  # a sweep's results are re-checked at most this often
SYNC_THEORY_S = 3.0  # theory computed inside a request before the rest goes to the background
MAX_CACHED_SWEEPS = 8
_log = logging.getLogger("initsweep.ui")


class Theories:
    """Mean-field predictions by (config_hash, device), each computed once (thread-safe);
    `predict` on the device that computed the configuration unless a predictor is given."""

    def __init__(self, predictor: Callable[[Any], ConfigTheory] | None = None) -> None:
        self._predictor = predictor
        self._done: dict[tuple[str, str | None], ConfigTheory] = {}
        self._lock = threading.Lock()

    def get(self, entry: ConfigEntry, device: str | None = None) -> ConfigTheory:
        key = (entry.config_hash, device)
        with self._lock:
            found = self._done.get(key)
        if found is None:
            if self._predictor is None:
                found = predict(entry.config, device=device)
            else:
                found = self._predictor(entry.config)
            with self._lock:
                self._done[key] = found
        return found


def _blocks(rows: Sequence[tuple[Any, ...]]) -> dict[int, Floats]:
    """Raw rows (STAT_ROW) -> configuration id -> float block in record order."""
    if not rows:
        return {}
    code = {q: i for i, q in enumerate(QUANTITIES)}
    qi = STAT_ROW.index("quantity")
    end = 1 + len(RAW_COLUMNS)  # the counts and moments; not the distribution fields after them
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    data = np.array(
        [[*r[1:qi], code[r[qi]], *r[qi + 1 : end]] for r in rows], dtype=np.float64
    )  # columns: scheduler.ui.table.RAW_COLUMNS
    order = np.lexsort((data[:, 1], data[:, 0], ids))
    ids, data = ids[order], data[order]
    cuts = np.nonzero(np.diff(ids))[0] + 1
    return {
        int(chunk_ids[0]): block
        for chunk_ids, block in zip(np.split(ids, cuts), np.split(data, cuts), strict=True)
    }


def _stat_row(configuration_id: int, r: LayerRecord) -> tuple[Any, ...]:
    """A record as a `layer_stat_rows` tuple (STAT_ROW), its moments unrounded."""
    moments = (x for name in OBSERVABLES for x in (getattr(r, name).mean, getattr(r, name).m2))
    exps = (getattr(r, name).exp2 for name in OBSERVABLES)
    counts = (r.n_trials, r.n_finite, r.n_first_nonfinite, r.n_collapsed)
    return (configuration_id, r.layer, r.quantity, *counts, *moments, *exps)


class SweepResults:
    """The cached results of one sweep (see the module docstring)."""

    def __init__(self, sweep_id: int, theories: Theories, jobs: queue.Queue[Any]) -> None:
        self.sweep_id = sweep_id
        self._theories = theories
        self._jobs = jobs
        self._lock = threading.Lock()
        self._entries: list[ConfigEntry] | None = None
        self._index: dict[int, int] = {}  # configuration id -> entry index
        self._loaded: dict[int, tuple[bool, datetime | None, int]] = {}  # index -> version
        self._partial: set[int] = set()  # entry indices whose block merges the chunks so far
        self._raw: dict[int, Floats] = {}
        self._theory: dict[int, Floats] = {}
        self._heads: dict[int, dict[str, Any]] = {}
        self._devices: dict[str, str | None] = {}  # config_hash -> the device that computed it
        self._table: ResultTable | None = None
        self._dirty = True
        self._checked = -1e9
        self._check: tuple[int, CheckReport] | None = None
        self.version = 0

    def table(self, session: Session) -> tuple[ResultTable, int]:
        """The current snapshot and its version, re-read when REFRESH_S has passed."""
        with self._lock:
            now = time.monotonic()
            if self._entries is None or now - self._checked >= REFRESH_S:
                self._read(session)
                self._checked = now
            if self._dirty or self._table is None:
                assert self._entries is not None
                self._table = ResultTable(
                    self.sweep_id,
                    self._entries,
                    dict(self._raw),
                    dict(self._theory),
                    dict(self._heads),
                    frozenset(self._partial),
                )
                self._dirty = False
                self.version += 1
            return self._table, self.version

    def check(self, table: ResultTable, version: int) -> CheckReport | None:
        """`initsweep check` of this snapshot, once its theory is complete (None before, and
        for sweeps of more than MAX_CHECK_ROWS rows); computed once per version."""
        if not table.n_rows or not table.theory_complete or table.n_rows > MAX_CHECK_ROWS:
            return None
        with self._lock:
            if self._check is None or self._check[0] != version:
                incomplete = tuple(table.entries[i].label for i in sorted(table.partial))
                self._check = (version, check(table.records(), incomplete=incomplete))
            return self._check[1]

    def _read(self, session: Session) -> None:
        versions = config_versions(session=session, sweep_id=self.sweep_id)
        if self._entries is None or len(versions) != len(self._entries):
            infos = sweep_config_rows(session=session, sweep_id=self.sweep_id)
            self._entries = [
                ConfigEntry(
                    id=info.id,
                    position=info.position,
                    config_hash=info.config_hash,
                    config=info.config,
                    columns=config_columns(info.config, info.axes),
                    label=config_label(config_columns(info.config, info.axes)),
                )
                for info in infos
            ]
            self._index = {e.id: i for i, e in enumerate(self._entries)}
            self._dirty = True
        changed = {
            cid: v
            for cid, v in versions.items()
            if (v[0] or v[2]) and self._loaded.get(self._index[cid]) != v
        }
        for cid, (complete, _, done) in versions.items():  # no result any more (chunks reset)
            i = self._index[cid]
            if not complete and not done and i in self._loaded:
                for store in (self._loaded, self._raw, self._theory, self._heads):
                    store.pop(i, None)
                self._partial.discard(i)
                self._dirty = True
        if not changed:
            return
        self._devices = config_devices(session=session, sweep_id=self.sweep_id)
        whole = [cid for cid, v in changed.items() if v[0]]
        blocks = _blocks(layer_stat_rows(session=session, configuration_ids=whole))
        if len(whole) < len(changed):
            open_ids = [cid for cid, v in changed.items() if not v[0]]
            merged = partial_records(
                session=session, sweep_id=self.sweep_id, configuration_ids=open_ids
            )
            blocks.update(_blocks([_stat_row(c, r) for c, rs in merged.items() for r in rs]))
        pending = []
        for cid, v in changed.items():
            i = self._index[cid]
            self._loaded[i] = v
            (self._partial.discard if v[0] else self._partial.add)(i)
            self._theory.pop(i, None)
            self._heads.pop(i, None)
            block = blocks.get(cid)
            if block is None:
                self._raw.pop(i, None)
                continue
            self._raw[i] = block
            pending.append(i)
        self._dirty = True
        deadline = time.monotonic() + SYNC_THEORY_S
        for n, i in enumerate(sorted(pending)):
            if time.monotonic() > deadline:
                for rest in sorted(pending)[n:]:
                    self._jobs.put((self, rest, self._raw[rest]))
                break
            self._set_theory(i, self._raw[i])

    def _theory_of(self, i: int, raw: Floats) -> tuple[Floats, dict[str, Any]]:
        """Theory columns of entry `i`; none (NaN), logged, when its prediction fails."""
        assert self._entries is not None
        entry = self._entries[i]
        try:
            theory = self._theories.get(entry, self._devices.get(entry.config_hash))
            return theory_block(entry, raw, theory)
        except Exception:
            _log.exception("theory of %s failed", entry.label)
            return np.full((len(raw), len(ROW_THEORY)), np.nan), dict.fromkeys(CONFIG_THEORY)

    def _set_theory(self, i: int, raw: Floats) -> None:
        self._theory[i], self._heads[i] = self._theory_of(i, raw)

    def compute_theory(self, i: int, raw: Floats) -> None:
        """The background job: theory of entry `i` for the raw block it was queued with."""
        block, head = self._theory_of(i, raw)
        with self._lock:
            if self._raw.get(i) is raw:  # not re-aggregated since
                self._theory[i], self._heads[i] = block, head
                self._dirty = True


class Dashboard:
    """The dashboard's state: a session factory, the results caches, the theory thread."""

    def __init__(
        self,
        factory: Callable[[], Session],
        *,
        predictor: Callable[[Any], ConfigTheory] | None = None,
    ) -> None:
        self.factory = factory
        self.theories = Theories(predictor)
        self._sweeps: OrderedDict[int, SweepResults] = OrderedDict()
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One read transaction."""
        with session_scope(self.factory) as session:
            yield session

    def results(self, session: Session, sweep_id: int) -> tuple[ResultTable, int]:
        """The sweep's current results table and its version (UnknownSweepError if absent)."""
        return self._cache(sweep_id).table(session)

    def check(self, session: Session, sweep_id: int) -> tuple[ResultTable, CheckReport | None]:
        """The sweep's results and their theory check (None: not available yet)."""
        cached = self._cache(sweep_id)
        table, version = cached.table(session)
        return table, cached.check(table, version)

    def _cache(self, sweep_id: int) -> SweepResults:
        with self._lock:
            cached = self._sweeps.get(sweep_id)
            if cached is None:
                cached = self._sweeps[sweep_id] = SweepResults(sweep_id, self.theories, self._jobs)
                while len(self._sweeps) > MAX_CACHED_SWEEPS:
                    self._sweeps.popitem(last=False)
            self._sweeps.move_to_end(sweep_id)
            self._start_thread()
        return cached

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="initsweep-theory", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            sweep, i, raw = self._jobs.get()
            try:
                sweep.compute_theory(i, raw)
            finally:
                self._jobs.task_done()


def sweep_failures(
    *, session: Session, sweep_ids: Iterable[int], per_sweep: int = 20
) -> dict[int, list[dict[str, Any]]]:
    """Sweep id -> its latest failed chunks (at most `per_sweep`): configuration label, error."""
    found = chunk_failures(session=session, sweep_ids=list(sweep_ids), per_sweep=per_sweep)
    return {
        sweep_id: [
            {
                "chunk_id": f.chunk_id,
                "chunk_index": f.chunk_index,
                "configuration": config_label(config_columns(f.config, f.axes)),
                "attempts": f.attempts,
                "worker": f.worker,
                "error": f.error,
                "finished_at": f.finished_at,
            }
            for f in failures
        ]
        for sweep_id, failures in found.items()
    }

"""Building 10^5 objects at once (a sweep's configurations, plan and estimate): the cyclic
garbage collector paused meanwhile.

Each collection of the youngest generation also walks whatever survived the last one, so a
loop that keeps every object it builds (and builds no reference cycles) pays a collection per
~700 allocations over a growing heap; paused, the same loop builds the same objects in about
half the time (`benchmarks/bench_validate.py`). Reference counting still frees everything that
is dropped; cycles made meanwhile are collected once the collector runs again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector disabled inside the block and restored after it, as it was
    (nested blocks leave it to the outermost one), on error too."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

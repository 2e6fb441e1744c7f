"""The simulation core: the only package that imports TensorFlow.

`simulate_chunk(task)` runs a chunk's trials (TF stateless Philox with per-trial counters,
batched forward and manual backward pass, float64 observables) and returns `LayerRecord`s;
`configure_runtime(threads)` fixes TF's threads before the first op. See docs/core.md.
"""

from __future__ import annotations

from worker.sim.runner import simulate_chunk
from worker.sim.runtime import configure_runtime

__all__ = ["configure_runtime", "simulate_chunk"]

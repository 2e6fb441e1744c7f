"""Sim tests: real TensorFlow on CPU. Threads are fixed before any test touches TF."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from worker.sim import configure_runtime

# Before any op: simulate_chunk needs a fixed thread count, and TF refuses to change it later.
configure_runtime()

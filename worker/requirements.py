"""What a process needs before it can compute: TensorFlow, from the `cpu` or `gpu` install extra.

The control side (CLI, scheduler, dashboard, Python API reads) installs without TensorFlow;
local runs and workers check here first, without importing it, so a missing install is one
line before any process starts rather than an ImportError in each pool process.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = (
    "pip install 'initsweep[cpu]' (or 'initsweep[gpu]' on a Linux machine with an NVIDIA GPU)"
)


def compute_problem() -> str | None:
    """Why this environment cannot run chunks, or None when TensorFlow is importable."""
    if importlib.util.find_spec("tensorflow") is None:
        return (
            f"TensorFlow is not installed in this environment; to run chunks here: {INSTALL_HINT}"
        )
    return None

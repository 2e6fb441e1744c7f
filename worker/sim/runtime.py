"""TensorFlow process settings: a fixed thread count, GPU memory growth, the device's name.

Bit-identical chunks across processes need the same kernels with the same work split: matmul
and reductions may partition their sums by thread, so the intra/inter-op thread counts are
fixed (INITSWEEP_TF_THREADS, default 1; a worker process per core scales out instead). TF only
accepts these settings before its first op, hence `configure_runtime` is called first by
`simulate_chunk` and is idempotent; a conflicting second call raises instead of silently
computing with other settings. On a GPU, memory growth is enabled (several worker processes may
share one device) and op determinism is requested, because GPU reductions otherwise use atomics.
"""

from __future__ import annotations

import logging
import os
import threading

import tensorflow as tf

ENV_THREADS = "INITSWEEP_TF_THREADS"

_lock = threading.Lock()
_configured: int | None = None


class _RetracingNoise(logging.Filter):
    """Drop TF's "N out of the last M calls ... triggered tf.function retracing" warning.

    `worker.sim.graph.traced` builds one tf.function per graph shape by design (a worker meets
    many shapes); TF's heuristic takes that for accidental retracing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def default_threads() -> int:
    """Threads from INITSWEEP_TF_THREADS, else 1."""
    raw = os.environ.get(ENV_THREADS, "").strip()
    if not raw:
        return 1
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_THREADS}: expected a positive integer. Received: {raw!r}")
    return value


def configure_runtime(threads: int | None = None) -> int:
    """Fix TF's intra- and inter-op threads (once, before any op); return the count in force.

    threads: None for `default_threads()`. Raises RuntimeError if TF already runs with another
    count (it was used before this call, or configured differently).
    """
    global _configured
    wanted = default_threads() if threads is None else int(threads)
    if wanted < 1:
        raise ValueError(f"threads: expected a positive integer. Received: {threads}")
    with _lock:
        if _configured is not None:
            if _configured != wanted:
                raise RuntimeError(
                    f"configure_runtime: TensorFlow already runs with {_configured} threads; "
                    f"cannot switch to {wanted} in this process"
                )
            return _configured
        try:
            gpus = tf.config.list_physical_devices("GPU")
            for gpu in gpus:
                if not tf.config.experimental.get_memory_growth(gpu):
                    tf.config.experimental.set_memory_growth(gpu, True)
            tf.config.threading.set_intra_op_parallelism_threads(wanted)
            tf.config.threading.set_inter_op_parallelism_threads(wanted)
        except RuntimeError as e:
            current = tf.config.threading.get_intra_op_parallelism_threads()
            raise RuntimeError(
                "configure_runtime: TensorFlow was initialised before its threads were fixed "
                f"(expected {wanted} intra/inter-op threads, it runs with {current or 'default'}); "
                "call worker.sim.configure_runtime() before any TensorFlow op"
            ) from e
        if gpus:
            tf.config.experimental.enable_op_determinism()
        tf.get_logger().addFilter(_RetracingNoise())
        _configured = wanted
        return wanted


def configured_threads() -> int | None:
    """The thread count fixed by `configure_runtime`, or None before it ran."""
    return _configured


def device_name() -> str:
    """What computes: "CPU", or the first visible GPU's name (e.g. "NVIDIA H200")."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return str(details.get("device_name") or gpus[0].name)

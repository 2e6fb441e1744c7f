"""The Celery application: JSON only, late acks, one message in flight per process, no results.

Configured from the environment so every worker on every host is the same app:
    INITSWEEP_BROKER_URL     broker (default redis://localhost:6379/0)
    INITSWEEP_DATABASE_URL   results database (the source of truth; the broker carries ids only)
Delivery is at least once. A pool process killed mid-chunk is redelivered
(`task_reject_on_worker_lost`), a lost worker's chunk is re-enqueued by the reconciler when its
heartbeat goes stale, and a chunk claimed `worker.execute.MAX_CLAIMS` times is marked failed, so
redelivery is bounded. This module never imports TensorFlow.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu.entity import Queue

from worker.contract import QUEUES

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
CHUNK_HARD_LIMIT_S = 3600
VISIBILITY_TIMEOUT_S = 2 * CHUNK_HARD_LIMIT_S  # longer than any chunk may run


def broker_url() -> str:
    """The broker URL from the environment."""
    return os.environ.get("INITSWEEP_BROKER_URL", DEFAULT_BROKER_URL)


def make_app() -> Celery:
    """A configured Celery app (see module docstring)."""
    url = broker_url()
    celery = Celery("initsweep", broker=url, include=["worker.tasks"])
    if url.startswith(("redis://", "rediss://")):  # survive a full Redis (worker.broker)
        from worker.broker import TRANSPORT

        celery.conf.broker_transport = TRANSPORT
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],  # JSON only: a binary serializer from a broker could run code
        result_serializer="json",
        event_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=int(os.environ.get("INITSWEEP_MAX_TASKS_PER_CHILD", "200")),
        task_time_limit=CHUNK_HARD_LIMIT_S,
        task_soft_time_limit=CHUNK_HARD_LIMIT_S - 60,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "socket_timeout": 10,
            "socket_connect_timeout": 10,
            "retry_on_timeout": True,
            "health_check_interval": 10,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue="cpu",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return celery


app = make_app()

"""The Redis transport of the workers: a full Redis is a connection problem, not a crash.

Redis at `maxmemory` with the `noeviction` policy answers the write commands of kombu's Redis
transport (the unacked bookkeeping beside each delivery, the queue pushes) with an OOM error,
a `ResponseError` that kombu counts as a channel error: Celery's worker stops with
"Unrecoverable error", or an ack fails and its prefetch slot stays taken, so the worker idles
forever. Here a refused delivery is a connection error (the consumer logs it, backs off and
reconnects, `broker_connection_retry` without limit) and acks wait until Redis has memory again. No data
is at risk: the database is the source of truth, and a message lost meanwhile is re-enqueued by
the reconciler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import OutOfMemoryError

log = logging.getLogger(__name__)


def _until_redis_has_memory(action: Callable[[], Any], what: str) -> Any:
    """Run `action`, backing off (1 s, 2 s, ... 10 s) for as long as Redis is out of memory."""
    delay = 1.0
    while True:
        try:
            return action()
        except OutOfMemoryError as exc:
            log.warning("%s: Redis is out of memory (%s); retrying in %.0f s", what, exc, delay)
            time.sleep(delay)
            delay = min(2 * delay, 10.0)


class QoS(kombu_redis.QoS):
    """Acks and rejects wait for memory: a lost ack would hold the prefetch slot forever."""

    def ack(self, delivery_tag: Any) -> None:
        _until_redis_has_memory(lambda: super(QoS, self).ack(delivery_tag), "ack")

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        _until_redis_has_memory(
            lambda: super(QoS, self).reject(delivery_tag, requeue=requeue), "reject"
        )


class Channel(kombu_redis.Channel):
    """kombu's Redis channel with the QoS above."""

    QoS = QoS


class Transport(kombu_redis.Transport):
    """kombu's Redis transport: OOM is a connection error, and acks wait for memory."""

    Channel = Channel

    connection_errors = (*kombu_redis.Transport.connection_errors, OutOfMemoryError)
    channel_errors = tuple(
        e for e in kombu_redis.Transport.channel_errors if e is not OutOfMemoryError
    )


TRANSPORT = f"{__name__}:Transport"

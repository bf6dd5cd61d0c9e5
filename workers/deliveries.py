"""How many times a task's message was delivered, and what ends it when that is too many.

Each delivery of a message (its task id) is counted in Redis. A message past
``CHORUS_WORKER__MAX_DELIVERIES`` (its worker died every time) is
dead-lettered: it ends as failed, in the ledger too, without another call
(docs/RELIABILITY.md, "Dead-lettering"). A count lives as long as the message
could still come back: the visibility timeout once per allowed delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from config.settings import WorkerSettings
from workers import keys
from workers.models import Envelope, ErrorInfo
from workers.redisio import Command, run_together

log = logging.getLogger(__name__)


def ttl_s(worker: WorkerSettings) -> int:
    """Seconds a delivery count is kept."""
    return int(worker.visibility_timeout_s * (worker.max_deliveries + 1))


def count_commands(client: redis.Redis, task_id: str, ttl: int) -> list[Command]:
    """Count one more delivery of ``task_id``'s message; :func:`counted` reads the replies."""
    key = keys.deliveries(task_id)
    return [
        Command(client, ("INCR", key), then=int),
        Command(client, ("EXPIRE", key, ttl)),
    ]


def counted(replies: Sequence[Any]) -> int:
    """The delivery count (1 the first), from the replies of :func:`count_commands`."""
    return int(replies[0])


def count(client: redis.Redis, task_id: str, ttl: int) -> int:
    """:func:`count_commands`, sent at once; returns the count."""
    return counted(run_together(count_commands(client, task_id, ttl)))


def dead_letter(task_id: str, key: str, delivery: int) -> Envelope:
    """The failure of a message delivered ``delivery - 1`` times without finishing."""
    log.error("task %s dead-lettered after %d deliveries", task_id, delivery - 1)
    info = ErrorInfo(
        type="dead_lettered",
        message=(
            f"delivered {delivery - 1} times without finishing (its worker died each "
            "time); not tried again"
        ),
    )
    return Envelope.failure(key, info, delivery=delivery)

"""The Celery app as Flower should load it: chorus's own figures join Flower's ``/metrics``.

    celery -A orchestration.flowerapp flower --basic-auth=user:password

is ``celery -A workers flower`` (which works too) plus
:class:`orchestration.metrics.ChorusCollector` in prometheus_client's default
registry, the one Flower serves on ``/metrics``, plus a mark in Redis that a
Flower is watching (:data:`workers.keys.flower_watching`, refreshed every
:data:`MARK_EVERY_S`): a worker that starts while it is set sends task events
from its first task, instead of from when Flower next turns them on (up to
5 s later, the tasks of those seconds never listed).
"""

from __future__ import annotations

import contextlib
import socket
import threading

import redis

from config.settings import get_settings
from orchestration.metrics import register
from workers import keys
from workers.app import app
from workers.runtime import redis_client

MARK_EVERY_S = 5.0
MARK_TTL_S = 15


def _mark_while_running() -> None:
    client = redis_client(get_settings().broker_url)
    while True:
        with contextlib.suppress(redis.RedisError):
            client.set(keys.flower_watching(), socket.gethostname(), ex=MARK_TTL_S)
        threading.Event().wait(MARK_EVERY_S)


register()
threading.Thread(target=_mark_while_running, name="chorus-flower-mark", daemon=True).start()

__all__ = ["app"]

"""Writes that must not be lost to a Redis blip: retried until Redis answers again.

After a call has been paid for, its result must reach the store and the
ledger; if Redis restarts at that moment, giving up would mean paying for the
same call again when the message is redelivered. These writes are retried
with backoff for up to ``patience_s`` (longer than a Redis restart takes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

log = logging.getLogger(__name__)

T = TypeVar("T")

# Connection trouble, not a bad command: worth waiting out.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def retrying(
    fn: Callable[[], T],
    *,
    what: str,
    patience_s: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``fn()``, retried on connection errors for up to ``patience_s``.

    Raises:
        redis.RedisError: Redis stayed away longer than ``patience_s``.
    """
    deadline = clock() + patience_s
    delay = 0.1
    while True:
        try:
            return fn()
        except TRANSIENT as exc:
            if clock() + delay > deadline:
                raise
            log.warning("%s: Redis unreachable (%s); retrying in %.1f s", what, exc, delay)
            sleep(delay)
            delay = min(delay * 2, 5.0)

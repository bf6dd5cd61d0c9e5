"""The cluster-wide rate limiter: Redis token buckets shared by every worker.

See ``backend.py`` for the interface; ``backends/`` holds the Redis
implementation and a stub for tests.
"""

from __future__ import annotations

import redis

from config.settings import Settings
from workers.ratelimit.backend import Cost, RateLimiter, Reservation
from workers.ratelimit.backends.redis import RedisLimiter
from workers.ratelimit.backends.stub import StubLimiter, UnlimitedLimiter


def build_limiter(settings: Settings, client: redis.Redis) -> RateLimiter:
    """The limiter the settings ask for: Redis buckets, or none when disabled."""
    if not settings.limiter.enabled:
        return UnlimitedLimiter()
    return RedisLimiter(client, settings.limits_for)


__all__ = [
    "Cost",
    "RateLimiter",
    "RedisLimiter",
    "Reservation",
    "StubLimiter",
    "UnlimitedLimiter",
    "build_limiter",
]

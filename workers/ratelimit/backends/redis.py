"""The cluster-wide limiter: three token buckets per bucket id, kept in Redis by Lua.

Every worker process on every machine reserves through the same scripts on
the same Redis, so the account's limits hold once for the whole cluster
(Celery's own ``rate_limit`` holds per worker: celery#5732). Time is Redis's
``TIME``, never a worker's clock, so a skewed clock changes nothing.

Warning:
    A reservation is made before the call and settled after it, so for the
    length of a call its ``max_tokens`` of output are held even if the call
    uses fewer. Under a binding output-token limit, a smaller ``max_tokens``
    means more calls per minute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from importlib import resources

import redis

from config.settings import FamilyLimits
from workers import keys
from workers.errors import CostExceedsCapacity, LimiterUnavailable
from workers.ratelimit.backend import (
    BucketLevel,
    Cost,
    LimiterState,
    RateLimiter,
    Reservation,
)
from workers.ratelimit.limitkey import family_of_key
from workers.redisio import Command, LuaScript

BUCKETS = ("requests", "input_tokens", "output_tokens")
_BINDING = {
    0: "",
    1: "requests",
    2: "input_tokens",
    3: "output_tokens",
    4: "cooldown",
    5: "learning",
}
_HEADER_NAMES = ("requests", "input-tokens", "output-tokens")
# An idle key's hash expires; by then its buckets would be full anyway (and the
# limits it learned from the server are asked again: they may have changed).
TTL_MS = 15 * 60 * 1000
# How long one probe (the first call of a bucket id with no limits set) holds the
# others back; then another call probes, in case the first's worker died. A slow
# first answer lets one more call through every this often: a trickle, no burst.
PROBE_TIMEOUT_US = 3 * 1_000_000


def load_script(name: str) -> str:
    """A limiter script with the shared prelude (common.lua) in front of it."""
    folder = resources.files("workers.ratelimit") / "lua"
    return (folder / "common.lua").read_text() + "\n" + (folder / name).read_text()


def _header_int(headers: Mapping[str, str], name: str) -> int:
    value = headers.get(name)
    if value is None:
        return -1
    try:
        return max(0, int(float(value)))
    except ValueError:
        return -1


class RedisLimiter(RateLimiter):
    """Reserves, settles and cools down limit keys through Lua scripts on one Redis."""

    def __init__(self, client: redis.Redis, limits_for: Callable[[str], FamilyLimits]) -> None:
        self._redis = client
        self._limits_for = limits_for
        self._reserve = LuaScript(client, load_script("reserve.lua"))
        self._settle = LuaScript(client, load_script("settle.lua"))
        self._cooldown = LuaScript(client, load_script("cooldown.lua"))
        self._shapes: dict[str, tuple[FamilyLimits, list[float], list[int]]] = {}

    def _shape(self, bucket_id: str) -> tuple[FamilyLimits, list[float], list[int]]:
        shape = self._shapes.get(bucket_id)
        if shape is None:
            limits = self._limits_for(family_of_key(bucket_id))
            shape = (limits, limits.capacities(), limits.per_minute())
            # The bucket id is listed once per process, for `chorus limits --live`.
            self._redis.sadd(keys.limit_index(), bucket_id)
            self._shapes[bucket_id] = shape
        return shape

    def reserve(self, bucket_id: str, cost: Cost) -> Reservation:
        costs = [cost.requests, cost.input_tokens, cost.output_tokens]
        try:
            limits, capacities, per_minute = self._shape(bucket_id)
            max_wait_us = int(limits.max_wait_s * 1_000_000)
            status, wait_us, bucket, now_us = self._reserve(
                keys=[keys.limit(bucket_id)],
                args=[
                    *costs,
                    *capacities,
                    *per_minute,
                    max_wait_us,
                    TTL_MS,
                    int(limits.configured),
                    PROBE_TIMEOUT_US,
                    int(limits.jitter_s * 1_000_000),
                ],
            )
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"the rate limiter's Redis cannot be reached: {exc}") from exc
        status, wait_us, bucket = int(status), int(wait_us), int(bucket)
        if status == -1:
            name = BUCKETS[bucket - 1]
            ceiling = int(max(capacities[bucket - 1], per_minute[bucket - 1]))
            raise CostExceedsCapacity(
                f"this call needs {costs[bucket - 1]} {name.replace('_', ' ')} but "
                f"{family_of_key(bucket_id)} grants at most {ceiling} a minute: it could never "
                "be sent",
                name,
                costs[bucket - 1],
                ceiling,
            )
        wait_s = math.inf if wait_us < 0 else wait_us / 1_000_000
        return Reservation(
            granted=status == 1,
            wait_s=wait_s,
            bucket_id=bucket_id,
            cost=cost,
            binding=_BINDING.get(bucket, ""),
            at_us=int(now_us),
        )

    def settle(
        self, reservation: Reservation, used: Cost, headers: Mapping[str, str] | None = None
    ) -> None:
        try:
            self._settle(*self._settle_keys_args(reservation, used, headers))
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"the rate limiter's Redis cannot be reached: {exc}") from exc

    def settle_command(
        self, reservation: Reservation, used: Cost, headers: Mapping[str, str] | None = None
    ) -> Command:
        return self._settle.command(*self._settle_keys_args(reservation, used, headers))

    def _settle_keys_args(
        self, reservation: Reservation, used: Cost, headers: Mapping[str, str] | None
    ) -> tuple[list[str], list[float | str]]:
        refund = reservation.cost.minus(used)
        headers = headers or {}
        remaining = [
            _header_int(headers, f"anthropic-ratelimit-{n}-remaining") for n in _HEADER_NAMES
        ]
        server_limits = [
            _header_int(headers, f"anthropic-ratelimit-{n}-limit") for n in _HEADER_NAMES
        ]
        # The shape is cached after the reservation: no Redis call here.
        limits, capacities, per_minute = self._shape(reservation.bucket_id)
        return [keys.limit(reservation.bucket_id)], [
            refund.requests,
            refund.input_tokens,
            refund.output_tokens,
            *capacities,
            *per_minute,
            *remaining,
            *server_limits,
            TTL_MS,
            int(limits.configured),
        ]

    def cooldown(self, bucket_id: str, seconds: float) -> None:
        try:
            limits, capacities, per_minute = self._shape(bucket_id)
            self._cooldown(
                keys=[keys.limit(bucket_id)],
                args=[
                    int(seconds * 1_000_000),
                    *capacities,
                    *per_minute,
                    TTL_MS,
                    int(limits.configured),
                ],
            )
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"the rate limiter's Redis cannot be reached: {exc}") from exc

    def state(self, bucket_id: str) -> LimiterState:
        try:
            limits, capacities, per_minute = self._shape(bucket_id)
            pipe = self._redis.pipeline(transaction=False)
            pipe.time()
            pipe.hgetall(keys.limit(bucket_id))
            (seconds, micros), raw = pipe.execute()
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"the rate limiter's Redis cannot be reached: {exc}") from exc
        fields = {k.decode(): float(v) for k, v in raw.items()}
        now_us = int(seconds) * 1_000_000 + int(micros)
        last = fields.get("t", now_us)
        levels = []
        for index, (name, field) in enumerate(zip(BUCKETS, ("r", "i", "o"), strict=True)):
            cap, rate = capacities[index], per_minute[index]
            server = fields.get("l" + field)
            if server is not None and (server < rate or not limits.configured):
                cap = int(cap * server / rate) if rate else cap
                rate = int(server)
            # Stated as of its own time, maybe a slot ahead (common.lua).
            since = now_us - max(fields.get("t" + field, last), last)
            level = min(cap, fields.get(field, cap) + rate / 60e6 * since)
            levels.append(BucketLevel(name, cap, rate, level))
        return LimiterState(
            bucket_id=bucket_id,
            buckets=tuple(levels),
            cooldown_s=max(0.0, (fields.get("c", 0.0) - now_us) / 1e6),
            granted=int(fields.get("g", 0)),
            waited_s=fields.get("w", 0.0) / 1e6,
            refused=int(fields.get("x", 0)),
            cooldowns=int(fields.get("n", 0)),
            configured=limits.configured,
            learned_at=fields["lt"] / 1e6 if "lt" in fields else None,
        )

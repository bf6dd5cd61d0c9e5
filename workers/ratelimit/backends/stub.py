"""A limiter that grants everything at once: for unit tests of the code around it."""

from __future__ import annotations

from collections.abc import Mapping

from workers.ratelimit.backend import Cost, LimiterState, RateLimiter, Reservation


class StubLimiter(RateLimiter):
    """Grants every reservation with no wait and records what it was told."""

    def __init__(self) -> None:
        self.reserved: list[Reservation] = []
        self.settled: list[tuple[Reservation, Cost]] = []
        self.cooldowns: list[tuple[str, float]] = []
        self.observed: list[tuple[str, dict[str, str]]] = []

    def reserve(self, bucket_id: str, cost: Cost) -> Reservation:
        reservation = Reservation(granted=True, wait_s=0.0, bucket_id=bucket_id, cost=cost)
        self.reserved.append(reservation)
        return reservation

    def settle(
        self, reservation: Reservation, used: Cost, headers: Mapping[str, str] | None = None
    ) -> None:
        self.settled.append((reservation, used))
        if headers:
            self.observed.append((reservation.bucket_id, dict(headers)))

    def cooldown(self, bucket_id: str, seconds: float) -> None:
        self.cooldowns.append((bucket_id, seconds))

    def state(self, bucket_id: str) -> LimiterState:
        return LimiterState(
            bucket_id=bucket_id, buckets=(), cooldown_s=0.0, granted=len(self.reserved)
        )


class UnlimitedLimiter(RateLimiter):
    """Grants everything and remembers nothing: for ``CHORUS_LIMITER__ENABLED=false``.

    Warning:
        Nothing holds the cluster to the account's limits then; the API's
        429s and the retries are all that slow it down.
    """

    def reserve(self, bucket_id: str, cost: Cost) -> Reservation:
        return Reservation(granted=True, wait_s=0.0, bucket_id=bucket_id, cost=cost)

    def settle(
        self, reservation: Reservation, used: Cost, headers: Mapping[str, str] | None = None
    ) -> None:
        pass

    def cooldown(self, bucket_id: str, seconds: float) -> None:
        pass

    def state(self, bucket_id: str) -> LimiterState:
        return LimiterState(bucket_id=bucket_id, buckets=(), cooldown_s=0.0)

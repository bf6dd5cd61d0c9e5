"""The rate limiter's interface: reserve a cost, sleep the wait, settle afterwards.

A caller asks for a :class:`Cost` (1 request, its estimated input tokens, its
``max_tokens`` of output) under one bucket id and receives a
:class:`Reservation`: either a grant with how long to wait before sending (0
means now), or a refusal with how long until asking again makes sense.
After the call it settles with what the API reported using, which refunds or
charges the difference.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING


@dataclass(frozen=True)
class Cost:
    """What one call draws from the three buckets."""

    requests: int = 1
    input_tokens: int = 0
    output_tokens: int = 0

    def minus(self, other: Cost) -> Cost:
        return Cost(
            self.requests - other.requests,
            self.input_tokens - other.input_tokens,
            self.output_tokens - other.output_tokens,
        )


@dataclass(frozen=True)
class Reservation:
    """The limiter's answer.

    ``granted`` with ``wait_s``: the cost is reserved, send after ``wait_s``.
    Not granted: nothing is reserved; ask again after ``wait_s``.
    """

    granted: bool
    wait_s: float
    bucket_id: str
    cost: Cost
    # Which bucket set the wait ("requests", "input_tokens",
    # "output_tokens", "cooldown", or "learning": the first call of a bucket id
    # with no limits set is learning them), for the progress display.
    binding: str = ""
    # When the limiter decided, in microseconds of its own clock (Redis TIME).
    at_us: int = 0

    @property
    def slot_us(self) -> int:
        """When the reserved call may go, on the limiter's clock."""
        return self.at_us + int(self.wait_s * 1_000_000)


@dataclass(frozen=True)
class BucketLevel:
    bucket: str
    capacity: float
    per_minute: int
    level: float


@dataclass(frozen=True)
class LimiterState:
    """A snapshot of one bucket id, for ``chorus limits --live``."""

    bucket_id: str
    buckets: tuple[BucketLevel, ...]
    cooldown_s: float
    granted: int = 0
    waited_s: float = 0.0
    refused: int = 0
    cooldowns: int = 0
    # True when the user set the limits; the server's figures then only lower them.
    configured: bool = True
    # When the server last told its limits (unix seconds), if it has.
    learned_at: float | None = None


if TYPE_CHECKING:
    from workers.redisio import Command


class RateLimiter(abc.ABC):
    """Reserves capacity in the buckets of one bucket id."""

    @abc.abstractmethod
    def reserve(self, bucket_id: str, cost: Cost) -> Reservation:
        """Reserve ``cost`` under ``bucket_id``.

        Raises:
            CostExceedsCapacity: the cost exceeds a bucket's capacity.
            LimiterUnavailable: the limiter's store cannot be reached.
        """

    @abc.abstractmethod
    def settle(
        self, reservation: Reservation, used: Cost, headers: Mapping[str, str] | None = None
    ) -> None:
        """Correct a granted reservation to what the call really ``used``.

        ``headers`` are the response's ``anthropic-ratelimit-*`` headers: a
        remaining or a limit lower than our own view pulls our buckets down,
        never up.
        """

    def settle_command(
        self, reservation: Reservation, used: Cost, headers: Mapping[str, str] | None = None
    ) -> Command | None:
        """:meth:`settle` as a command to send with others (workers.redisio), or None
        when this limiter cannot (then call :meth:`settle`)."""
        return None

    @abc.abstractmethod
    def cooldown(self, bucket_id: str, seconds: float) -> None:
        """Hold every caller of ``bucket_id`` back for ``seconds`` (a 429's retry-after)."""

    @abc.abstractmethod
    def state(self, bucket_id: str) -> LimiterState:
        """The current levels, cooldown and counters of ``bucket_id``."""
